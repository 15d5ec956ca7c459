"""examples/outside_trainer.py: a stranger's CMA-ES through the public API, on Box and Discrete dreams."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

PATH = Path(__file__).parents[1] / "examples" / "outside_trainer.py"


def load():
    spec = importlib.util.spec_from_file_location("outside_trainer", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_linear_policy_picks_the_action_with_the_highest_score():
    ot = load()
    space = gym.spaces.Discrete(3)
    assert ot.policy_dim(4, space) == 15
    theta = np.zeros(15)
    theta[12:] = [0.0, 0.0, 1.0]  # biases: action 2 wins everywhere ...
    theta[0] = 5.0  # ... unless obs[0] is large, where action 0 wins
    act = ot.linear_policy(theta, 4, space)
    obs = np.array([[0.0, 0, 0, 0], [1.0, 0, 0, 0]])
    assert act(obs).tolist() == [2, 0]
    assert space.contains(act(obs[0]))
    with pytest.raises(TypeError, match="Box or Discrete"):
        ot.policy_dim(4, gym.spaces.MultiBinary(2))


@pytest.mark.parametrize("name", ["doom", "pendulum"])
def test_cmaes_trains_and_scores_in_a_discrete_and_a_box_dream(name, model_dirs):
    ot = load()
    dream_id = {"doom": "Dream-DoomTakeCover-v0", "pendulum": "Dream-Pendulum-v0"}[name]
    args = ot.Args(dream=dream_id, model=str(model_dirs[name]), generations=2, population=4, rollouts=2)
    act = ot.train_cmaes(args)
    make = lambda: gym.make(dream_id, model=str(model_dirs[name]), max_episode_steps=50)  # noqa: E731
    mean, std, actions = ot.score(act, make, 2, 0)
    assert np.isfinite(mean) and np.isfinite(std)
    if name == "doom":
        assert actions.shape == (3,) and actions.sum() == pytest.approx(1.0)  # how often each action was taken


@pytest.mark.parametrize("train_in", ["dream", "real"])
def test_ppo_trains_in_the_dream_or_the_real_twin(train_in, model_dirs, monkeypatch):
    ot = load()
    seen = []
    real = ot.dreamgym.make_real
    monkeypatch.setattr(ot.dreamgym, "make_real", lambda *a, **k: seen.append(a) or real(*a, **k))
    args = ot.Args(trainer="ppo", dream="Dream-Pendulum-v0", model=str(model_dirs["pendulum"]), steps=64, n_envs=1,
                   train_in=train_in)
    act = ot.train_ppo(args)
    assert len(seen) == (1 if train_in == "real" else 0)  # the real twin stepped only when asked for
    env = real("Dream-Pendulum-v0", model=str(model_dirs["pendulum"]))
    obs, _ = env.reset(seed=0)
    assert env.action_space.contains(np.asarray(act(obs), dtype=np.float32))
