"""The batched dream: state, one torch step for every env, observations. Shared by
:class:`~dreamgym.envs.dream_vector.DreamVectorEnv` and :class:`~dreamgym.envs.dream.DreamEnv`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import fields, replace
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
from gymnasium import spaces

from dreamgym import rng
from dreamgym.envs.render import STATE_RENDERERS, state_bars
from dreamgym.errors import ConfigError, NumericalError
from dreamgym.models.world_model import DreamOptions, WorldModel, check_temperature
from dreamgym.spaces import ActionAdapter

OBS_TYPES = ("latent", "zch", "z", "pixels")
COMPUTE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def observation_space(model: WorldModel, obs_type: str) -> spaces.Box:
    """The single-env observation space of a dream (and of its real twin)."""
    if obs_type == "latent":  # z is unbounded; h = o * tanh(c) lies in [-1, 1]
        z, h = model.z_dim, model.hidden_size
        low = np.concatenate([np.full(z, -np.inf), np.full(h, -1.0)]).astype(np.float32)
        return spaces.Box(low, -low, dtype=np.float32)
    if obs_type == "zch":  # the paper's Doom controller input: z, the LSTM cell c (unbounded) and h
        z, h = model.z_dim, model.hidden_size
        low = np.concatenate([np.full(z + h, -np.inf), np.full(h, -1.0)]).astype(np.float32)
        return spaces.Box(low, np.concatenate([np.full(z + h, np.inf), np.ones(h)]).astype(np.float32), dtype=np.float32)
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
                 dtype: str = "float32", options: dict[str, Any] | None = None) -> None:
        if dtype not in COMPUTE_DTYPES:
            raise ConfigError(f"dtype must be one of {sorted(COMPUTE_DTYPES)}, got {dtype!r}.")
        self.options = dream_options(model, options)
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
        self.pos_weight = model.config.heads.termination_pos_weight
        # ensembles and dropout masks: every member's memory (K, b, H); agents see member 0's (self.h)
        self.num_members = model.num_members
        self.keep = 1.0 - model.config.memory.dropout
        self.masked = self.keep < 1.0 and self.options.dropout_masks
        self.members = self.num_members > 1 or self.masked
        if self.members:
            self.h_all = torch.zeros(self.num_members, num_envs, h, device=device)
            self.c_all = torch.zeros(self.num_members, num_envs, h, device=device)
            self.h, self.c = self.h_all[0], self.c_all[0]
        self.member = torch.zeros(num_envs, dtype=torch.long, device=device)
        self.mask = torch.ones(num_envs, h, device=device) if self.masked else None
        self.disagreement = torch.zeros(num_envs, device=device)

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
            raise ConfigError(f"Expected one temperature or {n} (one per env), got {len(values)}: {values[:8]}.")
        target = torch.arange(self.num_envs) if index is None else torch.as_tensor(index, dtype=torch.long)
        self.tau[target.to(self.device)] = torch.tensor(values, dtype=torch.float32, device=self.device)

    def temperature(self) -> float | np.ndarray:
        tau = self.tau.cpu().numpy()
        # float(str(...)): the shortest decimal of the float32, so a tau set to 1.15 reads back as 1.15
        return float(str(tau[0])) if (tau == tau[0]).all() else tau.copy()

    # ----- dynamics --------------------------------------------------------------------------
    @torch.no_grad()
    def reset_envs(self, index: np.ndarray, draws: Sequence["EpisodeDraw"]) -> None:
        """Put envs ``index`` at their drawn start states, with fresh noise keys, members and taus."""
        idx = torch.as_tensor(index, dtype=torch.long, device=self.device)
        start = torch.as_tensor([d.start for d in draws], dtype=torch.long, device=self.model.start_z.device)
        z, h, c = self.model.initial_state(start)
        self.z[idx] = z.to(self.device)
        if self.members:  # start states hold member 0's memory; every member starts from the same one
            self.h_all[:, idx], self.c_all[:, idx] = h.to(self.device), c.to(self.device)
        else:
            self.h[idx], self.c[idx] = h.to(self.device), c.to(self.device)
        keys = torch.as_tensor([d.key for d in draws], dtype=torch.int64, device=self.device)
        self.keys[idx] = keys
        self.t[idx] = 0
        self.last_done_prob[idx] = 0.0
        self.disagreement[idx] = 0.0
        self.member[idx] = torch.as_tensor([d.member for d in draws], dtype=torch.long, device=self.device)
        taus = [(i, d.tau) for i, d in zip(index.tolist(), draws) if d.tau is not None]
        if taus:
            self.tau[torch.as_tensor([i for i, _ in taus], device=self.device)] = torch.tensor(
                [t for _, t in taus], dtype=torch.float32, device=self.device)
        if self.mask is not None:
            self.mask[idx] = dropout_mask(keys, self.model.hidden_size, self.keep)

    @torch.no_grad()
    def set_state(self, index: int, z: torch.Tensor) -> None:
        """Put env ``index`` at latent ``z`` with a fresh memory (h = c = 0), as a real episode starts."""
        self.z[index] = z.to(self.device)
        if self.members:
            self.h_all[:, index] = 0.0
            self.c_all[:, index] = 0.0
        else:
            self.h[index] = 0.0
            self.c[index] = 0.0

    @torch.no_grad()
    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance every env by one M action vector each (b, a) -> reward (b,), terminated (b,) bool."""
        u, eps = rng.uniform_and_normal(self.keys, self.t, self.model.z_dim)
        if self.members:
            z, h_all, c_all, reward, p_done, disagreement = self.model.imagine_step_members(
                self.z, self.h_all, self.c_all, action, self.member, self.mask, self.tau, u, eps, self.compute_dtype)
            h, c = h_all[0], c_all[0]
        else:
            z, h, c, reward, p_done = self.model.imagine_step(self.z, self.h, self.c, action, self.tau, u, eps,
                                                              self.compute_dtype)
        # one reduction checks z, the reward and p(done) for NaN/inf (a NaN p(done) would never terminate)
        if not bool(torch.isfinite(z.sum(dim=-1) + reward + p_done).all()):
            bad = (~torch.isfinite(z).all(dim=-1) | ~torch.isfinite(reward) | ~torch.isfinite(p_done)).nonzero()[:, 0]
            raise numerical_error(bad.tolist(), self.tau[bad].tolist())
        if self.members:
            self.h_all, self.c_all = h_all, c_all
        self.z, self.h, self.c = z, h, c
        self.t += 1
        self.last_done_prob = p_done
        if self.options.termination == "sample":
            terminated = rng.termination_uniform(self.keys, self.t - 1) < calibrated(p_done, self.pos_weight)
        else:
            terminated = p_done > self.threshold
        if self.num_members > 1:
            self.disagreement = disagreement
            opts = self.options
            if opts.disagreement_penalty:
                reward = reward - opts.disagreement_penalty * disagreement
            if opts.halt_threshold is not None:
                halt = disagreement > opts.halt_threshold
                reward = torch.where(halt, torch.full_like(reward, opts.halt_penalty), reward)
                terminated = terminated | halt
        return reward, terminated

    _PER_ENV = ("z", "h", "c", "keys", "t", "tau", "last_done_prob", "member", "mask", "disagreement")

    @torch.no_grad()
    def subset(self, keep: torch.Tensor) -> "DreamBatch":
        """A new batch of the envs ``keep`` (bool (b,) or indices) only, with their state: stepping it
        gives each kept env the trajectory it would have had in the full batch (the noise is per env),
        up to float rounding (matmul kernels change with the batch size). Rollouts drop finished envs
        this way instead of stepping them to the time limit."""
        sub = copy.copy(self)
        idx = torch.as_tensor(keep, device=self.device)
        idx = idx.nonzero()[:, 0] if idx.dtype == torch.bool else idx.long()
        for name in self._PER_ENV:
            value = getattr(self, name)
            if value is not None:
                setattr(sub, name, value[idx])
        if self.members:
            sub.h_all, sub.c_all = self.h_all[:, idx], self.c_all[:, idx]
            sub.h, sub.c = sub.h_all[0], sub.c_all[0]
        sub.num_envs = int(idx.numel())
        return sub

    # ----- observations ----------------------------------------------------------------------
    @torch.no_grad()
    def observations(self) -> np.ndarray:
        """Fresh (b, *obs_shape) arrays of every env's current observation."""
        if self.obs_type == "latent":
            return torch.cat([self.z, self.h], dim=-1).cpu().numpy()
        if self.obs_type == "zch":
            return torch.cat([self.z, self.c, self.h], dim=-1).cpu().numpy()
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


