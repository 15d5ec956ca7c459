"""Agents trained apart (e.g. over seeds) that act as one: the mean of their deterministic actions.

A dream-trained agent's real score depends on its seed far more than its dream score shows (CarRacing,
PPO 300k: 387 to 743 over 100 real episodes across three seeds of one dream), and a dream cannot tell the
good seeds from the bad. Averaging the seeds' actions keeps what they agree on and cancels the dream errors
each seed learned to exploit on its own (pretrained/README.md has the measurements).

On disk an ensemble is a folder::

    ensemble.json      {"format_version": 1, "members": ["member-0", ...], "env_id", "obs_type", "world_model", ...}
    member-0/          an agent folder: an SB3 zip with its agent.json, or a linear controller
    member-1/ ...

``dreamgym ensemble RUN RUN ... --out DIR`` writes one; ``dreamgym evaluate``, ``fidelity`` and ``ship``
read it like any agent. It holds JSON, safetensors and SB3 zips only, each loaded without pickle.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from dreamgym.checkpoint import check_format_version, read_json_object
from dreamgym.errors import CheckpointError, ConfigError
from dreamgym.utils import atomic_write_text, umask

ENSEMBLE_FILE = "ensemble.json"
FORMAT_VERSION = 1
MAX_MEMBERS = 64
_MEMBER_NAME = re.compile(r"member-[0-9]{1,4}")  # a folder inside the ensemble: no separators, no ".."
_SHARED = ("env_id", "obs_type", "world_model")  # what every member must agree on


class AgentEnsemble:
    """Members acting as one agent, SB3-style ``predict``: the mean of their deterministic actions for a Box
    action space (inside its bounds), the most common action (ties: the lowest) for a Discrete one."""

    def __init__(self, members: Sequence[Any], action_space: spaces.Space):
        if not members:
            raise ConfigError("An agent ensemble needs at least one member.")
        if not isinstance(action_space, (spaces.Box, spaces.Discrete)):
            raise ConfigError(f"An agent ensemble acts in a Box or Discrete action space, got {action_space}.")
        self.members = list(members)
        self.action_space = action_space

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, None]:
        """Every member's deterministic action, combined; ``deterministic`` is accepted for SB3's signature
        (the members never draw)."""
        actions = np.stack([np.asarray(m.predict(observation, deterministic=True)[0]) for m in self.members])
        if isinstance(self.action_space, spaces.Box):
            mean = actions.astype(np.float64).mean(axis=0)
            return np.clip(mean, self.action_space.low, self.action_space.high).astype(self.action_space.dtype), None
        n = int(self.action_space.n)
        flat = actions.reshape(len(self.members), -1).astype(np.int64) - int(self.action_space.start)
        votes = np.stack([np.bincount(col, minlength=n) for col in flat.T])  # (rows, n)
        chosen = votes.argmax(axis=1) + int(self.action_space.start)
        return chosen.reshape(actions.shape[1:]).astype(actions.dtype), None


def is_ensemble(path: str | Path) -> bool:
    return (Path(path) / ENSEMBLE_FILE).is_file()


def read_ensemble(folder: str | Path) -> dict[str, Any]:
    """``ensemble.json``, checked strictly: a format_version this dreamgym reads, 1 to 64 distinct member
    folders named ``member-N`` that exist in ``folder``, and string fields for what the members share."""
    folder = Path(folder)
    where = str(folder / ENSEMBLE_FILE)
    meta = read_json_object(folder / ENSEMBLE_FILE)
    check_format_version(meta, FORMAT_VERSION, where)
    members = meta.get("members")
    if (not isinstance(members, list) or not 1 <= len(members) <= MAX_MEMBERS or len(set(map(str, members))) != len(members)
            or not all(isinstance(m, str) and _MEMBER_NAME.fullmatch(m) for m in members)):
        raise CheckpointError(f"{where}: expected 'members' to be a list of 1 to {MAX_MEMBERS} distinct folder names "
                              f"like 'member-0', got {str(members)[:200]}. Write ensembles with `dreamgym ensemble`.")
    for m in members:
        if not (folder / m).is_dir():
            raise CheckpointError(f"{where} names member {m!r}, but {folder / m} is not a folder.")
    if meta.get("combine", "mean action") != "mean action":
        raise CheckpointError(f"{where}: 'combine' must be 'mean action' (the one way this dreamgym combines "
                              f"members), got {str(meta.get('combine'))[:80]}.")
    for key in _SHARED:
        if not isinstance(meta.get(key), str):
            raise CheckpointError(f"{where}: expected a string {key!r}, got {str(meta.get(key))[:80]}.")
    return meta


def member_paths(folder: str | Path) -> list[Path]:
    return [Path(folder) / m for m in read_ensemble(folder)["members"]]


def load_ensemble(folder: str | Path, observation_space: spaces.Space, action_space: spaces.Space) -> AgentEnsemble:
    """Every member loaded strictly (:func:`dreamgym.agents.load_agent`) and checked against the spaces."""
    from dreamgym.agents import load_agent

    members = []
    for path in member_paths(folder):
        if is_ensemble(path):
            raise CheckpointError(f"{path}: an ensemble member cannot itself be an ensemble.")
        members.append(load_agent(path, observation_space, action_space))  # an SB3 member's algo: its agent.json
    return AgentEnsemble(members, action_space)


def write_ensemble(runs: Sequence[str | Path], out: str | Path, world_model: str | None = None) -> Path:
    """Gather agents trained apart (SB3 runs with their agent.json, controllers or CMA-ES runs) into the
    ensemble folder ``out``; they must act in the same dream (env id, obs_type, world model).

    ``world_model`` rewrites the world model every member's metadata names (as ``ship`` does).
    ``out`` appears whole or not at all: the folder is built beside it, then renamed onto it.
    """
    from dreamgym.agents import copy_agent, locate_agent
    from dreamgym.evaluate import agent_info

    if not 1 <= len(runs) <= MAX_MEMBERS:
        raise ConfigError(f"An ensemble takes 1 to {MAX_MEMBERS} agents, got {len(runs)}.")
    out = Path(out)
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()  # an empty folder holds nothing to keep
    if out.exists() and not is_ensemble(out):
        raise ConfigError(f"{out} exists and is not an ensemble; pass a new folder for --out.")
    infos = [agent_info(r) for r in runs]
    for key in (*(_SHARED if world_model is None else _SHARED[:-1]), "action_space"):  # a world_model renames them all
        values = {json.dumps(getattr(i, key), sort_keys=True) for i in infos}
        if len(values) > 1:
            raise ConfigError(f"The agents of an ensemble must share their {key}; got {sorted(values)} "
                              f"from {[str(r) for r in runs]}.")
    name = world_model or infos[0].world_model
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tmp.chmod(0o777 & ~umask())  # mkdtemp makes 0700 folders; give the usual permissions
        members = []
        for i, run in enumerate(runs):
            if locate_agent(run)[0] == "ensemble":
                raise ConfigError(f"{run} is an ensemble already; pass its members' runs instead.")
            copy_agent(run, tmp / f"member-{i}", name)
            members.append(f"member-{i}")
        meta = {"format_version": FORMAT_VERSION, "members": members, "env_id": infos[0].env_id,
                "obs_type": infos[0].obs_type, "world_model": name, "combine": "mean action",
                "sources": [Path(r).name for r in runs],  # names, not this machine's paths
                **({"action_space": infos[0].action_space} if infos[0].action_space is not None else {})}
        atomic_write_text(tmp / ENSEMBLE_FILE, json.dumps(meta, indent=2) + "\n")
        old = None
        if out.exists():  # the old ensemble steps aside until the new one is in place
            old = out.with_name(f".{out.name}.old-{tmp.name}")
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
