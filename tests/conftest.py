"""Shared fixtures: tiny world models (random weights) for each registered dream, saved to disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import dreamgym  # noqa: E402  (registers the Dream ids)
from dreamgym.models.world_model import WorldModel  # noqa: E402
from dreamgym.testing import tiny_world_model_config  # noqa: E402

torch.set_num_threads(1)

ENVS = {"carracing": "CarRacing-v3", "pendulum": "Pendulum-v1", "doom": "VizdoomTakeCover-v1"}
DREAM_IDS = {"carracing": "Dream-CarRacing-v0", "pendulum": "Dream-Pendulum-v0", "doom": "Dream-DoomTakeCover-v0"}


def make_tiny_model(name: str, seed: int = 0, **overrides) -> WorldModel:
    """A tiny world model with random weights and random start states (so envs differ)."""
    torch.manual_seed(seed)
    model = WorldModel(tiny_world_model_config(ENVS[name], **overrides))
    with torch.no_grad():
        model.start_z.normal_()
        model.start_h.uniform_(-0.5, 0.5)
        model.start_c.normal_()
        if name == "pendulum":
            model.vision.obs_std.copy_(torch.tensor([1.0, 1.0, 8.0]))
    return model.eval()


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    dirs = {}
    for name in ENVS:
        path = tmp_path_factory.mktemp(f"wm-{name}")
        make_tiny_model(name).save_pretrained(path)
        dirs[name] = path
    return dirs


@pytest.fixture(params=["carracing", "pendulum", "doom"])
def dream(request: pytest.FixtureRequest, model_dirs: dict[str, Path]) -> tuple[str, Path]:
    """(dream id, checkpoint dir) for each registered dream."""
    return DREAM_IDS[request.param], model_dirs[request.param]


def has_vizdoom() -> bool:
    try:
        import vizdoom  # noqa: F401
    except ImportError:
        return False
    return True
