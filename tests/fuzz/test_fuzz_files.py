"""Property-based tests of every file dreamgym reads from a user or a stranger.

config.json (world model and controller), dataset.json, episode shards and safetensors headers,
each fuzzed from scratch and by mutating a valid file. The invariants:

* valid input loads;
* invalid input raises a DreamgymError, never anything else;
* nothing allocates more than the input file bounds: a model is built for real only when its
  tensors fit the weights file, and the process's peak memory grows by at most a few hundred MB.

Derandomized and bounded (``max_examples``), so CI is deterministic and the file runs in seconds.
"""

from __future__ import annotations

import copy
import io
import json
import os
import resource
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from gymnasium import spaces
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dreamgym.agents import LinearController
from dreamgym.checkpoint import read_header
from dreamgym.data.episodes import (
    DatasetMeta,
    Episode,
    load_dataset,
    read_episode,
    read_meta,
    shard_name,
    validate,
    write_episode,
    write_meta,
)
from dreamgym.data.sequences import SequenceDataset
from dreamgym.errors import DreamgymError
from dreamgym.models.world_model import WorldModel
from dreamgym.spaces import space_from_dict

from ..conftest import make_tiny_model

# CI: 60 examples per property, derandomized. A deeper, random search: DREAMGYM_FUZZ_EXAMPLES=5000 pytest tests/fuzz
_DEEP = int(os.environ.get("DREAMGYM_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=_DEEP or 60, deadline=None, derandomize=not _DEEP, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MAX_RSS_GROWTH_KB = 512 * 1024  # a hostile file must not make the process grow by gigabytes

# ----- strategies -------------------------------------------------------------------------------
SIZES = st.sampled_from([0, 1, -1, 3, 8, 64, 255, 256, 2**16 + 1, 2**31, 2**40, 2**63, 10**30])
SCALARS = (st.none() | st.booleans() | SIZES | st.integers(-(2**70), 2**70) | st.floats()
           | st.sampled_from(["", "8", "float32", "Box", "Discrete", "uint8", "frames", "state", "é"])
           | st.text(max_size=8))
JSON = st.recursive(SCALARS, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                    max_leaves=16)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into nested dicts and lists (the root included)."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, prefix + (i,))
    return out


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any], values: st.SearchStrategy = JSON) -> Any:
    """``base`` with 1-3 random edits: a value replaced, a key deleted, a key added."""
    d = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(d)))
        if not path:
            if draw(st.booleans()):
                d = draw(values)
            continue
        parent = d
        for key in path[:-1]:
            parent = parent[key]
        op = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if op == "replace":
            parent[path[-1]] = draw(values)
        elif op == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=6))] = draw(values)
        else:
            parent.append(draw(values))
    return d


@st.composite
def mutated_bytes(draw: st.DrawFn, base: bytes) -> bytes:
    """``base`` truncated, or with a few bytes overwritten, or random bytes."""
    kind = draw(st.sampled_from(["truncate", "flip", "random"]))
    if kind == "truncate":
        return base[: draw(st.integers(0, len(base)))]
    if kind == "random":
        return draw(st.binary(max_size=300))
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def _rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


@pytest.fixture(scope="module", autouse=True)
def rss_bound():
    """Peak memory of the whole module grows by less than MAX_RSS_GROWTH_KB."""
    before = _rss_kb()
    yield
    assert _rss_kb() - before < MAX_RSS_GROWTH_KB


@pytest.fixture
def built_sizes(monkeypatch) -> list[int]:
    """Bytes of real (non-meta) tensors of every WorldModel / LinearController constructed during a test."""
    sizes: list[int] = []
    for cls in (WorldModel, LinearController):
        init = cls.__init__

        def wrapped(self, *args, _init=init, **kwargs):
            _init(self, *args, **kwargs)
            tensors = list(self.parameters()) + list(self.buffers())
            sizes.append(sum(t.numel() * t.element_size() for t in tensors if t.device.type != "meta"))

        monkeypatch.setattr(cls, "__init__", wrapped)
    return sizes


def _expect_clean(load: Callable[[], Any]) -> Any:
    """``load()``'s result, or None when it raised a DreamgymError; anything else fails the test."""
    try:
        return load()
    except DreamgymError:
        return None


# ----- config.json ------------------------------------------------------------------------------
def _checkpoint(root: Path, name: str) -> tuple[Path, dict[str, Any]]:
    """A fresh valid tiny checkpoint (each test mangles its files)."""
    path = root / f"wm-{name}-{len(list(root.iterdir()))}"
    make_tiny_model(name).save_pretrained(path)
    return path, json.loads((path / "config.json").read_text())


