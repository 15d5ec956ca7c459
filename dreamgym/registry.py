"""The registered dreams: Dream id -> real env, shipped model name and defaults.

``import dreamgym`` registers every id here with Gymnasium (see ``dreamgym/__init__.py``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
from gymnasium.error import DependencyNotInstalled

from dreamgym.errors import ConfigError


@dataclass(frozen=True)
class DreamSpec:
    """One registered dream.

    :param id: the Gymnasium id of the dream (``Dream-CarRacing-v0``).
    :param env_id: the real env it dreams of.
    :param pretrained: the folder under ``pretrained/`` that ``gym.make`` loads when no ``model`` is given.
    :param max_episode_steps: the time limit of dream and real twin alike.
    :param action_space: the real env's action space (as ``space_to_dict`` writes it), known without
        importing the real env.
    :param observation_space: the real env's observation space, likewise.
    :param frame_key: key of the image in dict observations; None for image or state observations.
    :param frame_crop: ``[top, bottom, left, right]`` kept before resizing frames to 64×64.
    :param render_fps: the real env's frame rate.
    :param module: module to import so the real env id is registered (ViZDoom's wrapper).
    :param pip: the install command when ``module`` is missing.
    :param heads: heads defaults (Doom: constant reward 1 per step survived, as in the paper).
    :param renderer: ``"module:function"`` drawing a dreamed state vector as the real env looks,
        ``f(x, low, high) -> (128, 128, 3) uint8`` (None: bars; frame dreams decode their own pictures).
    :param play_keys: ``dreamgym play``'s keys (pygame names): for a Box, each held key adds its vector to
        the action; for a Discrete, the action of the one key held (none, or several: ``play_noop``).
    :param play_noop: the Discrete action played when no single mapped key is held.
    :param play_help: the keys in one line, shown under the picture.
    """

    id: str
    env_id: str
    pretrained: str
    max_episode_steps: int
    action_space: dict[str, Any]
    observation_space: dict[str, Any]
    frame_key: str | None = None
    frame_crop: tuple[int, int, int, int] | None = None
    render_fps: int = 50
    module: str | None = None
    pip: str | None = None
    heads: dict[str, Any] = field(default_factory=dict)
    renderer: str | None = None
    play_keys: dict[str, Any] = field(default_factory=dict)
    play_noop: int = 0
    play_help: str = ""


def _box(low: list[float], high: list[float], shape: list[int], dtype: str = "float32") -> dict[str, Any]:
    return {"type": "Box", "low": low, "high": high, "shape": shape, "dtype": dtype}


DREAMS: dict[str, DreamSpec] = {}


def _add(spec: DreamSpec) -> None:
    DREAMS[spec.id] = spec


_add(
    DreamSpec(
        id="Dream-CarRacing-v0",
        env_id="CarRacing-v3",
        pretrained="carracing",
        max_episode_steps=1000,
        action_space=_box([-1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [3]),
        observation_space={"type": "Box", "shape": [96, 96, 3], "dtype": "uint8", "low": 0, "high": 255},
        frame_crop=(0, 84, 0, 96),  # drop the dashboard, as the paper did
        render_fps=50,
        # gymnasium's own CarRacing keyboard values: [steer, gas, brake]
        play_keys={"left": [-1.0, 0.0, 0.0], "right": [1.0, 0.0, 0.0], "up": [0.0, 1.0, 0.0], "down": [0.0, 0.0, 0.8]},
        play_help="arrows: steer / gas / brake",
    )
)
_add(
    DreamSpec(
        id="Dream-DoomTakeCover-v0",
        env_id="VizdoomTakeCover-v1",
        pretrained="doom-takecover",
        max_episode_steps=2100,
        action_space={"type": "Discrete", "n": 3, "start": 0},
        observation_space={"type": "Dict", "spaces": {}},
        frame_key="screen",
        render_fps=35,
        module="vizdoom.gymnasium_wrapper",
        pip='pip install "dreamgym[doom]"  (or: pip install vizdoom)',
        heads={"reward": False, "constant_reward": 1.0},
        # ViZDoom's Discrete(3) over take_cover.cfg's {MOVE_LEFT, MOVE_RIGHT}: 0 no-op, 1 right, 2 left (viz/play.py)
        play_keys={"left": 2, "right": 1},
        play_noop=0,
        play_help="left/right: move",
    )
)
_add(
    DreamSpec(
        id="Dream-Pendulum-v0",
        env_id="Pendulum-v1",
        pretrained="pendulum",
        max_episode_steps=200,
        action_space=_box([-2.0], [2.0], [1]),
        observation_space=_box([-1.0, -1.0, -8.0], [1.0, 1.0, 8.0], [3]),
        render_fps=30,
        heads={"termination": False},
        renderer="dreamgym.envs.render:pendulum_frame",  # Pendulum-v1's own picture of the dreamed state
        play_keys={"left": [2.0], "right": [-2.0]},  # torque: counter-clockwise on screen, clockwise
        play_help="left/right: torque",
    )
)


def dream_spec(dream_id: str) -> DreamSpec:
    """The DreamSpec of a registered dream id (``"dreamgym:"`` prefix allowed)."""
    key = dream_id.split(":", 1)[-1]
    if key not in DREAMS:
        raise ConfigError(f"Unknown dream id {dream_id!r}; expected one of {sorted(DREAMS)}. "
                          "Pass a registered Dream id, or a world model (checkpoint directory or Hub id).")
    return DREAMS[key]


def checked_env_id(env_id: str, origin: str) -> str:
    """A real env id read from a file (``origin``), refused if it has Gymnasium's ``module:`` part.

    ``gym.make("module:Env-v0")`` imports ``module`` first: an id from a checkpoint or dataset the
    user did not write must not choose code to run. Ids the user passes are not checked.
    """
    if not isinstance(env_id, str) or ":" in env_id:
        module = str(env_id).split(":", 1)[0]
        raise ConfigError(
            f"{origin} names the real env {env_id!r}; making it would import the module {module!r}, named by "
            "that file. dreamgym only makes registered env ids without a module part from files. If you trust "
            f"{module!r}, import it yourself, or pass the env id explicitly (make_real(..., env_id={env_id!r}))."
        )
    return env_id


def dream_spec_for_env(env_id: str) -> DreamSpec | None:
    """The registered dream of a real env id, if any."""
    return next((s for s in DREAMS.values() if s.env_id == env_id), None)


def make_real_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make(env_id)``, importing the module that registers it first (ViZDoom)."""
    spec = dream_spec_for_env(env_id)
    if spec is not None and spec.module is not None:
        try:
            importlib.import_module(spec.module)
        except ImportError as e:
            raise DependencyNotInstalled(f"{env_id} needs {spec.module.split('.')[0]}: {spec.pip}") from e
    try:
        return gym.make(env_id, **kwargs)
    except DependencyNotInstalled:
        raise
    except gym.error.Error as e:
        raise ConfigError(f"Could not make the real env {env_id!r}: {e}") from e
