"""``model=`` resolution: a world model (any backend), a local directory, a name under pretrained/, or a Hub repo id.

Checkpoints load with the class their config.json's ``backend`` names (:mod:`dreamgym.backends`)."""

from __future__ import annotations

from pathlib import Path

import torch

from dreamgym.backends import is_backend, load_backend
from dreamgym.errors import CheckpointError, ConfigError
from dreamgym.models.world_model import WorldModel
from dreamgym.registry import DREAMS, dream_spec

PRETRAINED_DIRS = (
    Path(__file__).resolve().parent.parent / "pretrained",  # installed wheel: packaged as dreamgym/pretrained
    Path(__file__).resolve().parent.parent.parent / "pretrained",  # source checkout / editable install
)


def pretrained_path(name: str) -> Path | None:
    """The shipped checkpoint folder called ``name``, if one ships."""
    for root in PRETRAINED_DIRS:
        candidate = root / name
        if (candidate / "config.json").is_file():
            return candidate
    return None


def resolve_model(
    model: WorldModel | str | Path,
    revision: str | None = None,
    device: str | torch.device = "cpu",
    *,
    dream_id: str | None = None,
) -> WorldModel:
    """Load the world model that ``model=`` names.

    Order: a WorldModel instance; a local directory; a name under ``pretrained/``; a Hub repo id
    (``user/name``, at ``revision``). With ``dream_id`` (a registered dream), the model must dream
    of that dream's real env.
    """
    loaded = _load(model, revision, device)
    if dream_id is not None:
        spec = dream_spec(dream_id)
        if loaded.config.env_id != spec.env_id:
            raise ConfigError(
                f"{dream_id} dreams of {spec.env_id}, but model={str(model)!r} is a world model of "
                f"{loaded.config.env_id}. Pass a {spec.env_id} model, or use the Dream id of {loaded.config.env_id}."
            )
    return loaded


def _load(model: WorldModel | str | Path, revision: str | None, device: str | torch.device) -> WorldModel:
    if is_backend(model):
        return model.to(device)
    name = str(model)
    if Path(name).is_dir():
        return load_backend(name).to(device)
    shipped = pretrained_path(name)
    if shipped is not None:
        model = load_backend(shipped).to(device)
        model.source = {"pretrained": name, "path": str(shipped)}
        return model
    if "/" in name and not name.startswith((".", "/")) and name.count("/") == 1:
        return load_backend(name, revision=revision).to(device)
    waiting = [s.id for s in DREAMS.values() if s.pretrained == name]
    if waiting:
        raise CheckpointError(
            f"No pretrained world model {name!r} ships with this dreamgym yet, so {waiting[0]} has no default "
            f"model (looked in {', '.join(str(p) for p in PRETRAINED_DIRS)}). Pass model=<checkpoint directory or "
            "Hub repo id>, or build one with dreamgym's training pipeline (see the README)."
        )
    raise CheckpointError(
        f"model={name!r} is not a checkpoint directory, a name under pretrained/ or a Hub repo id ('user/name'). "
        "Pass the directory save_pretrained wrote, or a Hub repo id."
    )
