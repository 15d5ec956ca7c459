"""JSON round trip for the Gymnasium spaces a checkpoint records, and action conversion.

A checkpoint must describe its spaces without instantiating the real env (CarRacing needs Box2D,
Doom needs ViZDoom), so ``config.json`` stores them as plain dicts.
"""

from __future__ import annotations

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


def space_from_dict(d: dict[str, Any]) -> spaces.Space:
    """Inverse of :func:`space_to_dict`; raises ConfigError for anything else."""
    kind = d.get("type") if isinstance(d, dict) else None
    if kind == "Box":
        dtype = np.dtype(d["dtype"])
        low = np.broadcast_to(np.asarray(d["low"], dtype=np.float64), d["shape"])
        high = np.broadcast_to(np.asarray(d["high"], dtype=np.float64), d["shape"])
        return spaces.Box(low=low.astype(dtype), high=high.astype(dtype), shape=tuple(d["shape"]), dtype=dtype)
    if kind == "Discrete":
        return spaces.Discrete(int(d["n"]), start=int(d.get("start", 0)))
    if kind == "Dict":
        return spaces.Dict({k: space_from_dict(v) for k, v in d["spaces"].items()})
    raise ConfigError(f"Expected a space dict with type 'Box', 'Discrete' or 'Dict', got {d!r}.")


def same_space(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two space dicts describe the same space (bounds written as lists or as one number)."""
    try:
        return space_from_dict(a) == space_from_dict(b)
    except (ConfigError, KeyError, TypeError, ValueError):
        return a == b


def action_dim(space: spaces.Space) -> int:
    """Width of the action vector M sees: the flattened Box, or a one-hot of a Discrete."""
    if isinstance(space, spaces.Box):
        return int(np.prod(space.shape))
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    raise ConfigError(f"Expected a Box or Discrete action space, got {space!r}.")


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
            self._eye = np.eye(space.n, dtype=np.float32)
            self.neutral = np.int64(space.start)

    def batch_numpy(self, actions: Any, num_envs: int) -> np.ndarray:
        """Validate a batch of actions, shape ``(num_envs, *action_shape)``; return ``(num_envs, dim)`` float32."""
        space = self.space
        if isinstance(space, spaces.Discrete):
            a = np.asarray(actions)
            if a.shape != (num_envs,) or not (np.issubdtype(a.dtype, np.integer) or _integral_floats(a)):
                raise InvalidActionError(
                    f"Expected {num_envs} integer action(s) of shape ({num_envs},) for {space}, "
                    f"got {_describe(actions)}. Pass integers in [{space.start}, {space.start + space.n - 1}]."
                )
            idx = a.astype(np.int64) - int(space.start)
            if (idx < 0).any() or (idx >= space.n).any():
                raise InvalidActionError(
                    f"Expected actions in [{space.start}, {space.start + space.n - 1}] for {space}, got {a.tolist()}."
                )
            return self._eye[idx]  # (b,) -> (b, n) one-hot
        try:
            a = np.asarray(actions, dtype=np.float32)
        except (TypeError, ValueError) as e:
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
        return np.clip(a.reshape(num_envs, -1), self._low_np, self._high_np)

    def batch(self, actions: Any, num_envs: int) -> torch.Tensor:
        """As :meth:`batch_numpy`, as a float32 tensor on the adapter's device."""
        return torch.as_tensor(self.batch_numpy(actions, num_envs), device=self.device)

    def single_numpy(self, action: Any) -> np.ndarray:
        """Validate one action; return M's ``(dim,)`` float32 input."""
        if isinstance(self.space, spaces.Discrete):
            a = np.asarray(action)
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
