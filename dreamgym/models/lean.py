"""The MDN-RNN backend's dream step for ONE env in numpy: the same math as ``WorldModel.imagine_step``
without torch's per-op overhead (~80 small ops of ~4 µs each at batch size 1).

``WorldModel.lean()`` returns it: the backend protocol's ``initial`` / ``start`` / ``imagine`` /
``features`` on numpy carries of one env, which :class:`~dreamgym.envs.core.DreamBatch` steps in
place of the torch ones for a single CPU dream (``DreamEnv(fast=True)``); tests check it against
the batched torch step. Weights are copied out of the model once and again whenever a parameter
changes (torch version counters), so training the model under a live env stays correct.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from dreamgym import rng
from dreamgym.backends import Episodes, Noise
from dreamgym.models.mdnrnn import TAU_FLOOR

if TYPE_CHECKING:
    from dreamgym.models.world_model import WorldModel

_U64 = 0xFFFFFFFFFFFFFFFF


def _u64(x: int) -> np.uint64:
    return np.uint64(x & _U64)


_GOLDEN, _MIX1, _MIX2 = (_u64(c) for c in (rng._GOLDEN, rng._MIX1, rng._MIX2))
_STEP_INT = rng._STEP
NOISE_BLOCK = 64  # steps of noise computed at once


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """numpy uint64 twin of :func:`dreamgym.rng.splitmix64` (uint64 arrays wrap like torch's int64)."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _layers(module: nn.Module | None) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """A linear head or Sequential(Linear, ReLU, Linear) as [(W^T, b), ...]."""
    if module is None:
        return None
    linears = [module] if isinstance(module, nn.Linear) else [m for m in module if isinstance(m, nn.Linear)]
    return [(m.weight.detach().t().contiguous().numpy(), m.bias.detach().numpy().copy()) for m in linears]


def _apply(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> float:
    for i, (w, b) in enumerate(layers):
        x = x @ w + b
        if i < len(layers) - 1:
            x = np.maximum(x, 0.0)
    return float(x[0])


def termination_uniform(keys: np.ndarray, t: np.ndarray) -> np.ndarray:
    """numpy twin of :func:`dreamgym.rng.termination_uniform`: (b,) keys and steps -> (b,) float32 uniforms."""
    index = _splitmix64(np.array([rng.TERMINATION_INDEX], dtype=np.uint64))
    counter = keys.astype(np.uint64) + t.astype(np.uint64) * np.uint64(_STEP_INT)  # wraps, as torch's int64 does
    return (_splitmix64(counter + index) >> np.uint64(43)).astype(np.float32) * np.float32(1.0 / (1 << 21))


class LeanDream:
    """The backend protocol for one env on numpy carries {"z", "h", "c"[, "mask"]}, each (1, n);
    ``step(z, h, c, action, tau, key, t) -> z', h', c', reward, p(done)`` is its 1-D core."""

    def __init__(self, model: "WorldModel") -> None:
        self.model = model
        self.z_dim, self.hidden, self.k = model.z_dim, model.hidden_size, model.config.memory.n_mixtures
        self.joint = model.config.memory.joint
        self._key: list = []
        self._stream = _splitmix64(np.arange(self.z_dim, dtype=np.uint64))  # splitmix64(index) of rng._bits
        self._cols = np.arange(self.z_dim)
        self._block_key, self._block_t0 = None, 0  # the cached noise block (see _noise)
        self._x = np.zeros(self.z_dim + model.action_dim + self.hidden + 1, dtype=np.float32)
        self._x[-1] = 1.0
        # the tensors the step reads; checked every step by version counter, cheaply
        self._params = [*model.memory.parameters(), *model.heads.parameters()]
        self._refresh()

    def _version(self) -> list:
        return [(p.data_ptr(), p._version) for p in self._params]

    def _refresh(self) -> None:
        hd = self.hidden
        with torch.no_grad():
            mem, heads = self.model.memory, self.model.heads
            w = mem._fused_lstm_weight().cpu().numpy()  # (z+a+H+1, 4H), gates i, f, g, o
            # reorder to i, f, o, g: one sigmoid over 3H, one tanh over H
            self.w_gates = np.ascontiguousarray(np.concatenate([w[:, : 2 * hd], w[:, 3 * hd :], w[:, 2 * hd : 3 * hd]], 1))
            self.reward = _layers(heads.reward)
            self.termination = _layers(heads.termination)
            # linear heads ride along in the mixture head's matmul: one (H, 3kz [+1] [+1]) product
            cols_w, cols_b = [mem.mdn.weight.t().cpu().numpy()], [mem.mdn.bias.cpu().numpy()]
            self.fused_heads = [name for name, layers in (("reward", self.reward), ("termination", self.termination))
                                if layers is not None and len(layers) == 1]
            for name in self.fused_heads:
                w_h, b_h = getattr(self, name)[0]
                cols_w.append(w_h)
                cols_b.append(b_h)
            self.w_out = np.ascontiguousarray(np.concatenate(cols_w, axis=1))
            self.b_out = np.concatenate(cols_b)
        self._key = self._version()

    def _noise(self, key: int, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Step t's uniforms and normals (z,) each: the same counter-based hash as dreamgym.rng, in uint64.

        Computed for NOISE_BLOCK steps at once (t, t+1, ...) and served from there: the hash and
        Box-Muller are ~25 small numpy ops, a third of a single step's time when done per step.
        """
        i = t - self._block_t0
        if key != self._block_key or not 0 <= i < NOISE_BLOCK:
            counters = np.uint64(key & _U64) + np.arange(t, t + NOISE_BLOCK, dtype=np.uint64) * np.uint64(_STEP_INT)
            bits = _splitmix64(counters[:, None] + self._stream)  # (block, z)
            u = (bits >> np.uint64(43)).astype(np.float32) * np.float32(1.0 / (1 << 21))  # as rng.uniform_and_normal
            u1 = (((bits >> np.uint64(22)) & np.uint64(0x1FFFFF)).astype(np.float32) + np.float32(1.0)) * np.float32(
                1.0 / (1 << 21))
            u2 = (bits & np.uint64(0x3FFFFF)).astype(np.float32) * np.float32(1.0 / (1 << 22))
            self._block = (u, np.sqrt(np.float32(-2.0) * np.log(u1)) * np.cos(np.float32(2 * np.pi) * u2))
            self._block_key, self._block_t0, i = key, t, 0
        return self._block[0][i], self._block[1][i]

    @staticmethod
    def termination_uniform(key: int, t: int) -> float:
        """numpy twin of :func:`dreamgym.rng.termination_uniform` for one env and step."""
        return float(termination_uniform(np.array([key & _U64], dtype=np.uint64), np.array([t & _U64], dtype=np.uint64))[0])

    # ----- the backend protocol on numpy carries of one env ------------------------------------
    _KEYS = ("z", "h", "c", "mask")

    def _numpy(self, carry: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {k: carry[k].detach().cpu().numpy().copy() for k in self._KEYS if k in carry}

    def initial(self, index: Any, episodes: Episodes | None = None) -> dict[str, np.ndarray]:
        return self._numpy(self.model.initial(torch.as_tensor(np.asarray(index), dtype=torch.long), episodes))

    def start(self, latent: Any) -> dict[str, np.ndarray]:
        return self._numpy(self.model.start(torch.as_tensor(np.asarray(latent, dtype=np.float32))))

    def imagine(self, carry: dict[str, np.ndarray], action: np.ndarray, tau: np.ndarray, noise: Noise,
                dtype: Any = None) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """:meth:`step` of the carry's one env -> carry', reward (1,), p(done) (1,) (float64)."""
        mask = carry.get("mask")
        z, h, c, reward, p_done = self.step(carry["z"][0], carry["h"][0], carry["c"][0], action[0], float(tau[0]),
                                            int(noise.keys[0]), int(noise.t[0]), None if mask is None else mask[0])
        out = {"z": z[None], "h": h[None], "c": c[None]}
        if mask is not None:
            out["mask"] = mask
        return out, np.array((reward,)), np.array((p_done,))

    @staticmethod
    def features(carry: dict[str, np.ndarray], obs_type: str) -> np.ndarray:
        if obs_type == "latent":
            return np.concatenate([carry["z"], carry["h"]], axis=-1)
        if obs_type == "zch":
            return np.concatenate([carry["z"], carry["c"], carry["h"]], axis=-1)
        return carry["z"].copy()

    def step(self, z: np.ndarray, h: np.ndarray, c: np.ndarray, action: np.ndarray, tau: float, key: int, t: int,
             mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
        """One step; ``mask`` (H,) is the episode's dropout mask on M's output (None: none)."""
        if self._version() != self._key:
            self._refresh()
        zd, hd, k = self.z_dim, self.hidden, self.k
        x = self._x
        x[:zd], x[zd : zd + len(action)], x[zd + len(action) : -1] = z, action, h
        gates = x @ self.w_gates  # i, f, o, g (reordered at refresh)
        sig = _sigmoid(gates[: 3 * hd])
        c = sig[hd : 2 * hd] * c + sig[:hd] * np.tanh(gates[3 * hd :])
        h = sig[2 * hd :] * np.tanh(c)
        hm = h if mask is None else h * mask
        full = hm @ self.w_out + self.b_out
        out = full[: 3 * k * zd].reshape(3, k, zd)  # (3 k z) -> 3 k z
        logits, mu, log_sigma = out[0], out[1], np.minimum(np.maximum(out[2], -7.0), 5.0)  # np.clip, minus its wrappers
        if self.joint:  # one component for the whole latent (mdnrnn.joint_logits)
            logits = np.broadcast_to(logits.mean(axis=1, keepdims=True), logits.shape)
        if tau > 0:
            u, eps = self._noise(key, t)
            if self.joint:
                u = np.broadcast_to(u[:1], u.shape)
            scaled = logits / np.float32(max(tau, TAU_FLOOR))  # as sample_mixture: no inf - inf for a tiny tau
            cum = np.exp(scaled - scaled.max(axis=0)).cumsum(axis=0)
            comp = np.minimum((cum < u * cum[-1]).sum(axis=0), k - 1)
            z = mu[comp, self._cols] + np.exp(log_sigma[comp, self._cols]) * np.float32(np.sqrt(tau)) * eps
        else:
            z = mu[logits.argmax(axis=0), self._cols]
        extra = dict(zip(self.fused_heads, full[3 * k * zd :].tolist()))
        heads = self.model.config.heads
        if self.reward is None:
            reward = float(heads.constant_reward)
        else:
            reward = extra["reward"] if "reward" in extra else _apply(self.reward, hm)
        if self.termination is None:
            p_done = 0.0
        else:
            logit = extra["termination"] if "termination" in extra else _apply(self.termination, hm)
            p_done = float(1.0 / (1.0 + np.exp(-logit)))
        return z.astype(np.float32, copy=False), h.astype(np.float32, copy=False), c.astype(np.float32, copy=False), \
            reward, p_done
