"""Checkpoint files shared by world models and controllers: JSON config + safetensors, strict;
:func:`detect` says what a folder holds (world model, controller, CMA-ES run or SB3 agent).

Only JSON and safetensors are ever read, so a checkpoint from the Hub cannot run code.
"""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from dreamgym.errors import CheckpointError, DreamgymError
from dreamgym.utils import atomic_write, atomic_write_text

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MAX_JSON_BYTES = 16 * 2**20  # config.json and dataset.json are a few KB: a bigger one is not ours
MAX_JSON_DEPTH = 32  # ours nest 4 deep (config.json["observation_space"]["spaces"]["screen"]["low"])
# safetensors dtype names -> torch dtypes dreamgym stores floating tensors in (float16: storage_dtype)
FLOAT_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
_TORCH_NAMES = {torch.int64: "I64", torch.int32: "I32", torch.bool: "BOOL", torch.uint8: "U8"}
E = TypeVar("E", bound=DreamgymError)
T = TypeVar("T")
M = TypeVar("M", bound=nn.Module)


def save_weights_and_config(
    module: nn.Module, directory: str | Path, config: dict[str, Any], storage_dtype: str = "float32"
) -> None:
    """Write model.safetensors, then config.json (sorted keys), each atomically.

    Weights go first: a config.json always describes finished weights.
    """
    directory = Path(directory)
    dtype = torch.float16 if storage_dtype == "float16" else torch.float32
    state = {
        k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
        for k, v in module.state_dict().items()
    }
    atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(state, str(p), metadata={"format": "pt"}))
    atomic_write_text(directory / CONFIG_NAME, json.dumps(config, sort_keys=True, indent=2) + "\n")


def read_config(directory: str | Path) -> dict[str, Any]:
    """``directory/config.json`` as a dict, read strictly by :func:`read_json_object`."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(
            f"{CONFIG_NAME} is missing from checkpoint directory {directory}: a dreamgym checkpoint holds "
            "config.json and model.safetensors, as save_pretrained writes them."
        )
    return read_json_object(path)


def read_json_object(path: str | Path, error: type[DreamgymError] = CheckpointError) -> dict[str, Any]:
    """A JSON object from ``path``: at most 16 MiB, UTF-8, nested at most 32 deep; else ``error`` saying which.

    ``json.loads`` alone turns these into UnicodeDecodeError, RecursionError or a list where callers
    expect a dict; a file from a stranger must get one clear error instead.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise error(f"{path} is {size} bytes; expected a JSON file of at most {MAX_JSON_BYTES} bytes as dreamgym "
                        "writes them. Replace it with the file dreamgym wrote.")
        raw = path.read_bytes()
    except OSError as e:
        raise error(f"Cannot read {path}: {e}.") from e
    try:
        d = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise error(f"{path} is not UTF-8 text ({e}); expected JSON as dreamgym writes it. "
                    "Re-save or re-download it.") from e
    except json.JSONDecodeError as e:
        raise error(f"{path} is not valid JSON: {e}. Re-save or re-download it.") from e
    except (ValueError, RecursionError) as e:  # a 5,000-digit number; arrays nested 100,000 deep
        raise error(f"{path} cannot be parsed as JSON ({type(e).__name__}: {str(e)[:200]}); "
                    f"expected JSON nested at most {MAX_JSON_DEPTH} deep. Re-save or re-download it.") from e
    if not isinstance(d, dict):
        raise error(f"{path} holds a JSON {type(d).__name__}; expected a JSON object ({{...}}) as dreamgym writes it. "
                    "Re-save or re-download it.")
    if json_depth(d) > MAX_JSON_DEPTH:
        raise error(f"{path} nests JSON more than {MAX_JSON_DEPTH} levels deep; expected a dreamgym file (4 levels). "
                    "Re-save or re-download it.")
    return d


