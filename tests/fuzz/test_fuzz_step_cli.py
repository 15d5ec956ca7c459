"""Property-based fuzzing of ``step``, the temperature and the CLI's argument parsing (issue 14).

The invariant: valid input works; invalid input raises a DreamgymError (or a Gymnasium error), and the
CLI's parser exits with code 2 (``dreamgym CMD: error: ...``); nothing else ever escapes. Tiny random
models, derandomized examples, and bounded example counts keep the file within seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import math

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dreamgym.cli import build_parser, check_algo_kwargs, check_env_kwargs
from dreamgym.envs.dream import DreamEnv
from dreamgym.envs.dream_vector import DreamVectorEnv
from dreamgym.errors import DreamgymError
from dreamgym.models.world_model import MAX_TEMPERATURE
from dreamgym.viz.cli import check_video_memory

from ..conftest import make_tiny_model

FUZZ = settings(derandomize=True, deadline=None, database=None, max_examples=60,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ALLOWED = (DreamgymError, gym.error.Error)
pytestmark = [pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),  # numpy casting 1e300
              pytest.mark.filterwarnings("ignore::numpy.exceptions.ComplexWarning")]
N_ENVS = 3

# ----- envs -----------------------------------------------------------------------------------------
KINDS = ["single", "single-torch", "vector"]
MODELS = ["pendulum", "carracing", "doom"]  # Box(1,), Box(3,) (pixels), Discrete(3)


@functools.lru_cache(maxsize=None)
def _model(name: str):
    return make_tiny_model(name)


@functools.lru_cache(maxsize=None)
def _env(name: str, kind: str):
    model = _model(name)
    if kind == "vector":
        return DreamVectorEnv(num_envs=N_ENVS, model=model)
    return DreamEnv(model=model, fast=kind == "single")


SPECIAL = [None, True, 0, -1, 1, 2, 3, 2**63, -(2**63) - 1, 10**400, 0.5, -0.0, 1e39, 1e300, math.nan, math.inf,
           -math.inf, "1.0", "gas", b"\x00", 1j, {}, {"a": 1}, (), [], [[]], [1, [2]], object()]
_DTYPES = st.sampled_from([np.float16, np.float32, np.float64, np.int8, np.int32, np.int64, np.uint8, np.bool_,
                           np.complex64])
_ARRAYS = _DTYPES.flatmap(lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)))
_SCALARS = st.one_of(st.integers(), st.floats(), st.booleans(), st.text(max_size=4))
ANY_ACTION = st.one_of(
    st.sampled_from(SPECIAL),
    _SCALARS,
    _ARRAYS,
    st.lists(_SCALARS, max_size=4),
    st.lists(st.lists(st.floats(), max_size=3), max_size=4),
    st.tuples(st.floats(), st.floats(), st.floats()),
)


def _valid_action(env, data) -> object:
    space = env.action_space
    seed = data.draw(st.integers(0, 2**32 - 1), label="sample seed")
    space.seed(seed)
    return space.sample()


def _check_result(env, result) -> None:
    obs, reward, terminated, truncated, info = result
    assert isinstance(info, dict)
    if isinstance(env, DreamVectorEnv):
        assert obs.shape == (N_ENVS, *env.single_observation_space.shape)
        assert reward.shape == terminated.shape == truncated.shape == (N_ENVS,)
        assert np.isfinite(reward).all()
    else:
        assert env.observation_space.contains(obs) or obs.shape == env.observation_space.shape
        assert math.isfinite(reward) and isinstance(terminated, bool) and isinstance(truncated, bool)
    assert np.isfinite(obs).all()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", MODELS)
@FUZZ
@given(data=st.data())
def test_step_takes_valid_actions_and_refuses_the_rest_with_dreamgym_errors(name, kind, data):
    env = _env(name, kind)
    env.reset(seed=data.draw(st.integers(0, 2**31), label="reset seed"))
    _check_result(env, env.step(_valid_action(env, data)))
    action = data.draw(ANY_ACTION, label="action")
    try:
        result = env.step(action)
    except ALLOWED:
        return
    _check_result(env, result)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name, action", [("pendulum", 10**400), ("carracing", [0.0, 10**400, 0.0]),
                                          ("doom", [[], [0.0]]), ("doom", [1, [2]])],
                         ids=["box-int-1e400", "box-list-with-int-1e400", "discrete-ragged-list", "discrete-ragged-ints"])
def test_known_action_bugs_raise_dreamgym_errors(name, action, kind):
    env = _env(name, kind)
    env.reset(seed=0)
    with pytest.raises(DreamgymError):
        env.step([action] * N_ENVS if kind == "vector" else action)


@pytest.mark.parametrize("action", [np.array([1 + 5j], np.complex64), ["1.5"], np.array(["0.5"]),
                                    np.array([np.datetime64(1, "s")])], ids=["complex", "str-list", "str-array",
                                                                             "datetime"])
def test_non_numeric_box_actions_are_refused(action):
    env = _env("pendulum", "single")
    env.reset(seed=0)
    with pytest.raises(DreamgymError):
        env.step(action)


_TAUS = st.one_of(
    st.floats(), st.integers(), st.sampled_from([None, True, "1.0", 1e39, 1e300, 10**400, MAX_TEMPERATURE, -0.0]),
    st.floats(0, MAX_TEMPERATURE).map(np.float32), st.floats(0, MAX_TEMPERATURE).map(np.array),
    hnp.arrays(st.sampled_from([np.float16, np.float32, np.float64, np.int64, np.bool_]), hnp.array_shapes(min_dims=0, max_dims=0)),
)


def _valid_tau(tau: object) -> bool:
    if isinstance(tau, np.ndarray):
        if tau.ndim != 0 or tau.dtype.kind not in "iuf":
            return False
        tau = tau.item()
    if isinstance(tau, bool) or not isinstance(tau, (int, float, np.integer, np.floating)):
        return False
    try:
        return 0 <= float(tau) <= MAX_TEMPERATURE
    except OverflowError:
        return False


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(tau=_TAUS)
def test_one_temperature_is_taken_or_refused_with_a_dreamgym_error(kind, tau):
    env = _env("pendulum", kind)
    env.temperature = 1.0
    if _valid_tau(tau):
        env.temperature = tau
        assert env.temperature == pytest.approx(float(np.asarray(tau)), rel=1e-3)
        env.reset(seed=0)
        _check_result(env, env.step(_valid_action_fixed(env)))
    else:
        with pytest.raises(DreamgymError):
            env.temperature = tau
        assert env.temperature == 1.0  # nothing stored
        if tau is not None:  # temperature=None at construction means the model's default
            with pytest.raises(DreamgymError):
                DreamEnv(model=_model("pendulum"), temperature=tau)


def _valid_action_fixed(env):
    return np.zeros((N_ENVS, 1), np.float32) if isinstance(env, DreamVectorEnv) else np.zeros(1, np.float32)


@FUZZ
@given(taus=st.lists(_TAUS, min_size=N_ENVS, max_size=N_ENVS))
def test_one_temperature_per_env_is_taken_or_refused_with_a_dreamgym_error(taus):
    env = _env("pendulum", "vector")
    env.set_attr("temperature", 1.0)
    if all(_valid_tau(t) for t in taus):
        env.set_attr("temperature", taus)
        assert np.allclose(env.get_attr("temperature"), [float(np.asarray(t)) for t in taus], rtol=1e-3)
    else:
        with pytest.raises(DreamgymError):
            env.set_attr("temperature", taus)
        assert env.temperature == 1.0


@FUZZ
@given(taus=st.lists(st.floats(0, 2), max_size=6).filter(lambda t: len(t) not in (1, N_ENVS)))
def test_temperature_sequences_of_the_wrong_length_raise_dreamgym_errors(taus):
    with pytest.raises(DreamgymError):
        _env("pendulum", "vector").set_attr("temperature", taus)
    with pytest.raises(DreamgymError):
        _env("pendulum", "single").temperature = taus


# ----- CLI -----------------------------------------------------------------------------------------
def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


COMMANDS = _subparsers()
VALUES = ["0", "1", "-1", "3", "0.5", "1e39", "nan", "inf", "-inf", "1e-300", "", " ", "{}", "{bad", "[1]",
          '{"bogus": 1}', '{"g": 9.8}', '{"n_steps": 64}', "null", "cpu", "cuda", "cuda:7", "mps", "meta", "tiny",
          "paper", "ppo", "cmaes", "dqn", "latent", "random", "Pendulum-v1", "Dream-Pendulum-v0", "this:Pendulum-v1",
          "runs/x", "/dev/null", "-", "--", "9" * 30, "٣", "\x00", "é"]


@st.composite
def _argv(draw) -> list[str]:
    command = draw(st.sampled_from(sorted(COMMANDS)))
    flags = sorted({s for a in COMMANDS[command]._actions for s in a.option_strings if s not in ("-h", "--help")})
    token = st.one_of(st.sampled_from(flags or ["--out"]), st.sampled_from(VALUES), st.text(max_size=6))
    return [command, *draw(st.lists(token, max_size=8))]


def _parse(argv: list[str]) -> argparse.Namespace | None:
    """Parse; None if argparse refused (exit 2). Anything else fails the test."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return build_parser().parse_args(argv)
    except SystemExit as e:
        assert e.code == 2, (argv, e.code, out.getvalue())
        assert f"dreamgym {argv[0]}: error:" in err.getvalue() or "dreamgym: error:" in err.getvalue()
        return None


def _asks_help(argv: list[str]) -> bool:
    return any(a.startswith("-h") or (len(a) > 2 and "--help".startswith(a)) for a in argv)


@settings(FUZZ, max_examples=300)
@given(argv=_argv())
def test_cli_parsing_succeeds_or_exits_2(argv):
    if _asks_help(argv):
        return  # help exits 0, as it should
    args = _parse(argv)
    if args is None:
        return
    try:  # the instant checks that run before a command starts work
        if args.command == "collect" and ":" not in args.env_id:  # no module:Env, which would import a module
            check_env_kwargs(args.env_id, args.env_kwargs)
        elif args.command == "train-agent":
            check_algo_kwargs(args.algo, args.algo_kwargs)
        elif args.command == "dream":
            check_video_memory(args.steps, args.scale, args.side_by_side)
    except DreamgymError:
        pass


@FUZZ
@given(argv=st.lists(st.text(max_size=8), max_size=6))
def test_any_argv_at_all_succeeds_or_exits_2(argv):
    if _asks_help(argv):
        return
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            build_parser().parse_args(argv)
    except SystemExit as e:
        assert e.code == 2, (argv, e.code)
