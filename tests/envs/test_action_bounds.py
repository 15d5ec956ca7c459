"""action_low / action_high: a narrower Box for the agent, the same in the dream and in its real twin, recorded
by the model (config.json), by gym.make, by the agents trained in it, and applied when they are scored."""

import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env

import dreamgym
from dreamgym import ConfigError, DreamEnv
from dreamgym.envs.dream_vector import DreamVectorEnv

from ..conftest import make_tiny_model

CAP = [1.0, 0.3, 1.0]  # CarRacing: steer, gas, brake


def _steps(env, actions, seed=0):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for a in actions:
        obs, r, *_ = env.step(a)
        out.append(np.append(obs, r))
    return out[1:]


def test_the_dream_exposes_the_narrowed_box_and_clips_to_it():
    model = make_tiny_model("carracing")
    capped = DreamEnv(model=model, action_high=CAP)
    assert capped.action_space == gym.spaces.Box(np.array([-1, 0, 0], np.float32), np.array(CAP, np.float32))
    gym_check_env(capped)
    full_gas = np.array([[0.2, 1.0, 0.0]] * 5, np.float32)
    at_cap = np.array([[0.2, 0.3, 0.0]] * 5, np.float32)
    a, b = _steps(capped, full_gas), _steps(DreamEnv(model=model), at_cap)
    np.testing.assert_allclose(a, b, atol=1e-6)  # gas 1.0 in the capped dream is gas 0.3
    c = _steps(DreamEnv(model=model), full_gas)
    assert not np.allclose(np.stack(a), np.stack(c), atol=1e-4)  # and not what gas 1.0 does uncapped
    # the batched dream: the same space per env and the same clipping
    vec = DreamVectorEnv(num_envs=2, model=model, action_high=CAP, action_low=[-0.5, 0.0, 0.0])
    assert vec.single_action_space.high.tolist() == pytest.approx(CAP)
    assert vec.single_action_space.low.tolist() == [-0.5, 0.0, 0.0]
    assert vec.action_space.shape == (2, 3)


def test_one_number_is_every_dimensions_bound_and_bad_bounds_say_what_fits():
    model = make_tiny_model("carracing")
    assert DreamEnv(model=model, action_high=0.5).action_space.high.tolist() == [0.5, 0.5, 0.5]
    bad = {
        "needs 1 or 3 numbers": dict(action_high=[1.0, 0.3]),
        "inside the real env's bounds": dict(action_high=[1.0, 2.0, 1.0]),
        "low <= high": dict(action_low=[0.5, 0.0, 0.0], action_high=[0.2, 1.0, 1.0]),
        "finite numbers": dict(action_high=[1.0, float("nan"), 1.0]),
    }
    for message, kwargs in bad.items():
        with pytest.raises(ConfigError, match=message):
            DreamEnv(model=model, **kwargs)
        with pytest.raises(ConfigError, match=message):
            dreamgym.make_real("Dream-CarRacing-v0", model=model, **kwargs)
    with pytest.raises(ConfigError, match="narrow a Box"):
        DreamEnv(model=make_tiny_model("doom"), action_high=[1.0])


def test_the_model_default_applies_to_dream_and_real_twin_and_gym_make_overrides_it(tmp_path):
    model = make_tiny_model("carracing")
    model.config.dream.action_high = CAP
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["dream"]["action_high"] == CAP
    dream = gym.make("Dream-CarRacing-v0", model=str(tmp_path))
    real = dreamgym.make_real("Dream-CarRacing-v0", model=str(tmp_path))
    assert dream.action_space == real.action_space and dream.action_space.high[1] == pytest.approx(0.3)
    wider = gym.make("Dream-CarRacing-v0", model=str(tmp_path), action_high=[1.0, 1.0, 1.0])
    assert wider.action_space.high[1] == 1.0
    assert dreamgym.make_real(wider).action_space == wider.action_space  # made from a dream env: its bounds
    assert dreamgym.make_real("Dream-CarRacing-v0", model=str(tmp_path), action_high=1.0).action_space.high[1] == 1.0


