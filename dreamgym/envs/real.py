"""make_real(): the real env seen through the same world model as its dream."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from dreamgym.backends import Backend, is_backend
from dreamgym.envs.core import dream_action_space, dream_options
from dreamgym.models.resolve import resolve_model
from dreamgym.registry import checked_env_id, dream_spec, make_real_env
from dreamgym.spaces import ActionAdapter
from dreamgym.errors import ConfigError


def _device(model: Any) -> torch.device:
    """The device of a backend's weights (cpu for one without any)."""
    return next((t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu"))


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

    def __init__(self, env: gym.Env, model: Backend, obs_type: str = "latent", sample_z: bool = False,
                 action_space: spaces.Space | None = None) -> None:
        super().__init__(env)
        self.model = model
        self.obs_type = obs_type
        self.sample_z = sample_z
        self._noise = np.random.default_rng()
        self.observation_space = model.feature_space(obs_type)
        # the dream's action space: the model's, or the Box its action_low / action_high narrow it to
        self.action_space = model.action_space if action_space is None else action_space
        self.device = _device(model)
        self.adapter = ActionAdapter(self.action_space, self.device)  # clips to the narrowed bounds, as the dream does
        real_space = env.action_space
        if real_space != model.action_space:
            raise ConfigError(
                f"The world model's action space {model.action_space} differs from the real "
                f"{model.config.env_id}'s {real_space}; the model was trained on another version of the env."
            )
        self._carry: dict[str, torch.Tensor] | None = None  # the backend's carry of this real episode

    @property
    def carry(self) -> dict[str, torch.Tensor] | None:
        """The backend's carry of the current real episode (batch of one); None before reset."""
        return self._carry

    def latent(self) -> np.ndarray:
        """z of the current real observation (what a dream can start from: ``options={"start_latent": ...}``)."""
        return self._features("z")

    def _features(self, obs_type: str) -> np.ndarray:
        if self._carry is None:
            raise RuntimeError("Call reset() first: the real twin has no observation yet.")
        return self.model.features(self._carry, obs_type)[0].cpu().numpy()

    def _observation(self) -> np.ndarray:
        return self._features(self.obs_type)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:  # z's posterior noise is seeded with the episode
            self._noise = np.random.default_rng([int(seed), 0x5A])
        self._carry = self.model.observe(None, _batch1(obs), None, self._sample())
        for _ in range(self.model.config.burn_in_steps):  # as the stored start states were recorded
            obs, _, terminated, truncated, info = self._real_step(self.adapter.neutral)
            if terminated or truncated:
                raise RuntimeError(f"{self.model.config.env_id} ended during the {self.model.config.burn_in_steps}-step burn-in.")
        info = {**info, "real_obs": obs}
        return self._observation(), info

    def _sample(self) -> np.random.Generator | None:
        """The generator z is drawn from V's posterior with (``sample_z``, the paper's Doom), else None: its mean."""
        return self._noise if self.sample_z else None

    def _real_step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        a = self.adapter.single(action)  # (1, a): validated, clipped, one-hot for Discrete
        if isinstance(self.action_space, spaces.Discrete):
            real_action: Any = int(np.asarray(action).reshape(()))
        else:
            real_action = a[0].cpu().numpy().reshape(self.action_space.shape).astype(self.action_space.dtype)
        obs, reward, terminated, truncated, info = self.env.step(real_action)
        self._carry = self.model.observe(self._carry, _batch1(obs), a, self._sample())
        return obs, float(reward), bool(terminated), bool(truncated), info

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
    id_or_model: str | Backend | gym.Env | Any,
    *,
    model: Backend | str | None = None,
    revision: str | None = None,
    obs_type: str = "latent",
    render_mode: str | None = None,
    device: str | torch.device = "cpu",
    sample_z: bool | None = None,
    env_id: str | None = None,
    action_low: Sequence[float] | float | None = None,
    action_high: Sequence[float] | float | None = None,
    **env_kwargs: Any,
) -> RealTwin:
    """The real env of a dream, with the dream's observation and action spaces and time limit.

    :param id_or_model: a Dream id (``"Dream-CarRacing-v0"``), a dream env (its model is reused),
        a WorldModel, or a checkpoint directory / Hub id.
    :param model: with a Dream id, the world model to see through (default: the shipped one).
    :param revision: Hub revision when the model is a Hub id.
    :param obs_type: ``"latent"``, ``"zch"``, ``"z"`` or ``"pixels"``, as in the dream.
    :param sample_z: z drawn from V's posterior (the paper's setup) instead of its mean; the draws are
        seeded by ``reset(seed=...)``. None: the model's default (its config's ``real_sample_z``).
    :param render_mode: passed to the real env (``"human"`` to watch reality).
    :param env_id: the real env to make, instead of the model's ``env_id`` (same env name); the one way
        to make an id with a ``module:`` part, whose module Gymnasium imports: a checkpoint's own
        ``env_id`` may not choose a module to import.
    :param action_low, action_high: the agent's narrower Box, as in the dream (None: the model's
        ``config.json`` ``dream`` defaults; made from a dream env: that env's). Actions are clipped to it.
    :param env_kwargs: extra kwargs for the real env (merged over the model's ``env_kwargs``).

    >>> real = dreamgym.make_real("Dream-CarRacing-v0", model="path/to/dir")  # doctest: +SKIP
    >>> obs, info = real.reset(seed=0)  # doctest: +SKIP
    """
    dream_id = None
    bounds = {"action_low": action_low, "action_high": action_high}
    unwrapped = getattr(id_or_model, "unwrapped", None)
    if isinstance(id_or_model, str) and id_or_model.split(":", 1)[-1].startswith("Dream-") \
            and not Path(id_or_model).is_dir():
        dream_id = dream_spec(id_or_model).id  # an unknown Dream id: ConfigError listing the known ones
        source: Any = model if model is not None else dream_spec(dream_id).pretrained
    elif unwrapped is not None and is_backend(getattr(unwrapped, "model", None)):
        source = unwrapped.model
        obs_type = getattr(unwrapped, "obs_type", obs_type)
        made_with = getattr(getattr(unwrapped, "_batch", None), "options", None)  # the dream env's own bounds
        if made_with is not None:
            bounds = {k: (v if v is not None else getattr(made_with, k)) for k, v in bounds.items()}
    else:
        source = id_or_model if model is None else model
    wm = resolve_model(source, revision, device, dream_id=dream_id).eval()
    cfg = wm.config
    kwargs = {**cfg.env_kwargs, **env_kwargs}
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    env = make_real_env(_real_env_id(cfg.env_id, env_id, source),
                        max_episode_steps=cfg.max_episode_steps + cfg.burn_in_steps, **kwargs)
    space = dream_action_space(wm, dream_options(wm, bounds))
    return RealTwin(env, wm, obs_type, sample_z=default_sample_z(wm) if sample_z is None else sample_z,
                    action_space=space)


def default_sample_z(model: Backend) -> bool:
    """Whether the real twin of ``model`` draws z from V's posterior by default (its config's ``real_sample_z``;
    False for a backend without the field)."""
    return bool(getattr(model.config, "real_sample_z", False))
