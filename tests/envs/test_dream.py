import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import dreamgym
from dreamgym import CheckpointError, ConfigError, DreamEnv, InvalidActionError, NumericalError

from ..conftest import make_tiny_model


def _obs_types(dream_id):
    return ["latent", "z"] + ([] if dream_id == "Dream-Pendulum-v0" else ["pixels"])


def test_both_env_checkers_pass_for_every_obs_type(dream):
    dream_id, path = dream
    for obs_type in _obs_types(dream_id):
        env = gym.make(dream_id, model=str(path), obs_type=obs_type, render_mode="rgb_array")
        gym_check_env(env.unwrapped, skip_render_check=False)
        sb3_check_env(env, warn=True)
        obs, _ = env.reset(seed=0)
        assert env.observation_space.contains(obs)


def test_spaces_are_the_real_envs(model_dirs):
    env = gym.make("Dream-CarRacing-v0", model=str(model_dirs["carracing"]))
    assert env.action_space == gym.make("CarRacing-v3").action_space
    assert env.observation_space.shape == (4 + 8,)
    assert gym.make("Dream-Pendulum-v0", model=str(model_dirs["pendulum"])).action_space == gym.make("Pendulum-v1").action_space
    doom = gym.make("Dream-DoomTakeCover-v0", model=str(model_dirs["doom"]))
    assert doom.action_space == gym.spaces.Discrete(3)
    pix = gym.make("Dream-CarRacing-v0", model=str(model_dirs["carracing"]), obs_type="pixels")
    assert pix.observation_space == gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)


def _rollout(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for a in actions:
        obs, r, term, trunc, _ = env.step(a)
        out.append(np.append(obs.astype(np.float64).ravel(), [r, term, trunc]))
        if term or trunc:
            break
    return out


def test_seeded_determinism(dream):
    dream_id, path = dream
    env = gym.make(dream_id, model=str(path))
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(30)]
    a, b = _rollout(env, 7, actions), _rollout(gym.make(dream_id, model=str(path)), 7, actions)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == len(b)
    c = _rollout(env, 8, actions)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_temperature_zero_is_deterministic_and_settable(model_dirs):
    # one start state: with tau = 0 nothing is random, so any seed gives the same dream
    model = make_tiny_model("carracing", num_start_states=1)
    env = DreamEnv(model=model, temperature=0.0)
    actions = [np.array([0.1, 0.5, 0.0], np.float32)] * 20
    assert all(np.array_equal(x, y) for x, y in zip(_rollout(env, 1, actions), _rollout(env, 2, actions)))
    env.temperature = 1.3
    assert env.temperature == pytest.approx(1.3)
    assert not all(np.array_equal(x, y) for x, y in zip(_rollout(env, 1, actions), _rollout(env, 2, actions)))
    wrapped = gym.make("Dream-CarRacing-v0", model=str(model_dirs["carracing"]), temperature=1.15)
    assert wrapped.unwrapped.temperature == 1.15
    wrapped.unwrapped.temperature = 0.5
    assert wrapped.unwrapped.temperature == 0.5


@pytest.mark.parametrize("tau", [-0.1, float("nan"), float("inf"), "hot", None, True, [1.0, 2.0]])
def test_bad_temperature_names_the_valid_range(model_dirs, tau):
    env = gym.make("Dream-Pendulum-v0", model=str(model_dirs["pendulum"]))
    with pytest.raises(ValueError, match="temperature must be"):
        env.unwrapped.temperature = tau
    if tau is not None:
        with pytest.raises(ValueError, match="temperature must be"):
            gym.make("Dream-Pendulum-v0", model=str(model_dirs["pendulum"]), temperature=tau)


def test_bad_actions_are_rejected(model_dirs):
    env = gym.make("Dream-CarRacing-v0", model=str(model_dirs["carracing"]))
    env.reset(seed=0)
    for bad, match in [(np.zeros(2), "shape"), (np.array([np.nan, 0, 0]), "NaN"), ("gas", "numeric")]:
        with pytest.raises(InvalidActionError, match=match):
            env.step(bad)
    obs, *_ = env.step(np.array([5.0, 2.0, -1.0]))  # out of bounds: clipped, as CarRacing would
    doom = gym.make("Dream-DoomTakeCover-v0", model=str(model_dirs["doom"]))
    doom.reset(seed=0)
    for bad in (3, -1, 1.5, [0, 1]):
        with pytest.raises(InvalidActionError):
            doom.step(bad)


def test_out_of_bounds_actions_equal_clipped_ones(model_dirs):
    env = DreamEnv(model=str(model_dirs["carracing"]))
    a = _rollout(env, 3, [np.array([3.0, -2.0, 9.0])] * 5)
    b = _rollout(env, 3, [np.array([1.0, 0.0, 1.0])] * 5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_step_before_reset_and_fresh_arrays(model_dirs):
    env = DreamEnv(model=str(model_dirs["pendulum"]))
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(1, np.float32))
    obs0, _ = env.reset(seed=0)
    copy0 = obs0.copy()
    obs1, reward, term, trunc, info = env.step(np.zeros(1, np.float32))
    assert np.array_equal(obs0, copy0) and obs1 is not obs0
    assert type(reward) is float and type(term) is bool and type(trunc) is bool and 0 <= info["done_prob"] <= 1


def test_time_limit_is_the_real_envs(model_dirs):
    env = gym.make("Dream-Pendulum-v0", model=str(model_dirs["pendulum"]))
    env.reset(seed=0)
    steps = 0
    while True:
        steps += 1
        *_, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            break
    assert trunc and not term and steps == 200


