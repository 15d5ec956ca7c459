"""Reward and termination heads on M's output h_{t+1} (which has seen z_t and a_t)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dreamgym.errors import ConfigError


@dataclass
class HeadsConfig:
    """Reward and termination heads.

    :param reward: learn a reward head; when False every dream step pays ``constant_reward``
        (the paper's Doom dream: 1 per step survived).
    :param constant_reward: the reward of every step when ``reward`` is False.
    :param termination: learn a termination head; when False dreams only end by truncation.
    :param done_threshold: a dream step terminates when p(done) > this (the paper: 0.5).
    :param termination_pos_weight: weight of the rare positive class in the loss (the paper: 10).
    :param hidden: width of a hidden layer in each head; 0 for a linear head.
    """

    reward: bool = True
    constant_reward: float = 0.0
    termination: bool = True
    done_threshold: float = 0.5
    termination_pos_weight: float = 10.0
    hidden: int = 0

    def validate(self) -> None:
        if not 0.0 < self.done_threshold < 1.0:
            raise ConfigError(f"heads.done_threshold must be in (0, 1), got {self.done_threshold}.")
        if not self.termination_pos_weight > 0:
            raise ConfigError(f"heads.termination_pos_weight must be > 0, got {self.termination_pos_weight}.")
        if self.hidden < 0:
            raise ConfigError(f"heads.hidden must be >= 0, got {self.hidden}.")


def _head(in_dim: int, hidden: int) -> nn.Module:
    if hidden == 0:
        return nn.Linear(in_dim, 1)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))


class Heads(nn.Module):
    """``forward(h) -> (reward, done_logit)``, each (...,); absent heads give constants."""

    def __init__(self, config: HeadsConfig, in_dim: int) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.reward = _head(in_dim, config.hidden) if config.reward else None
        self.termination = _head(in_dim, config.hidden) if config.termination else None
        if self.termination is not None:
            # termination is rare: start from a low prior (p ~ 0.02) instead of p = 0.5 at every step
            last = self.termination if isinstance(self.termination, nn.Linear) else self.termination[-1]
            nn.init.constant_(last.bias, -4.0)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = h.shape[:-1]
        if self.reward is not None:
            reward = self.reward(h)[..., 0]
        else:
            reward = torch.full(shape, self.config.constant_reward, device=h.device)
        if self.termination is not None:
            logit = self.termination(h)[..., 0]
        else:
            logit = torch.full(shape, -torch.inf, device=h.device)
        return reward, logit

    def loss(
        self, h: torch.Tensor, reward: torch.Tensor, terminated: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Reward MSE + weighted termination BCE over the valid (mask) steps; h (b, t, H), rest (b, t)."""
        pred_r, logit = self.forward(h)
        n = mask.sum().clamp(min=1)
        total = h.new_zeros(())
        metrics: dict[str, float] = {}
        if self.reward is not None:
            r_loss = ((pred_r - reward).pow(2) * mask).sum() / n
            total = total + r_loss
            metrics["reward_mse"] = r_loss.item()
            metrics["reward_mae"] = (((pred_r - reward).abs() * mask).sum() / n).item()
        if self.termination is not None:
            weight = torch.tensor(self.config.termination_pos_weight, device=h.device)
            bce = F.binary_cross_entropy_with_logits(logit, terminated.float(), pos_weight=weight, reduction="none")
            d_loss = (bce * mask).sum() / n
            total = total + d_loss
            metrics["termination_bce"] = d_loss.item()
        return total, metrics
