"""JSON round trip for the Gymnasium spaces a checkpoint records, and action conversion.

A checkpoint must describe its spaces without instantiating the real env (CarRacing needs Box2D,
Doom needs ViZDoom), so ``config.json`` stores them as plain dicts.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from dreamgym.errors import ConfigError, InvalidActionError


def _bound(x: np.ndarray) -> Any:
    """One number when every element is the same (a 96x96x3 image's 0..255: 2 numbers, not 55,296)."""
    return x.flat[0].item() if x.size and bool((x == x.flat[0]).all()) else x.tolist()


def space_to_dict(space: spaces.Space) -> dict[str, Any]:
    """JSON-able description of a Box, Discrete or Dict space (uniform Box bounds as one number)."""
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": _bound(space.low),
            "high": _bound(space.high),
        }
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {k: space_to_dict(v) for k, v in space.spaces.items()}}
    raise ConfigError(
        f"dreamgym supports Box, Discrete and Dict spaces, got {space!r}. "
        "Wrap the env (e.g. gymnasium.wrappers.FlattenObservation) to give it one of those."
    )


MAX_SPACE_SIZE = 2**24  # elements of one Box (a 4K RGB frame: 2**24.6); a bigger one is a hostile file
MAX_DISCRETE = 2**16  # M sees a one-hot of a Discrete action: wider inputs are not a world model's
_DTYPES = ("bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
           "float16", "float32", "float64")
_KEYS = {"Box": {"type", "shape", "dtype", "low", "high"}, "Discrete": {"type", "n", "start"},
         "Dict": {"type", "spaces"}}


def space_from_dict(d: dict[str, Any], where: str = "space") -> spaces.Space:
    """Inverse of :func:`space_to_dict`; raises ConfigError naming ``where`` for anything else.

    Strict, as a config.json may come from a stranger: every key present and of the right JSON
    type, a numeric dtype, bounds that fit it with low <= high, a Box of at most 2**24 elements and
    a Discrete of at most 2**16 actions (so parsing allocates little), nesting bounded by the JSON reader.
    """
    kind = d.get("type") if isinstance(d, dict) else None
    if not isinstance(kind, str) or kind not in _KEYS:
        raise ConfigError(f"Expected {where} to be a space dict with type 'Box', 'Discrete' or 'Dict', got {_show(d)}.")
    unknown, missing = sorted(set(d) - _KEYS[kind]), sorted(_KEYS[kind] - {"start"} - set(d))
    if unknown or missing:
        raise ConfigError(f"{where} is a {kind} space dict with unknown keys {unknown} and missing keys {missing}; "
                          f"expected the keys {sorted(_KEYS[kind])}, as dreamgym.spaces.space_to_dict writes them.")
    if kind == "Box":
        return _box_from_dict(d, where)
    if kind == "Discrete":
        n, start = d["n"], d.get("start", 0)
        if not _is_int(n) or not 1 <= n <= MAX_DISCRETE or not _is_int(start) or abs(start) > 2**62:
            raise ConfigError(f"{where}: expected a Discrete space with an integer n in [1, {MAX_DISCRETE}] and an "
                              f"integer start, got n={_show(n)}, start={_show(start)}. Fix the space in the file.")
        return spaces.Discrete(n, start=start)
    if not isinstance(d["spaces"], dict):
        raise ConfigError(f"{where}['spaces'] must be a JSON object of named spaces, got {_show(d['spaces'])}.")
    return spaces.Dict({k: space_from_dict(v, f"{where}[{k!r}]") for k, v in d["spaces"].items()})


def _box_from_dict(d: dict[str, Any], where: str) -> spaces.Box:
    shape, name = d["shape"], d["dtype"]
    if not isinstance(shape, list) or not all(_is_int(n) and 1 <= n <= MAX_SPACE_SIZE for n in shape) \
            or math.prod(shape) > MAX_SPACE_SIZE:
        raise ConfigError(f"{where}['shape'] must be a list of positive integers with at most {MAX_SPACE_SIZE} "
                          f"elements in all, got {_show(shape)}. Fix the space in the file.")
    if name not in _DTYPES:
        raise ConfigError(f"{where}['dtype'] must be one of {list(_DTYPES)}, got {_show(name)}. "
                          "Fix the space in the file.")
    dtype = np.dtype(name)
    bounds = [_bound_array(d[key], shape, dtype, f"{where}[{key!r}]") for key in ("low", "high")]
    if (bounds[0] > bounds[1]).any():
        raise ConfigError(f"{where}: expected low <= high everywhere, got low={d['low']!r:.80} high={d['high']!r:.80}.")
    return spaces.Box(low=bounds[0].astype(dtype), high=bounds[1].astype(dtype), shape=tuple(shape), dtype=dtype)


