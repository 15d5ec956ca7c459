"""Episode datasets on disk: one ``.npz`` shard per episode plus ``dataset.json``.

A shard holds ``obs`` (T+1, ...) — 64×64×3 uint8 frames or float32 states, the observation after
the last step included — ``actions`` (T, ...), ``rewards`` (T,), and ``terminated`` / ``truncated``
(T,) kept apart. Every file is written to a temporary name and renamed, so a crash or a full disk
never leaves a half-written shard, and shards are read with ``allow_pickle=False``.

Only ``ep-NNNNNN.npz`` (as :func:`shard_name` writes) are shards. Any other ``.npz`` in a dataset
directory is refused by :func:`validate` and :func:`load_dataset`, naming it, rather than ignored
or read: a ``ep-000001 (copy).npz`` would otherwise be trained on twice, and only its owner knows
whether it belongs. ``collect`` ignores such files (it counts and writes only shards).
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import re
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
from gymnasium import spaces

from dreamgym.checkpoint import check_format_version, parse_dataclass, read_json_object
from dreamgym.data.frames import crop_is_valid
from dreamgym.errors import ConfigError, DatasetError
from dreamgym.spaces import MAX_SPACE_SIZE, same_space, space_from_dict
from dreamgym.utils import atomic_write, atomic_write_text

T = TypeVar("T")

DATASET_FORMAT = 1
META_NAME = "dataset.json"
SHARD_GLOB = "ep-*.npz"  # candidates; only names shard_name() writes count (see is_shard_name)
_SHARD_RE = re.compile(r"ep-(\d{6,})\.npz")
KEYS = ("obs", "actions", "rewards", "terminated", "truncated")
# deflate inflates at most ~1032x: a member claiming more is a zip bomb or a lie, refused before reading
_MAX_INFLATION = 1100


@dataclass
class DatasetMeta:
    """What ``dataset.json`` holds: where the data came from and how to read it.

    :param env_id: / :param env_kwargs: the real env and its kwargs.
    :param obs_kind: ``"frames"`` (64×64×3 uint8) or ``"state"`` (float32 vectors).
    :param obs_shape: shape of one stored observation.
    :param action_space: / :param observation_space: the real env's spaces (``space_to_dict``).
    :param frame_key: / :param frame_crop: how frames were taken from the raw observation.
    :param policy: the collecting policy and its settings.
    :param seed: base seed; episode i was reset with ``seed + i``.
    :param versions: package versions at collection time.
    :param source: ``"collect"`` or ``"minari:<dataset id>"``.
    """

    env_id: str
    obs_kind: str
    obs_shape: list[int]
    action_space: dict[str, Any]
    observation_space: dict[str, Any]
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    frame_key: str | None = None
    frame_crop: list[int] | None = None
    policy: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    versions: dict[str, str] = field(default_factory=dict)
    source: str = "collect"
    format_version: int = DATASET_FORMAT

    def compatible(self, other: "DatasetMeta") -> list[str]:
        """Fields that differ in a way that makes two datasets unmixable (empty when they mix)."""
        keys = ("env_id", "env_kwargs", "obs_kind", "obs_shape", "frame_key", "frame_crop")
        differ = [k for k in keys if getattr(self, k) != getattr(other, k)]
        return differ + ([] if same_space(self.action_space, other.action_space) else ["action_space"])


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("dreamgym", "gymnasium", "numpy", "torch", "vizdoom", "minari"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def write_meta(root: str | Path, meta: DatasetMeta) -> None:
    atomic_write_text(Path(root) / META_NAME, json.dumps(asdict(meta), sort_keys=True, indent=2) + "\n")


def read_meta(root: str | Path) -> DatasetMeta:
    """Read ``dataset.json`` strictly; DatasetError names the problem."""
    path = Path(root) / META_NAME
    if not path.is_file():
        raise DatasetError(
            f"No {META_NAME} in {root}: expected a dataset written by `dreamgym collect` (or a Minari import). "
            "Check the path, or collect one: dreamgym collect ENV_ID --out DIR."
        )
    d = read_json_object(path, DatasetError)  # UTF-8, bounded size and nesting, an object
    if "format_version" in d:
        check_format_version(d, DATASET_FORMAT, str(path), DatasetError)
    meta = parse_dataclass(DatasetMeta, d, str(path), DatasetError)
    check_meta(meta, path)
    return meta


def check_meta(meta: DatasetMeta, path: str | Path = META_NAME) -> None:
    """Raise DatasetError unless ``meta``'s values can describe a dataset dreamgym trains on."""
    shape = meta.obs_shape
    if meta.obs_kind == "frames":
        ok = len(shape) == 3 and shape[0] == shape[1] and shape[2] == 3 and 1 <= shape[0] <= 4096
        want = "[S, S, 3] (square RGB frames, [64, 64, 3] for dreamgym's models)"
    elif meta.obs_kind == "state":
        ok, want = len(shape) == 1 and 1 <= shape[0] <= MAX_SPACE_SIZE, "[N] (a flat state vector)"
    else:
        raise DatasetError(f"{path}['obs_kind'] must be 'frames' or 'state', got {meta.obs_kind!r}. Fix dataset.json.")
    if not ok:
        raise DatasetError(f"{path}['obs_shape'] must be {want} for obs_kind {meta.obs_kind!r}, got {shape}. "
                           "Fix dataset.json.")
    try:
        action_space = space_from_dict(meta.action_space, f"{path}['action_space']")
        space_from_dict(meta.observation_space, f"{path}['observation_space']")
    except ConfigError as e:
        raise DatasetError(str(e)) from e
    if not isinstance(action_space, (spaces.Box, spaces.Discrete)):
        raise DatasetError(f"{path}['action_space'] must be a Box or a Discrete space, got {action_space}.")
    crop = meta.frame_crop
    if not crop_is_valid(crop):
        raise DatasetError(f"{path}['frame_crop'] must be [top, bottom, left, right] with 0 <= top < bottom and "
                           f"0 <= left < right, or null, got {crop}. Fix dataset.json.")


