"""Checkpoint files shared by world models and controllers: JSON config + safetensors, strict.

Only JSON and safetensors are ever read, so a checkpoint from the Hub cannot run code.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from dreamgym.errors import CheckpointError
from dreamgym.utils import atomic_write, atomic_write_text

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


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
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(
            f"{CONFIG_NAME} is missing from checkpoint directory {directory}: a dreamgym checkpoint holds "
            "config.json and model.safetensors, as save_pretrained writes them."
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}.") from e


def strict_fields(cls: type, d: Any, where: str) -> dict[str, Any]:
    """``d`` as kwargs of dataclass ``cls``; unknown fields raise CheckpointError naming them."""
    if not isinstance(d, dict):
        raise CheckpointError(f"Expected {where} to be a JSON object, got {d!r}.")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise CheckpointError(
            f"Unknown field(s) {unknown} in {where}; expected only {sorted(names)}. "
            "The checkpoint was written by another dreamgym version or edited by hand."
        )
    return dict(d)


def check_format_version(d: dict[str, Any], current: int, where: str = "config.json") -> None:
    version = d.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"Expected an integer format_version >= 1 in {where}, got {version!r}.")
    if version > current:
        raise CheckpointError(
            f"This checkpoint has format_version {version}; this dreamgym reads up to {current}. "
            "Upgrade dreamgym: pip install -U dreamgym."
        )


def load_weights_strict(module: nn.Module, path: str | Path) -> None:
    """Load a safetensors file into ``module``: every tensor present, expected, finite, of the right shape."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path.name} is missing: expected the weights at {path}.")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e}); re-save or re-download it.") from e
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match its config.json: missing tensors {missing}, unexpected tensors {unexpected}."
        )
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"Tensor {name!r} in {path} has shape {tuple(tensor.shape)}; config.json implies "
                f"{tuple(expected[name].shape)}."
            )
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"Tensor {name!r} in {path} holds NaN or inf values; the checkpoint is corrupt.")
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
