"""Training views of episodes: single frames for V, fixed-length windows for M.

Both are map-style datasets indexed by a whole batch of indices at once (one tensor gather per
batch), which is what the trainer's DistributedSampler hands out.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from gymnasium import spaces

from dreamgym.data.episodes import Episode


class FrameDataset(torch.utils.data.Dataset):
    """Every observation of every episode, for training V."""

    def __init__(self, episodes: Sequence[Episode]) -> None:
        self.obs = torch.from_numpy(np.concatenate([ep.obs for ep in episodes]))

    def __len__(self) -> int:
        return len(self.obs)

    def __getitem__(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"obs": self.obs[index]}


def encode_actions(actions: np.ndarray, space: spaces.Space) -> np.ndarray:
    """Stored actions (T, ...) -> what M sees (T, a): clipped floats, or one-hot for Discrete."""
    if isinstance(space, spaces.Discrete):
        idx = actions.astype(np.int64).reshape(-1) - int(space.start)
        one_hot = np.zeros((len(idx), space.n), dtype=np.float32)  # T x n, not np.eye's n x n
        one_hot[np.arange(len(idx)), idx] = 1.0
        return one_hot
    flat = actions.reshape(len(actions), -1).astype(np.float32)
    return np.clip(flat, space.low.reshape(-1), space.high.reshape(-1))


class SequenceDataset(torch.utils.data.Dataset):
    """Windows of ``seq_len`` steps from latent episodes, for training M and the heads.

    Item i is (episode e, start t): ``mu``/``logvar`` (L+1, z) for z_t..z_{t+L}, ``action`` (L, a),
    ``reward``, ``terminated`` and ``mask`` (L,). Episodes shorter than L are padded and masked.
    Windows start every ``stride`` steps.
    """

    def __init__(
        self,
        mu: Sequence[np.ndarray],
        logvar: Sequence[np.ndarray] | None,
        episodes: Sequence[Episode],
        action_space: spaces.Space,
        seq_len: int,
        stride: int | None = None,
    ) -> None:
        stride = stride or max(seq_len // 2, 1)
        self.seq_len = seq_len
        lengths = [len(ep) for ep in episodes]
        total = sum(n + seq_len for n in lengths)
        z_dim = mu[0].shape[1]
        a_dim = encode_actions(episodes[0].actions[:1], action_space).shape[1]
        # one flat buffer per field, each episode followed by seq_len steps of padding
        self.mu = torch.zeros(total + 1, z_dim)
        self.logvar = torch.full((total + 1, z_dim), -30.0)  # padding: no sampling noise
        self.action = torch.zeros(total, a_dim)
        self.reward = torch.zeros(total)
        self.terminated = torch.zeros(total)
        self.mask = torch.zeros(total)
        starts, offset = [], 0
        for e, ep in enumerate(episodes):
            n = lengths[e]
            self.mu[offset : offset + n + 1] = torch.from_numpy(mu[e])
            if logvar is not None:
                self.logvar[offset : offset + n + 1] = torch.from_numpy(logvar[e])
            self.action[offset : offset + n] = torch.from_numpy(encode_actions(ep.actions, action_space))
            self.reward[offset : offset + n] = torch.from_numpy(ep.rewards.astype(np.float32))
            self.terminated[offset : offset + n] = torch.from_numpy(ep.terminated.astype(np.float32))
            self.mask[offset : offset + n] = 1.0
            starts += [offset + t for t in range(0, max(n - seq_len, 0) + 1, stride)]
            offset += n + seq_len
        self.starts = torch.tensor(starts, dtype=torch.long)
        self._steps = torch.arange(seq_len)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        rows = self.starts[index][:, None] + self._steps  # (b, L)
        z_rows = torch.cat([rows, rows[:, -1:] + 1], dim=1)  # (b, L+1)
        return {
            "mu": self.mu[z_rows],
            "logvar": self.logvar[z_rows],
            "action": self.action[rows],
            "reward": self.reward[rows],
            "terminated": self.terminated[rows],
            "mask": self.mask[rows],
        }