@pytest.mark.parametrize("name", ["pendulum", "carracing"])
def test_world_model_config_json(workdir, built_sizes, name):
    path, base = _checkpoint(workdir, name)
    weights_bytes = (path / "model.safetensors").stat().st_size

    @FUZZ
    @given(config=mutated(base) | JSON)
    def check(config: Any) -> None:
        try:
            text = json.dumps(config)
        except (ValueError, TypeError):
            return
        (path / "config.json").write_text(text, encoding="utf-8")
        model = _expect_clean(lambda: WorldModel.from_pretrained(path))
        if model is not None:
            assert model.config.to_dict() is not None
        # a model is only ever built for real within what the weights file holds (float16 -> float32: 2x)
        assert max(built_sizes, default=0) <= 2 * weights_bytes + 4096

    check()
    (path / "config.json").write_text(json.dumps(base))
    assert isinstance(WorldModel.from_pretrained(path), WorldModel)  # valid input works


def test_config_json_raw_bytes(workdir):
    path, base = _checkpoint(workdir, "pendulum")
    valid = json.dumps(base).encode()

    @FUZZ
    @given(raw=mutated_bytes(valid))
    def check(raw: bytes) -> None:
        (path / "config.json").write_bytes(raw)
        _expect_clean(lambda: WorldModel.from_pretrained(path))
        _expect_clean(lambda: LinearController.from_pretrained(path))

    check()


def test_controller_config_json(workdir, built_sizes):
    path = workdir / "controller"
    LinearController.for_spaces(spaces.Box(-1, 1, (6,)), spaces.Discrete(3)).save_pretrained(path)
    base = json.loads((path / "config.json").read_text())
    weights_bytes = (path / "model.safetensors").stat().st_size

    @FUZZ
    @given(config=mutated(base))
    def check(config: Any) -> None:
        (path / "config.json").write_text(json.dumps(config))
        _expect_clean(lambda: LinearController.from_pretrained(path))
        assert max(built_sizes, default=0) <= 2 * weights_bytes + 4096

    check()
    (path / "config.json").write_text(json.dumps(base))
    assert LinearController.from_pretrained(path).num_params == 21


@FUZZ
@given(d=mutated({"type": "Box", "shape": [2, 3], "dtype": "float32", "low": [-1.0, 0.0, 0.0], "high": 1.0})
       | mutated({"type": "Dict", "spaces": {"a": {"type": "Discrete", "n": 3, "start": 1}}}) | JSON)
def test_space_dicts(d):
    space = _expect_clean(lambda: space_from_dict(d))
    if space is not None:
        assert isinstance(space, (spaces.Box, spaces.Discrete, spaces.Dict))