def _bound_array(value: Any, shape: list[int], dtype: np.dtype, where: str) -> np.ndarray:
    """A Box bound (one number or nested lists of numbers) broadcast to ``shape``, checked to fit ``dtype``."""
    if not _numbers(value):
        raise ConfigError(f"{where} must be a number or nested lists of numbers, got {_show(value)}.")
    try:
        arr = np.broadcast_to(np.asarray(value, dtype=np.float64), shape)
    except (ValueError, OverflowError) as e:
        raise ConfigError(f"{where} does not fit the Box's shape {shape}: {e}. "
                          "Give one number or a list of that shape.") from e
    info = np.finfo(dtype) if dtype.kind == "f" else np.iinfo(dtype) if dtype.kind in "iu" else None
    lo, hi = (float(info.min), float(info.max)) if info is not None else (0.0, 1.0)
    finite = np.isfinite(arr)
    if np.isnan(arr).any() or ((arr < lo) | (arr > hi))[finite].any() or (dtype.kind != "f" and not finite.all()):
        inf = ", or inf" if dtype.kind == "f" else ""
        raise ConfigError(f"{where} must hold values a {dtype} can hold ({lo:g} to {hi:g}{inf}), "
                          f"got {_show(value)}. Fix the space in the file.")
    return arr


def _numbers(value: Any) -> bool:
    """Whether ``value`` is a number or (nested) lists of numbers; JSON booleans are not numbers."""
    stack = [value]
    while stack:
        x = stack.pop()
        if isinstance(x, list):
            stack.extend(x)
        elif isinstance(x, bool) or not isinstance(x, (int, float)):
            return False
    return True


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:80] + '...' if len(text) > 80 else text}"


