"""Training views of episodes: single frames for V, fixed-length windows for M.

Both are map-style datasets indexed by a whole batch of indices at once (one tensor gather per
batch), which is what the trainer's DistributedSampler hands out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from gymnasium import spaces

from dreamgym.data.episodes import Episode, read_episode
from dreamgym.errors import ConfigError
from dreamgym.spaces import encode_actions


def window_stride(seq_len: int, stride: int | None) -> int:
    """Steps between window starts: ``stride``, or ``seq_len // 2`` when None. A window never runs past its
    episode's end, so a stride above ``seq_len`` would leave steps in no window and one below 1 none at all."""
    if stride is None:
        return max(seq_len // 2, 1)
    if not 1 <= stride <= seq_len:
        raise ConfigError(f"stride must be between 1 and seq_len ({seq_len}), got {stride}. Pass None for "
                          f"seq_len // 2, or a smaller stride to cover more of each episode.")
    return stride


class FrameDataset(torch.utils.data.Dataset):
    """Every observation of every episode, for training V."""

    def __init__(self, episodes: Sequence[Episode]) -> None:
        self.obs = torch.from_numpy(np.concatenate([ep.obs for ep in episodes]))

    def __len__(self) -> int:
        return len(self.obs)

    def __getitem__(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"obs": self.obs[index]}


class PaddedWindows(torch.utils.data.Dataset):
    """Windows of ``seq_len`` steps over whole episodes, in one flat buffer per field with each episode
    followed by ``seq_len`` padded steps; short episodes are padded and masked.

    ``states`` name the per-state fields (``T + 1`` rows an episode: observations or latents) as
    ``name: (arrays, fill)``; arrays None fills the field with ``fill`` in the first field's shape.
    Item i is a window: each state field (L+1, ...), ``action`` (L, a), ``reward``, ``terminated`` and
    ``mask`` (L,). Windows start every ``stride`` steps (default ``seq_len // 2``).
    """

    def __init__(self, states: dict[str, tuple[Sequence[np.ndarray] | None, float]], episodes: Sequence[Episode],
                 action_space: spaces.Space, seq_len: int, stride: int | None = None) -> None:
        if not episodes:
            raise ConfigError("No episodes to train on.")
        stride = self.stride = window_stride(seq_len, stride)
        self.seq_len = seq_len
        lengths = [len(ep) for ep in episodes]
        total = sum(n + seq_len for n in lengths)
        first = next(iter(states.values()))[0][0]
        self.states: dict[str, torch.Tensor] = {}
        for name, (arrays, fill) in states.items():
            ref = first if arrays is None else arrays[0]
            self.states[name] = torch.full((total + 1, *ref.shape[1:]), fill, dtype=torch.from_numpy(ref[:1]).dtype)
        a_dim = encode_actions(episodes[0].actions[:1], action_space).shape[1]
        self.action, self.reward = torch.zeros(total, a_dim), torch.zeros(total)
        self.terminated, self.mask = torch.zeros(total), torch.zeros(total)
        starts, offset = [], 0
        for e, (ep, n) in enumerate(zip(episodes, lengths)):
            for name, (arrays, _) in states.items():
                if arrays is not None:
                    self.states[name][offset: offset + n + 1] = torch.from_numpy(arrays[e])
            self.action[offset: offset + n] = torch.from_numpy(encode_actions(ep.actions, action_space))
            self.reward[offset: offset + n] = torch.from_numpy(ep.rewards.astype(np.float32))
            self.terminated[offset: offset + n] = torch.from_numpy(ep.terminated.astype(np.float32))
            self.mask[offset: offset + n] = 1.0
            starts += [offset + t for t in range(0, max(n - seq_len, 0) + 1, stride)]
            offset += n + seq_len
        self.starts = torch.tensor(starts, dtype=torch.long)
        self._steps = torch.arange(seq_len)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        rows = self.starts[index][:, None] + self._steps  # (b, L)
        state_rows = torch.cat([rows, rows[:, -1:] + 1], dim=1)  # (b, L+1)
        return {**{name: buf[state_rows] for name, buf in self.states.items()},
                "action": self.action[rows], "reward": self.reward[rows],
                "terminated": self.terminated[rows], "mask": self.mask[rows]}


class SequenceDataset(PaddedWindows):
    """Windows of ``seq_len`` steps from latent episodes, for training M and the heads.

    Item i is (episode e, start t): ``mu``/``logvar`` (L+1, z) for z_t..z_{t+L}, ``action`` (L, a),
    ``reward``, ``terminated`` and ``mask`` (L,). Episodes shorter than L are padded and masked.
    Windows start every ``stride`` steps. Training uses :class:`LatentSequenceDataset` (no padding
    in memory); this one is its reference.
    """

    def __init__(self, mu: Sequence[np.ndarray], logvar: Sequence[np.ndarray] | None, episodes: Sequence[Episode],
                 action_space: spaces.Space, seq_len: int, stride: int | None = None) -> None:
        f32 = lambda xs: None if xs is None else [np.asarray(x, dtype=np.float32) for x in xs]  # noqa: E731
        states = {"mu": (f32(mu), 0.0), "logvar": (f32(logvar), -30.0)}  # padding: logvar -30, no sampling noise
        super().__init__(states, episodes, action_space, seq_len, stride)
        self.mu, self.logvar = self.states["mu"], self.states["logvar"]


class FrameReservoir(torch.utils.data.Dataset):
    """Frames for V read from shards on disk, at most ``max_frames`` of them in memory.

    When every frame fits, it holds them all in shard order: the same items as
    :class:`FrameDataset`. Otherwise epoch e (``set_epoch``, which the Trainer calls) holds whole
    episodes drawn at random from ``(seed, e)`` until ``max_frames`` frames: each epoch V sees a
    fresh random subset, and a resumed run reloads the same one. ``shuffle=False`` takes episodes
    in shard order (a fixed validation set).

    :param refs: the episodes (``path`` and ``len()`` steps each). :param max_frames: frames held.
    :param seed: which episodes each epoch draws. :param shuffle: draw at random or in order.
    """

    def __init__(self, refs: Sequence, max_frames: int, seed: int = 0, shuffle: bool = True) -> None:
        if max_frames < 1:
            raise ConfigError(f"max_frames (frames V holds in memory) must be >= 1, got {max_frames}.")
        self.paths = [Path(r.path) for r in refs]
        self.frames = np.array([len(r) + 1 for r in refs], dtype=np.int64)  # T steps, T + 1 observations
        self.size = int(min(self.frames.sum(), max_frames))
        self.fits = self.size == int(self.frames.sum())
        self.seed, self.shuffle = seed, shuffle
        self.obs: torch.Tensor | None = None
        self.epoch: int | None = None
        self.episodes_held = 0  # episodes whose frames are in memory now
        self.loads = 0  # how many times a buffer was filled

    def __len__(self) -> int:
        return self.size

    def set_epoch(self, epoch: int) -> None:
        """Hold epoch ``epoch``'s episodes (nothing to do when every frame fits or it is held)."""
        epoch = 0 if self.fits or not self.shuffle else epoch
        if epoch == self.epoch and self.obs is not None:
            return
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.paths)) if not self.fits and \
            self.shuffle else np.arange(len(self.paths))
        chosen = order[: int(np.searchsorted(np.cumsum(self.frames[order]), self.size)) + 1]
        self.obs, self.episodes_held = None, 0  # free the old buffer before filling the new one
        buf, filled = None, 0
        for i in chosen:
            obs = read_episode(self.paths[i]).obs
            if buf is None:
                buf = torch.empty((self.size, *obs.shape[1:]), dtype=torch.from_numpy(obs[:1]).dtype)
            n = min(len(obs), self.size - filled)
            buf[filled : filled + n] = torch.from_numpy(obs[:n])
            filled += n
        self.obs, self.epoch, self.episodes_held, self.loads = buf, epoch, len(chosen), self.loads + 1

    def __getitem__(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.obs is None:
            self.set_epoch(0)
        assert self.obs is not None
        return {"obs": self.obs[index]}


class LatentSequenceDataset(torch.utils.data.Dataset):
    """The items of :class:`SequenceDataset` from encoded episodes, without its padding.

    SequenceDataset follows each episode with ``seq_len`` padded steps (with the paper's 500-step
    windows and 200-step Doom episodes, padding would be 70 % of memory); here every field is one
    flat array of real steps, and a window past its episode's end is padded when it is gathered.
    :meth:`from_files` streams latent shards into flat files and memory-maps them, so M's data
    lives in the page cache, not in the process.

    :param episodes: objects with ``mu``, ``logvar`` (or None), ``actions``, ``rewards``,
        ``terminated`` and ``len()`` (:class:`~dreamgym.data.latents.LatentEpisode`).
    """

    FIELDS = ("mu", "logvar", "action", "reward", "terminated")

    def __init__(self, episodes: Sequence, action_space: spaces.Space, seq_len: int, stride: int | None = None) -> None:
        cat = lambda xs: np.concatenate(list(xs)).astype(np.float32, copy=False)  # noqa: E731
        has_logvar = episodes[0].logvar is not None
        arrays = {"mu": cat(ep.mu for ep in episodes),
                  "logvar": cat(ep.logvar for ep in episodes) if has_logvar else None,
                  "action": cat(encode_actions(ep.actions, action_space) for ep in episodes),
                  "reward": cat(ep.rewards for ep in episodes), "terminated": cat(ep.terminated for ep in episodes)}
        self._setup(arrays, np.array([len(ep) for ep in episodes], dtype=np.int64), seq_len, stride)
        self.firsts = np.stack([ep.mu[0] for ep in episodes])  # a copy

    @classmethod
    def from_files(cls, paths: Sequence[Path], action_space: spaces.Space, seq_len: int, cache: str | Path,
                   stride: int | None = None) -> "LatentSequenceDataset":
        """Stream latent shards (:func:`~dreamgym.data.latents.write_latents`) into raw float32 files
        under ``cache``, one episode at a time, and memory-map them read-only."""
        from dreamgym.data.latents import read_latents

        cache = Path(cache)
        cache.mkdir(parents=True, exist_ok=True)
        files = {k: open(cache / f"{k}.f32", "wb") for k in cls.FIELDS}
        lengths, widths, firsts = [], {}, []
        try:
            for path in paths:
                ep, _ = read_latents(path)
                parts = {"mu": ep.mu, "logvar": ep.logvar, "action": encode_actions(ep.actions, action_space),
                         "reward": ep.rewards, "terminated": ep.terminated}
                for k, v in parts.items():
                    if v is not None:
                        v = np.ascontiguousarray(v, dtype=np.float32)
                        widths[k] = v.shape[1:]
                        files[k].write(v.tobytes())
                lengths.append(len(ep))
                firsts.append(ep.mu[0].copy())  # a view would keep the whole episode's latents alive
        finally:
            for f in files.values():
                f.close()
        n = np.array(lengths, dtype=np.int64)
        rows = {"mu": int((n + 1).sum()), "logvar": int((n + 1).sum())}
        arrays = {k: (np.memmap(cache / f"{k}.f32", np.float32, "r", shape=(rows.get(k, int(n.sum())), *widths[k]))
                      if k in widths else None) for k in cls.FIELDS}
        self = cls.__new__(cls)
        self._setup(arrays, n, seq_len, stride)
        self.firsts = np.stack(firsts)  # gathered from the memory map, they would map most of its pages
        return self

    def _setup(self, arrays: dict, n: np.ndarray, seq_len: int, stride: int | None) -> None:
        stride = self.stride = window_stride(seq_len, stride)
        self.seq_len = seq_len
        self.mu, self.logvar, self.action = arrays["mu"], arrays["logvar"], arrays["action"]
        self.reward, self.terminated = arrays["reward"], arrays["terminated"]
        self.n = n
        self.z_off = np.concatenate([[0], np.cumsum(n + 1)[:-1]]).astype(np.int64)  # T + 1 latents each
        self.a_off = np.concatenate([[0], np.cumsum(n)[:-1]]).astype(np.int64)
        per_ep = [range(0, max(int(length) - seq_len, 0) + 1, stride) for length in n]
        self.ep = torch.as_tensor(np.repeat(np.arange(len(n)), [len(r) for r in per_ep]), dtype=torch.long)
        self.t0 = torch.as_tensor(np.concatenate([np.asarray(r, dtype=np.int64) for r in per_ep]), dtype=torch.long)
        self._steps = np.arange(seq_len + 1)

    def first_latents(self) -> np.ndarray:
        """Each episode's first latent mean (E, z): the start states' source."""
        return self.firsts

    def __len__(self) -> int:
        return len(self.ep)

    def __getitem__(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        e = self.ep[index].numpy()
        n = self.n[e][:, None]  # (b, 1)
        t = self.t0[index].numpy()[:, None] + self._steps  # (b, L+1): steps t0 .. t0 + L
        z_ok = t <= n  # latents z_0 .. z_T exist
        z_rows = self.z_off[e][:, None] + np.minimum(t, n)
        a_ok = (t < n)[:, :-1]  # (b, L): actions a_0 .. a_{T-1} exist
        a_rows = self.a_off[e][:, None] + np.minimum(t[:, :-1], n - 1)
        logvar = (self.logvar[z_rows] if self.logvar is not None
                  else np.full((*z_rows.shape, self.mu.shape[1]), -30.0, np.float32))  # state coders: no noise
        return {
            "mu": torch.from_numpy(np.where(z_ok[..., None], self.mu[z_rows], np.float32(0))),
            "logvar": torch.from_numpy(np.where(z_ok[..., None], logvar, np.float32(-30.0))),  # padding: no noise
            "action": torch.from_numpy(np.where(a_ok[..., None], self.action[a_rows], np.float32(0))),
            "reward": torch.from_numpy(np.where(a_ok, self.reward[a_rows], np.float32(0))),
            "terminated": torch.from_numpy(np.where(a_ok, self.terminated[a_rows], np.float32(0))),
            "mask": torch.from_numpy(a_ok.astype(np.float32)),
        }
