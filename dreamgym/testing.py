"""Tiny world-model configs for tests, docs and smoke runs (like DreamerV3's ``debug`` preset).

They shrink every size so a whole dream runs on a CPU in milliseconds. Never a default model:
``gym.make`` without ``model=`` only loads trained checkpoints from ``pretrained/``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from dreamgym.models.world_model import WorldModelConfig
from dreamgym.registry import DREAMS, dream_spec_for_env

TINY = dict(z_dim=4, hidden_size=8, n_mixtures=2, channels=[4, 8, 8, 16], num_start_states=4)


def world_model_config(env_id: str, tiny: bool = False, **overrides: Any) -> WorldModelConfig:
    """The config of a registered env's world model: the paper's sizes, or tiny ones for tests.

    :param env_id: a real env id with a registered dream (``"CarRacing-v3"``) or a Dream id.
    :param tiny: shrink every size (z 4, LSTM 8, 2 Gaussians, 4-8-8-16 channels).
    :param overrides: WorldModelConfig fields to replace.
    """
    from dreamgym.train.recipes import RecipeConfig, build_model_config

    spec = DREAMS.get(env_id) or dream_spec_for_env(env_id)
    if spec is None:
        raise KeyError(f"No registered dream for {env_id!r}; registered: {sorted(s.env_id for s in DREAMS.values())}.")
    frames = spec.frame_key is not None or len(spec.observation_space.get("shape", [])) == 3
    recipe = RecipeConfig(**TINY) if tiny else RecipeConfig(num_start_states=1)
    config = build_model_config(spec.env_id, spec.action_space, spec.observation_space, recipe, frames=frames,
                                obs_dim=0 if frames else spec.observation_space["shape"][0], frame_key=spec.frame_key,
                                frame_crop=spec.frame_crop)
    return replace(config, **overrides)


def tiny_world_model_config(env_id: str, **overrides: Any) -> WorldModelConfig:
    """``world_model_config(env_id, tiny=True, **overrides)``."""
    return world_model_config(env_id, tiny=True, **overrides)
