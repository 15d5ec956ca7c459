"""make_real(): the real env seen through the same world model as its dream."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from dreamgym.envs.core import observation_space
from dreamgym.models.resolve import resolve_model
from dreamgym.models.world_model import WorldModel
from dreamgym.registry import checked_env_id, dream_spec, make_real_env
from dreamgym.spaces import ActionAdapter
from dreamgym.errors import ConfigError


def _batch1(obs: Any) -> Any:
    """Add a leading batch axis to an observation (each value of a dict observation)."""
    if isinstance(obs, dict):
        return {k: np.asarray(v)[None] for k, v in obs.items()}
    return np.asarray(obs)[None]


class RealTwin(gym.Wrapper):
    """A real env whose observations are computed by a world model's V and M.

    z comes from V's posterior mean of the real frame (or state); h is advanced by M with every
    action taken, exactly as in the dream. ``obs_type="pixels"`` gives V's reconstruction of the
    real frame, so a pixel policy sees the same kind of picture as in the dream. Rewards,
    termination and truncation are the real env's; the time limit is the model's (the dream's).
    ``info["real_obs"]`` holds the untouched real observation.
    """

    def __init__(self, env: gym.Env, model: WorldModel, obs_type: str = "latent", sample_z: bool = False) -> None:
        super().__init__(env)
        self.model = model
        self.obs_type = obs_type
        self.sample_z = sample_z
        self._noise = np.random.default_rng()
        self.device = model.start_z.device
        self.observation_space = observation_space(model, obs_type)
        self.action_space = model.action_space
        self.adapter = ActionAdapter(model.action_space, self.device)
        real_space = env.action_space
        if real_space != model.action_space:
            raise ConfigError(
                f"The world model's action space {model.action_space} differs from the real "
                f"{model.config.env_id}'s {real_space}; the model was trained on another version of the env."
            )
        h = model.hidden_size
        self._z = torch.zeros(1, model.z_dim, device=self.device)
        self._h = torch.zeros(1, h, device=self.device)
        self._c = torch.zeros(1, h, device=self.device)

    def latent(self) -> np.ndarray:
        """z of the current real observation (what a dream can start from: ``options={"start_latent": ...}``)."""
        return self._z[0].cpu().numpy().copy()

    def _observation(self) -> np.ndarray:
        if self.obs_type == "latent":
            return torch.cat([self._z, self._h], dim=-1)[0].cpu().numpy()
        if self.obs_type == "zch":
            return torch.cat([self._z, self._c, self._h], dim=-1)[0].cpu().numpy()
        if self.obs_type == "z":
            return self._z[0].cpu().numpy().copy()
        return self.model.decode(self._z)[0].cpu().numpy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:  # z's posterior noise is seeded with the episode
            self._noise = np.random.default_rng([int(seed), 0x5A])
        self._z = self._encode(obs)
        self._h.zero_()
        self._c.zero_()
        for _ in range(self.model.config.burn_in_steps):  # as the stored start states were recorded
            obs, _, terminated, truncated, info = self._real_step(self.adapter.neutral)
            if terminated or truncated:
                raise RuntimeError(f"{self.model.config.env_id} ended during the {self.model.config.burn_in_steps}-step burn-in.")
        info = {**info, "real_obs": obs}
        return self._observation(), info

    def _real_step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        a = self.adapter.single(action)  # (1, a): validated, clipped, one-hot for Discrete
        if isinstance(self.action_space, spaces.Discrete):
            real_action: Any = int(np.asarray(action).reshape(()))
        else:
            real_action = a[0].cpu().numpy().reshape(self.action_space.shape).astype(self.action_space.dtype)
        obs, reward, terminated, truncated, info = self.env.step(real_action)
        self._h, self._c = self.model.observe_step(self._z, self._h, self._c, a)
        self._z = self._encode(obs)
        return obs, float(reward), bool(terminated), bool(truncated), info

    def _encode(self, obs: Any) -> torch.Tensor:
        """V's posterior mean of a real observation, or a sample from the posterior (``sample_z``, the paper's Doom)."""
        if not self.sample_z:
            return self.model.encode(_batch1(obs))
        with torch.no_grad():
            mu, logvar = self.model.vision.encode(self.model.prepare(_batch1(obs)))
        if logvar is None:  # state coders have no posterior noise
            return mu
        eps = torch.as_tensor(self._noise.standard_normal(mu.shape), dtype=mu.dtype, device=mu.device)
        return mu + torch.exp(0.5 * logvar) * eps

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self._real_step(action)
        return self._observation(), reward, terminated, truncated, {**info, "real_obs": obs}


def _real_env_id(model_env_id: str, env_id: str | None, source: Any) -> str:
    """The id to make: the user's ``env_id`` (same env as the model's), else the model's, checked."""
    origin = f"The world model {source if isinstance(source, (str, Path)) else type(source).__name__}"
    if env_id is None:
        return checked_env_id(model_env_id, f"{origin} (its config.json's env_id)")
    if env_id.split(":", 1)[-1] != model_env_id.split(":", 1)[-1]:
        raise ConfigError(f"env_id={env_id!r} is another env than {origin}'s {model_env_id!r}; pass the env it was "
                          "trained on.")
    return env_id


