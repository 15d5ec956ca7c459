"""The world-model backend protocol is real: a linear-Gaussian toy backend (one class plus one
registry line) becomes a dream that passes both env checkers, seeds, vectorises, trains a CMA-ES
controller, sees reality through its real twin and round-trips through save/load."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env as gym_check_env
from huggingface_hub import ModelCard
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from torch import nn

import dreamgym
from dreamgym import ConfigError, DreamEnv, DreamVectorEnv, WorldModel
from dreamgym.backends import Noise, backend_class, load_backend, register_backend
from dreamgym.models.hub_mixin import StrictHubMixin
from dreamgym.models.world_model import DreamOptions
from dreamgym.spaces import action_dim, space_from_dict

from .conftest import make_tiny_model

PENDULUM_ACTIONS = {"type": "Box", "low": -2.0, "high": 2.0, "shape": [1], "dtype": "float32"}
PENDULUM_STATES = {"type": "Box", "low": [-1.0, -1.0, -8.0], "high": [1.0, 1.0, 8.0], "shape": [3], "dtype": "float32"}


@dataclass
class LinearGaussianConfig:
    env_id: str = "Pendulum-v1"
    action_space: dict[str, Any] = field(default_factory=lambda: dict(PENDULUM_ACTIONS))
    observation_space: dict[str, Any] = field(default_factory=lambda: dict(PENDULUM_STATES))
    n: int = 3
    sigma: float = 0.1
    max_episode_steps: int = 200
    default_temperature: float = 1.0
    render_fps: int = 30
    num_start_states: int = 4
    burn_in_steps: int = 0
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    dream: DreamOptions = field(default_factory=DreamOptions)
    backend: str = "linear-gaussian-test"
    format_version: int = 1


class LinearGaussian(nn.Module, StrictHubMixin):
    """x' = A x + B a + sqrt(tau) sigma eps, reward = -|x|^2, p(done) = 0; the carry is {"x": (b, n)}."""

    config_class = LinearGaussianConfig
    kind = "world_model"

    def __init__(self, config: LinearGaussianConfig | dict) -> None:
        super().__init__()
        self.config = self.parse_config(config) if isinstance(config, dict) else config
        self.action_space = space_from_dict(self.config.action_space)
        n = self.config.n
        self.A = nn.Parameter(0.9 * torch.eye(n))
        self.B = nn.Parameter(torch.full((n, action_dim(self.action_space)), 0.1))
        self.register_buffer("start_x", torch.linspace(-1, 1, self.config.num_start_states * n).view(-1, n))
        self.source: dict[str, str] = {}

    def initial(self, index, episodes=None):
        return {"x": self.start_x[index.to(self.start_x.device)]}

    def start(self, latent):
        return {"x": torch.as_tensor(latent, dtype=torch.float32)}

    def imagine(self, carry, action, tau, noise: Noise, dtype=torch.float32):
        x = carry["x"]
        _, eps = noise.uniform_and_normal(x.shape[1])
        x = x @ self.A.T + action @ self.B.T + torch.sqrt(tau)[:, None] * self.config.sigma * eps
        return {"x": x}, -(x ** 2).sum(-1), torch.zeros(x.shape[0])

    def observe(self, carry, obs, action, sample=None):
        return self.start(np.asarray(obs, dtype=np.float32))

    def features(self, carry, obs_type):
        return carry["x"].clone()

    def feature_space(self, obs_type):
        if obs_type not in ("latent", "z"):
            raise ConfigError(f"obs_type must be 'latent' or 'z' for this backend, got {obs_type!r}.")
        return spaces.Box(-np.inf, np.inf, (self.config.n,), np.float32)

    def decode(self, carry):
        return carry["x"]

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        return ModelCard("A linear-Gaussian test world model.")


register_backend("linear-gaussian-test", LinearGaussian)  # the one registry line


@pytest.fixture
def toy_dir(tmp_path):
    LinearGaussian(LinearGaussianConfig()).save_pretrained(tmp_path / "toy")
    return tmp_path / "toy"


