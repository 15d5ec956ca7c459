"""The ``rssm`` backend: a Dreamer-style world model behind the same dream envs, real twin and Hub files."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from dreamgym import DreamEnv, DreamVectorEnv
from dreamgym.data.collect import CollectConfig, collect
from dreamgym.models.rssm import RSSMConfig
from dreamgym.models.rssm_world_model import RSSMWorldModel, RSSMWorldModelConfig
from dreamgym.train.rssm_recipe import RSSMRecipe, train_rssm
from dreamgym.train.trainer import TrainConfig

PENDULUM_ACTIONS = {"type": "Box", "low": -2.0, "high": 2.0, "shape": [1], "dtype": "float32"}
PENDULUM_STATES = {"type": "Box", "low": [-1.0, -1.0, -8.0], "high": [1.0, 1.0, 8.0], "shape": [3], "dtype": "float32"}


def tiny_rssm(seed: int = 0, **over) -> RSSMWorldModel:
    torch.manual_seed(seed)
    cfg = RSSMWorldModelConfig(env_id="Pendulum-v1", action_space=PENDULUM_ACTIONS, observation_space=PENDULUM_STATES,
                               rssm=RSSMConfig.preset("tiny"), obs_dim=3, max_episode_steps=200, num_start_states=4,
                               **over)
    model = RSSMWorldModel(cfg)
    with torch.no_grad():
        model.start_deter.uniform_(-0.5, 0.5)
        model.start_stoch.copy_(torch.nn.functional.one_hot(torch.randint(0, 4, (4, 4)), 4).float().flatten(1))
        model.rssm.cont[-1].bias.fill_(6.0)  # episodes go on (a random head would end them at random)
    return model.eval()


@pytest.fixture
def rssm_dir(tmp_path):
    tiny_rssm().save_pretrained(tmp_path / "rssm")
    return tmp_path / "rssm"


def _run(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    rows = [obs]
    for a in actions:
        obs, reward, *_ = env.step(a)
        rows.append(np.append(obs, reward))
    return np.concatenate(rows)


def test_a_registered_dream_passes_both_checkers_and_seeds(rssm_dir):
    assert json.loads((rssm_dir / "config.json").read_text())["backend"] == "rssm"
    env = gym.make("Dream-Pendulum-v0", model=str(rssm_dir))
    assert isinstance(env.unwrapped.model, RSSMWorldModel)
    gym_check_env(env.unwrapped)
    sb3_check_env(env.unwrapped, warn=True)
    actions = [np.array([a], np.float32) for a in np.linspace(-2, 2, 20)]
    np.testing.assert_array_equal(_run(env, 3, actions), _run(env, 3, actions))
    assert not np.array_equal(_run(env, 3, actions), _run(env, 4, actions))


def test_vector_equals_single(rssm_dir):
    vec = DreamVectorEnv(num_envs=3, model=str(rssm_dir), max_episode_steps=50)
    obs, _ = vec.reset(seed=7)
    actions = np.random.default_rng(0).uniform(-2, 2, (15, 3, 1)).astype(np.float32)
    rows = [obs]
    for a in actions:
        obs, reward, *_ = vec.step(a)
        rows.append(np.concatenate([obs, reward[:, None]], axis=1))
    for i in range(3):
        single = _run(DreamEnv(model=str(rssm_dir)), 7 + i, actions[:, i])
        np.testing.assert_allclose(np.concatenate([r[i] for r in rows]), single, atol=1e-5)


def test_temperature_zero_is_deterministic_given_the_start(rssm_dir):
    """tau 0 takes each categorical's mode: two seeds that draw the same start state follow one trajectory."""
    env = DreamEnv(model=str(rssm_dir), temperature=0.0)
    runs: dict[int, list[np.ndarray]] = {}
    for seed in range(40):
        obs, _ = env.reset(seed=seed)
        key = int(np.argmax([np.allclose(obs[:16], s) for s in env.model.start_deter.numpy()]))
        traj = _run(env, seed, [np.array([0.5], np.float32)] * 10)
        runs.setdefault(key, []).append(traj)
    repeated = [v for v in runs.values() if len(v) > 1]
    assert repeated and all(np.array_equal(v[0], w) for v in repeated for w in v[1:])