def make_real(
    id_or_model: str | WorldModel | gym.Env | Any,
    *,
    model: WorldModel | str | None = None,
    revision: str | None = None,
    obs_type: str = "latent",
    render_mode: str | None = None,
    device: str | torch.device = "cpu",
    sample_z: bool = False,
    env_id: str | None = None,
    **env_kwargs: Any,
) -> RealTwin:
    """The real env of a dream, with the dream's observation and action spaces and time limit.

    :param id_or_model: a Dream id (``"Dream-CarRacing-v0"``), a dream env (its model is reused),
        a WorldModel, or a checkpoint directory / Hub id.
    :param model: with a Dream id, the world model to see through (default: the shipped one).
    :param revision: Hub revision when the model is a Hub id.
    :param obs_type: ``"latent"``, ``"zch"``, ``"z"`` or ``"pixels"``, as in the dream.
    :param sample_z: z drawn from V's posterior (the paper's Doom setup) instead of its mean; the
        draws are seeded by ``reset(seed=...)``.
    :param render_mode: passed to the real env (``"human"`` to watch reality).
    :param env_id: the real env to make, instead of the model's ``env_id`` (same env name); the one way
        to make an id with a ``module:`` part, whose module Gymnasium imports: a checkpoint's own
        ``env_id`` may not choose a module to import.
    :param env_kwargs: extra kwargs for the real env (merged over the model's ``env_kwargs``).

    >>> real = dreamgym.make_real("Dream-CarRacing-v0", model="path/to/dir")  # doctest: +SKIP
    >>> obs, info = real.reset(seed=0)  # doctest: +SKIP
    """
    dream_id = None
    unwrapped = getattr(id_or_model, "unwrapped", None)
    if isinstance(id_or_model, str) and id_or_model.split(":", 1)[-1].startswith("Dream-") \
            and not Path(id_or_model).is_dir():
        dream_id = dream_spec(id_or_model).id  # an unknown Dream id: ConfigError listing the known ones
        source: Any = model if model is not None else dream_spec(dream_id).pretrained
    elif unwrapped is not None and isinstance(getattr(unwrapped, "model", None), WorldModel):
        source = unwrapped.model
        obs_type = getattr(unwrapped, "obs_type", obs_type)
    else:
        source = id_or_model if model is None else model
    wm = resolve_model(source, revision, device, dream_id=dream_id).eval()
    cfg = wm.config
    kwargs = {**cfg.env_kwargs, **env_kwargs}
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    env = make_real_env(_real_env_id(cfg.env_id, env_id, source),
                        max_episode_steps=cfg.max_episode_steps + cfg.burn_in_steps, **kwargs)
    return RealTwin(env, wm, obs_type, sample_z=sample_z)