def _run(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    rows = [obs]
    for a in actions:
        obs, reward, terminated, truncated, _ = env.step(a)
        rows.append(np.append(obs, reward))
    return rows


def test_a_toy_backend_is_a_registered_dream_that_passes_both_checkers(toy_dir):
    assert json.loads((toy_dir / "config.json").read_text())["backend"] == "linear-gaussian-test"
    env = gym.make("Dream-Pendulum-v0", model=str(toy_dir))
    assert isinstance(env.unwrapped.model, LinearGaussian)
    gym_check_env(env.unwrapped)
    sb3_check_env(env.unwrapped, warn=True)
    actions = [np.array([a], np.float32) for a in np.linspace(-2, 2, 30)]
    a, b = _run(env, 3, actions), _run(env, 3, actions)
    np.testing.assert_array_equal(np.concatenate(a), np.concatenate(b))  # seeded: the same trajectory
    assert not np.allclose(np.concatenate(a[1:]), np.concatenate(_run(env, 4, actions)[1:]))
    assert env.unwrapped.temperature == 1.0 and env.unwrapped._lean is None  # no numpy path: the torch one


def test_a_toy_backend_vector_env_equals_single_envs(toy_dir):
    vec = DreamVectorEnv(num_envs=3, model=str(toy_dir), max_episode_steps=50)
    obs, _ = vec.reset(seed=7)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-2, 2, (20, 3, 1)).astype(np.float32)
    rows = [obs]
    for a in actions:
        obs, reward, *_ = vec.step(a)
        rows.append(np.concatenate([obs, reward[:, None]], axis=1))
    for i in range(3):
        single = _run(DreamEnv(model=str(toy_dir)), 7 + i, actions[:, i])
        np.testing.assert_allclose(np.stack([r[i] for r in rows[1:]]), np.stack(single[1:]), atol=1e-6)
    with pytest.raises(ConfigError, match="obs_type"):
        DreamEnv(model=str(toy_dir), obs_type="pixels")


def test_a_toy_backend_round_trips_and_trains_a_cmaes_controller(toy_dir, tmp_path):
    model = load_backend(toy_dir)
    assert isinstance(model, LinearGaussian) and torch.equal(model.A, 0.9 * torch.eye(3))
    from dreamgym.agents.cmaes import CMAESConfig, CMAESTrainer

    trainer = CMAESTrainer(CMAESConfig("Dream-Pendulum-v0", population=4, rollouts=2, generations=1, max_steps=20),
                           tmp_path / "run", model=model, progress=False)
    trainer.train()
    real = dreamgym.make_real("Dream-Pendulum-v0", model=str(toy_dir))
    obs, info = real.reset(seed=0)
    np.testing.assert_allclose(obs, info["real_obs"])  # this backend's latent is the real state
    obs, *_ = real.step(np.array([0.5], np.float32))
    assert real.observation_space.contains(obs)


def test_backends_are_chosen_by_config_json_and_old_checkpoints_are_mdnrnn(tmp_path):
    make_tiny_model("pendulum").save_pretrained(tmp_path / "wm")
    config = json.loads((tmp_path / "wm" / "config.json").read_text())
    assert config["backend"] == "mdnrnn"
    del config["backend"]  # a checkpoint from before the field
    (tmp_path / "wm" / "config.json").write_text(json.dumps(config))
    assert isinstance(load_backend(tmp_path / "wm"), WorldModel)
    config["backend"] = "diffusion"
    (tmp_path / "wm" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"Unknown world-model backend 'diffusion'.*'linear-gaussian-test', 'mdnrnn'"):
        DreamEnv(model=str(tmp_path / "wm"))
    assert backend_class("mdnrnn") is WorldModel
    with pytest.raises(ConfigError, match="taken"):
        register_backend("mdnrnn", LinearGaussian)


def test_detect_knows_a_toy_backend_folder_by_its_backend_field(toy_dir):
    from dreamgym.checkpoint import detect
    from dreamgym.hub import push_files

    config = json.loads((toy_dir / "config.json").read_text())
    del config["observation_space"]  # not a field every backend needs to call so
    (toy_dir / "config.json").write_text(json.dumps(config))
    assert detect(toy_dir) == "world_model"
    assert {p.name for p in push_files(toy_dir)[0]} >= {"config.json", "model.safetensors"}


def test_the_lie_detector_measures_a_toy_backend_against_reality(toy_dir):
    """Teacher-forced through the protocol: the one-step errors are the linear model's, written out by hand."""
    from dreamgym.evaluate import agent_info
    from dreamgym.fidelity import fidelity_report, record_trajectories

    report = fidelity_report(toy_dir, "random", 2, horizons=(1, 3), every=1, samples=1, workers=1, plot=False)
    model = load_backend(toy_dir)
    trajs = record_trajectories(agent_info("random", "Dream-Pendulum-v0", str(toy_dir)), str(toy_dir), 2, workers=1)
    errors, sums = [], []
    with torch.no_grad():
        for t in trajs:  # x' = A x + B a at tau 0, from the real state x (the twin's carry)
            pred = torch.from_numpy(t.z[:-1]) @ model.A.T + torch.from_numpy(t.actions) @ model.B.T
            errors.append(((pred - torch.from_numpy(t.z[1:])) ** 2).mean(-1))
            sums.append(-(pred ** 2).sum(-1).sum().item())
    assert report["backend"] == "linear-gaussian-test" and report["disagreement"] is None
    assert report["latent"]["one_step_mse"] == pytest.approx(torch.cat(errors).mean().item(), rel=1e-5)
    assert report["open_loop"]["horizons"]["1"]["latent_mse"]["tau0"] == pytest.approx(report["latent"]["one_step_mse"])
    assert report["reward"]["episode"]["predicted"] == pytest.approx(sums, abs=2e-3)
    assert report["termination"]["head"] is True and report["termination"]["mean_p_nonterminal"] == 0.0
