"""M: an LSTM with a mixture-density head over the next latent, p(z_{t+1} | z_t, a_t, h_t).

Stateless: the recurrent carry ``(h, c)`` is passed in and returned, so envs hold it.
Each latent dimension has its own mixture of ``n_mixtures`` Gaussians, as in the paper, or (``mixture="joint"``)
one mixture over the whole latent: a sample then takes one component for every dimension.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from dreamgym.errors import ConfigError

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@dataclass
class MemoryConfig:
    """Architecture of M.

    :param hidden_size: LSTM units (the paper: 256 for CarRacing, 512 for Doom).
    :param n_mixtures: Gaussians per latent dimension (the paper: 5).
    :param ensemble: members of M (each with its own heads), trained on bootstrap resamples; a dream
        draws one member per episode (ME-TRPO) and reports how far they disagree. 1: a single M.
    :param dropout: dropout on M's output before the mixture and the heads, in training; a dream
        draws a fresh mask per episode (Wellmer & Kwok, *Dropout's Dream Land*). 0: none.
    :param mixture: ``"per_dim"`` (the paper): each latent dimension draws its own component, so at τ > 0 a
        sample mixes modes across dimensions (half of one outcome, half of another). ``"joint"``: one set of
        component weights for the whole latent, a diagonal Gaussian mixture over the vector: a sample takes one
        component for all dimensions, a coherent outcome. Its logits are the mean of the head's per-dimension
        logit rows, so the head keeps its shape.
    """

    hidden_size: int = 256
    n_mixtures: int = 5
    ensemble: int = 1
    dropout: float = 0.0
    mixture: str = "per_dim"

    def validate(self) -> None:
        if self.hidden_size <= 0 or self.n_mixtures <= 0:
            raise ConfigError(
                f"memory.hidden_size and memory.n_mixtures must be positive, got {self.hidden_size}, {self.n_mixtures}."
            )
        if not 1 <= self.ensemble <= 64:
            raise ConfigError(f"memory.ensemble must be in 1..64 (members of M), got {self.ensemble}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"memory.dropout must be in [0, 1), got {self.dropout}.")
        if self.mixture not in MIXTURES:
            raise ConfigError(f"memory.mixture must be one of {MIXTURES}, got {self.mixture!r}.")

    @property
    def joint(self) -> bool:
        return self.mixture == "joint"


MIXTURES = ("per_dim", "joint")


def joint_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-dimension logits (..., k, z) -> one component's logit for the whole latent, the mean of its row,
    repeated over z (..., k, z)."""
    return logits.mean(dim=-1, keepdim=True).expand_as(logits)


class MDNRNN(nn.Module):
    """LSTM over [z_t, a_t] and a linear head to mixture logits, means and log-stds of z_{t+1}."""

    def __init__(self, config: MemoryConfig, z_dim: int, action_dim: int) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.z_dim = z_dim
        self.lstm = nn.LSTM(z_dim + action_dim, config.hidden_size, batch_first=True)
        self.mdn = nn.Linear(config.hidden_size, 3 * z_dim * config.n_mixtures)

    def step(
        self, z: torch.Tensor, action: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
        compute_dtype: torch.dtype = torch.float32,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One LSTM step for a batch: z (b, z), action (b, a), h, c (b, H) -> h', c'.

        One matmul for all four gates: [z, a, h, 1] @ [W_ih | W_hh | b_ih + b_hh]^T. On a CPU this
        skips torch.lstm_cell's two matmuls and the (b, 4H) bias copies each of them starts with.
        ``compute_dtype=torch.bfloat16`` runs that matmul in bfloat16 (state stays float32).
        """
        ones = torch.ones(z.shape[0], 1, dtype=z.dtype, device=z.device)
        x = torch.cat([z, action, h, ones], dim=-1)
        gates = (x.to(compute_dtype) @ self._fused_lstm_weight(compute_dtype)).float()  # b (z+a+H+1) -> b 4H
        i, f, g, o = gates.chunk(4, dim=-1)  # PyTorch's gate order
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * _tanh(g)
        return torch.sigmoid(o) * _tanh(c), c

    def _fused_lstm_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(z+a+H+1, 4H) fused LSTM weight, rebuilt only when a weight changed (training, loading)."""
        lstm = self.lstm
        params = (lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0)
        if torch.is_grad_enabled():  # differentiable, not cached
            w_ih, w_hh, b_ih, b_hh = params
            return torch.cat([w_ih, w_hh, (b_ih + b_hh)[:, None]], dim=1).t().to(dtype)
        return self._cached("lstm", params, dtype, lambda w_ih, w_hh, b_ih, b_hh: torch.cat(
            [w_ih, w_hh, (b_ih + b_hh)[:, None]], dim=1).t().contiguous())

    def _cached(self, name: str, params: tuple[torch.Tensor, ...], dtype: torch.dtype, build) -> torch.Tensor:
        """A derived weight, rebuilt only when one of ``params`` changed (version counter, storage, device)."""
        cache = self.__dict__.setdefault("_weight_cache", {})
        key = (dtype, *((p.data_ptr(), p._version, p.device) for p in params))
        if name not in cache or cache[name][0] != key:
            cache[name] = (key, build(*params).to(dtype).contiguous())
        return cache[name][1]

    def mixture(
        self, h: torch.Tensor, compute_dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """h (..., H) -> logits, mu, log_sigma, each (..., k, z).

        Components before latent dimensions: reductions over k then run over contiguous rows of z,
        which is ~5x faster than a softmax over a last axis of 5.
        """
        if compute_dtype == torch.float32 or torch.is_grad_enabled():
            out = self.mdn(h)
        else:
            w = self._cached("mdn", (self.mdn.weight,), compute_dtype, lambda w: w.t())
            out = (h.to(compute_dtype) @ w).float() + self.mdn.bias
        out = out.view(*h.shape[:-1], 3, self.config.n_mixtures, self.z_dim)  # ... (3 k z) -> ... 3 k z
        logits, mu, log_sigma = out.unbind(dim=-3)
        if self.config.joint:
            logits = joint_logits(logits)
        return logits, mu, log_sigma.clamp(-7.0, 5.0)

    def sequence(
        self, z: torch.Tensor, action: torch.Tensor, carry: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Teacher-forced pass for training: z (b, t, z), action (b, t, a) -> outputs h (b, t, H), final carry."""
        if carry is not None:
            carry = (carry[0][None], carry[1][None])  # b H -> 1 b H
        out, (h, c) = self.lstm(torch.cat([z, action], dim=-1), carry)
        return out, (h[0], c[0])


def _tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh(x) = 2 sigmoid(2x) - 1: the same values, ~3x faster than torch.tanh on this CPU."""
    return torch.sigmoid(2.0 * x) * 2.0 - 1.0


TAU_FLOOR = 1e-6
"""The smallest temperature the mixture logits are divided by (sigma still scales by sqrt(tau))."""


def sample_mixture(
    logits: torch.Tensor,
    mu: torch.Tensor,
    log_sigma: torch.Tensor,
    temperature: torch.Tensor,
    u: torch.Tensor,
    eps: torch.Tensor,
    joint: bool = False,
) -> torch.Tensor:
    """Sample z from per-dimension mixtures with the paper's temperature.

    logits / mu / log_sigma: (b, k, z). temperature: (b,) >= 0. u: (b, z) uniforms choosing the
    component; eps: (b, z) standard normals. Logits are divided by tau and sigma multiplied by
    sqrt(tau); tau = 0 takes the most likely component's mean, with no noise. ``joint``: the logits are the
    same for every dimension (:func:`joint_logits`) and u's first column chooses one component for all of them.
    """
    if joint:
        u = u[:, :1].expand_as(u)
    tau = temperature[:, None, None]  # b -> b 1 1
    # below TAU_FLOOR the logits are divided by the floor: a tiny tau (1e-40, valid) would overflow them to inf and
    # inf - inf is NaN; at the floor the most likely component already wins, as at tau -> 0
    tau_safe = torch.where(tau > 0, tau.clamp(min=TAU_FLOOR), torch.ones_like(tau))
    scaled = logits / tau_safe
    top = scaled.amax(dim=1, keepdim=True)
    # inverse-CDF draw of the component from unnormalised weights: count cumulative weights below u * total
    cum = torch.exp(scaled - top).cumsum(dim=1)  # b k z
    comp = (cum < (u * cum[:, -1])[:, None]).sum(dim=1).clamp(max=logits.shape[1] - 1)  # b z
    if bool((temperature == 0).any()):
        # the first most likely component: how many come before the first maximum
        first_max = ((scaled == top).cumsum(dim=1) == 0).sum(dim=1)
        comp = torch.where(tau[:, 0] > 0, comp, first_max)
    mu_k = mu.gather(1, comp[:, None])[:, 0]
    sigma_k = log_sigma.gather(1, comp[:, None])[:, 0].exp()
    return mu_k + sigma_k * torch.sqrt(temperature)[:, None] * eps


def mixture_nll(logits: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor, target: torch.Tensor,
                joint: bool = False) -> torch.Tensor:
    """Negative log-likelihood of target (..., z) under the mixtures (..., k, z), per element (..., z).

    ``joint``: one mixture over the vector (logits equal across z); its NLL does not split by dimension, so each
    element holds the vector's NLL / z (their mean, as callers take it, is the NLL per dimension).
    """
    x = target[..., None, :]
    log_prob = -0.5 * ((x - mu) / log_sigma.exp()).pow(2) - log_sigma - _LOG_SQRT_2PI
    if joint:
        vector = torch.logsumexp(torch.log_softmax(logits[..., 0], dim=-1) + log_prob.sum(dim=-1), dim=-1)  # ... k -> ...
        return (-vector / target.shape[-1])[..., None].expand(target.shape)
    return -torch.logsumexp(torch.log_softmax(logits, dim=-2) + log_prob, dim=-2)