def check_cached_config(repo_id: str, revision: str | None = None, cache_dir: str | Path | None = None) -> None:
    """Raise :func:`read_json_object`'s CheckpointError if a Hub repo's cached config.json is unreadable.

    The Hub mixin parses config.json with a bare ``json.load``; when that fails, this says why, in
    dreamgym's words. It never downloads: a repo not in the cache (or a bad id) returns quietly.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        path = hf_hub_download(repo_id=repo_id, filename=CONFIG_NAME, revision=revision, cache_dir=cache_dir,
                               local_files_only=True)
    except (HfHubHTTPError, OSError, ValueError):
        return
    read_json_object(path)


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH + 1) -> int:
    """Nesting depth of parsed JSON (a number: 0, ``[1]``: 1, at most ``limit``), without recursion."""
    depth, level = 0, [value]
    while depth < limit:
        level = [x for x in level if isinstance(x, (dict, list))]
        if not level:
            break
        depth += 1
        level = [v for x in level for v in (x.values() if isinstance(x, dict) else x)]
    return depth


def parse_dataclass(cls: type[T], d: Any, where: str, error: type[DreamgymError] = CheckpointError) -> T:
    """Build dataclass ``cls`` from parsed JSON, checking every field against its annotation.

    Unknown fields, missing required fields and values of the wrong JSON type (``"8"`` for an int,
    ``true`` for an int, a list for a dict) raise ``error`` naming ``where[field]``, what was
    expected and what was given. Nested dataclass fields are parsed the same way.
    """
    if not isinstance(d, dict):
        raise error(f"Expected {where} to be a JSON object, got {_show(d)}.")
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise error(f"Unknown field(s) {unknown} in {where}; expected only {sorted(names)}. "
                    "The file was written by another dreamgym version or edited by hand.")
    missing = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING and f.name not in d]
    if missing:
        raise error(f"{where} lacks required field(s) {missing}; the file is incomplete. Re-save or re-download it.")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _typed(value, hints[name], f"{where}[{name!r}]", error) for name, value in d.items()}
    return cls(**kwargs)


def _typed(value: Any, hint: Any, where: str, error: type[DreamgymError]) -> Any:
    """``value`` if it is JSON of type ``hint`` (an int as float is fine), else ``error``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if is_dataclass(hint):
        return parse_dataclass(hint, value, where, error)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner, *others) = [a for a in args if a is not type(None)]
        return _typed(value, inner, where, error) if not others else value
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
        list: lambda v: isinstance(v, list),
        dict: lambda v: isinstance(v, dict),
    }.get(origin or hint)
    if ok is None:
        return value  # an annotation this parser does not know: left to the class's own checks
    if not ok(value):
        raise error(f"{where} must be {_describe_type(hint)}, got {_show(value)}. "
                    "Fix the value (or re-save the file with dreamgym).")
    if hint is float:
        try:
            number = float(value)
        except OverflowError:
            raise error(f"{where} must be a number a float can hold, "
                        f"got an integer of {len(str(value))} digits.") from None
        if not math.isfinite(number):  # JSON's NaN / Infinity: no size, weight or threshold may be one
            raise error(f"{where} must be a finite number, got {value}. Fix the value (or re-save the file with dreamgym).")
        return number
    if origin is list and args:
        return [_typed(v, args[0], f"{where}[{i}]", error) for i, v in enumerate(value)]
    if origin is dict and len(args) == 2:
        return {k: _typed(v, args[1], f"{where}[{k!r}]", error) for k, v in value.items()}
    return value


def _describe_type(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if origin is list:
        return f"a list of {_describe_type(args[0]).removeprefix('a ').removeprefix('an ')}s" if args else "a list"
    if origin is dict:
        return "a JSON object"
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:80] + '...' if len(text) > 80 else text}"


def check_format_version(d: dict[str, Any], current: int, where: str = "config.json",
                         error: type[DreamgymError] = CheckpointError) -> None:
    version = d.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise error(f"Expected an integer format_version >= 1 in {where}, got {_show(version)}. "
                    f"This dreamgym writes format_version {current}.")
    if version > current:
        raise error(
            f"{where} has format_version {version}; this dreamgym reads up to {current}. "
            "Upgrade dreamgym: pip install -U dreamgym."
        )


def parse_checkpoint_config(cls: type[T], d: Any, where: str = CONFIG_NAME) -> T:
    """A checkpoint's config dataclass ``cls`` from parsed JSON: an object, a format_version this dreamgym
    reads (``cls``'s default is the newest), every field checked (:func:`parse_dataclass`); else CheckpointError."""
    if not isinstance(d, dict):
        raise CheckpointError(f"Expected {where} to hold a JSON object, got {type(d).__name__}.")
    check_format_version(d, cls.__dataclass_fields__["format_version"].default, where)  # type: ignore[attr-defined]
    return parse_dataclass(cls, d, where)


