"""dreamgym: trained world models as Gymnasium environments.

>>> import gymnasium as gym, dreamgym
>>> env = gym.make("Dream-CarRacing-v0", temperature=1.15)  # doctest: +SKIP
>>> real = dreamgym.make_real("Dream-CarRacing-v0")  # doctest: +SKIP
"""

from __future__ import annotations

import gymnasium as gym

from dreamgym.envs.dream import DreamEnv
from dreamgym.envs.dream_vector import DreamVectorEnv
from dreamgym.envs.real import RealTwin, make_real
from dreamgym.errors import CheckpointError, ConfigError, DatasetError, DreamgymError, InvalidActionError, NumericalError
from dreamgym.models.world_model import WorldModel, WorldModelConfig
from dreamgym.registry import DREAMS

__version__ = "0.1.0"

__all__ = [
    "DREAMS",
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "DreamEnv",
    "DreamVectorEnv",
    "DreamgymError",
    "InvalidActionError",
    "NumericalError",
    "RealTwin",
    "WorldModel",
    "WorldModelConfig",
    "make_real",
]


def _register() -> None:
    for spec in DREAMS.values():
        if spec.id in gym.registry:
            continue
        gym.register(
            id=spec.id,
            entry_point="dreamgym.envs.dream:DreamEnv",
            vector_entry_point="dreamgym.envs.dream_vector:DreamVectorEnv",
            max_episode_steps=spec.max_episode_steps,
            kwargs={"model": spec.pretrained, "dream_id": spec.id},
        )


_register()
