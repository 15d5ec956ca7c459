import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.env_checker import check_env

from dreamgym import ConfigError
from dreamgym.agents.sb3 import DreamVecEnv

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


def test_set_temperature_is_public_and_the_adapter_honours_indices(model_dirs):
    from dreamgym.envs.dream import DreamEnv
    from dreamgym.envs.dream_vector import DreamVectorEnv

    dream = DreamVectorEnv(num_envs=3, model=str(model_dirs["pendulum"]), temperature=1.0)
    dream.set_temperature(0.4, indices=[2])
    dream.set_temperature([0.1, 0.2], indices=[0, 1])
    assert dream.get_attr("temperature") == pytest.approx((0.1, 0.2, 0.4))
    with pytest.raises(ConfigError, match="temperature must be"):
        dream.set_temperature([0.5, -1.0, 0.5])
    assert dream.get_attr("temperature") == pytest.approx((0.1, 0.2, 0.4))  # a bad value changes nothing
    venv = DreamVecEnv(dream)
    assert venv.env_method("set_temperature", 0.9, indices=[1]) == [None]  # was: an AttributeError
    assert venv.get_attr("temperature", indices=[0, 1]) == pytest.approx([0.1, 0.9])
    venv.env_method("set_temperature", 0.3)
    assert venv.get_attr("temperature") == pytest.approx([0.3, 0.3, 0.3])
    with pytest.raises(ValueError, match="acts on every dream"):
        venv.env_method("render", indices=[0])
    single = DreamEnv(str(model_dirs["pendulum"]))
    single.set_temperature(0.6, indices=[0])
    assert single.temperature == 0.6
    single.unwrapped.temperature = 0.7
    assert single.temperature == 0.7
    with pytest.raises(ConfigError, match="one dream"):
        single.set_temperature(0.5, indices=[1])


def test_set_options_reach_the_dream_once_as_in_dummy_vec_env(model_dirs):
    from dreamgym.envs.dream_vector import DreamVectorEnv

    dream = DreamVectorEnv(num_envs=2, model=str(model_dirs["pendulum"]))
    seen = []
    reset = dream.reset
    dream.reset = lambda **kw: (seen.append(kw["options"]), reset(**kw))[1]  # type: ignore[method-assign]
    venv = DreamVecEnv(dream)
    venv.set_options({"note": 1})
    venv.reset()
    venv.reset()
    assert seen == [{"note": 1}, None]  # was: options never passed on
    venv.reset()
    venv.set_options({"reset_mask": np.array([True, False])})
    obs = venv.reset()
    assert seen[-1]["reset_mask"].tolist() == [True, False] and obs.shape == (2, 11)
    venv.set_options([{"a": 1}, {"a": 2}])
    with pytest.raises(ConfigError, match="one dict for every env"):
        venv.reset()


def test_train_agent_sb3_passes_the_dream_options_and_the_episode_length(tmp_path, model_dirs):
    """`train-agent --algo ppo` with dream options and --max-steps: the dreams PPO learns in get them
    (they used to reach CMA-ES only), and agent.json records them."""
    import json

    from stable_baselines3.common.callbacks import BaseCallback

    from dreamgym.agents import sb3_train
    from dreamgym.cli import build_parser
    from dreamgym.argtypes import config_from_args

    seen = {}

    class Look(BaseCallback):
        def _on_step(self) -> bool:
            dream = self.training_env.venv.dream
            seen.update(limit=dream.max_episode_steps, opts=dream._batch.options)
            return True

    model = model_dirs["pendulum"]
    args = build_parser().parse_args(["train-agent", "Dream-Pendulum-v0", "--out", str(tmp_path / "r"), "--algo", "ppo",
                                      "--model", str(model), "--steps", "64", "--n-envs", "4", "--max-steps", "5",
                                      "--temperature-range", "0.5", "0.9", "--no-dropout-masks", "--algo-kwargs",
                                      '{"n_steps": 16, "batch_size": 32, "n_epochs": 1}'])
    cfg = config_from_args(sb3_train.SB3Config, args)
    assert (cfg.max_steps, cfg.temperature_range, cfg.dropout_masks) == (5, [0.5, 0.9], False)
    sb3_train.train_sb3(cfg, tmp_path / "r", progress=False, callbacks=[Look()])
    assert seen["limit"] == 5 and list(seen["opts"].temperature_range) == [0.5, 0.9]
    assert seen["opts"].dropout_masks is False
    meta = json.loads((tmp_path / "r" / "agent.json").read_text())
    assert meta["max_episode_steps"] == 5 and meta["config"]["temperature_range"] == [0.5, 0.9]
    assert meta["config"]["dropout_masks"] is False
    assert isinstance(meta["temperature"], float)