def detect(path: str | Path) -> str | None:
    """What ``path`` holds: ``"world_model"``, ``"controller"``, ``"cmaes_run"`` (a folder with a
    ``controller/``) or ``"sb3"`` (an SB3 ``.zip``, or a folder with zips); None when none of these.

    A config.json is told apart by the fields its config class requires (a world model's
    ``observation_space``, a controller's ``obs_dim``), read strictly.
    """
    path = Path(path)
    if path.is_file():
        return "sb3" if path.suffix == ".zip" else None
    if (path / CONFIG_NAME).is_file():
        return _config_kind(path)
    if (path / "controller" / CONFIG_NAME).is_file():
        return "cmaes_run"
    if path.is_dir() and any(path.glob("*.zip")):
        return "sb3"
    return None


def _config_kind(folder: Path) -> str:
    """``"world_model"`` (a ``backend`` field, or a world model's required fields) or ``"controller"``: the one
    whose config class's required fields config.json has."""
    from dreamgym.agents.controller import LinearController
    from dreamgym.models.world_model import WorldModel

    config = read_config(folder)
    if "backend" in config:  # every world-model backend's config.json names its backend (dreamgym.backends)
        return "world_model"
    required = {c.kind: {f.name for f in fields(c.config_class) if f.default is MISSING
                         and f.default_factory is MISSING} for c in (WorldModel, LinearController)}
    kinds = [kind for kind, names in required.items() if names <= set(config)]
    if len(kinds) != 1:
        expected = "; ".join(f"a {kind.replace('_', ' ')}'s has {sorted(names)}" for kind, names in required.items())
        raise CheckpointError(f"{folder / CONFIG_NAME} is not a dreamgym config.json ({expected}; this one has "
                              f"{sorted(config)[:12]}). Re-save or re-download the checkpoint.")
    return kinds[0]


def read_header(path: str | Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{tensor name: (shape, safetensors dtype name)}`` from a safetensors header; no tensor data is read."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path.name} is missing: expected the weights at {path}.")
    try:
        with safe_open(str(path), "pt") as f:
            return {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e}); re-save or re-download it.") from e


def check_header(module: nn.Module, path: str | Path) -> None:
    """Names, shapes and dtypes of ``path``'s tensors against ``module``'s state dict, reading only the header.

    ``module`` may live on the meta device (no memory), so a config.json whose sizes would need
    gigabytes is refused before anything is allocated. Floating tensors must be stored as float32,
    float16 or bfloat16 (an int32 tensor cast to float would silently change the model).
    """
    header = read_header(path)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match its config.json: missing tensors {missing}, unexpected tensors {unexpected}."
        )
    for name, (shape, dtype) in header.items():
        want = expected[name]
        if shape != tuple(want.shape):
            raise CheckpointError(
                f"Tensor {name!r} in {path} has shape {shape}; config.json implies {tuple(want.shape)}. "
                "The weights and config.json come from different models: re-save or re-download both."
            )
        allowed = sorted(FLOAT_DTYPES) if want.is_floating_point() else [_TORCH_NAMES.get(want.dtype, str(want.dtype))]
        if dtype not in allowed:
            raise CheckpointError(
                f"Tensor {name!r} in {path} has dtype {dtype}; expected {' or '.join(allowed)} as dreamgym saves it. "
                "Casting it would change the model: re-save the weights from the original model."
            )


def build_checked(build: Callable[[], M], weights: str | Path) -> M:
    """``build()`` once on the meta device to check ``weights``' header against it, then for real.

    The meta build allocates nothing, so sizes in a hostile config.json cannot make the model
    allocate more than the weights file holds.
    """
    try:
        with torch.device("meta"):
            skeleton = build()
    except DreamgymError:
        raise
    except (RuntimeError, ValueError, TypeError, OverflowError) as e:
        raise CheckpointError(f"config.json describes a model that cannot be built ({type(e).__name__}: "
                              f"{str(e)[:200]}); check its sizes, or re-save or re-download it.") from e
    check_header(skeleton, weights)
    return build()


def load_weights_strict(module: nn.Module, path: str | Path) -> None:
    """Load a safetensors file into ``module``: every tensor present, expected, of the right shape and dtype, finite."""
    path = Path(path)
    check_header(module, path)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e}); re-save or re-download it.") from e
    expected = module.state_dict()
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"Tensor {name!r} in {path} holds NaN or inf values; the checkpoint is corrupt.")
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
