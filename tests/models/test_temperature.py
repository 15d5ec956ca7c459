"""check_temperature: one bound, and every way of setting tau agrees (issue 14)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from dreamgym.errors import ConfigError
from dreamgym.models.world_model import MAX_TEMPERATURE, check_temperature
from tests.conftest import make_tiny_model

GOOD = [0, 0.5, 1.15, MAX_TEMPERATURE, np.float32(1.3), np.int64(2), np.array(1.3), np.array(2, dtype=np.int8),
        np.array(0.5, dtype=np.float16)]
BAD = [1e39, 1e300, 10**400, MAX_TEMPERATURE * 1.01, np.float64(1e39), np.array(1e300), -0.1, float("nan"),
       np.array(np.nan), np.array(True), np.bool_(True), np.array("1.0"), "1.0", None]


@pytest.mark.parametrize("tau", GOOD, ids=repr)
def test_good_temperatures_read_back_as_floats(tau):
    assert check_temperature(tau) == pytest.approx(float(np.asarray(tau)))


@pytest.mark.parametrize("tau", BAD, ids=repr)
def test_bad_temperatures_raise_config_error(tau):
    with pytest.raises(ConfigError, match=r"temperature must be a finite number in \[0, 1000\]"):
        check_temperature(tau)


@pytest.fixture(scope="module")
def model():
    return make_tiny_model("pendulum")


@pytest.mark.parametrize("tau", [1e39, 1e300, np.float64(1e39), np.array(1e300), -1.0])
def test_every_path_refuses_an_overflowing_tau(model, tau):
    with pytest.raises(ConfigError, match="temperature must be"):
        gym.make("Dream-Pendulum-v0", model=model, temperature=tau)
    env = gym.make("Dream-Pendulum-v0", model=model)
    with pytest.raises(ConfigError, match="temperature must be"):
        env.unwrapped.temperature = tau
    venv = gym.make_vec("Dream-Pendulum-v0", num_envs=2, model=model)
    for value in (tau, [tau, 1.0], np.array([tau, 1.0]), [np.array(tau), 1.0]):
        with pytest.raises(ConfigError, match="temperature must be"):
            venv.unwrapped.set_attr("temperature", value)
    assert venv.unwrapped.temperature == 1.0  # nothing stored, no inf


@pytest.mark.parametrize("tau", [np.array(1.3), np.float32(1.3), 1.3, np.array(1.3, dtype=np.float32)])
def test_a_0d_array_and_a_numpy_scalar_are_taken_alike(model, tau):
    env = gym.make("Dream-Pendulum-v0", model=model, temperature=tau)
    assert env.unwrapped.temperature == pytest.approx(1.3)
    env.unwrapped.temperature = tau
    venv = gym.make_vec("Dream-Pendulum-v0", num_envs=2, model=model, temperature=tau)
    venv.unwrapped.set_attr("temperature", [tau, 0.5])
    assert np.allclose(venv.unwrapped.temperature, [1.3, 0.5])
