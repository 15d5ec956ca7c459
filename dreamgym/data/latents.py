"""Train from disk: a dataset as shard references, and V's latents stored once per V.

10,000 Doom episodes are about 2 M frames (25 GB as uint8), more than a workstation's memory, so
training never loads a dataset whole. :func:`scan_dataset` checks every shard and keeps only its
path and length; V trains on a bounded buffer of frames (:class:`~dreamgym.data.sequences.FrameReservoir`);
every episode is then encoded once into a latent shard ``<run>/latents/<V hash>/ep-NNNNNN.npz``
(``mu``, ``logvar``, ``actions``, ``rewards``, ``terminated``: 2 × z floats a step), and M trains
on the latents. Latent shards are written atomically and reused by a resumed run when V's weights
and the source shard are the same, so an interrupted encode continues where it stopped.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from dreamgym.data.episodes import DatasetMeta, combine_datasets, read_episode, validate
from dreamgym.errors import DatasetError
from dreamgym.utils import atomic_write

LATENTS_DIR = "latents"


@dataclass(frozen=True)
class ShardRef:
    """One episode on disk: its shard and its number of steps (``len(ref)``)."""

    path: Path
    steps: int

    def __len__(self) -> int:
        return self.steps


@dataclass
class LatentEpisode:
    """One encoded episode: ``mu``/``logvar`` (T+1, z) (``logvar`` None for state coders) and the
    stored ``actions`` (T, ...), ``rewards`` and ``terminated`` (T,)."""

    mu: np.ndarray
    logvar: np.ndarray | None
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray

    def __len__(self) -> int:
        return len(self.actions)


def shard_steps(path: str | Path) -> int:
    """An episode's number of steps, read from its small ``rewards`` array only."""
    with np.load(path, allow_pickle=False) as data:
        return len(data["rewards"])


def scan_dataset(*roots: str | Path) -> tuple[DatasetMeta, list[ShardRef]]:
    """What :func:`~dreamgym.data.episodes.load_dataset` checks (corrupt shards by name, mixable
    datasets, at least one episode), returning shard references instead of arrays: memory stays
    flat however many episodes there are."""
    def read(root: str | Path) -> tuple[DatasetMeta, list[ShardRef], dict[Path, str]]:
        meta, good, bad = validate(root)
        return meta, [ShardRef(p, shard_steps(p)) for p in good], bad

    return combine_datasets(roots, read)


# ----- the latent store ---------------------------------------------------------------------
def weights_hash(module: torch.nn.Module) -> str:
    """sha256 of a module's state (names, dtypes, shapes and bytes): which V made a latent."""
    h = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        t = value.detach().cpu().reshape(-1).contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(value.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def source_id(path: str | Path) -> str:
    """A cheap identity of a source shard (path, size, mtime): a rewritten shard is encoded again."""
    path = Path(path).resolve()
    st = path.stat()
    return f"{path}|{st.st_size}|{st.st_mtime_ns}"


def write_latents(path: str | Path, episode: LatentEpisode, source: str) -> None:
    """One latent shard, atomically (an uncompressed ``.npz``: latents do not compress)."""
    arrays = {"mu": episode.mu, "actions": episode.actions, "rewards": episode.rewards,
              "terminated": episode.terminated, "source": np.array(source)}
    if episode.logvar is not None:
        arrays["logvar"] = episode.logvar

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a path
            np.savez(f, **arrays)

    atomic_write(path, write)


def read_latents(path: str | Path) -> tuple[LatentEpisode, str]:
    """(episode, source id) of a latent shard; DatasetError names an unreadable one."""
    try:
        with np.load(path, allow_pickle=False) as d:
            episode = LatentEpisode(d["mu"], d["logvar"] if "logvar" in d.files else None, d["actions"],
                                    d["rewards"], d["terminated"])
            return episode, str(d["source"])
    except (OSError, ValueError, EOFError, KeyError) as e:
        raise DatasetError(f"Latent shard {path} is unreadable ({type(e).__name__}: {e}); "
                           "delete it to encode again.") from e


def _is_fresh(path: Path, source: str) -> bool:
    if not path.is_file():
        return False
    try:
        return read_latents(path)[1] == source
    except DatasetError:
        return False  # a damaged latent shard is simply encoded again


Encoder = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]


def encode_to_store(refs: Sequence[ShardRef], encode: Encoder, v_hash: str, run_dir: str | Path,
                    rank: int = 0, world: int = 1) -> list[Path]:
    """Encode every episode once into ``run_dir/latents/<v_hash[:16]>/ep-NNNNNN.npz`` (N: the
    episode's place in ``refs``) and return the latent shards' paths, in the order of ``refs``.

    Shards already there from the same V and the same source shard are kept (a resumed run);
    under DDP rank r encodes episodes r, r + world, ... Call :func:`drop_stale_latents` on rank 0
    once every rank is done.
    """
    store = Path(run_dir) / LATENTS_DIR / v_hash[:16]
    paths = [store / f"ep-{i:06d}.npz" for i in range(len(refs))]
    for i, (ref, path) in enumerate(zip(refs, paths)):
        if i % world != rank:
            continue
        source = source_id(ref.path)
        if _is_fresh(path, source):
            continue
        ep = read_episode(ref.path)
        mu, logvar = encode(ep.obs)
        write_latents(path, LatentEpisode(mu, logvar, ep.actions, ep.rewards, ep.terminated), source)
    return paths


def drop_stale_latents(run_dir: str | Path, v_hash: str) -> None:
    """Delete the latents of other V weights (an earlier V of this run): they are never read again."""
    root = Path(run_dir) / LATENTS_DIR
    for d in root.glob("*") if root.is_dir() else []:
        if d.is_dir() and d.name != v_hash[:16]:
            shutil.rmtree(d, ignore_errors=True)


def load_latents(paths: Sequence[Path]) -> list[LatentEpisode]:
    return [read_latents(p)[0] for p in paths]
