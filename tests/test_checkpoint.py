"""Checkpoints from strangers: config.json and model.safetensors are refused clearly, before any big allocation."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from dreamgym.agents import LinearController
from dreamgym.checkpoint import MAX_JSON_DEPTH, build_checked, json_depth, read_json_object
from dreamgym.errors import CheckpointError, ConfigError, DreamgymError
from dreamgym.models.world_model import WorldModel

from .conftest import make_tiny_model


@pytest.fixture
def checkpoint(tmp_path):
    make_tiny_model("carracing").save_pretrained(tmp_path)
    return tmp_path


def _edit_config(path, fn):
    config = json.loads((path / "config.json").read_text())
    fn(config)
    (path / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "edit,error,match",
    [
        (lambda c: c.pop("env_id"), CheckpointError, r"lacks required field\(s\) \['env_id'\]"),
        (lambda c: c["memory"].__setitem__("hidden_size", "8"),
         CheckpointError, r"config.json\['memory'\]\['hidden_size'\] must be an integer, got str '8'"),
        (lambda c: c.__setitem__("max_episode_steps", 10.5), CheckpointError, "must be an integer, got float 10.5"),
        (lambda c: c.__setitem__("max_episode_steps", True), CheckpointError, "must be an integer, got bool True"),
        (lambda c: c.__setitem__("vision", [1]), CheckpointError, r"\['vision'\] to be a JSON object, got list"),
        (lambda c: c.__setitem__("frame_crop", [0, "84", 0, 96]), CheckpointError, r"\['frame_crop'\]\[1\] must be"),
        (lambda c: c.__setitem__("format_version", "1"), CheckpointError, "integer format_version >= 1"),
        (lambda c: c.__setitem__("default_temperature", float("inf")), CheckpointError, "must be a finite number"),
        (lambda c: c["heads"].__setitem__("constant_reward", float("nan")), CheckpointError, "must be a finite number"),
        (lambda c: c["action_space"].pop("dtype"), ConfigError, r"action_space'\] is a Box space dict .*missing keys \['dtype'\]"),
        (lambda c: c.__setitem__("action_space", {"type": "Discrete", "n": 0}), ConfigError, r"integer n in \[1, 65536\]"),
        (lambda c: c.__setitem__("action_space", {"type": "Dict", "spaces": {}}), ConfigError, "Box or Discrete"),
        (lambda c: c.__setitem__("observation_space", {"type": "Box", "shape": [10**9], "dtype": "uint8",
                                                       "low": 0, "high": 255}), ConfigError, "at most 16777216"),
        (lambda c: c.__setitem__("frame_crop", [84, 0, 0, 96]), ConfigError, "frame_crop"),
    ],
)
def test_bad_config_json_is_refused_naming_the_field(checkpoint, edit, error, match):
    _edit_config(checkpoint, edit)
    with pytest.raises(error, match=match) as info:
        WorldModel.from_pretrained(checkpoint)
    assert isinstance(info.value, DreamgymError)


@pytest.mark.parametrize(
    "raw,match",
    [
        (b"[1, 2, 3]", "holds a JSON list; expected a JSON object"),
        (b'{"env_id": "Car\xe9Racing-v3"}', "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "cannot be parsed as JSON|nests JSON"),
        (b'{"summary": ' + b'{"a": ' * 40 + b"1" + b"}" * 41, "nests JSON more than 32 levels"),
        (b'{"max_episode_steps": ' + b"9" * 5000 + b"}", "cannot be parsed as JSON"),
    ],
)
def test_unreadable_config_json_is_a_checkpoint_error(checkpoint, raw, match):
    (checkpoint / "config.json").write_bytes(raw)
    with pytest.raises(CheckpointError, match=match):
        WorldModel.from_pretrained(checkpoint)


@pytest.mark.parametrize("size", [2**20, 2**40])
def test_huge_sizes_are_checked_against_the_header_before_building(checkpoint, size, monkeypatch):
    _edit_config(checkpoint, lambda c: c["memory"].__setitem__("hidden_size", size))
    built = []
    monkeypatch.setattr(WorldModel, "load_weights", lambda self, path: built.append(self))
    with pytest.raises(CheckpointError, match=r"shape .*config.json implies|cannot be built"):
        WorldModel.from_pretrained(checkpoint)  # was: 2**20 -> 16 TB LSTM allocated (or RuntimeError) first
    assert built == []


def test_integer_tensors_are_refused_not_cast(checkpoint):
    state = load_file(str(checkpoint / "model.safetensors"))
    state["memory.mdn.bias"] = state["memory.mdn.bias"].round().to(torch.int32)
    save_file(state, str(checkpoint / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"'memory.mdn.bias' .* dtype I32; expected BF16 or F16 or F32"):
        WorldModel.from_pretrained(checkpoint)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_tensors_still_load(checkpoint, dtype):
    state = {k: v.to(dtype) for k, v in load_file(str(checkpoint / "model.safetensors")).items()}
    save_file(state, str(checkpoint / "model.safetensors"))
    model = WorldModel.from_pretrained(checkpoint)
    assert model.memory.mdn.bias.dtype == torch.float32


def test_controller_config_and_weights_are_checked(tmp_path):
    from gymnasium import spaces

    LinearController.for_spaces(spaces.Box(-1, 1, (12,)), spaces.Box(-1, 1, (3,))).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "obs_dim": "12"}))
    with pytest.raises(CheckpointError, match=r"\['obs_dim'\] must be an integer, got str '12'"):
        LinearController.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "obs_dim": 2**40}))
    with pytest.raises(CheckpointError, match=r"'linear.weight' .* shape \(3, 12\); config.json implies \(3, 1099511627776\)"):
        LinearController.from_pretrained(tmp_path)  # was: a 13 TB nn.Linear
    (tmp_path / "config.json").write_text("[]")
    with pytest.raises(CheckpointError, match="holds a JSON list"):
        LinearController.from_pretrained(tmp_path)


def test_build_checked_builds_for_real_only_after_the_header_matches(checkpoint):
    model = build_checked(lambda: make_tiny_model("carracing"), checkpoint / "model.safetensors")
    assert model.start_z.device.type == "cpu"


def test_json_depth_and_size_limits(tmp_path):
    assert [json_depth(x) for x in (1, [], [1], {"a": [{"b": 1}]})] == [0, 1, 1, 3]
    assert json_depth([[[[[]]]]], limit=3) == 3
    (tmp_path / "big.json").write_bytes(b" " * (16 * 2**20 + 1))
    with pytest.raises(CheckpointError, match="at most 16777216 bytes"):
        read_json_object(tmp_path / "big.json")
    (tmp_path / "ok.json").write_text(json.dumps({"a": [[1]] * 3}))
    assert read_json_object(tmp_path / "ok.json") == {"a": [[1]] * 3} and MAX_JSON_DEPTH >= 4


def _hub_cache(cache, repo_id: str, files: dict[str, bytes]) -> None:
    """A Hub cache holding one snapshot of ``repo_id``, as ``hf download`` leaves it."""
    commit = "0" * 40
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    for name, data in files.items():
        (repo / "snapshots" / commit / name).write_bytes(data)


@pytest.mark.parametrize("raw,match", [(b"[1]", "holds a JSON list"), (b'{"env_id": "\xff"}', "not UTF-8"),
                                       (b"[" * 100_000 + b"]" * 100_000, "cannot be parsed as JSON|nests")])
def test_a_bad_config_json_from_the_hub_is_a_checkpoint_error(checkpoint, tmp_path, raw, match):
    weights = (checkpoint / "model.safetensors").read_bytes()
    _hub_cache(tmp_path / "cache", "someone/dream", {"config.json": raw, "model.safetensors": weights})
    with pytest.raises(CheckpointError, match=match):
        WorldModel.from_pretrained("someone/dream", cache_dir=tmp_path / "cache")
    (tmp_path / "cache" / "models--someone--dream" / "snapshots" / ("0" * 40) / "config.json").write_bytes(
        (checkpoint / "config.json").read_bytes())
    assert WorldModel.from_pretrained("someone/dream", cache_dir=tmp_path / "cache").source["repo_id"] == "someone/dream"
