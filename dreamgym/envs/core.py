"""The batched dream: state, one torch step for every env, observations. Shared by
:class:`~dreamgym.envs.dream_vector.DreamVectorEnv` and :class:`~dreamgym.envs.dream.DreamEnv`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
from gymnasium import spaces

from dreamgym import rng
from dreamgym.backends import Backend, Episodes, Noise
from dreamgym.envs.render import STATE_RENDERERS, state_bars
from dreamgym.errors import ConfigError, NumericalError
from dreamgym.models.lean import termination_uniform as lean_termination_uniform
from dreamgym.models.world_model import DreamOptions, check_temperature
from dreamgym.spaces import ActionAdapter

OBS_TYPES = ("latent", "zch", "z", "pixels")
COMPUTE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
_PER_ENV = ("keys", "t", "tau", "last_done_prob")  # the batch's own per-env state, besides the carry


def observation_space(model: Backend, obs_type: str) -> spaces.Box:
    """The single-env observation space of a dream (and of its real twin): the backend's feature space."""
    return model.feature_space(obs_type)


class DreamBatch:
    """``num_envs`` dreams of one world model (any backend of :mod:`dreamgym.backends`), advanced together.

    Holds the backend's carry (an opaque dict of batch-first tensors, indexed generically), each
    env's noise key, step counter and temperature. Randomness comes only from the keys the envs set
    at reset (:mod:`dreamgym.rng`). With ``lean=True`` and a backend that offers ``lean()`` (one env
    on the CPU) the same state lives in numpy arrays and the backend's numpy step advances it.
    Carry entries read as attributes (``batch.h``, ``batch.disagreement``).
    """

    def __init__(self, model: Backend, num_envs: int, obs_type: str, device: torch.device,
                 dtype: str = "float32", options: dict[str, Any] | None = None, lean: bool = False) -> None:
        if dtype not in COMPUTE_DTYPES:
            raise ConfigError(f"dtype must be one of {sorted(COMPUTE_DTYPES)}, got {dtype!r}.")
        self.options = dream_options(model, options)
        self.compute_dtype = COMPUTE_DTYPES[dtype]
        self.model = model
        self.num_envs = num_envs
        self.obs_type = obs_type
        self.device = device
        self.single_observation_space = model.feature_space(obs_type)
        self.action_space = dream_action_space(model, self.options)  # the model's, or narrowed by the options
        self.adapter = ActionAdapter(self.action_space, device)
        make_lean = getattr(model, "lean", None) if lean and num_envs == 1 else None
        self.lean = make_lean() if make_lean is not None else None  # the backend's numpy step, or None
        self.engine = self.lean if self.lean is not None else model
        # the torch backend's calls run without autograd; the lean path skips the context's cost (~3 µs a call)
        grad_off = (lambda f: f) if self.lean is not None else torch.no_grad()
        self._imagine, self._features = grad_off(self.engine.imagine), grad_off(self.engine.features)
        self.num_members = getattr(model, "num_members", 1)
        self.threshold = getattr(model, "done_threshold", 0.5)
        self.pos_weight = getattr(model, "termination_pos_weight", 1.0)
        self.finite_keys = getattr(model, "finite_keys", None)  # carry entries checked for NaN/inf (None: all)
        self.keys = self._array([0] * num_envs, "int")
        self.t = self._array([0] * num_envs, "int")
        self.tau = self._array([model.config.default_temperature] * num_envs, "float")
        self.last_done_prob = self._array([0.0] * num_envs, "float")
        zeros = torch.zeros(num_envs, dtype=torch.long)
        self.carry = self._on_device(self.engine.initial(zeros, Episodes(zeros, zeros, self.options.dropout_masks)))
        checked = self.finite_keys if self.finite_keys is not None else self.carry
        self._checked = [k for k in checked if _is_float(self.carry[k])]  # the float entries checked each step

    def __getattr__(self, name: str) -> Any:
        carry = self.__dict__.get("carry")
        if carry is not None and name in carry:
            return carry[name]
        raise AttributeError(f"{type(self).__name__} has no attribute or carry entry {name!r}")

    # ----- arrays of the batch's kind: torch on its device, or numpy on the lean path -----------
    def _array(self, values: Any, kind: str) -> Any:
        if self.lean is not None:  # float64 taus: the numpy step computes in float64 where it always has
            return np.asarray(values, dtype=np.int64 if kind == "int" else np.float64)
        return torch.as_tensor(values, dtype=torch.int64 if kind == "int" else torch.float32, device=self.device)

    def _index(self, index: Any) -> Any:
        return self._array(np.asarray(index, dtype=np.int64).reshape(-1), "int")

    def _on_device(self, carry: dict[str, Any]) -> dict[str, Any]:
        if self.lean is not None:
            return carry
        return {k: v.to(self.device) for k, v in carry.items()}

    def _write(self, idx: Any, new: dict[str, Any], only_shared: bool = False) -> None:
        """Put the carry ``new`` (one row per index) into envs ``idx``; ``only_shared``: keep entries ``new`` lacks."""
        for name, value in self._on_device(new).items():
            if name in self.carry:
                self.carry[name][idx] = value
            elif not only_shared:
                raise ConfigError(f"The backend's carry has no entry {name!r} (it has {sorted(self.carry)}).")

    # ----- temperature ---------------------------------------------------------------------
    def set_temperature(self, value: Any, index: Sequence[int] | None = None) -> None:
        """One tau for every env (or the envs in ``index``), or a sequence of one tau per env."""
        if np.ndim(value) == 0:
            tau = check_temperature(value)
            if index is None:
                self.tau[:] = tau
            else:
                self.tau[self._index(index)] = tau
            return
        values = [check_temperature(v) for v in np.asarray(value, dtype=object).reshape(-1)]
        n = self.num_envs if index is None else len(index)
        if len(values) != n:
            raise ConfigError(f"Expected one temperature or {n} (one per env), got {len(values)}: {values[:8]}.")
        target = self._index(range(self.num_envs) if index is None else index)
        self.tau[target] = self._array(values, "float")

    def temperature(self) -> float | np.ndarray:
        tau = _numpy(self.tau).astype(np.float32)
        # float(str(...)): the shortest decimal of the float32, so a tau set to 1.15 reads back as 1.15
        return float(str(tau[0])) if (tau == tau[0]).all() else tau

    # ----- dynamics --------------------------------------------------------------------------
    def single_action(self, action: Any) -> Any:
        """One env's action, validated, as the (1, a) M input of this batch's step (numpy on the lean path)."""
        if self.lean is not None:
            return self.adapter.single_numpy(action)[None]
        return self.adapter.single(action)

    @torch.no_grad()
    def reset_envs(self, index: np.ndarray, draws: Sequence["EpisodeDraw"]) -> None:
        """Put envs ``index`` at their drawn start states, with fresh noise keys, members and taus."""
        idx = self._index(index)
        keys = torch.as_tensor([d.key for d in draws], dtype=torch.int64)
        member = torch.as_tensor([d.member for d in draws], dtype=torch.long)
        start = torch.as_tensor([d.start for d in draws], dtype=torch.long)
        self._write(idx, self.engine.initial(start, Episodes(keys.to(self.device), member.to(self.device),
                                                             self.options.dropout_masks)))
        self.keys[idx] = self._array(keys.tolist(), "int")
        self.t[idx] = 0
        self.last_done_prob[idx] = 0.0
        taus = [(i, d.tau) for i, d in zip(np.asarray(index).tolist(), draws) if d.tau is not None]
        if taus:
            self.tau[self._index([i for i, _ in taus])] = self._array([t for _, t in taus], "float")

    @torch.no_grad()
    def set_state(self, index: int, latent: Any) -> None:
        """Put env ``index`` where a real episode whose first observation encodes to ``latent`` starts
        (the backend's ``start``: fresh memory); the episode's own draws (member, mask) stay."""
        self._write(self._index([index]), self.engine.start(latent[None]), only_shared=True)

    def step(self, action: Any) -> tuple[Any, Any]:
        """Advance every env by one M action vector each (b, a) -> reward (b,), terminated (b,) bool."""
        carry, reward, p_done = self._imagine(self.carry, action, self.tau, Noise(self.keys, self.t), self.compute_dtype)
        self._check_finite(carry, reward, p_done)
        self.carry = carry
        self.t = self.t + 1
        self.last_done_prob = p_done
        if self.options.termination == "sample":
            if self.lean is not None:
                u = lean_termination_uniform(self.keys, self.t - 1)
                terminated = u < np.array([calibrated_float(float(p), self.pos_weight) for p in p_done])
            else:
                terminated = rng.termination_uniform(self.keys, self.t - 1) < calibrated(p_done, self.pos_weight)
        else:
            terminated = p_done > self.threshold
        if self.num_members > 1:
            disagreement = carry["disagreement"]
            opts = self.options
            if opts.disagreement_penalty:
                reward = reward - opts.disagreement_penalty * disagreement
            if opts.halt_threshold is not None:
                halt = disagreement > opts.halt_threshold
                reward = torch.where(halt, torch.full_like(reward, opts.halt_penalty), reward)
                terminated = terminated | halt
        return reward, terminated

    def _check_finite(self, carry: dict[str, Any], reward: Any, p_done: Any) -> None:
        """One reduction checks the carry's entries, the reward and p(done) for NaN/inf (a NaN p(done)
        would never terminate); NumericalError naming the envs and their taus."""
        if self.lean is not None:  # one env: Python floats are cheaper than numpy's small-array ops
            if not math.isfinite(float(reward[0]) + float(p_done[0]) + sum(float(carry[k].sum()) for k in self._checked)):
                raise numerical_error([0], _numpy(self.tau).tolist())
            return
        total = reward + p_done
        for name in self._checked:
            total = total + carry[name].reshape(carry[name].shape[0], -1).sum(-1)
        finite = torch.isfinite(total)
        if not bool(finite.all()):
            bad = np.flatnonzero(~finite.cpu().numpy())
            raise numerical_error(bad.tolist(), _numpy(self.tau)[bad].tolist())

    @torch.no_grad()
    def subset(self, keep: Any) -> "DreamBatch":
        """A new batch of the envs ``keep`` (bool (b,) or indices) only, with their state: stepping it
        gives each kept env the trajectory it would have had in the full batch (the noise is per env),
        up to float rounding (matmul kernels change with the batch size). Rollouts drop finished envs
        this way instead of stepping them to the time limit."""
        sub = copy.copy(self)
        idx = torch.as_tensor(keep, device=self.device)
        idx = idx.nonzero()[:, 0] if idx.dtype == torch.bool else idx.long()
        if self.lean is not None:
            idx = idx.cpu().numpy()
        for name in _PER_ENV:
            setattr(sub, name, getattr(self, name)[idx])
        sub.carry = {k: v[idx] for k, v in self.carry.items()}
        sub.num_envs = int(len(idx))
        return sub

    # ----- observations ----------------------------------------------------------------------
    def observations(self) -> np.ndarray:
        """Fresh (b, *obs_shape) arrays of every env's current observation."""
        return _numpy(self._features(self.carry, self.obs_type))

    @torch.no_grad()
    def frames(self, index: Sequence[int] | None = None) -> np.ndarray:
        """(b, H, W, 3) uint8 pictures of the dreams: decoded frames, or bar charts of decoded states."""
        carry = self.carry
        if index is not None:
            idx = self._index(index)
            carry = {k: v[idx] for k, v in carry.items()}
        x = _numpy(self.model.decode({k: torch.as_tensor(v) for k, v in carry.items()}))
        if x.dtype == np.uint8:
            return x
        space = self.model.config.observation_space
        low = np.broadcast_to(np.asarray(space.get("low", -1.0), dtype=np.float64), x.shape[1:])
        high = np.broadcast_to(np.asarray(space.get("high", 1.0), dtype=np.float64), x.shape[1:])
        draw = STATE_RENDERERS.get(self.model.config.env_id, state_bars)  # the real env's look where we can
        return np.stack([draw(row, low, high) for row in x])