# ----- safetensors header -----------------------------------------------------------------------
def _split_safetensors(data: bytes) -> tuple[dict[str, Any], bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


HEADER_VALUES = JSON | st.sampled_from(["F32", "F16", "BF16", "F64", "I32", "I64", "U8", "BOOL", "F8_E4M3", "XX"]) \
    | st.lists(SIZES, max_size=3)


@pytest.mark.parametrize("target", ["controller", "world_model"])
def test_safetensors_header(workdir, built_sizes, target):
    if target == "controller":
        path = workdir / "controller-st"
        LinearController.for_spaces(spaces.Box(-1, 1, (6,)), spaces.Box(-1, 1, (2,))).save_pretrained(path)
        load: Callable[[], Any] = lambda: LinearController.from_pretrained(path)  # noqa: E731
    else:
        path, _ = _checkpoint(workdir, "pendulum")
        load = lambda: WorldModel.from_pretrained(path)  # noqa: E731
    valid = (path / "model.safetensors").read_bytes()
    header, data = _split_safetensors(valid)

    @FUZZ
    @given(new=mutated(header, HEADER_VALUES), raw=st.none() | mutated_bytes(valid))
    def check(new: Any, raw: bytes | None) -> None:
        if raw is None:
            text = json.dumps(new).encode()
            raw = struct.pack("<Q", len(text)) + text + data
        (path / "model.safetensors").write_bytes(raw)
        _expect_clean(lambda: read_header(path / "model.safetensors"))
        _expect_clean(load)
        assert max(built_sizes, default=0) <= 2 * len(raw) + 4096

    check()
    (path / "model.safetensors").write_bytes(valid)
    assert load() is not None


# ----- dataset.json and shards ------------------------------------------------------------------
BOX = {"type": "Box", "shape": [1], "dtype": "float32", "low": -2.0, "high": 2.0}
META = DatasetMeta(env_id="Pendulum-v1", obs_kind="state", obs_shape=[3], action_space=BOX,
                   observation_space={"type": "Box", "shape": [3], "dtype": "float32", "low": -8.0, "high": 8.0})


def _good_episode(t: int = 4) -> Episode:
    return Episode(obs=np.zeros((t + 1, 3), np.float32), actions=np.zeros((t, 1), np.float32),
                   rewards=np.ones(t, np.float32), terminated=np.zeros(t, bool), truncated=np.eye(1, t, t - 1, bool)[0])


def _dataset(root: Path) -> Path:
    if not (root / "dataset.json").exists():
        write_meta(root, META)
        write_episode(root / shard_name(0), _good_episode())
    return root


def test_dataset_json(workdir):
    root = _dataset(workdir / "ds-meta")
    from dataclasses import asdict

    base = asdict(META)

    @FUZZ
    @given(meta=mutated(base) | JSON)
    def check(meta: Any) -> None:
        (root / "dataset.json").write_text(json.dumps(meta))
        parsed = _expect_clean(lambda: read_meta(root))
        if parsed is not None:
            assert isinstance(parsed, DatasetMeta)
            _expect_clean(lambda: load_dataset(root))

    check()
    write_meta(root, META)
    assert read_meta(root) == META


DTYPES = st.sampled_from([np.bool_, np.uint8, np.int32, np.int64, np.float16, np.float32, np.float64,
                          np.dtype(">f4"), np.dtype("<U3"), np.complex64, np.dtype("V4")])
SHAPES = st.lists(st.integers(0, 5), min_size=0, max_size=3).map(tuple)
FILLS = st.sampled_from([0, 1, -1, 0.5, 7, float("nan"), float("inf")])


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    dtype, shape = np.dtype(draw(DTYPES)), draw(SHAPES)
    if dtype.kind in "UV":
        return np.zeros(shape, dtype)
    fill = draw(FILLS)
    with np.errstate(all="ignore"):
        return np.full(shape, fill).astype(dtype)


@st.composite
def shard_dicts(draw: st.DrawFn) -> dict[str, np.ndarray]:
    """A good episode's arrays with some replaced by odd ones, or dropped."""
    t = draw(st.integers(1, 4))
    good = _good_episode(t).__dict__.copy()
    for key in list(good):
        choice = draw(st.sampled_from(["keep", "keep", "replace", "drop"]))
        if choice == "replace":
            good[key] = draw(arrays())
        elif choice == "drop":
            del good[key]
    return good


def _assert_trainable(episodes: list[Episode], action_space: dict) -> None:
    """What validate accepts, train can use: the sequence view builds from it."""
    mu = [np.zeros((len(ep) + 1, 3), np.float32) for ep in episodes]
    SequenceDataset(mu, None, episodes, space_from_dict(action_space), seq_len=2)


def test_shard_arrays(workdir):
    root = workdir / "ds-arrays"
    root.mkdir()
    write_meta(root, META)

    @FUZZ
    @given(arrays=shard_dicts())
    def check(arrays: dict[str, np.ndarray]) -> None:
        np.savez(root / shard_name(0), **arrays)
        _, good, _ = _expect_clean(lambda: validate(root)) or (None, [], {})
        loaded = _expect_clean(lambda: load_dataset(root))
        assert (loaded is not None) == (len(good) == 1)
        if loaded is not None:
            _assert_trainable(loaded[1], META.action_space)

    check()


def test_shard_bytes(workdir):
    root = _dataset(workdir / "ds-bytes")
    valid = (root / shard_name(0)).read_bytes()

    @FUZZ
    @given(raw=mutated_bytes(valid))
    def check(raw: bytes) -> None:
        (root / shard_name(0)).write_bytes(raw)
        _expect_clean(lambda: read_episode(root / shard_name(0)))
        loaded = _expect_clean(lambda: load_dataset(root))
        if loaded is not None:
            _assert_trainable(loaded[1], META.action_space)

    check()
    (root / shard_name(0)).write_bytes(valid)
    assert len(load_dataset(root)[1]) == 1


@FUZZ
@given(key=st.sampled_from(["obs", "actions", "rewards", "terminated", "truncated"]),
       shape=st.lists(st.sampled_from([0, 1, 3, 2**20, 2**40]), max_size=3).map(tuple),
       descr=st.sampled_from(["<f4", "|u1", "<i8", "|b1", "<U4", "|O", ">f8"]), payload=st.integers(0, 64))
def test_npy_headers_in_shards(key, shape, descr, payload):
    """A member whose .npy header declares any shape and dtype: refused before numpy allocates it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for k, v in _good_episode().__dict__.items():
            member = io.BytesIO()
            if k == key:
                np.lib.format.write_array_header_1_0(member, {"descr": descr, "fortran_order": False, "shape": shape})
                member.write(b"\0" * payload)
            else:
                np.lib.format.write_array(member, v)
            z.writestr(f"{k}.npy", member.getvalue())
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / shard_name(0)
        path.write_bytes(buf.getvalue())
        _expect_clean(lambda: read_episode(path))
