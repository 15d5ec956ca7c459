import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from dreamgym import ConfigError, DreamEnv, DreamVectorEnv, InvalidActionError

from ..conftest import make_tiny_model


def test_make_vec_uses_the_vector_entry_point(dream):
    dream_id, path = dream
    envs = gym.make_vec(dream_id, num_envs=5, model=str(path))
    assert isinstance(envs.unwrapped, DreamVectorEnv)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert envs.unwrapped.max_episode_steps == gym.spec(dream_id).max_episode_steps
    obs, _ = envs.reset(seed=0)
    assert envs.observation_space.contains(obs) and obs.shape[0] == 5
    obs, reward, term, trunc, _ = envs.step(envs.action_space.sample())
    assert obs.shape[0] == reward.shape[0] == term.shape[0] == trunc.shape[0] == 5
    assert reward.dtype == np.float64 and term.dtype == trunc.dtype == np.bool_


@pytest.mark.parametrize("name", ["carracing", "doom"])
def test_vector_env_equals_single_envs_step_for_step(name):
    model = make_tiny_model(name)
    n, steps, seed = 6, 40, 123
    venv = DreamVectorEnv(num_envs=n, model=model, temperature=1.0, max_episode_steps=1000)
    venv.action_space.seed(0)
    actions = [venv.action_space.sample() for _ in range(steps)]
    vobs, _ = venv.reset(seed=seed)
    vtraj = [vobs]
    for a in actions:
        vobs, vr, vterm, vtrunc, vinfo = venv.step(a)
        vtraj.append((vobs, vr, vterm, vinfo.get("final_obs")))
    for i in range(n):
        env = DreamEnv(model=model, temperature=1.0)
        obs, _ = env.reset(seed=seed + i)
        np.testing.assert_allclose(obs, vtraj[0][i], atol=1e-5)
        for t, a in enumerate(actions):
            obs, r, term, trunc, _ = env.step(a[i])
            vobs, vr, vterm, vfinal = vtraj[t + 1]
            assert term == vterm[i]
            np.testing.assert_allclose(r, vr[i], atol=1e-5)
            np.testing.assert_allclose(obs, vfinal[i] if term else vobs[i], atol=1e-5)
            if term:  # the vector env reset env i in the same step, from env i's own generator
                break


def test_same_step_autoreset_and_time_limit():
    model = make_tiny_model("pendulum")
    venv = DreamVectorEnv(num_envs=3, model=model, max_episode_steps=4)
    obs, _ = venv.reset(seed=0)
    for t in range(1, 5):
        obs, _, term, trunc, info = venv.step(np.zeros((3, 1), np.float32))
    assert trunc.all() and not term.any()
    assert info["_final_obs"].all() and info["final_obs"].shape == obs.shape
    assert not np.allclose(info["final_obs"], obs)  # obs is already the next episode's first
    _, _, _, trunc, _ = venv.step(np.zeros((3, 1), np.float32))
    assert not trunc.any()


def test_next_step_autoreset():
    model = make_tiny_model("pendulum")
    venv = DreamVectorEnv(num_envs=2, model=model, max_episode_steps=2, autoreset_mode="NextStep")
    assert venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    venv.reset(seed=0)
    venv.step(np.zeros((2, 1), np.float32))
    last, _, _, trunc, info = venv.step(np.zeros((2, 1), np.float32))
    assert trunc.all() and "final_obs" not in info
    first, reward, term, trunc, _ = venv.step(np.zeros((2, 1), np.float32))
    assert not trunc.any() and not term.any() and (reward == 0).all()
    assert not np.allclose(first, last)


def test_reset_mask_resets_only_those_envs():
    model = make_tiny_model("carracing")
    venv = DreamVectorEnv(num_envs=4, model=model)
    with pytest.raises(ValueError, match="first reset"):
        venv.reset(seed=0, options={"reset_mask": np.array([True, False, False, False])})
    venv.reset(seed=0)
    obs, *_ = venv.step(np.tile(np.array([0.0, 1.0, 0.0], np.float32), (4, 1)))
    mask = np.array([True, False, True, False])
    new, _ = venv.reset(options={"reset_mask": mask})
    np.testing.assert_array_equal(new[~mask], obs[~mask])
    assert not np.allclose(new[mask], obs[mask])
    with pytest.raises(ValueError, match="reset_mask"):
        venv.reset(options={"reset_mask": np.ones(3, bool)})


