"""Tiny world-model configs for tests, docs and smoke runs (like DreamerV3's ``debug`` preset).

They shrink every size so a whole dream runs on a CPU in milliseconds. Never a default model:
``gym.make`` without ``model=`` only loads trained checkpoints from ``pretrained/``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from dreamgym.models.heads import HeadsConfig
from dreamgym.models.mdnrnn import MemoryConfig
from dreamgym.models.vision import VisionConfig
from dreamgym.models.world_model import WorldModelConfig, paper_sizes
from dreamgym.registry import DREAMS, dream_spec_for_env


def world_model_config(env_id: str, tiny: bool = False, **overrides: Any) -> WorldModelConfig:
    """The config of a registered env's world model: the paper's sizes, or tiny ones for tests.

    :param env_id: a real env id with a registered dream (``"CarRacing-v3"``) or a Dream id.
    :param tiny: shrink every size (z 4, LSTM 8, 2 Gaussians, 4-8-8-16 channels).
    :param overrides: WorldModelConfig fields to replace.
    """
    spec = DREAMS.get(env_id) or dream_spec_for_env(env_id)
    if spec is None:
        raise KeyError(f"No registered dream for {env_id!r}; registered: {sorted(s.env_id for s in DREAMS.values())}.")
    pixels = spec.frame_key is not None or len(spec.observation_space.get("shape", [])) == 3
    if pixels:
        vision = VisionConfig(kind="conv_vae", z_dim=4 if tiny else paper_sizes(spec.env_id)[0],
                              channels=[4, 8, 8, 16] if tiny else [32, 64, 128, 256])
    else:
        obs_dim = spec.observation_space["shape"][0]
        vision = VisionConfig(kind="identity", z_dim=obs_dim, obs_dim=obs_dim)
    memory = MemoryConfig(hidden_size=8 if tiny else paper_sizes(spec.env_id)[1], n_mixtures=2 if tiny else 5)
    config = WorldModelConfig(
        env_id=spec.env_id,
        action_space=spec.action_space,
        observation_space=spec.observation_space,
        vision=vision,
        memory=memory,
        heads=HeadsConfig(**spec.heads),
        frame_key=spec.frame_key,
        frame_crop=list(spec.frame_crop) if spec.frame_crop else None,
        max_episode_steps=spec.max_episode_steps,
        render_fps=spec.render_fps,
        num_start_states=4 if tiny else 1,
    )
    return replace(config, **overrides)


def tiny_world_model_config(env_id: str, **overrides: Any) -> WorldModelConfig:
    """``world_model_config(env_id, tiny=True, **overrides)``."""
    return world_model_config(env_id, tiny=True, **overrides)
