"""Agents that act in dreams and in reality: the paper's linear controller and SB3 agents."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
from gymnasium import spaces

from dreamgym.agents.controller import ControllerConfig, LinearController
from dreamgym.checkpoint import detect
from dreamgym.errors import CheckpointError, ConfigError

__all__ = ["Agent", "ControllerConfig", "LinearController", "copy_agent", "load_agent", "locate_agent"]


class Agent(Protocol):
    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]: ...


def locate_agent(path: str | Path) -> tuple[str, Path]:
    """``("controller", its folder)``, ``("sb3", its zip)`` or ``("ensemble", its folder)`` for what ``path``
    holds (:func:`dreamgym.checkpoint.detect`): a controller folder, a CMA-ES run (its ``controller/``), an SB3
    zip, a folder holding one zip, or an agent ensemble (:mod:`dreamgym.agents.ensemble`)."""
    from dreamgym.agents.ensemble import is_ensemble

    path = Path(path)
    if path.is_dir() and is_ensemble(path):
        return "ensemble", path
    kind = detect(path)
    if kind == "cmaes_run":
        return "controller", path / "controller"
    if kind == "world_model":
        raise CheckpointError(f"{path} holds a world model, not an agent: pass a controller directory, a CMA-ES run "
                              "or an SB3 .zip (the world model goes in model=).")
    if kind == "sb3" and path.is_dir():
        zips = sorted(path.glob("*.zip"))
        if len(zips) != 1:
            raise CheckpointError(f"Expected a controller (config.json) or one SB3 .zip in {path}, found {len(zips)} zips.")
        return kind, zips[0]
    if kind is None:
        raise CheckpointError(f"No agent at {path}: expected a controller directory (config.json), a CMA-ES run "
                              "or an SB3 .zip.")
    return kind, path


def load_agent(
    path: str | Path, observation_space: spaces.Space, action_space: spaces.Space, algo: str | None = None
) -> Agent:
    """A controller directory (or CMA-ES run), an SB3 zip or an agent ensemble, checked against the env's
    spaces; loads no pickle."""
    kind, path = locate_agent(path)
    if kind == "ensemble":
        from dreamgym.agents.ensemble import load_ensemble

        return load_ensemble(path, observation_space, action_space)
    if kind == "controller":
        agent = LinearController.from_pretrained(path)
        expected = (observation_space.shape or (0,))[0] if isinstance(observation_space, spaces.Box) else None
        if agent.action_space != action_space or agent.config.obs_dim != expected:
            raise ConfigError(
                f"Controller {path} acts on observations of size {agent.config.obs_dim} with actions {agent.action_space}; "
                f"this env has observation space of shape {observation_space.shape} and action space {action_space}. "
                "Build the real twin with the controller's obs_type (its config.json) and the world model it was trained in."
            )
        return agent
    from dreamgym.agents.sb3_io import load_sb3

    return load_sb3(path, observation_space, action_space, algo=algo)


def copy_agent(run: str | Path, dest: str | Path, world_model: str) -> str:
    """Copy one agent into the new folder ``dest``, its metadata naming ``world_model`` (the dream it sees
    reality through): a controller or CMA-ES run as a controller folder, an SB3 zip with the agent.json
    ``dreamgym train-agent`` writes beside it. Returns the kind copied (``"controller"`` or ``"sb3"``)."""
    import json
    import shutil

    from dreamgym.checkpoint import read_json_object
    from dreamgym.utils import atomic_write_text

    kind, path = locate_agent(run)
    dest = Path(dest)
    if kind == "sb3":
        meta_path = path.parent / "agent.json"
        if not meta_path.is_file():
            raise ConfigError(f"SB3 agent {path}: no agent.json beside it. Pass the folder `dreamgym train-agent` "
                              "wrote (its zip and agent.json), which records the dream it acts in.")
        meta = read_json_object(meta_path)
        meta["world_model"] = world_model
        if isinstance(meta.get("config"), dict) and "model" in meta["config"]:
            meta["config"]["model"] = world_model
        dest.mkdir()
        shutil.copyfile(path, dest / path.name)
        atomic_write_text(dest / "agent.json", json.dumps(meta, sort_keys=True, indent=2) + "\n")
        return kind
    if kind != "controller":
        raise ConfigError(f"{run}: expected one agent (a controller, CMA-ES run or SB3 run), found {kind}.")
    controller = LinearController.from_pretrained(path)
    controller.config.world_model = world_model
    controller.save_pretrained(dest)  # config, weights and a card naming that dream
    return kind
