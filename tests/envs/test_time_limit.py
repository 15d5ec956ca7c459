"""One time limit: a DreamEnv built directly truncates at the model's limit, as a DreamVectorEnv does;
made by gym.make, the TimeLimit wrapper (registered limit, or make's max_episode_steps) truncates."""

import gymnasium as gym
import numpy as np
import pytest

from dreamgym import ConfigError, DreamEnv, DreamVectorEnv

from ..conftest import make_tiny_model


def _steps_until_truncated(env, action, cap=100):
    env.reset(seed=0)
    for n in range(1, cap + 1):
        _, _, terminated, truncated, _ = env.step(action)
        assert not terminated
        if truncated:
            return n
    return None


@pytest.mark.parametrize("fast", [True, False])
def test_a_dream_env_built_directly_truncates_where_the_vector_env_does(fast):
    model = make_tiny_model("pendulum", max_episode_steps=7)
    action = np.zeros(1, np.float32)
    assert _steps_until_truncated(DreamEnv(model=model, fast=fast), action) == 7
    assert _steps_until_truncated(DreamEnv(model=model, fast=fast, max_episode_steps=3), action) == 3
    vec = DreamVectorEnv(num_envs=1, model=model)
    vec.reset(seed=0)
    truncated = [vec.step(action[None])[3][0] for _ in range(7)]
    assert truncated == [False] * 6 + [True]
    with pytest.raises(ConfigError, match="max_episode_steps"):
        DreamEnv(model=model, max_episode_steps=0)


def test_gym_make_keeps_its_time_limit(tmp_path):
    make_tiny_model("pendulum", max_episode_steps=7).save_pretrained(tmp_path)
    action = np.zeros(1, np.float32)
    assert _steps_until_truncated(gym.make("Dream-Pendulum-v0", model=str(tmp_path), max_episode_steps=12), action) == 12
    assert _steps_until_truncated(gym.make("Dream-Pendulum-v0", model=str(tmp_path), max_episode_steps=4), action) == 4