def calibrated(p_done: torch.Tensor, pos_weight: float) -> torch.Tensor:
    """A termination head's p(done), trained with positives weighted ``pos_weight``, as a probability:
    sigmoid(logit - log(pos_weight)), the weighted loss's optimum moved back."""
    logit = torch.log(p_done) - torch.log1p(-p_done)
    return torch.sigmoid(logit - math.log(pos_weight))


def calibrated_float(p_done: float, pos_weight: float) -> float:
    """:func:`calibrated` for one float (the numpy single-env path)."""
    if p_done <= 0.0 or p_done >= 1.0:
        return min(max(p_done, 0.0), 1.0)
    return 1.0 / (1.0 + math.exp(-(math.log(p_done) - math.log1p(-p_done) - math.log(pos_weight))))


class EpisodeDraw(NamedTuple):
    """What a dream episode draws at reset: start state, noise key, ensemble member, tau (None: kept)."""

    start: int
    key: int
    member: int = 0
    tau: float | None = None


def draw_episode(rng_: np.random.Generator, model: WorldModel, options: DreamOptions) -> EpisodeDraw:
    """A new episode's draws, from an env's seeded generator.

    The start state and key come first, as they always have, so a dream without an ensemble or a
    temperature range follows the same trajectories as before these options existed.
    """
    start = int(rng_.integers(model.config.num_start_states))
    key = int(rng_.integers(0, 2**63 - 1, dtype=np.int64))
    member = int(rng_.integers(model.num_members)) if model.num_members > 1 and options.ensemble_draw else 0
    tau = None
    if options.temperature_range is not None:
        low, high = options.temperature_range
        tau = float(rng_.uniform(low, high))
    return EpisodeDraw(start, key, member, tau)


