import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.env_checker import check_env

from dreamgym import ConfigError
from dreamgym.sb3 import DreamVecEnv

from .conftest import make_tiny_model


def test_ppo_learns_on_dream_env(model_dirs):
    env = gym.make("Dream-CarRacing-v0", model=str(model_dirs["carracing"]))
    check_env(env)
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=32, n_epochs=1, policy_kwargs={"net_arch": [16]}, seed=0)
    model.learn(total_timesteps=64)
    action, _ = model.predict(env.reset(seed=0)[0], deterministic=True)
    assert env.action_space.contains(action)


@pytest.mark.parametrize("algo", [PPO, A2C])
def test_sb3_learns_on_dream_vec_env(model_dirs, algo):
    venv = DreamVecEnv("Dream-DoomTakeCover-v0", n_envs=8, model=str(model_dirs["doom"]))
    kwargs = {"n_steps": 8, "batch_size": 64, "n_epochs": 1} if algo is PPO else {"n_steps": 8}
    model = algo("MlpPolicy", venv, policy_kwargs={"net_arch": [16]}, seed=0, **kwargs)
    model.learn(total_timesteps=128)
    assert model.num_timesteps >= 128


def test_pixels_with_cnn_policy(model_dirs):
    venv = DreamVecEnv("Dream-CarRacing-v0", n_envs=2, model=str(model_dirs["carracing"]), obs_type="pixels")
    assert venv.observation_space.shape == (64, 64, 3)
    PPO("CnnPolicy", venv, n_steps=8, batch_size=16, n_epochs=1, seed=0).learn(16)


def test_terminal_observation_and_time_limit_flag():
    venv = DreamVecEnv("Dream-Pendulum-v0", n_envs=3, model=make_tiny_model("pendulum"), max_episode_steps=3)
    venv.seed(5)
    obs = venv.reset()
    for _ in range(3):
        obs, rewards, dones, infos = venv.step(np.zeros((3, 1), np.float32))
    assert dones.all() and rewards.dtype == np.float32
    for i in range(3):
        assert infos[i]["TimeLimit.truncated"] is True
        assert infos[i]["terminal_observation"].shape == obs[i].shape
        assert not np.allclose(infos[i]["terminal_observation"], obs[i])


def test_seed_reproduces_and_attrs(model_dirs):
    venv = DreamVecEnv("Dream-Pendulum-v0", n_envs=2, model=str(model_dirs["pendulum"]))
    venv.seed(3)
    a = venv.reset()
    venv.seed(3)
    assert np.array_equal(a, venv.reset())
    venv.set_attr("temperature", 0.7, indices=[1])
    assert venv.get_attr("temperature") == pytest.approx([venv.get_attr("temperature")[0], 0.7])
    assert venv.env_is_wrapped(gym.Wrapper) == [False, False]
    assert len(venv.get_images()) == 2


def test_wrong_input():
    with pytest.raises(ConfigError, match="Dream id or a DreamVectorEnv"):
        DreamVecEnv(gym.make_vec("Pendulum-v1", num_envs=2, vectorization_mode="sync"))