@dataclass
class Episode:
    """One episode's arrays; ``len(episode)`` is its number of steps T."""

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray

    def __len__(self) -> int:
        return len(self.actions)

    def check(self, name: str = "episode") -> None:
        """Raise DatasetError unless the arrays are numeric, agree in length, are finite, and flags are booleans."""
        for key in KEYS:
            arr = getattr(self, key)
            if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf" or arr.ndim == 0:
                got = f"dtype {arr.dtype}, shape {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
                raise DatasetError(f"{name}: {key} must be a numeric array with a time axis, got {got}.")
        t = len(self.actions)
        if t == 0:
            raise DatasetError(f"{name} has no steps.")
        if len(self.obs) != t + 1:
            raise DatasetError(f"{name}: expected {t + 1} observations for {t} actions, got {len(self.obs)}.")
        for key in ("rewards", "terminated", "truncated"):
            if getattr(self, key).shape != (t,):
                raise DatasetError(f"{name}: expected {key} of shape ({t},), got {getattr(self, key).shape}.")
        for key in ("obs", "actions", "rewards"):
            arr = getattr(self, key)
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise DatasetError(f"{name}: {key} holds NaN or inf.")
        for key in ("terminated", "truncated"):
            arr = getattr(self, key)
            if arr.dtype.kind != "b" and not (arr.dtype.kind in "iu" and np.isin(arr, (0, 1)).all()):
                raise DatasetError(f"{name}: {key} must hold booleans (or 0/1 integers), got dtype {arr.dtype} with "
                                   f"values {np.unique(arr)[:5].tolist()}. Re-collect the episode.")

    def check_against(self, meta: DatasetMeta, action_space: spaces.Space, name: str = "episode") -> None:
        """Raise DatasetError unless observations and actions are what ``meta`` says train will get."""
        obs, actions = self.obs, self.actions
        if list(obs.shape[1:]) != list(meta.obs_shape):
            raise DatasetError(f"{name}: obs of shape {obs.shape[1:]} per step; dataset.json says {meta.obs_shape}.")
        if meta.obs_kind == "frames" and obs.dtype != np.uint8:
            raise DatasetError(f"{name}: obs_kind 'frames' needs uint8 frames (0-255), got dtype {obs.dtype}. "
                               "Fix obs_kind in dataset.json, or re-collect the episode.")
        if meta.obs_kind == "state" and obs.dtype.kind == "b":
            raise DatasetError(f"{name}: obs_kind 'state' needs numeric state vectors, got dtype {obs.dtype}.")
        if isinstance(action_space, spaces.Discrete):
            lo, hi = int(action_space.start), int(action_space.start + action_space.n - 1)
            if actions.shape != (len(self),) or actions.dtype.kind not in "iu":
                raise DatasetError(f"{name}: a Discrete action space needs integer actions of shape ({len(self)},), "
                                   f"got dtype {actions.dtype}, shape {actions.shape}. Re-collect the episode.")
            if actions.size and (actions.min() < lo or actions.max() > hi):
                raise DatasetError(f"{name}: actions must lie in [{lo}, {hi}] for {action_space}, got values in "
                                   f"[{actions.min()}, {actions.max()}].")
        elif actions.shape != (len(self), *action_space.shape) or actions.dtype.kind not in "iuf":
            raise DatasetError(f"{name}: actions must be numbers of shape ({len(self)}, *{action_space.shape}) for "
                               f"{action_space}, got dtype {actions.dtype}, shape {actions.shape}. "
                               "Re-collect the episode.")