def same_space(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two space dicts describe the same space (bounds written as lists or as one number)."""
    try:
        return space_from_dict(a) == space_from_dict(b)
    except ConfigError:
        return a == b


def action_dim(space: spaces.Space) -> int:
    """Width of the action vector M sees: the flattened Box, or a one-hot of a Discrete."""
    if isinstance(space, spaces.Box):
        return int(np.prod(space.shape))
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    raise ConfigError(f"Expected a Box or Discrete action space, got {space!r}.")


def encode_actions(actions: np.ndarray, space: spaces.Space) -> np.ndarray:
    """Actions ``(T, ...)`` -> what M sees, ``(T, action_dim)`` float32 (see :meth:`ActionAdapter.encode`).

    >>> encode_actions(np.array([0, 2]), spaces.Discrete(3)).tolist()
    [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    """
    return ActionAdapter(space).encode(actions)


class ActionAdapter:
    """Checks actions against the real env's action space and turns them into M's input.

    Box actions: the shape must match (a leading batch axis for the vector env), values must be
    finite; out-of-bounds values are clipped to the bounds, which is what the real envs do with
    them (CarRacing clips gas, Pendulum clips torque). Discrete actions: integers in range.
    """

    def __init__(self, space: spaces.Space, device: torch.device | str = "cpu") -> None:
        if not isinstance(space, (spaces.Box, spaces.Discrete)):
            raise ConfigError(f"Expected a Box or Discrete action space, got {space!r}.")
        self.space = space
        self.device = torch.device(device)
        self.dim = action_dim(space)
        if isinstance(space, spaces.Box):
            self._low_np = space.low.reshape(-1).astype(np.float32)
            self._high_np = space.high.reshape(-1).astype(np.float32)
            self.neutral = np.clip(np.zeros(space.shape, dtype=space.dtype), space.low, space.high)
        else:
            self.neutral = np.int64(space.start)

    def encode(self, actions: np.ndarray) -> np.ndarray:
        """Actions ``(T, ...)`` -> M's input ``(T, dim)`` float32: the one encoding of training and dreams.

        Discrete: one-hot of ``action - start``; Box: flattened and clipped to the bounds (what the real envs
        do with out-of-bounds actions). No checks: the ``batch``/``single`` methods check a user's actions
        before encoding them; stored actions were checked when they were collected.
        """
        if isinstance(self.space, spaces.Discrete):
            idx = actions.astype(np.int64).reshape(-1) - int(self.space.start)
            one_hot = np.zeros((len(idx), int(self.space.n)), dtype=np.float32)  # (T,) -> (T, n), not np.eye's
            one_hot[np.arange(len(idx)), idx] = 1.0
            return one_hot
        flat = actions.reshape(len(actions), -1).astype(np.float32, copy=False)  # (T, *shape) -> (T, a)
        return np.minimum(np.maximum(flat, self._low_np), self._high_np)  # np.clip, minus its Python wrappers

    def batch_numpy(self, actions: Any, num_envs: int) -> np.ndarray:
        """Validate a batch of actions, shape ``(num_envs, *action_shape)``; return ``(num_envs, dim)`` float32."""
        space = self.space
        if isinstance(space, spaces.Discrete):
            try:
                a = np.asarray(actions)
            except (TypeError, ValueError, OverflowError):  # ragged lists and the like
                a = np.asarray(None)
            if a.shape != (num_envs,) or not (np.issubdtype(a.dtype, np.integer) or _integral_floats(a)):
                raise InvalidActionError(
                    f"Expected {num_envs} integer action(s) of shape ({num_envs},) for {space}, "
                    f"got {_describe(actions)}. Pass integers in [{space.start}, {space.start + space.n - 1}]."
                )
            low, high = int(space.start), int(space.start) + int(space.n) - 1
            if (a < low).any() or (a > high).any():
                raise InvalidActionError(f"Expected actions in [{low}, {high}] for {space}, got {a.tolist()}.")
            return self.encode(a)
        try:
            raw = np.asarray(actions)
            # numbers only: a string would be parsed, a complex number lose its imaginary part, a date become a count
            if raw.dtype.kind not in "biuf":
                raise TypeError(f"dtype {raw.dtype}")
            a = raw.astype(np.float32)
        except (TypeError, ValueError, OverflowError) as e:
            raise InvalidActionError(
                f"Expected a numeric array of shape {(num_envs, *space.shape)} for {space}, got {_describe(actions)}."
            ) from e
        if a.shape != (num_envs, *space.shape):
            if num_envs == 1 and a.shape == space.shape:
                a = a[None]
            else:
                raise InvalidActionError(
                    f"Expected actions of shape {(num_envs, *space.shape)} for {space}, got shape {a.shape}. "
                    "Pass one action per env, e.g. env.action_space.sample()."
                )
        if not np.isfinite(a).all():
            raise InvalidActionError(
                f"Expected finite actions for {space}, got {a.tolist()} (NaN or inf). "
                "Check the policy's output; a NaN action would silently corrupt the dream."
            )
        return self.encode(a)

    def batch(self, actions: Any, num_envs: int) -> torch.Tensor:
        """As :meth:`batch_numpy`, as a float32 tensor on the adapter's device."""
        return torch.as_tensor(self.batch_numpy(actions, num_envs), device=self.device)

    def single_numpy(self, action: Any) -> np.ndarray:
        """Validate one action; return M's ``(dim,)`` float32 input."""
        if isinstance(self.space, spaces.Discrete):
            try:
                a = np.asarray(action)
            except (TypeError, ValueError, OverflowError):  # ragged lists and the like
                a = np.asarray([None, None])
            if a.shape not in ((), (1,)):
                raise InvalidActionError(f"Expected one integer action for {self.space}, got {_describe(action)}.")
            return self.batch_numpy(a.reshape(1), 1)[0]
        return self.batch_numpy(action, 1)[0]

    def single(self, action: Any) -> torch.Tensor:
        """Validate one action; return ``(1, dim)`` float32."""
        return torch.as_tensor(self.single_numpy(action), device=self.device)[None]


def _integral_floats(a: np.ndarray) -> bool:
    return np.issubdtype(a.dtype, np.floating) and bool(np.all(np.isfinite(a))) and bool(np.all(a == np.round(a)))


def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return f"array of shape {x.shape} and dtype {x.dtype}"
    return f"{type(x).__name__} {x!r}"[:200]