def test_save_load_round_trip_and_real_twin(rssm_dir):
    from dreamgym.envs.real import make_real

    loaded = RSSMWorldModel.from_pretrained(rssm_dir)
    original = tiny_rssm()
    for (name, a), (_, b) in zip(original.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    real = make_real("Dream-Pendulum-v0", model=str(rssm_dir))
    obs, _ = real.reset(seed=0)
    assert real.observation_space.contains(obs)
    for _ in range(5):
        obs, reward, *_ = real.step(np.array([1.0], np.float32))
    assert obs.shape == (16 + 16,) and real.observation_space.contains(obs)


def test_trains_from_a_dataset_and_becomes_a_dream(tmp_path):
    collect(CollectConfig(env_id="Pendulum-v1", out=str(tmp_path / "d"), episodes=3, max_steps=24, workers=1),
            progress=False)
    recipe = RSSMRecipe(preset="tiny", train=TrainConfig(steps=6, batch_size=2, val_every=3, checkpoint_every=3),
                        seq_len=8, num_start_states=5)
    model = train_rssm([tmp_path / "d"], tmp_path / "wm", recipe, progress=False)
    assert model.config.summary["episodes"] == 3 and (tmp_path / "wm" / "model.safetensors").is_file()
    assert (model.start_deter.abs().sum(-1) > 0).all()  # real posterior states, not zeros
    env = gym.make("Dream-Pendulum-v0", model=str(tmp_path / "wm"))
    obs, _ = env.reset(seed=0)
    obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert np.isfinite(obs).all() and np.isfinite(reward)


def test_cli_trains_an_rssm(tmp_path, capsys):
    from dreamgym.cli import main

    collect(CollectConfig(env_id="Pendulum-v1", out=str(tmp_path / "d"), episodes=3, max_steps=24, workers=1),
            progress=False)
    main(["train", str(tmp_path / "d"), "--backend", "rssm", "--preset", "tiny", "--memory-steps", "4",
          "--memory-batch", "2", "--seq-len", "8", "--out", str(tmp_path / "wm")])
    assert json.loads((tmp_path / "wm" / "config.json").read_text())["backend"] == "rssm"
    with pytest.raises(SystemExit):
        main(["train", str(tmp_path / "d"), "--backend", "rssm", "--ensemble", "3", "--out", str(tmp_path / "x")])
    assert "MDN-RNN options" in capsys.readouterr().err


def test_start_from_a_latent_is_the_real_twins_first_state():
    model = tiny_rssm()
    obs = np.random.default_rng(0).uniform(-1, 1, (5, 3)).astype(np.float32)
    first = model.observe(None, obs, None)
    again = model.start(model.features(first, "z"))
    for key in ("deter", "stoch"):
        assert torch.allclose(first[key], again[key])


def test_ships_like_any_world_model(rssm_dir, tmp_path):
    from dreamgym.backends import load_backend
    from dreamgym.ship import ShipConfig, ship

    out = ship(ShipConfig(world_model=str(rssm_dir), out=str(tmp_path / "shipped"), video_steps=0,
                          summary={"note": "tiny"}))
    model = load_backend(out)
    assert isinstance(model, RSSMWorldModel) and model.config.summary["note"] == "tiny"
    assert "RSSM (backend `rssm`)" in (out / "README.md").read_text()


def test_cli_continues_an_rssm_with_prior_heads(rssm_dir, tmp_path, capsys):
    """`train --backend rssm --init-from X --rssm-heads-input prior`: every weight starts from X, the card says
    what the heads learn from; an MDN-RNN option is still refused."""
    from dreamgym.cli import main

    collect(CollectConfig(env_id="Pendulum-v1", out=str(tmp_path / "d"), episodes=3, max_steps=24, workers=1),
            progress=False)
    out, init = tmp_path / "cont", ["--init-from", str(rssm_dir)]
    main(["train", str(tmp_path / "d"), "--backend", "rssm", "--preset", "tiny", "--memory-steps", "1", "--lr", "1e-12", "--seed", "5",
          "--memory-batch", "2", "--seq-len", "8", *init, "--rssm-heads-input", "prior",
          "--out", str(out)])
    model, given = RSSMWorldModel.from_pretrained(out), RSSMWorldModel.from_pretrained(rssm_dir)
    assert model.config.rssm.heads_input == "prior"
    assert torch.allclose(model.rssm.gru.weight_ih, given.rssm.gru.weight_ih, atol=1e-6)
    assert "a prior sample" in (out / "README.md").read_text()
    with pytest.raises(SystemExit):
        main(["train", str(tmp_path / "d"), "--backend", "rssm", "--keep-vision", "--out", str(tmp_path / "x")])
    assert "MDN-RNN options" in capsys.readouterr().err


DOOM_OBS = {"type": "Dict", "spaces": {
    "screen": {"type": "Box", "low": 0, "high": 255, "shape": [240, 320, 3], "dtype": "uint8"},
    "gamevariables": {"type": "Box", "low": -1e30, "high": 1e30, "shape": [1], "dtype": "float32"}}}


@pytest.mark.parametrize("obs_type", ["latent", "pixels"])
def test_a_frame_rssm_dream_passes_both_checkers(tmp_path, obs_type):
    """A frames RSSM (conv encoder and decoder) with Discrete actions: Dream-DoomTakeCover-v0 from features or
    from decoded 64×64 frames, without ViZDoom installed."""
    torch.manual_seed(0)
    cfg = RSSMWorldModelConfig(env_id="VizdoomTakeCover-v1", action_space={"type": "Discrete", "n": 3},
                               observation_space=DOOM_OBS, rssm=RSSMConfig.preset("tiny"), obs_kind="frames",
                               frame_key="screen", max_episode_steps=2100, num_start_states=2)
    model = RSSMWorldModel(cfg)
    model.set_start_states(torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8))
    model.save_pretrained(tmp_path / "doom")
    env = gym.make("Dream-DoomTakeCover-v0", model=str(tmp_path / "doom"), obs_type=obs_type)
    assert env.observation_space.shape == ((64, 64, 3) if obs_type == "pixels" else (cfg.rssm.feature_dim,))
    gym_check_env(env.unwrapped)
    sb3_check_env(env.unwrapped, warn=True)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(env.step(2)[0])
