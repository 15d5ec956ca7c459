"""Hostile or careless dataset files: every one is refused with a DatasetError naming the file and field."""

import io
import json
import zipfile

import numpy as np
import pytest

from dreamgym.data.collect import CollectConfig, collect
from dreamgym.data.episodes import (
    DatasetMeta,
    Episode,
    is_shard_name,
    load_dataset,
    read_episode,
    read_meta,
    shard_name,
    shard_paths,
    validate,
    write_episode,
    write_meta,
)
from dreamgym.errors import DatasetError

BOX = {"type": "Box", "shape": [1], "dtype": "float32", "low": -2.0, "high": 2.0}
DISCRETE = {"type": "Discrete", "n": 3, "start": 0}
STATE = {"type": "Box", "shape": [3], "dtype": "float32", "low": -8.0, "high": 8.0}


def state_meta(action_space: dict = BOX, **kw) -> DatasetMeta:
    return DatasetMeta(env_id="Pendulum-v1", obs_kind="state", obs_shape=[3], action_space=action_space,
                       observation_space=STATE, **kw)


def episode(t: int = 5, action_shape: tuple = (1,), **arrays) -> dict:
    base = dict(obs=np.zeros((t + 1, 3), np.float32), actions=np.zeros((t, *action_shape), np.float32),
                rewards=np.zeros(t, np.float32), terminated=np.zeros(t, bool), truncated=np.zeros(t, bool))
    return {**base, **arrays}


def make_dataset(root, meta: DatasetMeta | None = None, episodes: int = 2) -> None:
    write_meta(root, meta or state_meta())
    for i in range(episodes):
        write_episode(root / shard_name(i), Episode(**episode()))


def raw_shard(path, **arrays) -> None:
    """A shard written without dreamgym's checks, as another tool (or an attacker) would."""
    np.savez(path, **arrays)


# ----- shard names ------------------------------------------------------------------------------
def test_only_ep_nnnnnn_npz_are_shards():
    assert is_shard_name("ep-000001.npz") and is_shard_name("ep-1234567.npz")
    for name in ("ep-abc.npz", "ep-000001 (copy).npz", "ep-1.npz", "ep-0000001.npz", "ep-000001.npz.tmp", "x.npz"):
        assert not is_shard_name(name), name


@pytest.mark.parametrize("stray", ["ep-abc.npz", "ep-000001 (copy).npz"])
def test_stray_npz_names_are_refused_by_validate_and_train(tmp_path, stray):
    make_dataset(tmp_path)
    (tmp_path / stray).write_bytes((tmp_path / shard_name(1)).read_bytes())  # a copy of a good shard
    _, good, bad = validate(tmp_path)
    assert len(good) == 2 and list(bad) == [tmp_path / stray] and "not a shard name" in bad[tmp_path / stray]
    assert shard_paths(tmp_path) == [tmp_path / shard_name(0), tmp_path / shard_name(1)]
    with pytest.raises(DatasetError, match=r"(?s)1 corrupt shard.*" + stray.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(tmp_path)  # never trains on the duplicate


def test_collect_resumes_beside_a_stray_name(tmp_path):
    cfg = CollectConfig(env_id="Pendulum-v1", out=str(tmp_path), episodes=1, max_steps=5, workers=1)
    collect(cfg, progress=False)
    (tmp_path / "ep-abc.npz").write_bytes(b"junk")
    result = collect(CollectConfig(**{**cfg.__dict__, "episodes": 2}), progress=False)  # was: int('abc') ValueError
    assert result.episodes_written == 1 and len(shard_paths(tmp_path)) == 2


# ----- shard contents ---------------------------------------------------------------------------
def test_npy_renamed_to_npz_is_a_dataset_error(tmp_path):
    make_dataset(tmp_path)
    np.save(tmp_path / "x.npy", np.zeros(3))
    (tmp_path / "x.npy").rename(tmp_path / shard_name(2))
    _, good, bad = validate(tmp_path)
    assert len(good) == 2 and "not an .npz" in bad[tmp_path / shard_name(2)]
    with pytest.raises(DatasetError, match=shard_name(2)):
        load_dataset(tmp_path)


@pytest.mark.parametrize(
    "arrays,action_space,match",
    [
        (episode(action_shape=(2,)), BOX, r"actions must be numbers of shape \(5, \*\(1,\)\)"),
        (episode(terminated=np.array(["no"] * 5)), BOX, "terminated has dtype <U2; expected numbers"),
        (episode(terminated=np.full(5, 0.5)), BOX, "terminated must hold booleans"),
        (episode(truncated=np.arange(5)), BOX, "truncated must hold booleans"),
        (episode(action_shape=()), DISCRETE, "Discrete action space needs integer actions"),
        (episode(action_shape=(), actions=np.full(5, 7)), DISCRETE, r"actions must lie in \[0, 2\]"),
        (episode(obs=np.zeros((6, 4), np.float32)), BOX, r"obs of shape \(4,\)"),
        (episode(rewards=np.full(5, np.nan, np.float32)), BOX, "rewards holds NaN"),
        (episode(obs=np.zeros(6, dtype=np.dtype("V8"))), BOX, "obs has dtype"),
    ],
)
def test_shards_train_cannot_use_are_refused_by_validate(tmp_path, arrays, action_space, match):
    make_dataset(tmp_path, state_meta(action_space), episodes=0)
    raw_shard(tmp_path / shard_name(0), **arrays)
    _, good, bad = validate(tmp_path)
    assert good == [] and list(bad) == [tmp_path / shard_name(0)]
    assert shard_name(0) in bad[tmp_path / shard_name(0)]
    with pytest.raises(DatasetError, match=match):
        load_dataset(tmp_path)


def test_frames_obs_kind_needs_uint8_frames(tmp_path):
    meta = DatasetMeta(env_id="CarRacing-v3", obs_kind="frames", obs_shape=[64, 64, 3], action_space=BOX,
                       observation_space={"type": "Box", "shape": [96, 96, 3], "dtype": "uint8", "low": 0, "high": 255})
    write_meta(tmp_path, meta)
    raw_shard(tmp_path / shard_name(0), **episode(obs=np.zeros((6, 64, 64, 3), np.float32)))
    with pytest.raises(DatasetError, match="obs_kind 'frames' needs uint8 frames"):
        load_dataset(tmp_path)


def _zip_with(path, key: str, payload: bytes) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for k, v in episode().items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, v)
            z.writestr(f"{k}.npy", payload if k == key else buf.getvalue())