def test_the_real_twin_sends_the_real_env_clipped_actions(model_dirs):
    real = dreamgym.make_real("Dream-CarRacing-v0", model=str(model_dirs["carracing"]), action_high=CAP)
    sent = []
    step = real.env.step
    real.env.step = lambda a: (sent.append(np.array(a)), step(a))[1]
    real.reset(seed=0)
    real.step(np.array([0.5, 0.9, 0.1], np.float32))
    np.testing.assert_allclose(sent[0], [0.5, 0.3, 0.1], atol=1e-6)
    real.close()


def test_a_controller_trained_in_a_narrowed_dream_is_scored_in_the_same_box(tmp_path, model_dirs):
    """Its config records the Box; evaluate, without being told, builds the dream and the real twin with it
    (a full Box would refuse the controller)."""
    from dreamgym.agents.controller import LinearController
    from dreamgym.evaluate import action_bounds, agent_info, evaluate

    wm = str(model_dirs["carracing"])
    env = gym.make("Dream-CarRacing-v0", model=wm, action_high=CAP)
    controller = LinearController.for_spaces(env.observation_space, env.action_space, env_id="Dream-CarRacing-v0",
                                             world_model=wm)
    controller.set_flat(np.random.default_rng(0).normal(size=controller.num_params))
    controller.save_pretrained(tmp_path / "c")
    assert action_bounds(agent_info(tmp_path / "c"))["action_high"] == pytest.approx(CAP)
    result = evaluate(tmp_path / "c", episodes=2, workers=1, seed=3)
    assert result["dream"]["actions"]["mean"][1] <= 0.3 + 1e-6
    assert np.isfinite(result["real"]["mean"])


def test_sb3_agents_record_their_box_are_scored_in_it_and_ensembles_must_share_it(tmp_path, model_dirs, monkeypatch):
    import dreamgym.evaluate as ev
    from dreamgym.agents.ensemble import write_ensemble
    from dreamgym.cli import main
    from dreamgym.evaluate import agent_info

    wm = str(model_dirs["carracing"])
    common = ["train-agent", "Dream-CarRacing-v0", "--algo", "ppo", "--model", wm, "--steps", "64", "--n-envs", "4",
              "--algo-kwargs", '{"n_steps": 16, "batch_size": 32}']
    main([*common, "--out", str(tmp_path / "capped"), "--action-high", "1", "0.3", "1"])
    main([*common, "--out", str(tmp_path / "full")])
    meta = json.loads((tmp_path / "capped" / "agent.json").read_text())
    assert meta["action_space"]["high"] == pytest.approx(CAP) and meta["config"]["action_high"] == CAP
    assert agent_info(tmp_path / "capped").action_space == meta["action_space"]
    loaded_in = []  # the Box each load hands the agent (SB3's predict clips to it), dream and real
    load = ev.load
    monkeypatch.setattr(ev, "load", lambda info, obs, act, seed=0: (loaded_in.append(act), load(info, obs, act, seed))[1])
    main(["evaluate", str(tmp_path / "capped"), "--episodes", "1", "--workers", "1", "--json", str(tmp_path / "e.json")])
    assert len(loaded_in) == 2 and all(space.high[1] == pytest.approx(0.3) for space in loaded_in)
    loaded_in.clear()  # told otherwise, evaluate scores it in that Box, in the dream and in reality
    main(["evaluate", str(tmp_path / "capped"), "--episodes", "1", "--workers", "1", "--json", str(tmp_path / "e.json"),
          "--action-high", "1", "0.5", "1"])
    assert len(loaded_in) == 2 and all(space.high[1] == pytest.approx(0.5) for space in loaded_in)
    with pytest.raises(ConfigError, match="action_space"):
        write_ensemble([tmp_path / "capped", tmp_path / "full"], tmp_path / "ens")
    ens = write_ensemble([tmp_path / "capped", tmp_path / "capped"], tmp_path / "ens")
    assert agent_info(ens).action_space == meta["action_space"]
