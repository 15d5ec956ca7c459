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
