"""Load Stable-Baselines3 zips without unpickling anything.

SB3 stores some fields of its ``data`` JSON with cloudpickle (spaces, schedules, classes). Loading
such a zip from a stranger would run their code, so every pickled field is replaced through
``custom_objects``: spaces come from the env, classes are looked up by name in SB3, torch.nn and
torch.optim only, schedules become constants (they matter only for further training). The weights
themselves are loaded by SB3 with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import importlib
import json
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

from gymnasium import spaces
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm

from dreamgym.checkpoint import MAX_JSON_BYTES, MAX_JSON_DEPTH, json_depth, read_json_object
from dreamgym.errors import CheckpointError, ConfigError

ALGOS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C, "sac": SAC, "td3": TD3, "ddpg": DDPG, "dqn": DQN}
_SAFE_MODULES = ("stable_baselines3.", "torch.nn.", "torch.optim.")
_CLASS_RE = re.compile(r"<class '([\w.]+)\.(\w+)'>")
_FUNC_RE = re.compile(r"<function (\w+)\.__init__ at")


def _safe_class(module: str, name: str) -> type:
    if not module.startswith(_SAFE_MODULES):
        raise CheckpointError(
            f"The SB3 zip names class {module}.{name}; dreamgym only loads classes from stable_baselines3, torch.nn "
            "and torch.optim, so that a downloaded agent cannot run code. Load it with SB3 yourself if you trust it."
        )
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise CheckpointError(f"The SB3 zip names class {module}.{name}, which this SB3 version lacks.") from e


def _class_from_str(text: Any) -> Any:
    m = _CLASS_RE.fullmatch(text) if isinstance(text, str) else None
    return _safe_class(m.group(1), m.group(2)) if m else text


def algo_of(path: str | Path, algo: str | None = None) -> str:
    """The algorithm of an SB3 zip: given, from a sibling agent.json, or from a ``{algo}-{env}.zip`` name."""
    path = Path(path)
    if algo is None and (path.parent / "agent.json").is_file():
        algo = read_json_object(path.parent / "agent.json").get("algo")
        if not isinstance(algo, (str, type(None))):
            raise CheckpointError(f"{path.parent / 'agent.json'}['algo'] must be a string like 'ppo', "
                                  f"got {algo!r:.80}.")
    if algo is None:
        algo = path.name.split("-", 1)[0].lower()
    algo = algo.lower()
    if algo not in ALGOS:
        raise ConfigError(
            f"Cannot tell which SB3 algorithm saved {path.name}: expected a name like 'ppo-Dream-CarRacing-v0.zip' "
            f"(huggingface_sb3's convention) or an explicit algo, one of {sorted(ALGOS)}."
        )
    return algo


def load_sb3(
    path: str | Path,
    observation_space: spaces.Space,
    action_space: spaces.Space,
    algo: str | None = None,
    device: str = "cpu",
) -> BaseAlgorithm:
    """Load an SB3 agent for an env with these spaces, replacing every pickled field of the zip."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No SB3 agent at {path}: expected a .zip saved by model.save().")
    name = algo_of(path, algo)
    try:
        with zipfile.ZipFile(path) as archive:
            if archive.getinfo("data").file_size > MAX_JSON_BYTES:  # a zip bomb would be inflated by read()
                raise CheckpointError(f"{path}: its 'data' entry is over {MAX_JSON_BYTES} bytes; not an SB3 zip.")
            data = json.loads(archive.read("data"))
    except (zipfile.BadZipFile, KeyError, ValueError, RecursionError, OSError, EOFError) as e:
        raise CheckpointError(f"{path} is not a readable SB3 zip ({type(e).__name__}: {str(e)[:200]}).") from e
    if not isinstance(data, dict) or json_depth(data) > MAX_JSON_DEPTH:
        raise CheckpointError(f"{path}: its 'data' entry is not a JSON object as SB3 writes it; not an SB3 zip.")
    custom: dict[str, Any] = {"observation_space": observation_space, "action_space": action_space}
    for key, value in data.items():
        if key in custom or not (isinstance(value, dict) and ":serialized:" in value):
            continue
        if key == "policy_class":
            init = _FUNC_RE.match(str(value.get("__init__", "")))
            if init is None or "__module__" not in value:
                raise CheckpointError(f"{path}: cannot identify the policy class without unpickling it.")
            custom[key] = _safe_class(value["__module__"], init.group(1))
        elif key == "policy_kwargs":
            custom[key] = {k: _class_from_str(v) for k, v in value.items() if not k.startswith(":")}
        elif key == "clip_range":
            custom[key] = 0.2
        elif key == "train_freq":
            custom[key] = 1
        elif key in ("lr_schedule", "exploration_schedule", "clip_range_vf"):
            custom[key] = (lambda _: 0.0) if key != "clip_range_vf" else None
        else:
            custom[key] = None
    saved = data["observation_space"].get(":type:", "") if isinstance(data.get("observation_space"), dict) else ""
    try:
        return ALGOS[name].load(path, custom_objects=custom, device=device)
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError, OSError, EOFError, zipfile.BadZipFile,
            pickle.UnpicklingError) as e:  # a damaged or hand-made zip: SB3 and torch.load raise any of these
        raise CheckpointError(
            f"Could not load {path} as {name.upper()} for observation space {observation_space} and action space "
            f"{action_space} (saved with {saved}): {e}"
        ) from e