def test_termination_head_ends_episodes(model_dirs):
    model = make_tiny_model("carracing")
    with torch.no_grad():
        model.heads.termination.bias.fill_(10.0)  # p(done) ~ 1
    env = DreamEnv(model=model)
    env.reset(seed=0)
    *_, term, trunc, info = env.step(env.action_space.sample())
    assert term and not trunc and info["done_prob"] > 0.99


def test_constant_reward_for_doom(model_dirs):
    env = gym.make("Dream-DoomTakeCover-v0", model=str(model_dirs["doom"]))
    env.reset(seed=0)
    assert env.step(1)[1] == 1.0


def test_nan_dream_raises_instead_of_running_on(model_dirs):
    model = make_tiny_model("pendulum")
    with torch.no_grad():
        model.memory.mdn.bias.fill_(float("nan"))
    env = DreamEnv(model=model)
    env.reset(seed=0)
    with pytest.raises(NumericalError, match="NaN/inf"):
        env.step(np.zeros(1, np.float32))


def test_render_rgb_array_and_human(model_dirs):
    env = gym.make("Dream-CarRacing-v0", model=str(model_dirs["carracing"]), render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    pend = gym.make("Dream-Pendulum-v0", model=str(model_dirs["pendulum"]), render_mode="rgb_array")
    pend.reset(seed=0)
    assert pend.render().shape == (128, 128, 3)
    human = gym.make("Dream-CarRacing-v0", model=str(model_dirs["carracing"]), render_mode="human")
    human.reset(seed=0)
    human.step(human.action_space.sample())  # SDL_VIDEODRIVER=dummy: a real window, offscreen
    assert human.unwrapped._viewer is not None
    human.close()
    assert env.metadata["render_fps"] == 50 and pend.metadata["render_fps"] == 30


def test_registration_and_model_errors(model_dirs, monkeypatch):
    for dream_id in ("Dream-CarRacing-v0", "Dream-DoomTakeCover-v0", "Dream-Pendulum-v0"):
        spec = gym.spec(dream_id)
        assert spec.vector_entry_point and spec.max_episode_steps
    env = gym.make("dreamgym:Dream-Pendulum-v0", model=str(model_dirs["pendulum"]))
    assert isinstance(env.unwrapped, DreamEnv)
    monkeypatch.setattr("dreamgym.models.resolve.PRETRAINED_DIRS", ())  # as if nothing shipped
    with pytest.raises(CheckpointError, match="No pretrained world model 'carracing' ships"):
        gym.make("Dream-CarRacing-v0")
    with pytest.raises(ConfigError, match="dreams of CarRacing-v3, but .* Pendulum-v1"):
        gym.make("Dream-CarRacing-v0", model=str(model_dirs["pendulum"]))
    with pytest.raises(ConfigError, match="obs_type='pixels' needs"):
        gym.make("Dream-Pendulum-v0", model=str(model_dirs["pendulum"]), obs_type="pixels")
    with pytest.raises(ConfigError, match="obs_type must be one of"):
        gym.make("Dream-Pendulum-v0", model=str(model_dirs["pendulum"]), obs_type="rgb")
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        DreamEnv(model="no-such-model")


def test_model_instance_and_from_pretrained(model_dirs):
    model = dreamgym.WorldModel.from_pretrained(model_dirs["pendulum"])
    env = gym.make("Dream-Pendulum-v0", model=model)
    assert env.unwrapped.model is model


def test_reset_from_a_real_latent(model_dirs):
    import dreamgym

    real = dreamgym.make_real("Dream-Pendulum-v0", model=str(model_dirs["pendulum"]))
    real_obs, _ = real.reset(seed=3)
    env = DreamEnv(model=str(model_dirs["pendulum"]))
    obs, info = env.reset(seed=0, options={"start_latent": real.latent()})
    np.testing.assert_allclose(obs, real_obs, atol=1e-6)  # the same z, and h = 0 as in the real twin
    assert info["start_state"] == -1
    with pytest.raises(ValueError, match="start_latent"):
        env.reset(options={"start_latent": [1.0, np.nan, 0.0]})


@pytest.mark.parametrize("name", ["carracing", "doom", "pendulum"])
@pytest.mark.parametrize("tau", [0.0, 1e-40, 1.0, 1.3])
@pytest.mark.filterwarnings("error::RuntimeWarning")  # 1e-40: no overflow on the way (it made NaNs before)
def test_fast_single_env_path_equals_the_batched_torch_step(name, tau):
    model = make_tiny_model(name)
    fast, plain = DreamEnv(model=model, temperature=tau), DreamEnv(model=model, temperature=tau, fast=False)
    assert fast._lean is not None and plain._lean is None
    fast.action_space.seed(0)
    actions = [fast.action_space.sample() for _ in range(150)]  # past two of the fast path's noise blocks
    for seed in (11, 12, 11):  # a reset mid-block starts a new noise stream
        a, b = _rollout(fast, seed, actions), _rollout(plain, seed, actions)
        assert len(a) == len(b)
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, atol=1e-5)


def test_fast_path_follows_weight_changes(model_dirs):
    model = make_tiny_model("pendulum")
    env = DreamEnv(model=model)
    env.reset(seed=0)
    before = env.step(np.zeros(1, np.float32))[1]
    with torch.no_grad():
        model.heads.reward.bias.add_(5.0)  # e.g. training the model under a live env
    env.reset(seed=0)
    assert env.step(np.zeros(1, np.float32))[1] == pytest.approx(before + 5.0, abs=1e-5)
