import gymnasium as gym
import numpy as np
import pytest
import torch

import dreamgym
from dreamgym import ConfigError, InvalidActionError

from ..conftest import has_vizdoom, make_tiny_model


def _ids(dream_id):
    if dream_id == "Dream-DoomTakeCover-v0" and not has_vizdoom():
        pytest.skip("vizdoom is not installed: pip install 'dreamgym[doom]'")


def test_make_real_has_the_dreams_spaces_and_time_limit(dream):
    dream_id, path = dream
    _ids(dream_id)
    obs_types = ["latent", "z"] + ([] if dream_id == "Dream-Pendulum-v0" else ["pixels"])
    for obs_type in obs_types:
        dream_env = gym.make(dream_id, model=str(path), obs_type=obs_type)
        real = dreamgym.make_real(dream_id, model=str(path), obs_type=obs_type)
        assert real.observation_space == dream_env.observation_space
        assert real.action_space == dream_env.action_space
        obs, info = real.reset(seed=0)
        assert real.observation_space.contains(obs) and "real_obs" in info
        obs, reward, term, trunc, info = real.step(real.action_space.sample())
        assert real.observation_space.contains(obs) and isinstance(reward, float)
        real.close()
    assert real.spec.max_episode_steps == gym.spec(dream_id).max_episode_steps


def test_real_twin_memory_follows_the_actions(model_dirs):
    real = dreamgym.make_real("Dream-Pendulum-v0", model=str(model_dirs["pendulum"]))
    obs, _ = real.reset(seed=0)
    model = real.model
    z = torch.as_tensor(obs[None, :3])
    h, c = torch.zeros(1, 8), torch.zeros(1, 8)
    assert np.allclose(obs[3:], 0)  # h starts at zero, as after no burn-in
    action = np.array([1.5], np.float32)
    obs2, *_ = real.step(action)
    h, _ = model.observe_step(z, h, c, torch.tensor([[1.5]]))
    assert np.allclose(obs2[3:], h[0].numpy(), atol=1e-6)
    real_state = real.unwrapped._get_obs()
    assert np.allclose(obs2[:3], model.encode(real_state[None])[0].numpy(), atol=1e-6)


def test_a_dream_policy_runs_unchanged_in_reality(model_dirs):
    dream = gym.make("Dream-CarRacing-v0", model=str(model_dirs["carracing"]))
    weights = np.random.default_rng(0).normal(size=(3, dream.observation_space.shape[0])).astype(np.float32)
    policy = lambda o: np.tanh(weights @ o) * np.array([1, 0.5, 0.5]) + np.array([0, 0.5, 0.5])  # noqa: E731
    real = dreamgym.make_real(dream)  # the dream env's own model
    for env in (dream, real):
        obs, _ = env.reset(seed=0)
        for _ in range(5):
            obs, *_ = env.step(policy(obs).astype(np.float32))
    real.close()


def test_real_twin_rejects_bad_actions_and_mismatched_models(model_dirs):
    real = dreamgym.make_real(str(model_dirs["pendulum"]))
    real.reset(seed=0)
    with pytest.raises(InvalidActionError):
        real.step(np.array([np.nan], np.float32))
    # a model whose action space differs from the real env's
    model = make_tiny_model("pendulum", action_space={"type": "Box", "low": [-1.0], "high": [1.0], "shape": [1], "dtype": "float32"})
    with pytest.raises(ConfigError, match="action space"):
        dreamgym.make_real(model)


def _probe_module(tmp_path, monkeypatch) -> str:
    """A module that would be imported if a file's env_id chose it."""
    (tmp_path / "dreamgym_probe_mod.py").write_text("IMPORTED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "dreamgym_probe_mod"


def test_a_checkpoints_env_id_cannot_import_a_module(tmp_path, monkeypatch, model_dirs):
    import json
    import shutil
    import sys

    module = _probe_module(tmp_path, monkeypatch)
    ckpt = tmp_path / "wm"
    shutil.copytree(model_dirs["pendulum"], ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({**config, "env_id": f"{module}:Pendulum-v1"}))
    with pytest.raises(ConfigError, match=f"import the module '{module}'"):
        dreamgym.make_real(str(ckpt))
    assert module not in sys.modules
    with pytest.raises(ConfigError, match="another env"):
        dreamgym.make_real(str(ckpt), env_id="CartPole-v1")
    real = dreamgym.make_real(str(ckpt), env_id="Pendulum-v1")  # the user names the env: no module imported
    assert module not in sys.modules
    real.close()
    real = dreamgym.make_real(str(ckpt), env_id=f"{module}:Pendulum-v1")  # the user's own choice
    assert module in sys.modules
    real.close()
    monkeypatch.delitem(sys.modules, module)


def test_unknown_dream_id_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"(?i)unknown dream id 'Dream-Nope-v0'.*Dream-Pendulum-v0"):
        dreamgym.make_real("Dream-Nope-v0")