def _is_float(x: Any) -> bool:
    return x.is_floating_point() if isinstance(x, torch.Tensor) else x.dtype.kind == "f"


def _numpy(x: Any) -> np.ndarray:
    return x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


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


def draw_episode(rng_: np.random.Generator, model: Backend, options: DreamOptions) -> EpisodeDraw:
    """A new episode's draws, from an env's seeded generator.

    The start state and key come first, as they always have, so a dream without an ensemble or a
    temperature range follows the same trajectories as before these options existed.
    """
    start = int(rng_.integers(model.config.num_start_states))
    key = int(rng_.integers(0, 2**63 - 1, dtype=np.int64))
    members = getattr(model, "num_members", 1)
    member = int(rng_.integers(members)) if members > 1 and options.ensemble_draw else 0
    tau = None
    if options.temperature_range is not None:
        low, high = options.temperature_range
        tau = float(rng_.uniform(low, high))
    return EpisodeDraw(start, key, member, tau)


DREAM_OPTION_NAMES = tuple(f.name for f in fields(DreamOptions))


@dataclass(kw_only=True)
class DreamOptionFields:
    """The dream options an agent's run (CMA-ES, SB3) passes to its dreams; None: the model's default.

    Keyword-only, so a run config that inherits them keeps its own positional fields first.
    """

    temperature_range: list[float] | None = None
    disagreement_penalty: float | None = None
    halt_threshold: float | None = None
    halt_penalty: float | None = None
    termination: str | None = field(default=None, metadata={"choices": ("threshold", "sample")})
    dropout_masks: bool | None = None
    action_low: list[float] | None = None
    action_high: list[float] | None = None

    def dream_kwargs(self) -> dict[str, Any]:
        """These options as DreamVectorEnv keyword arguments."""
        return dict(temperature_range=self.temperature_range, disagreement_penalty=self.disagreement_penalty,
                    halt_threshold=self.halt_threshold, halt_penalty=self.halt_penalty, termination=self.termination,
                    dropout_masks=self.dropout_masks, action_low=self.action_low, action_high=self.action_high)


