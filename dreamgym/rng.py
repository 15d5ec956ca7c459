"""Counter-based random numbers for batched dreams.

Each env holds an int64 *key* (drawn from its seeded ``np_random`` at every reset) and a step
counter. The noise of a step is a hash (splitmix64) of (key, step, index), so env *i*'s stream
does not depend on how many envs share the batch or where it sits in it: a vector env of 1024
and a single env given the same seed produce the same draws, and one batched torch op makes them
all. Torch int64 arithmetic wraps on overflow, which the hash relies on.
"""

from __future__ import annotations

import torch

_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as int64
_MIX1 = -4658895280553007687  # 0xBF58476D1CE4E5B9
_MIX2 = -7723592293110705685  # 0x94D049BB133111EB
_STEP = 0x632BE59BD9B4E019  # an odd constant that spreads the step counter
_TWO_PI = 6.283185307179586


def _lsr(x: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def splitmix64(x: torch.Tensor) -> torch.Tensor:
    """The splitmix64 finaliser, elementwise on int64."""
    x = x * 1 + _GOLDEN
    x = (x ^ _lsr(x, 30)) * _MIX1
    x = (x ^ _lsr(x, 27)) * _MIX2
    return x ^ _lsr(x, 31)


def _bits(keys: torch.Tensor, steps: torch.Tensor, stream: int, width: int) -> torch.Tensor:
    """(b,) keys and steps -> (b, width) hashed int64."""
    idx = torch.arange(width, device=keys.device, dtype=torch.int64) + stream * width
    x = keys[:, None] + steps[:, None] * _STEP + splitmix64(idx)[None, :]
    return splitmix64(x)


TERMINATION_INDEX = 1 << 20  # the hash index of a step's termination draw: no latent dimension uses it


def termination_uniform(keys: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """(b,) uniforms in [0, 1) for a step's termination draw, from the env's own stream."""
    bits = _bits(keys, steps, TERMINATION_INDEX, 1)[:, 0]
    return _lsr(bits, 43).to(torch.float32) * (1.0 / (1 << 21))


def uniform_and_normal(keys: torch.Tensor, steps: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All of a dream step's noise from ONE 64-bit hash per latent dimension: (b, width) each.

    The hash's top 21 bits pick the mixture component (u); the next 21 and the low 22 feed
    Box-Muller (eps). 21-bit uniforms are ample here (Box-Muller's tail reaches 5.4 sigma), and one
    hash instead of three halves the cost of the noise, a few percent of a batched dream step.
    """
    bits = _bits(keys, steps, 0, width)
    u = _lsr(bits, 43).to(torch.float32) * (1.0 / (1 << 21))
    u1 = ((_lsr(bits, 22) & 0x1FFFFF).to(torch.float32) + 1.0) * (1.0 / (1 << 21))  # (0, 1]: log is finite
    u2 = (bits & 0x3FFFFF).to(torch.float32) * (1.0 / (1 << 22))
    return u, torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(_TWO_PI * u2)
