"""The batched dream: state, one torch step for every env, observations. Shared by
:class:`~dreamgym.envs.dream_vector.DreamVectorEnv` and :class:`~dreamgym.envs.dream.DreamEnv`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from gymnasium import spaces

from dreamgym import rng
from dreamgym.envs.render import STATE_RENDERERS, state_bars
from dreamgym.errors import ConfigError, NumericalError
from dreamgym.models.world_model import WorldModel, check_temperature
from dreamgym.spaces import ActionAdapter

OBS_TYPES = ("latent", "z", "pixels")
COMPUTE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def observation_space(model: WorldModel, obs_type: str) -> spaces.Box:
    """The single-env observation space of a dream (and of its real twin)."""
    if obs_type == "latent":  # z is unbounded; h = o * tanh(c) lies in [-1, 1]
        z, h = model.z_dim, model.hidden_size
        low = np.concatenate([np.full(z, -np.inf), np.full(h, -1.0)]).astype(np.float32)
        return spaces.Box(low, -low, dtype=np.float32)
    if obs_type == "z":
        return spaces.Box(-np.inf, np.inf, (model.z_dim,), np.float32)
    if obs_type == "pixels":
        if not model.config.pixels:
            raise ConfigError(
                f"obs_type='pixels' needs a world model that sees frames; this one models {model.config.env_id} "
                f"state vectors (vision.kind={model.config.vision.kind!r}). Use obs_type='latent' or 'z'."
            )
        size = model.config.vision.image_size
        return spaces.Box(0, 255, (size, size, 3), np.uint8)
    raise ConfigError(f"obs_type must be one of {OBS_TYPES}, got {obs_type!r}.")


class DreamBatch:
    """``num_envs`` dreams of one world model, advanced together.

    Holds the carry (z, h, c), each env's noise key and step counter, and per-env temperature.
    Randomness comes only from the keys the envs set at reset (:mod:`dreamgym.rng`).
    """

    def __init__(self, model: WorldModel, num_envs: int, obs_type: str, device: torch.device,
                 dtype: str = "float32") -> None:
        if dtype not in COMPUTE_DTYPES:
            raise ConfigError(f"dtype must be one of {sorted(COMPUTE_DTYPES)}, got {dtype!r}.")
        self.compute_dtype = COMPUTE_DTYPES[dtype]
        self.model = model
        self.num_envs = num_envs
        self.obs_type = obs_type
        self.device = device
        self.single_observation_space = observation_space(model, obs_type)
        self.adapter = ActionAdapter(model.action_space, device)
        z, h = model.z_dim, model.hidden_size
        self.z = torch.zeros(num_envs, z, device=device)
        self.h = torch.zeros(num_envs, h, device=device)
        self.c = torch.zeros(num_envs, h, device=device)
        self.keys = torch.zeros(num_envs, dtype=torch.int64, device=device)
        self.t = torch.zeros(num_envs, dtype=torch.int64, device=device)
        self.tau = torch.full((num_envs,), model.config.default_temperature, device=device)
        self.last_done_prob = torch.zeros(num_envs, device=device)
        self.threshold = model.config.heads.done_threshold

    # ----- temperature ---------------------------------------------------------------------
    def set_temperature(self, value: Any, index: Sequence[int] | None = None) -> None:
        """One tau for every env (or the envs in ``index``), or a sequence of one tau per env."""
        if np.ndim(value) == 0:
            tau = check_temperature(value)
            if index is None:
                self.tau.fill_(tau)
            else:
                self.tau[torch.as_tensor(index, dtype=torch.long, device=self.device)] = tau
            return
        values = [check_temperature(v) for v in np.asarray(value, dtype=object).reshape(-1)]
        n = self.num_envs if index is None else len(index)
        if len(values) != n:
            raise ValueError(f"Expected one temperature or {n} (one per env), got {len(values)}.")
        target = torch.arange(self.num_envs) if index is None else torch.as_tensor(index, dtype=torch.long)
        self.tau[target.to(self.device)] = torch.tensor(values, dtype=torch.float32, device=self.device)

    def temperature(self) -> float | np.ndarray:
        tau = self.tau.cpu().numpy()
        # float(str(...)): the shortest decimal of the float32, so a tau set to 1.15 reads back as 1.15
        return float(str(tau[0])) if (tau == tau[0]).all() else tau.copy()

    # ----- dynamics --------------------------------------------------------------------------
    @torch.no_grad()
    def reset_envs(self, index: np.ndarray, start: np.ndarray, keys: np.ndarray) -> None:
        """Put envs ``index`` at stored start states ``start`` with fresh noise ``keys``."""
        idx = torch.as_tensor(index, dtype=torch.long, device=self.device)
        z, h, c = self.model.initial_state(torch.as_tensor(start, dtype=torch.long, device=self.model.start_z.device))
        self.z[idx], self.h[idx], self.c[idx] = z.to(self.device), h.to(self.device), c.to(self.device)
        self.keys[idx] = torch.as_tensor(keys, dtype=torch.int64, device=self.device)
        self.t[idx] = 0
        self.last_done_prob[idx] = 0.0

    @torch.no_grad()
    def set_state(self, index: int, z: torch.Tensor) -> None:
        """Put env ``index`` at latent ``z`` with a fresh memory (h = c = 0), as a real episode starts."""
        self.z[index] = z.to(self.device)
        self.h[index] = 0.0
        self.c[index] = 0.0

    @torch.no_grad()
    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance every env by one M action vector each (b, a) -> reward (b,), terminated (b,) bool."""
        u, eps = rng.uniform_and_normal(self.keys, self.t, self.model.z_dim)
        z, h, c, reward, p_done = self.model.imagine_step(self.z, self.h, self.c, action, self.tau, u, eps,
                                                          self.compute_dtype)
        if not bool(torch.isfinite(z).all() & torch.isfinite(reward).all()):
            bad = (~torch.isfinite(z).all(dim=-1) | ~torch.isfinite(reward)).nonzero()[:, 0].tolist()
            raise numerical_error(bad, self.tau[bad].tolist())
        self.z, self.h, self.c = z, h, c
        self.t += 1
        self.last_done_prob = p_done
        return reward, p_done > self.threshold

    # ----- observations ----------------------------------------------------------------------
    @torch.no_grad()
    def observations(self) -> np.ndarray:
        """Fresh (b, *obs_shape) arrays of every env's current observation."""
        if self.obs_type == "latent":
            return torch.cat([self.z, self.h], dim=-1).cpu().numpy()
        if self.obs_type == "z":
            return self.z.cpu().numpy().copy()
        return self.model.decode(self.z.to(self.model.start_z.device)).cpu().numpy()

    @torch.no_grad()
    def frames(self, index: Sequence[int] | None = None) -> np.ndarray:
        """(b, H, W, 3) uint8 pictures of the dreams: decoded frames, or bar charts of decoded states."""
        z = self.z if index is None else self.z[torch.as_tensor(index, dtype=torch.long)]
        x = self.model.decode(z.to(self.model.start_z.device)).cpu().numpy()
        if self.model.config.pixels:
            return x
        space = self.model.config.observation_space
        low = np.broadcast_to(np.asarray(space.get("low", -1.0), dtype=np.float64), x.shape[1:])
        high = np.broadcast_to(np.asarray(space.get("high", 1.0), dtype=np.float64), x.shape[1:])
        draw = STATE_RENDERERS.get(self.model.config.env_id, state_bars)  # the real env's look where we can
        return np.stack([draw(row, low, high) for row in x])


def numerical_error(envs: list[int], temperatures: list[float]) -> NumericalError:
    return NumericalError(
        f"The world model produced NaN/inf in env(s) {envs[:8]} at temperature(s) {temperatures[:8]}. "
        "The dream stops here rather than run on silently: check the checkpoint (WorldModel.from_pretrained "
        "validates it) or lower the temperature."
    )


def draw_start(rng_: np.random.Generator, num_start_states: int) -> tuple[int, int]:
    """A start-state index and a noise key for a new episode, from an env's seeded generator."""
    return int(rng_.integers(num_start_states)), int(rng_.integers(0, 2**63 - 1, dtype=np.int64))
