"""Import a local `Minari <https://minari.farama.org>`_ dataset as a dreamgym episode dataset.

``import_minari("D4RL/door/human-v2", "data/door")`` reads every episode of a Minari dataset that is
already on disk (``minari download ID`` fetches one; dreamgym never downloads) and writes one
``ep-NNNNNN.npz`` shard per episode plus ``dataset.json`` (see :mod:`dreamgym.data.episodes`).
Minari is an optional dependency: ``pip install "dreamgym[minari]"`` (or ``pip install minari``;
reading its default HDF5 format also needs ``h5py`` and ``pillow``, creating datasets with
``minari.DataCollector`` needs ``jax``: ``pip install "minari[hdf5,create]" pillow``).

Observations become ``"state"`` (a 1-D Box, stored float32) or ``"frames"`` (an RGB ``(H, W, 3)``
uint8 Box, alone or as the one image entry of a Dict space, resized to 64² uint8 (what every model trains on) with
:func:`dreamgym.data.frames.preprocess_frames`, after the registered crop when the env is a
registered dream's real env). Box actions are stored float32, Discrete actions int64.

Image storage in Minari is lossy by default (checked in minari 0.5.4's source):

* Minari has three storage formats, ``"hdf5"`` (the default: ``data_format: str = "hdf5"`` in
  ``MinariStorage.new``, ``minari/dataset/minari_storage.py:124``), ``"arrow"`` and ``"parquet"``
  (``minari/dataset/_storages/__init__.py``).
* All three JPEG-encode image observations and actions by default: ``jpeg_encoding: bool = True``
  (``minari_storage.py:126``, docstring at :136: "JPEG-encoded on disk (lossy, smaller)"). HDF5
  encodes each frame with ``Image.fromarray(frame).save(buffer, format="JPEG")`` (Pillow's default
  quality 75) in ``encode_frame`` (``minari/dataset/_storages/hdf5_storage.py:279-281``, used at
  :252) and decodes at :114-126; Arrow/Parquet do the same in ``_encode_space``
  (``minari/dataset/_storages/arrow_storage.py:215-222``) and ``_decode_space`` (:258).
* "Image" means ``is_image_space`` (``minari_storage.py:410-419``): a uint8 Box of 2 or 3 dims,
  at least 32×32, with bounds exactly 0 and 255. Other observations are stored exactly.
* Collection is lossless with ``minari.DataCollector(env, ..., jpeg_encoding=False)``
  (``minari/data_collector/data_collector.py:75``, docs at :87) or
  ``minari.create_dataset_from_buffers(..., jpeg_encoding=False)`` (``minari/utils.py:351``); the
  choice is saved as ``"jpeg_encoding"`` in the dataset's metadata, and a dataset whose metadata
  lacks the key is read as JPEG (``metadata.get("jpeg_encoding", True)``, ``minari_storage.py:114``).

A lossy dataset imports all the same (the frames are what Minari decodes, JPEG artefacts included,
which the downscale to 64×64 mostly smooths away); whether it was lossy is recorded in
``dataset.json`` under ``policy["minari_jpeg_encoding"]``.

The env's kwargs come from the Minari dataset's env spec; its time limit and any
``additional_wrappers`` are recorded under ``policy`` too, since ``env_kwargs`` holds only what
``gym.make(env_id, **env_kwargs)`` takes.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from gymnasium import spaces
from gymnasium.error import DependencyNotInstalled

from dreamgym.data.episodes import (
    META_NAME,
    SHARD_GLOB,
    DatasetMeta,
    Episode,
    package_versions,
    shard_name,
    write_episode,
    write_meta,
)
from dreamgym.data.frames import FRAME_SIZE, preprocess_frames
from dreamgym.errors import ConfigError, DatasetError
from dreamgym.registry import dream_spec_for_env
from dreamgym.spaces import space_to_dict

__all__ = ["import_minari"]

PIP_HINT = 'pip install "dreamgym[minari]"  (or: pip install minari)'
READ_PIP_HINT = 'pip install "dreamgym[minari]"  (or: pip install "minari[hdf5]" pillow)'
IMAGE_KEYS = ("screen", "image", "pixels", "rgb", "frame", "observation")  # preferred when a Dict has several images
CHUNK = 256  # frames resized per preprocess_frames call, to bound memory on long episodes


def import_minari(dataset_id: str, out: str | Path, *, overwrite: bool = False) -> Path:
    """Convert a local Minari dataset into a dreamgym episode dataset at ``out``; return ``out``.

    :param dataset_id: a Minari dataset id already on disk (``minari list local``); a ``"minari:"``
        prefix is allowed. Nothing is downloaded: run ``minari download ID`` first.
    :param out: the dataset directory to write: new, empty, or (with ``overwrite``) a dreamgym dataset.
    :param overwrite: replace the dataset already at ``out``.
    :raises DependencyNotInstalled: Minari (or the package its storage format needs) is missing.
    :raises DatasetError: the dataset is not local, has no env spec, has spaces dreamgym cannot
        store, holds a bad episode, or ``out`` is not a place to write a dataset.

    Shards are written first and ``dataset.json`` last, each file atomically, so an interrupted
    import leaves no ``dataset.json`` (an invalid dataset, never a silently partial one); running
    it again finishes the job. Overwriting removes the old ``dataset.json`` before the first shard.
    """
    frame_size = FRAME_SIZE  # the size every dreamgym model trains on (collect stores the same)
    dataset_id = str(dataset_id).removeprefix("minari:")
    out = Path(out)
    _check_out(out, overwrite)
    dataset = _load(dataset_id)
    env_spec = _env_spec(dataset_id, dataset)
    obs_space = dataset.observation_space
    obs_kind, frame_key = _obs_kind(dataset_id, obs_space)
    action_dtype = _action_dtype(dataset_id, dataset.action_space)
    crop = _frame_crop(env_spec.id, obs_space, frame_key) if obs_kind == "frames" else None
    meta = _dataset_meta(dataset_id, dataset, env_spec, obs_kind, frame_key, crop, frame_size)
    episodes = _episodes(dataset, dataset_id, obs_kind, frame_key, crop, frame_size, action_dtype)
    _write_dataset(out, meta, episodes, dataset_id)
    return out


def _env_spec(dataset_id: str, dataset: Any) -> Any:
    """The env spec the episodes came from (dataset.json's env_id); refuses a dataset without one or empty."""
    if dataset.env_spec is None:
        raise DatasetError(
            f"Minari dataset {dataset_id!r} has no env spec: dreamgym needs the id of the real env the episodes "
            "came from (dataset.json's env_id, which the dream's real twin is made from). Expected a dataset "
            "created with an env (minari.DataCollector(env) or create_dataset_from_buffers(..., env=ENV_ID)); "
            "got one created with only observation and action spaces. Recreate it with env=..."
        )
    if len(dataset) == 0:
        raise DatasetError(f"Minari dataset {dataset_id!r} holds no episodes; expected at least one.")
    return dataset.env_spec


def _dataset_meta(dataset_id: str, dataset: Any, env_spec: Any, obs_kind: str, frame_key: str | None,
                  crop: tuple[int, int, int, int] | None, frame_size: int) -> DatasetMeta:
    """dataset.json for the converted dataset; ``policy`` records where it came from."""
    storage_meta: dict[str, Any] = dict(getattr(dataset.storage, "metadata", {}) or {})
    obs_space, act_space = dataset.observation_space, dataset.action_space
    obs_shape = [frame_size, frame_size, 3] if obs_kind == "frames" else [int(obs_space.shape[0])]
    frame_space = (obs_space[frame_key] if frame_key is not None else obs_space) if obs_kind == "frames" else None
    jpeg = bool(storage_meta.get("jpeg_encoding", getattr(dataset.storage, "jpeg_encoding", True)))
    return DatasetMeta(
        env_id=env_spec.id,
        obs_kind=obs_kind,
        obs_shape=obs_shape,
        action_space=_space_dict(dataset_id, "action", act_space),
        observation_space=_observation_space_dict(dataset_id, obs_space, frame_key),
        env_kwargs=_json_kwargs(dataset_id, env_spec.kwargs),
        frame_key=frame_key,
        frame_crop=list(crop) if crop is not None else None,
        policy={
            "name": storage_meta.get("algorithm_name") or "unknown",
            "minari_dataset": dataset_id,
            "minari_version": str(storage_meta.get("minari_version", "")),
            "minari_data_format": str(storage_meta.get("data_format", "")),
            "minari_jpeg_encoding": bool(jpeg and frame_space is not None and _is_minari_image(frame_space)),
            "max_episode_steps": env_spec.max_episode_steps,
            "additional_wrappers": [w.name for w in getattr(env_spec, "additional_wrappers", ())],
        },
        seed=0,
        versions=package_versions(),
        source=f"minari:{dataset_id}",
    )


def _write_dataset(out: Path, meta: DatasetMeta, episodes: Iterable[Episode], dataset_id: str) -> None:
    """Shards first, then dataset.json (see :func:`import_minari`); drops shards of an older, longer dataset."""
    out.mkdir(parents=True, exist_ok=True)
    (out / META_NAME).unlink(missing_ok=True)  # the old dataset is invalid from here until the new meta exists
    count = 0
    for episode in episodes:
        write_episode(out / shard_name(count), episode)
        count += 1
    if count == 0:  # only if minari's episode count and its episodes disagree
        raise DatasetError(f"Minari dataset {dataset_id!r} holds no episodes; expected at least one.")
    keep = {shard_name(i) for i in range(count)}
    for stale in out.glob(SHARD_GLOB):  # shards of an older, longer dataset or an interrupted import
        if stale.name not in keep:
            stale.unlink()
    write_meta(out, meta)


def _minari() -> Any:
    try:
        import minari
    except ImportError as e:
        raise DependencyNotInstalled(f"Importing Minari datasets needs minari: {PIP_HINT}") from e
    return minari


def _load(dataset_id: str) -> Any:
    """``minari.load_dataset(dataset_id)`` without downloading, with dreamgym's errors."""
    minari = _minari()
    root = os.environ.get("MINARI_DATASETS_PATH") or os.path.join("~", ".minari", "datasets")
    try:
        return minari.load_dataset(dataset_id, download=False)
    except FileNotFoundError as e:
        raise DatasetError(
            f"Minari dataset {dataset_id!r} is not available locally (looked in {root}, set by MINARI_DATASETS_PATH); "
            f"local datasets: {_local_ids(minari)}. Minari datasets must be downloaded first: "
            f"minari download {dataset_id}  (dreamgym never downloads)."
        ) from e
    except ImportError as e:
        raise DependencyNotInstalled(
            f"Reading Minari dataset {dataset_id!r} needs {e.name or 'a missing package'} ({e}): {READ_PIP_HINT}"
        ) from e
    except (ValueError, KeyError, OSError) as e:
        raise DatasetError(
            f"Could not read Minari dataset {dataset_id!r} in {root} ({type(e).__name__}: {e}); expected a dataset "
            "this minari version supports. Check `minari show ID`, or download it again: minari download ID."
        ) from e


def _local_ids(minari: Any) -> list[str] | str:
    try:
        ids = sorted(minari.list_local_datasets())
    except Exception:  # only decorates an error message: never hide the real one behind this
        return "unknown"
    return ids[:10] + ["..."] if len(ids) > 10 else ids


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse to write over a dataset (unless ``overwrite``) or into a directory of other files."""
    if out.exists() and not out.is_dir():
        raise DatasetError(f"Expected a directory for the dataset, got the file {out}; pick another path.")
    if not out.is_dir():
        return
    if (out / META_NAME).exists() and not overwrite:
        raise DatasetError(
            f"Expected an empty or new directory, got {out}, which already holds a dataset ({META_NAME}); "
            "pass overwrite=True to replace it, or pick another path."
        )
    ours = {p.name for p in out.glob(SHARD_GLOB)} | {META_NAME}
    foreign = sorted(p.name for p in out.iterdir() if p.name not in ours and not p.name.endswith(".tmp"))
    if foreign and not (out / META_NAME).exists():
        shown = foreign[:5] + (["..."] if len(foreign) > 5 else [])
        raise DatasetError(
            f"Expected an empty or new directory, got {out}, which holds files that are not a dreamgym dataset "
            f"({shown}); pick an empty or new directory."
        )


def _is_rgb(space: spaces.Space) -> bool:
    return isinstance(space, spaces.Box) and len(space.shape) == 3 and space.shape[-1] == 3 and space.dtype == np.uint8


def _is_minari_image(space: spaces.Space) -> bool:
    """Whether Minari JPEG-encodes this space when ``jpeg_encoding`` is on."""
    try:
        from minari.dataset.minari_storage import is_image_space
    except ImportError:  # an older minari without JPEG support
        return False
    return bool(is_image_space(space))


def _obs_kind(dataset_id: str, space: spaces.Space) -> tuple[str, str | None]:
    """(``"state"`` or ``"frames"``, the Dict key of the image or None)."""
    if isinstance(space, spaces.Box) and len(space.shape) == 1:
        return "state", None
    if _is_rgb(space):
        return "frames", None
    if isinstance(space, spaces.Dict):
        images = [k for k, sub in space.spaces.items() if _is_rgb(sub)]
        if len(images) == 1:
            return "frames", images[0]
        preferred = [k for k in IMAGE_KEYS if k in images]
        if preferred:
            return "frames", preferred[0]
        if images:
            raise DatasetError(
                f"Minari dataset {dataset_id!r} has a Dict observation space with several RGB images {images}; "
                f"expected one (or one named one of {list(IMAGE_KEYS)}). Re-collect it with a single image entry."
            )
    raise DatasetError(
        f"Minari dataset {dataset_id!r} has observation space {space!r}, which dreamgym cannot store. Expected a "
        "1-D Box (state vectors), an RGB image Box of shape (H, W, 3) and dtype uint8, or a Dict holding one such "
        "image (e.g. 'screen' / 'image' / 'pixels'). Re-collect it with a wrapper that gives one of those "
        "(e.g. gymnasium.wrappers.FlattenObservation or AddRenderObservation)."
    )


def _action_dtype(dataset_id: str, space: spaces.Space) -> type:
    if isinstance(space, spaces.Box):
        return np.float32
    if isinstance(space, spaces.Discrete):
        return np.int64
    raise DatasetError(
        f"Minari dataset {dataset_id!r} has action space {space!r}; dreamgym supports Box and Discrete actions. "
        "Re-collect it with a wrapper that gives one of those."
    )


def _space_dict(dataset_id: str, what: str, space: spaces.Space) -> dict[str, Any]:
    try:
        return space_to_dict(space)
    except ConfigError as e:
        raise DatasetError(f"Minari dataset {dataset_id!r}: its {what} space cannot be stored: {e}") from e


def _observation_space_dict(dataset_id: str, space: spaces.Space, frame_key: str | None) -> dict[str, Any]:
    """The observation space as ``space_to_dict`` writes it; a Dict with entries it cannot write keeps the image."""
    if frame_key is not None:
        try:
            return space_to_dict(space)
        except ConfigError:
            return {"type": "Dict", "spaces": {frame_key: space_to_dict(space[frame_key])}}
    return _space_dict(dataset_id, "observation", space)


def _json_kwargs(dataset_id: str, kwargs: dict[str, Any] | None) -> dict[str, Any]:
    kwargs = dict(kwargs or {})
    try:
        return json.loads(json.dumps(kwargs))
    except (TypeError, ValueError) as e:
        raise DatasetError(
            f"Minari dataset {dataset_id!r}: its env kwargs {kwargs!r} are not JSON ({e}); expected kwargs that "
            "dataset.json can hold."
        ) from e


def _frame_crop(env_id: str, space: spaces.Space, frame_key: str | None) -> tuple[int, int, int, int] | None:
    """The registered dream's crop, when the dataset's frames have the real env's raw shape."""
    spec = dream_spec_for_env(env_id)
    if spec is None or spec.frame_crop is None:
        return None
    shape = list((space[frame_key] if frame_key is not None else space).shape)
    raw = spec.observation_space.get("shape") if spec.observation_space.get("type") == "Box" else None
    if raw is not None and list(raw) != shape:
        warnings.warn(
            f"{env_id}'s frames are {tuple(raw)} but this dataset's are {tuple(shape)} (collected through a wrapper?), "
            f"so the registered crop {spec.frame_crop} is not applied; the frames are resized whole.",
            stacklevel=3,
        )
        return None
    return spec.frame_crop


def _frames(raw: np.ndarray, crop: tuple[int, int, int, int] | None, size: int) -> np.ndarray:
    """``preprocess_frames`` in chunks (same result, bounded memory)."""
    parts = [preprocess_frames(raw[i : i + CHUNK], crop, size).numpy() for i in range(0, len(raw), CHUNK)]
    return np.concatenate(parts) if parts else np.zeros((0, size, size, 3), np.uint8)


def _episodes(
    dataset: Any,
    dataset_id: str,
    obs_kind: str,
    frame_key: str | None,
    crop: tuple[int, int, int, int] | None,
    size: int,
    action_dtype: type,
) -> Iterator[Episode]:
    """Each Minari episode as a checked dreamgym Episode, one at a time."""
    for ep in dataset.iterate_episodes():
        name = f"Minari dataset {dataset_id!r} episode {ep.id}"
        obs = ep.observations
        if frame_key is not None:
            if not isinstance(obs, dict) or frame_key not in obs:
                raise DatasetError(f"{name}: expected observations with key {frame_key!r}, got {type(obs).__name__}.")
            obs = obs[frame_key]
        obs = np.asarray(obs)
        try:
            obs = _frames(obs, crop, size) if obs_kind == "frames" else obs.astype(np.float32)
        except ConfigError as e:
            raise DatasetError(f"{name}: {e}") from e
        episode = Episode(
            obs=obs,
            actions=np.asarray(ep.actions).astype(action_dtype),
            rewards=np.asarray(ep.rewards).astype(np.float32),
            terminated=np.asarray(ep.terminations).astype(bool),
            truncated=np.asarray(ep.truncations).astype(bool),
        )
        episode.check(name)
        yield episode
