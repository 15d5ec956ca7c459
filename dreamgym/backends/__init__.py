"""World-model backends: what a dream, its real twin and the agents need from a world model.

A backend is an ``nn.Module`` with the hub mixin (``save_pretrained`` / ``from_pretrained``) whose
config.json names it in its ``backend`` field; checkpoints without the field are ``"mdnrnn"``
(:class:`~dreamgym.models.world_model.WorldModel`, V + MDN-RNN). The dream's state is an explicit
*carry*, as in DreamerV3: an opaque ``dict[str, Tensor]`` whose every value is batch-first (b, ...).
The envs index, subset and reset it without knowing its keys. See docs/architecture.md.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch
from gymnasium import spaces

from dreamgym import rng
from dreamgym.errors import ConfigError

Carry = dict[str, Any]  # batch-first torch tensors (numpy arrays on a backend's lean path)
DEFAULT_BACKEND = "mdnrnn"  # what a config.json without a "backend" field holds


class Noise(NamedTuple):
    """A dream step's random streams: noise key and step counter (b,) int64 of every env.

    A backend draws all its randomness from them (:func:`dreamgym.rng.uniform_and_normal`, or its
    numpy twin on a lean path), so a trajectory depends on its seed only, never on the batch.
    """

    keys: Any
    t: Any

    def uniform_and_normal(self, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(b, width) uniforms in [0, 1) and standard normals of this step."""
        return rng.uniform_and_normal(self.keys, self.t, width)


class Episodes(NamedTuple):
    """What new dream episodes drew at reset, for backends that use it (each (b,) on the dream's device).

    :param keys: the episodes' noise keys (per-episode randomness, e.g. a dropout mask, comes from them).
    :param member: the ensemble member each episode follows (0 without an ensemble).
    :param dropout_masks: whether a dropout-trained backend draws a mask per episode (a dream option).
    """

    keys: torch.Tensor
    member: torch.Tensor
    dropout_masks: bool = True


@runtime_checkable
class Backend(Protocol):
    """The world-model protocol. ``config`` holds at least env_id, action_space, observation_space,
    max_episode_steps, default_temperature, render_fps, num_start_states, dream (DreamOptions),
    env_kwargs, burn_in_steps and backend; ``action_space`` is the real env's.
    Optional: ``num_members`` (ensembles, default 1; the carry then holds ``"disagreement"`` (b,)),
    ``done_threshold`` (0.5), ``termination_pos_weight`` (1.0) and ``lean()``.
    """

    config: Any
    action_space: spaces.Space
    source: dict[str, str]

    def initial(self, index: torch.Tensor, episodes: Episodes | None = None) -> Carry:
        """The carry of stored start states ``index`` (b,)."""

    def start(self, latent: torch.Tensor) -> Carry:
        """The carry at a real episode's start whose observation encodes to ``latent`` (b, d): fresh memory.
        ``latent`` is what ``features(carry, "z")`` shows (``reset(options={"start_latent": ...})``)."""

    def imagine(self, carry: Carry, action: torch.Tensor, tau: torch.Tensor, noise: Noise,
                dtype: torch.dtype = torch.float32) -> tuple[Carry, torch.Tensor, torch.Tensor]:
        """One dream step of every env: M-ready actions (b, a), temperatures (b,) -> carry', reward (b,), p(done) (b,).
        Returns a new carry (never changes the one given)."""

    def observe(self, carry: Carry | None, obs: Any, action: torch.Tensor | None,
                sample: np.random.Generator | None = None) -> Carry:
        """The real twin's step: the carry after ``action`` led to the real ``obs`` (a batch); ``carry=None``
        at an episode's first observation. ``sample``: draw the latent from the posterior with it."""

    def features(self, carry: Carry, obs_type: str) -> torch.Tensor:
        """What an agent sees, (b, *feature_space(obs_type).shape)."""

    def feature_space(self, obs_type: str) -> spaces.Box:
        """The single-env observation space of ``obs_type``; ConfigError for one the backend lacks."""

    def decode(self, carry: Carry) -> torch.Tensor:
        """Pictures of the carry: frames (b, H, W, 3) uint8, or real-env states (b, obs_dim) float32."""


_BACKENDS: dict[str, type | str] = {  # the built-in backends, imported on first use
    DEFAULT_BACKEND: "dreamgym.models.world_model:WorldModel",
    "rssm": "dreamgym.models.rssm_world_model:RSSMWorldModel",
}


def register_backend(name: str, cls: type | str) -> None:
    """Make config.json's ``"backend": name`` load with ``cls`` (a class, or ``"module:Class"`` imported on use)."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"A backend name must be a non-empty string, got {name!r}.")
    known = _BACKENDS.get(name)
    if known is not None and known is not cls and _resolve(known) is not cls:
        raise ConfigError(f"The backend name {name!r} is taken by {known}; register {cls} under another name.")
    _BACKENDS[name] = cls


def backend_names() -> list[str]:
    return sorted(_BACKENDS)


def backend_class(name: Any) -> type:
    """The class registered as ``name``; ConfigError naming the known backends otherwise."""
    if not isinstance(name, str) or name not in _BACKENDS:
        raise ConfigError(f"Unknown world-model backend {name!r} (config.json's \"backend\"); known backends: "
                          f"{backend_names()}. Register it first (dreamgym.backends.register_backend(name, cls)), "
                          "or fix the field.")
    cls = _resolve(_BACKENDS[name])
    _BACKENDS[name] = cls
    return cls


def _resolve(entry: type | str) -> type:
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        return getattr(importlib.import_module(module), attr)
    return entry


def backend_of(config: Mapping[str, Any]) -> str:
    """The backend a parsed config.json names; ``"mdnrnn"`` for checkpoints from before the field."""
    return config.get("backend", DEFAULT_BACKEND)


def is_backend(obj: Any) -> bool:
    """True for a loaded world model of any registered backend."""
    return isinstance(obj, tuple(backend_class(n) for n in backend_names()))


def load_backend(name: str | Path, revision: str | None = None) -> Any:
    """Load the world model in a checkpoint directory or Hub repo, with the class its ``backend`` names."""
    from dreamgym.checkpoint import read_config

    kind = DEFAULT_BACKEND
    if Path(name).is_dir():
        kind = backend_of(read_config(name))
    else:
        kind = _hub_backend(str(name), revision)
    cls = backend_class(kind)
    return cls.from_pretrained(name, revision=revision) if revision is not None else cls.from_pretrained(name)


def _hub_backend(repo_id: str, revision: str | None) -> str:
    """The backend of a Hub checkpoint; the default when its config cannot be read here (loading then says why)."""
    from huggingface_hub import hf_hub_download

    from dreamgym.checkpoint import CONFIG_NAME, read_config

    try:
        path = hf_hub_download(repo_id=repo_id, filename=CONFIG_NAME, revision=revision)
        return backend_of(read_config(Path(path).parent))
    except Exception:  # noqa: BLE001  (offline, missing, malformed: from_pretrained reports it)
        return DEFAULT_BACKEND