def shard_name(index: int) -> str:
    return f"ep-{index:06d}.npz"


def write_episode(path: str | Path, episode: Episode) -> None:
    """Write one shard atomically: an ``.npz`` (zip) deflated at level 1.

    Level 1 is 3-4x faster than numpy's default (level 6) for ~40% more bytes; collection is
    CPU-bound, so the cheaper write keeps workers stepping envs.
    """
    episode.check(str(path))

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for key in KEYS:
                with archive.open(f"{key}.npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.ascontiguousarray(getattr(episode, key)), allow_pickle=False)

    atomic_write(path, write)


def read_episode(path: str | Path) -> Episode:
    """Read and check one shard; a truncated, corrupt or foreign file raises DatasetError naming it.

    Each array's header is checked before it is read: numeric dtypes only, and no more bytes than
    the zip member holds (so a hostile shard cannot make numpy allocate beyond its inflated size,
    itself at most ~1100x the file's).
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            missing = [k for k in KEYS if f"{k}.npy" not in archive.namelist()]
            if missing:
                raise DatasetError(f"Shard {path} lacks arrays {missing}; it was not written by dreamgym.")
            episode = Episode(**{k: _read_member(archive, k, path) for k in KEYS})
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, zlib.error, RuntimeError,
            NotImplementedError) as e:  # RuntimeError: an encrypted member; NotImplementedError: an unknown codec
        raise DatasetError(f"Shard {path} is corrupt or truncated, or not an .npz ({type(e).__name__}: {e}); "
                           "delete it and collect again.") from e
    episode.check(f"Shard {path}")
    return episode


def _read_member(archive: zipfile.ZipFile, key: str, path: Path) -> np.ndarray:
    """One ``key.npy`` of a shard: header checked (numeric dtype, size within the member) before reading."""
    info = archive.getinfo(f"{key}.npy")
    if info.file_size > _MAX_INFLATION * max(info.compress_size, 1) + 4096:
        raise DatasetError(f"Shard {path}: {key}.npy claims {info.file_size} bytes from {info.compress_size} "
                           "compressed; no .npz written by numpy inflates so much. Delete it and collect again.")
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise DatasetError(f"Shard {path}: {key}.npy has .npy format {version}; "
                               "expected 1.0 or 2.0 as numpy writes.")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
    if dtype.hasobject or dtype.kind not in "biuf" or dtype.subdtype is not None:
        raise DatasetError(f"Shard {path}: {key} has dtype {dtype}; expected numbers (bool, int, uint or float).")
    if math.prod(shape) * dtype.itemsize > info.file_size:
        raise DatasetError(f"Shard {path}: {key}.npy declares shape {shape} of {dtype} but holds only "
                           f"{info.file_size} bytes; it is truncated or forged. Delete it and collect again.")
    with archive.open(info) as f:
        arr = np.lib.format.read_array(f, allow_pickle=False)
    return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))


def is_shard_name(name: str) -> bool:
    """Whether ``name`` is one :func:`shard_name` writes: ``ep-000042.npz``, not ``ep-42.npz`` or ``ep-abc.npz``."""
    m = _SHARD_RE.fullmatch(name)
    return m is not None and shard_name(int(m.group(1))) == name


def shard_paths(root: str | Path) -> list[Path]:
    """The dataset's shards: files named ``ep-NNNNNN.npz``, sorted; other names are never read as data."""
    return sorted(p for p in Path(root).glob(SHARD_GLOB) if is_shard_name(p.name))


def stray_npz(root: str | Path) -> list[Path]:
    """``.npz`` files in ``root`` that are not shards (``ep-000001 (copy).npz``, ``ep-abc.npz``)."""
    return sorted(p for p in Path(root).glob("*.npz") if not is_shard_name(p.name))


def validate(root: str | Path) -> tuple[DatasetMeta, list[Path], dict[Path, str]]:
    """Check every shard: (meta, good shards, {bad shard: reason}) without stopping at the first.

    A ``.npz`` not named ``ep-NNNNNN.npz`` is reported bad too: it may be a copy of a shard (trained
    on twice) or data meant for another dataset, and only the user can tell which.
    """
    meta, good, bad = _scan(root, keep=False)
    return meta, list(good), bad


def _scan(root: str | Path, keep: bool) -> tuple[DatasetMeta, dict[Path, Episode | None], dict[Path, str]]:
    meta = read_meta(root)
    action_space = space_from_dict(meta.action_space)
    good: dict[Path, Episode | None] = {}
    bad = {p: f"not a shard name: expected ep-NNNNNN.npz (6 digits, as collect writes); rename the file if it is "
              f"an episode of this dataset, or move it out of {root}" for p in stray_npz(root)}
    for path in shard_paths(root):
        try:
            ep = read_episode(path)
            ep.check_against(meta, action_space, f"Shard {path.name}")
            good[path] = ep if keep else None
        except DatasetError as e:
            bad[path] = str(e)
    return meta, good, dict(sorted(bad.items()))


def load_dataset(*roots: str | Path) -> tuple[DatasetMeta, list[Episode]]:
    """Read every shard of one or more compatible datasets; DatasetError lists corrupt shards by name."""
    def read(root: str | Path) -> tuple[DatasetMeta, list[Episode], dict[Path, str]]:
        meta, good, bad = _scan(root, keep=True)
        return meta, [ep for ep in good.values() if ep is not None], bad

    return combine_datasets(roots, read)


def combine_datasets(roots: Sequence[str | Path], read: Callable[[str | Path], tuple[DatasetMeta, list[T], dict[Path, str]]]
                     ) -> tuple[DatasetMeta, list[T]]:
    """One or more compatible datasets as one: ``read(root) -> (meta, items, bad shards)``; corrupt shards,
    datasets that cannot be mixed and an empty result raise DatasetError naming them."""
    if not roots:
        raise DatasetError("No dataset given: expected at least one dataset directory.")
    meta0: DatasetMeta | None = None
    items: list[T] = []
    policies: list[dict[str, Any]] = []
    for root in roots:
        meta, good, bad = read(root)
        if bad:
            lines = "\n".join(f"  {p.name}: {why}" for p, why in bad.items())
            raise DatasetError(f"{len(bad)} corrupt shard(s) in {root}:\n{lines}\nDelete them and re-run `dreamgym collect` to refill.")
        if meta0 is not None and meta.compatible(meta0):
            raise DatasetError(f"Datasets {roots[0]} and {root} differ in {meta.compatible(meta0)}; they cannot be mixed.")
        meta0 = meta0 or meta
        policies.append(meta.policy)
        items += good
    if not items:
        raise DatasetError(f"Dataset {', '.join(map(str, roots))} holds no episodes; collect some first.")
    assert meta0 is not None
    names = list(dict.fromkeys(str(p.get("name")) for p in policies))
    if len(names) > 1:  # Dyna rounds mix policies: the model card reports e.g. "brownian+agent"
        meta0 = dataclasses.replace(meta0, policy={"name": "+".join(names), "datasets": policies})
    return meta0, items
