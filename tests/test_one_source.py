"""One source of truth for what training and dreams share (issue 15, item 5)."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from dreamgym.spaces import ActionAdapter, encode_actions


@pytest.mark.parametrize("space", [spaces.Box(np.array([-1, 0, 0], np.float32), 1.0, (3,), np.float32),
                                   spaces.Box(-2.0, 2.0, (1,), np.float32), spaces.Discrete(3),
                                   spaces.Discrete(4, start=-1)], ids=["carracing", "pendulum", "doom", "start"])
def test_training_encodes_actions_as_the_dream_does(space):
    space.seed(0)
    actions = np.stack([space.sample() for _ in range(16)])
    if isinstance(space, spaces.Box):
        actions[:4] *= 3  # out of bounds: both clip
    adapter = ActionAdapter(space)
    trained = encode_actions(actions, space)  # what M is trained on (data/sequences.py, train/recipes.py)
    assert trained.dtype == np.float32 and trained.shape == (16, adapter.dim)
    np.testing.assert_array_equal(trained, adapter.batch_numpy(actions, 16))  # what the dream feeds M
    np.testing.assert_array_equal(trained[0], adapter.single_numpy(actions[0]))


@pytest.mark.parametrize("env_id", ["CarRacing-v3", "Pendulum-v1", "VizdoomTakeCover-v1"])
def test_tests_and_training_build_a_world_model_config_the_same_way(env_id):
    from dataclasses import asdict

    from dreamgym.registry import dream_spec_for_env
    from dreamgym.testing import world_model_config
    from dreamgym.train.recipes import RecipeConfig, build_model_config

    spec = dream_spec_for_env(env_id)
    frames = spec.frame_key is not None or len(spec.observation_space["shape"]) == 3
    trained = build_model_config(env_id, spec.action_space, spec.observation_space, RecipeConfig(num_start_states=1),
                                 frames=frames, obs_dim=0 if frames else spec.observation_space["shape"][0],
                                 frame_key=spec.frame_key, frame_crop=spec.frame_crop)
    assert asdict(world_model_config(env_id)) == asdict(trained)
    assert world_model_config(env_id, tiny=True).memory.hidden_size == 8


def _dark(x, low, high):
    return np.zeros((128, 128, 3), np.uint8)


def test_a_new_env_is_one_dream_spec(monkeypatch):
    """The renderer, the play keys and the crop of an env all come from its DreamSpec (registry.py)."""
    import dataclasses

    from dreamgym.envs.render import STATE_RENDERERS, state_bars, state_renderer
    from dreamgym.registry import DREAMS, DreamSpec
    from dreamgym.viz.play import controls_for

    box = {"type": "Box", "low": -1.0, "high": 1.0, "shape": [2], "dtype": "float32"}
    spec = DreamSpec(id="Dream-Toy-v0", env_id="Toy-v0", pretrained="toy", max_episode_steps=10, action_space=box,
                     observation_space=box, renderer=f"{__name__}:_dark", play_keys={"a": [1.0, 0.0], "d": [0.0, -1.0]},
                     play_help="a/d: push")
    monkeypatch.setitem(DREAMS, spec.id, spec)
    assert state_renderer("Toy-v0") is _dark and STATE_RENDERERS.get("Toy-v0") is _dark
    assert STATE_RENDERERS.get("Unknown-v0", state_bars) is state_bars
    import pygame

    controls = controls_for("Toy-v0")
    assert controls.help == "a/d: push"
    np.testing.assert_array_equal(controls.action({pygame.K_a, pygame.K_d}), [1.0, -1.0])
    np.testing.assert_array_equal(controls.action(set()), [0.0, 0.0])
    assert {f.name for f in dataclasses.fields(DreamSpec)} >= {"frame_crop", "renderer", "play_keys"}