def dream_options(model: Backend, overrides: dict[str, Any] | None) -> DreamOptions:
    """The model's recorded dream options with ``gym.make`` keyword arguments (not None) on top."""
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(given) - set(DREAM_OPTION_NAMES))
    if unknown:
        raise ConfigError(f"Unknown dream option(s) {unknown}; expected some of {list(DREAM_OPTION_NAMES)}.")
    for name in ("temperature_range", "action_low", "action_high"):  # numpy arrays and tuples as JSON's lists
        if name in given:
            given[name] = np.asarray(given[name], dtype=object).reshape(-1).tolist()
    opts = replace(model.config.dream, **given)
    try:
        opts.validate()
    except ValueError as e:
        raise ConfigError(str(e)) from e
    members = getattr(model, "num_members", 1)
    if members == 1 and (opts.disagreement_penalty or opts.halt_threshold is not None):
        raise ConfigError(
            "disagreement_penalty and halt_threshold need a world model trained as an ensemble "
            f"(memory.ensemble > 1); this one has {members} member. Train one with `dreamgym train --ensemble 5`."
        )
    dream_action_space(model, opts)  # bounds that do not fit the model's action space fail here, at make time
    return opts


def dream_action_space(model: Backend, options: DreamOptions) -> spaces.Space:
    """The action space of ``model``'s dream and real twin: the real env's, or the Box narrowed to the options'
    ``action_low`` / ``action_high`` (each one number per dimension, or one for all)."""
    space = model.action_space
    low, high = options.action_low, options.action_high
    if low is None and high is None:
        return space
    if not isinstance(space, spaces.Box):
        raise ConfigError(f"action_low / action_high narrow a Box action space; this model's is {space}. "
                          "Leave them unset.")
    n = int(np.prod(space.shape))
    bounds = []
    for name, given, real in (("action_low", low, space.low), ("action_high", high, space.high)):
        real = real.reshape(-1).astype(np.float64)
        if given is None:
            bounds.append(real)
            continue
        if len(given) not in (1, n):
            raise ConfigError(f"{name} needs 1 or {n} numbers (one per action dimension of {space}), "
                              f"got {len(given)}: {given}.")
        bounds.append(np.broadcast_to(np.asarray(given, dtype=np.float64), (n,)).copy())
    new_low, new_high = bounds
    if (new_low < space.low.reshape(-1)).any() or (new_high > space.high.reshape(-1)).any() or (new_low > new_high).any():
        raise ConfigError(f"action_low / action_high must lie inside the real env's bounds {space} with low <= high; "
                          f"got low {new_low.tolist()}, high {new_high.tolist()}. Narrow the bounds, do not widen them.")
    return spaces.Box(new_low.reshape(space.shape).astype(space.dtype), new_high.reshape(space.shape).astype(space.dtype),
                      dtype=space.dtype)
