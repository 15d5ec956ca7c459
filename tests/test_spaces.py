import numpy as np
import pytest
import torch
from gymnasium import spaces

from dreamgym.errors import ConfigError, InvalidActionError
from dreamgym.spaces import ActionAdapter, same_space, space_from_dict, space_to_dict


@pytest.mark.parametrize(
    "space",
    [
        spaces.Box(np.array([-1, 0, 0], np.float32), np.ones(3, np.float32)),
        spaces.Box(0, 255, (4, 5, 3), np.uint8),
        spaces.Discrete(3),
        spaces.Discrete(4, start=1),
        spaces.Dict({"screen": spaces.Box(0, 255, (2, 2, 3), np.uint8), "v": spaces.Discrete(2)}),
    ],
)
def test_space_json_round_trip(space):
    assert space_from_dict(space_to_dict(space)) == space


def test_uniform_bounds_are_one_number_and_old_lists_still_match():
    image = spaces.Box(0, 255, (96, 96, 3), np.uint8)
    d = space_to_dict(image)
    assert (d["low"], d["high"]) == (0, 255)  # not 2 x 27,648 numbers in every config.json
    old = {**d, "low": image.low.tolist(), "high": image.high.tolist()}  # how checkpoints wrote it before
    assert space_from_dict(old) == image and same_space(old, d)
    assert not same_space(d, space_to_dict(spaces.Box(0, 1, (96, 96, 3), np.uint8)))
    mixed = space_to_dict(spaces.Box(np.array([-1, 0, 0], np.float32), np.ones(3, np.float32)))
    assert mixed["low"] == [-1.0, 0.0, 0.0] and mixed["high"] == 1.0


def test_unsupported_space_is_a_clear_error():
    with pytest.raises(ConfigError, match="Box, Discrete and Dict"):
        space_to_dict(spaces.MultiBinary(3))


def test_box_actions_are_clipped_and_checked():
    adapter = ActionAdapter(spaces.Box(np.array([-1, 0, 0], np.float32), np.ones(3, np.float32)))
    out = adapter.batch(np.array([[2.0, -1.0, 0.5]]), 1)
    assert torch.equal(out, torch.tensor([[1.0, 0.0, 0.5]]))
    assert adapter.single([0.1, 0.2, 0.3]).shape == (1, 3)
    with pytest.raises(InvalidActionError, match=r"shape \(2, 3\)"):
        adapter.batch(np.zeros((2, 2)), 2)
    with pytest.raises(InvalidActionError, match="NaN or inf"):
        adapter.single([np.nan, 0.0, 0.0])
    with pytest.raises(InvalidActionError, match="numeric"):
        adapter.single(["left", "up", "down"])


def test_discrete_actions_are_one_hot_and_checked():
    adapter = ActionAdapter(spaces.Discrete(3))
    assert torch.equal(adapter.batch(np.array([0, 2]), 2), torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]))
    assert torch.equal(adapter.single(np.int64(1)), torch.tensor([[0.0, 1.0, 0.0]]))
    with pytest.raises(InvalidActionError, match=r"in \[0, 2\]"):
        adapter.single(3)
    with pytest.raises(InvalidActionError, match="integer"):
        adapter.single(0.5)
    with pytest.raises(InvalidActionError, match="one integer"):
        adapter.single([0, 1])


@pytest.mark.parametrize(
    "d,match",
    [
        ([], "space dict with type"),
        ({"type": "MultiBinary", "n": 3}, "space dict with type"),
        ({"type": "Box", "shape": [3], "low": 0, "high": 1}, r"missing keys \['dtype'\]"),
        ({"type": "Box", "shape": [3], "dtype": "float32", "low": 0, "high": 1, "extra": 1}, r"unknown keys \['extra'\]"),
        ({"type": "Box", "shape": "3", "dtype": "float32", "low": 0, "high": 1}, "list of positive integers"),
        ({"type": "Box", "shape": [0], "dtype": "float32", "low": 0, "high": 1}, "list of positive integers"),
        ({"type": "Box", "shape": [2**20, 2**20], "dtype": "uint8", "low": 0, "high": 1}, "at most 16777216"),
        ({"type": "Box", "shape": [3], "dtype": "object", "low": 0, "high": 1}, r"\['dtype'\] must be one of"),
        ({"type": "Box", "shape": [3], "dtype": "float32", "low": "0", "high": 1}, "number or nested lists"),
        ({"type": "Box", "shape": [3], "dtype": "float32", "low": [0, 0], "high": 1}, "does not fit the Box's shape"),
        ({"type": "Box", "shape": [3], "dtype": "float32", "low": 1, "high": 0}, "low <= high"),
        ({"type": "Box", "shape": [3], "dtype": "uint8", "low": 0, "high": 256}, "values a uint8 can hold"),
        ({"type": "Box", "shape": [3], "dtype": "float32", "low": -1e300, "high": 0}, "values a float32 can hold"),
        ({"type": "Box", "shape": [3], "dtype": "float32", "low": float("nan"), "high": 0}, "values a float32 can hold"),
        ({"type": "Discrete", "n": 0}, r"integer n in \[1, 65536\]"),
        ({"type": "Discrete", "n": "3"}, "integer n"),
        ({"type": "Discrete", "n": 2**40}, "integer n"),
        ({"type": "Discrete", "n": 3, "start": 0.5}, "integer start"),
        ({"type": "Dict", "spaces": [1]}, r"\['spaces'\] must be a JSON object"),
        ({"type": "Dict", "spaces": {"a": {"type": "Box"}}}, r"space\['a'\] is a Box space dict"),
    ],
)
def test_bad_space_dicts_are_config_errors_naming_the_key(d, match):
    with pytest.raises(ConfigError, match=match):
        space_from_dict(d)


def test_unbounded_float_boxes_still_round_trip():
    box = spaces.Box(-np.inf, np.inf, (2,), np.float32)
    assert space_from_dict(space_to_dict(box)) == box