def test_a_forged_npy_header_cannot_make_numpy_allocate(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    _zip_with(tmp_path / "ep.npz", "obs", header.getvalue() + b"\0" * 64)  # claims 8 TB, holds 64 bytes
    with pytest.raises(DatasetError, match=r"declares shape \(1000000000000,\)"):
        read_episode(tmp_path / "ep.npz")


def test_a_member_claiming_more_than_deflate_can_inflate_is_refused(tmp_path):
    _zip_with(tmp_path / "ep.npz", "rewards", b"\0" * 1000)
    data = bytearray((tmp_path / "ep.npz").read_bytes())
    entry = data.index(b"PK\x01\x02")
    while data[entry + 46:entry + 46 + len(b"rewards.npy")] != b"rewards.npy":  # its central directory entry
        entry = data.index(b"PK\x01\x02", entry + 1)
    data[entry + 24:entry + 28] = (2**31).to_bytes(4, "little")  # uncompressed size: 2 GB
    (tmp_path / "ep.npz").write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="rewards.npy claims 2147483648 bytes"):
        read_episode(tmp_path / "ep.npz")


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    _zip_with(tmp_path / "ep.npz", "rewards", b"")
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.array([object()] * 5), allow_pickle=True)
    _zip_with(tmp_path / "ep.npz", "rewards", buf.getvalue())
    with pytest.raises(DatasetError, match="rewards has dtype object"):
        read_episode(tmp_path / "ep.npz")


# ----- dataset.json -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda d: d.__setitem__("format_version", "2"), r"integer format_version >= 1 .* got str '2'"),
        (lambda d: d.__setitem__("format_version", True), r"integer format_version >= 1 .* got bool True"),
        (lambda d: d.__setitem__("format_version", 99), "reads up to 1"),
        (lambda d: d.pop("env_id"), r"lacks required field\(s\) \['env_id'\]"),
        (lambda d: d.__setitem__("seed", "0"), r"\['seed'\] must be an integer, got str '0'"),
        (lambda d: d.__setitem__("obs_shape", ["3"]), r"\['obs_shape'\]\[0\] must be an integer"),
        (lambda d: d.__setitem__("obs_kind", "pixels"), "obs_kind'] must be 'frames' or 'state'"),
        (lambda d: d.__setitem__("obs_shape", [64, 64, 3]), r"obs_shape'\] must be \[N\]"),
        (lambda d: d.__setitem__("versions", {"numpy": 2}), r"\['versions'\]\['numpy'\] must be a string"),
        (lambda d: d["action_space"].pop("dtype"), r"missing keys \['dtype'\]"),
        (lambda d: d.__setitem__("action_space", {"type": "Discrete", "n": 0}), r"integer n in \[1, 65536\]"),
        (lambda d: d.__setitem__("frame_crop", [10, 5, 0, 96]), "frame_crop"),
    ],
)
def test_bad_dataset_json_is_a_dataset_error(tmp_path, edit, match):
    make_dataset(tmp_path, episodes=0)
    d = json.loads((tmp_path / "dataset.json").read_text())
    edit(d)
    (tmp_path / "dataset.json").write_text(json.dumps(d))
    with pytest.raises(DatasetError, match=match):
        read_meta(tmp_path)


@pytest.mark.parametrize(
    "raw,match",
    [
        (b"[1, 2]", "holds a JSON list; expected a JSON object"),
        (b'{"env_id": "\xff\xfe"}', "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "cannot be parsed|nests JSON"),
        (b'{"a":' * 40 + b"1" + b"}" * 40, "nests JSON more than 32 levels"),
        (b"{not json", "not valid JSON"),
    ],
)
def test_unreadable_dataset_json_is_a_dataset_error(tmp_path, raw, match):
    (tmp_path / "dataset.json").write_bytes(raw)
    with pytest.raises(DatasetError, match=match):
        read_meta(tmp_path)