def test_temperature_per_env_with_set_attr_and_call():
    model = make_tiny_model("pendulum")
    venv = gym.make_vec("Dream-Pendulum-v0", num_envs=3, model=model, temperature=1.15)
    assert venv.unwrapped.temperature == 1.15  # reads back as set, not as float32 1.149999976
    venv.unwrapped.set_attr("temperature", 0.5)
    assert venv.unwrapped.get_attr("temperature") == (0.5, 0.5, 0.5)
    venv.unwrapped.set_attr("temperature", [0.0, 1.0, 1.3])
    assert np.allclose(venv.unwrapped.temperature, [0.0, 1.0, 1.3])
    assert venv.unwrapped.call("temperature") == pytest.approx((0.0, 1.0, 1.3))
    with pytest.raises(ValueError, match="temperature must be"):
        venv.unwrapped.set_attr("temperature", [0.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="one per env"):
        venv.unwrapped.set_attr("temperature", [0.5, 0.5])


def test_zero_temperature_envs_agree_within_a_batch():
    # tau = 0 in every env, one start state: every env follows the same dream
    model = make_tiny_model("carracing", num_start_states=1)
    venv = DreamVectorEnv(num_envs=4, model=model, temperature=0.0)
    venv.reset(seed=0)
    for _ in range(10):
        obs, *_ = venv.step(np.tile(np.array([0.3, 0.5, 0.0], np.float32), (4, 1)))
    assert np.allclose(obs, obs[0], atol=1e-6)
    venv.temperature = 1.0
    for _ in range(3):
        obs, *_ = venv.step(np.tile(np.array([0.3, 0.5, 0.0], np.float32), (4, 1)))
    assert not np.allclose(obs, obs[0])


def test_bad_vector_input():
    model = make_tiny_model("doom")
    venv = DreamVectorEnv(num_envs=2, model=model)
    venv.reset(seed=0)
    with pytest.raises(InvalidActionError, match=r"shape \(2,\)"):
        venv.step(np.array([0, 1, 2]))
    with pytest.raises(InvalidActionError, match=r"in \[0, 2\]"):
        venv.step(np.array([0, 5]))
    with pytest.raises(ConfigError, match="num_envs"):
        DreamVectorEnv(num_envs=0, model=model)
    with pytest.raises(ValueError, match="seeds"):
        venv.reset(seed=[1, 2, 3])


def test_render_returns_one_frame_per_env():
    venv = DreamVectorEnv(num_envs=3, model=make_tiny_model("carracing"), render_mode="rgb_array")
    venv.reset(seed=0)
    frames = venv.render()
    assert len(frames) == 3 and frames[0].shape == (64, 64, 3)


def test_bfloat16_matmuls_track_the_float32_dream():
    model = make_tiny_model("carracing", num_start_states=1)
    actions = np.tile(np.array([0.2, 0.6, 0.0], np.float32), (2, 1))
    out = {}
    for dtype in ("float32", "bfloat16"):
        venv = DreamVectorEnv(num_envs=2, model=model, temperature=0.0, dtype=dtype)
        venv.reset(seed=0)
        for _ in range(5):
            obs, reward, *_ = venv.step(actions)
        out[dtype] = (obs, reward)
    assert not np.array_equal(out["float32"][0], out["bfloat16"][0])  # bf16 really ran
    np.testing.assert_allclose(out["bfloat16"][0], out["float32"][0], atol=0.05)
    np.testing.assert_allclose(out["bfloat16"][1], out["float32"][1], atol=0.05)
    with pytest.raises(ConfigError, match="dtype must be one of"):
        DreamVectorEnv(num_envs=1, model=model, dtype="float16")