def dropout_mask(keys: torch.Tensor, width: int, keep: float) -> torch.Tensor:
    """(b,) noise keys -> (b, width) inverted-dropout masks (0 or 1/keep), from the key's own stream
    (step -1, which no dream step uses): the same key gives the same mask in every env and path."""
    u, _ = rng.uniform_and_normal(keys, torch.full_like(keys, -1), width)
    return (u < keep).float() / keep


DREAM_OPTION_NAMES = tuple(f.name for f in fields(DreamOptions))


def dream_options(model: WorldModel, overrides: dict[str, Any] | None) -> DreamOptions:
    """The model's recorded dream options with ``gym.make`` keyword arguments (not None) on top."""
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(given) - set(DREAM_OPTION_NAMES))
    if unknown:
        raise ConfigError(f"Unknown dream option(s) {unknown}; expected some of {list(DREAM_OPTION_NAMES)}.")
    if "temperature_range" in given:
        given["temperature_range"] = list(np.asarray(given["temperature_range"], dtype=object).reshape(-1))
    opts = replace(model.config.dream, **given)
    try:
        opts.validate()
    except ValueError as e:
        raise ConfigError(str(e)) from e
    if model.num_members == 1 and (opts.disagreement_penalty or opts.halt_threshold is not None):
        raise ConfigError(
            "disagreement_penalty and halt_threshold need a world model trained as an ensemble "
            f"(memory.ensemble > 1); this one has {model.num_members} member. Train one with `dreamgym train --ensemble 5`."
        )
    return opts
