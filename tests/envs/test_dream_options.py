"""Dream randomisation against exploitation: ensembles (member per episode, disagreement, MOPO
pessimism, MOReL HALT), dropout masks per episode, tau drawn per episode; z‖c‖h observations;
sampled z in the real twin."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import dreamgym
from dreamgym import ConfigError, DreamEnv, NumericalError
from dreamgym.envs.dream_vector import DreamVectorEnv

from ..conftest import make_tiny_model


def ensemble_model(name="carracing", k=3, dropout=0.0, seed=0):
    model = make_tiny_model(name, seed=seed)
    cfg = model.config
    cfg.memory.ensemble, cfg.memory.dropout = k, dropout
    big = dreamgym.WorldModel(cfg)
    big.load_state_dict({**big.state_dict(), **model.state_dict()})
    return big.eval()


def _run(env, seed, actions):
    obs, info = env.reset(seed=seed)
    out = [obs]
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        out.append(np.concatenate([obs, [r, float(term)]]))
        if term or trunc:
            break
    return np.stack(out[1:]), info


@pytest.mark.parametrize("k, dropout", [(3, 0.0), (1, 0.3), (2, 0.3)])
def test_vector_env_i_follows_single_env_seed_plus_i(k, dropout):
    model = ensemble_model(k=k, dropout=dropout)
    vec = DreamVectorEnv(num_envs=4, model=model, temperature_range=[0.5, 1.5])
    obs, _ = vec.reset(seed=10)
    actions = np.random.default_rng(0).uniform(-1, 1, (30, 4, 3)).astype(np.float32)
    traj = [obs]
    for a in actions:
        obs, *_ = vec.step(a)
        traj.append(obs)
    traj = np.stack(traj)
    for i in range(4):
        single = DreamEnv(model=model, temperature_range=[0.5, 1.5])
        o, info = single.reset(seed=10 + i)
        assert 0.5 <= info["temperature"] <= 1.5
        np.testing.assert_allclose(o, traj[0, i], atol=1e-6)
        for t, a in enumerate(actions):
            o, *_ = single.step(a[i])
            np.testing.assert_allclose(o, traj[t + 1, i], atol=1e-4)


def test_members_are_drawn_per_episode_and_agents_see_member_0s_memory():
    model = ensemble_model(k=3)
    env = DreamEnv(model=model)
    members = {env.reset(seed=s)[1]["member"] for s in range(30)}
    assert members == {0, 1, 2}
    # members differ in their predictions, but h (what agents see) is member 0's memory in every member
    a = np.array([0.1, 0.5, 0.0], dtype=np.float32)
    runs = {}
    for s in range(30):
        _, info = env.reset(seed=s)
        runs.setdefault(info["member"], (s, env.step(a)))
    (s0, (o0, *_)), (s1, (o1, *_)) = runs[0], runs[1]
    assert not np.allclose(o0[:4], o1[:4])  # z' from different members (and keys)


def test_identical_members_do_not_disagree_and_dream_like_one_model():
    single = make_tiny_model("carracing")
    model = ensemble_model(k=3)
    with torch.no_grad():  # every member a copy of member 0
        for j in range(1, 3):
            memory, heads = model.member(j)
            memory.load_state_dict(model.memory.state_dict())
            heads.load_state_dict(model.heads.state_dict())
    actions = np.random.default_rng(1).uniform(-1, 1, (40, 3)).astype(np.float32)
    ens = DreamEnv(model=model, disagreement_penalty=5.0)
    one = DreamEnv(model=single, fast=False)
    # the ensemble draws a member after the key; the single env doesn't: compare from the same key by hand
    obs_e, _ = ens.reset(seed=3)
    obs_s, _ = one.reset(seed=3)
    np.testing.assert_allclose(obs_e, obs_s, atol=1e-6)
    for a in actions:
        oe, re, te, _, info = ens.step(a)
        os_, rs, ts, _, _ = one.step(a)
        assert info["disagreement"] == pytest.approx(0.0, abs=1e-6)
        np.testing.assert_allclose(oe, os_, atol=1e-4)
        assert re == pytest.approx(rs, abs=1e-4)


def test_disagreement_penalty_subtracts_lambda_times_disagreement():
    model = ensemble_model(k=3)
    actions = np.random.default_rng(2).uniform(-1, 1, (20, 8, 3)).astype(np.float32)
    plain = DreamVectorEnv(num_envs=8, model=model)
    pess = DreamVectorEnv(num_envs=8, model=model, disagreement_penalty=2.0)
    plain.reset(seed=0)
    pess.reset(seed=0)
    seen = 0.0
    for a in actions:
        _, r0, *_, info0 = plain.step(a)
        _, r1, *_, info1 = pess.step(a)
        d = info0["disagreement"]
        assert (d >= 0).all() and info0["_disagreement"].all()
        np.testing.assert_allclose(r0 - r1, 2.0 * d, atol=1e-5)
        seen += d.sum()
    assert seen > 0


def test_halt_ends_episodes_with_the_penalty_when_members_disagree():
    model = ensemble_model(k=3)
    env = DreamVectorEnv(num_envs=8, model=model, halt_threshold=1e-9, halt_penalty=-100.0)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(np.zeros((8, 3), np.float32))
    halted = info["disagreement"] > 1e-9
    assert halted.any()
    assert terminated[halted].all() and (reward[halted] == -100.0).all()


def test_ensemble_options_need_an_ensemble_and_valid_values():
    model = make_tiny_model("carracing")
    with pytest.raises(ConfigError, match="ensemble"):
        DreamEnv(model=model, disagreement_penalty=1.0)
    with pytest.raises(ConfigError, match="temperature_range"):
        DreamEnv(model=model, temperature_range=[2.0, 1.0])
    with pytest.raises(ConfigError):
        DreamEnv(model=model, temperature_range=[0.5, float("nan")])
    with pytest.raises(ConfigError, match="halt_threshold"):
        DreamEnv(model=ensemble_model(), halt_threshold=-1.0)


def test_dropout_masks_fresh_per_episode_same_in_numpy_and_torch():
    model = ensemble_model(k=1, dropout=0.5)
    fast, slow = DreamEnv(model=model), DreamEnv(model=model, fast=False)
    assert fast._lean is not None
    actions = np.random.default_rng(3).uniform(-1, 1, (60, 3)).astype(np.float32)
    a, _ = _run(fast, 5, actions)
    b, _ = _run(slow, 5, actions)
    np.testing.assert_allclose(a, b, atol=1e-4)
    masks = set()
    for s in range(20):
        slow.reset(seed=s)
        m = slow._batch.mask[0]
        assert set(torch.unique(m).tolist()) <= {0.0, 2.0}
        masks.add(tuple(m.tolist()))
    assert len(masks) >= 15  # 8 units: 256 possible masks
    # without masks the dream is the plain one
    unmasked = DreamEnv(model=model, dropout_masks=False, fast=False)
    plain = DreamEnv(model=make_tiny_model("carracing"), fast=False)
    c, _ = _run(unmasked, 5, actions)
    d, _ = _run(plain, 5, actions)
    np.testing.assert_allclose(c, d, atol=1e-4)


def test_evaluate_scores_the_mean_dream_without_masks_and_records_it(tmp_path):
    """`dreamgym evaluate --no-dropout-masks`: a dropout-trained M dreams with its mean network (the dream's
    estimate of the real score, beside the masked training dream) and the result says so."""
    import json

    from dreamgym.agents.controller import LinearController
    from dreamgym.cli import main

    model = ensemble_model(k=1, dropout=0.5)
    model.save_pretrained(tmp_path / "wm")
    env = gym.make("Dream-CarRacing-v0", model=str(tmp_path / "wm"))
    controller = LinearController.for_spaces(env.observation_space, env.action_space, env_id="Dream-CarRacing-v0",
                                             world_model=str(tmp_path / "wm"))
    controller.set_flat(np.random.default_rng(0).normal(size=controller.num_params))
    controller.save_pretrained(tmp_path / "c")
    scores = {}
    for flags in ([], ["--no-dropout-masks"]):
        out = tmp_path / f"eval{len(flags)}.json"
        main(["evaluate", str(tmp_path / "c"), "--episodes", "4", "--dream-only", "--json", str(out), *flags])
        scores[len(flags)] = json.loads(out.read_text())["dream"]
    assert scores[1]["options"] == {"dropout_masks": False} and "options" not in scores[0]
    assert scores[0]["returns"] != scores[1]["returns"]


def test_options_are_recorded_in_config_json_and_read_back(tmp_path):
    model = ensemble_model(k=2, dropout=0.2)
    model.config.dream.temperature_range = [1.0, 1.3]
    model.config.dream.disagreement_penalty = 0.5
    model.save_pretrained(tmp_path)
    env = gym.make("Dream-CarRacing-v0", model=str(tmp_path))
    opts = env.unwrapped._batch.options
    assert opts.temperature_range == [1.0, 1.3] and opts.disagreement_penalty == 0.5
    loaded = dreamgym.WorldModel.from_pretrained(tmp_path)
    assert loaded.num_members == 2 and loaded.config.memory.dropout == 0.2
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    # gym.make kwargs override the recorded defaults
    env = gym.make("Dream-CarRacing-v0", model=str(tmp_path), disagreement_penalty=0.0)
    assert env.unwrapped._batch.options.disagreement_penalty == 0.0


@pytest.mark.parametrize("name", ["carracing", "doom"])
def test_checkers_pass_with_every_option_and_zch(name):
    model = ensemble_model(name, k=2, dropout=0.2)
    env = DreamEnv(model=model, obs_type="zch", temperature_range=[0.8, 1.2], disagreement_penalty=0.1,
                   halt_threshold=10.0)
    gym_check_env(env)
    sb3_check_env(env, warn=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4 + 8 + 8,)
    z, c, h = obs[:4], obs[4:12], obs[12:]
    np.testing.assert_allclose(c, env._batch.c[0].numpy())
    np.testing.assert_allclose(h, env._batch.h[0].numpy())


def test_zch_is_the_same_in_numpy_and_torch_and_in_the_real_twin():
    model = make_tiny_model("pendulum")
    actions = np.random.default_rng(4).uniform(-2, 2, (20, 1)).astype(np.float32)
    a, _ = _run(DreamEnv(model=model, obs_type="zch"), 1, actions)
    b, _ = _run(DreamEnv(model=model, obs_type="zch", fast=False), 1, actions)
    np.testing.assert_allclose(a, b, atol=1e-4)
    real = dreamgym.make_real("Dream-Pendulum-v0", model=model, obs_type="zch")
    obs, _ = real.reset(seed=0)
    assert real.observation_space.contains(obs) and obs.shape == (3 + 16,)


def test_real_twin_samples_z_from_the_posterior_seeded(model_dirs):
    mean = dreamgym.make_real("Dream-CarRacing-v0", model=str(model_dirs["carracing"]), obs_type="z")
    sampled = dreamgym.make_real("Dream-CarRacing-v0", model=str(model_dirs["carracing"]), obs_type="z", sample_z=True)
    m, _ = mean.reset(seed=0)
    s1, _ = sampled.reset(seed=0)
    s2, _ = sampled.reset(seed=0)
    np.testing.assert_array_equal(s1, s2)
    assert not np.allclose(m, s1)


def test_the_real_twin_takes_the_model_default_for_z_and_evaluate_records_it(tmp_path, model_dirs):
    from dreamgym.evaluate import evaluate

    model = make_tiny_model("carracing")
    model.config.real_sample_z = True
    model.save_pretrained(tmp_path / "m")
    default = dreamgym.make_real("Dream-CarRacing-v0", model=str(tmp_path / "m"), obs_type="z")
    sampled = dreamgym.make_real("Dream-CarRacing-v0", model=str(model_dirs["carracing"]), obs_type="z", sample_z=True)
    mean = dreamgym.make_real("Dream-CarRacing-v0", model=str(tmp_path / "m"), obs_type="z", sample_z=False)
    assert default.sample_z and not mean.sample_z
    np.testing.assert_array_equal(default.reset(seed=0)[0], sampled.reset(seed=0)[0])  # the same V, the same draw
    assert not np.allclose(default.reset(seed=0)[0], mean.reset(seed=0)[0])
    kw = dict(env_id="Dream-CarRacing-v0", episodes=1, dream=False, workers=1)
    assert evaluate("random", model=str(tmp_path / "m"), **kw)["real"]["sample_z"] is True
    assert evaluate("random", model=str(tmp_path / "m"), sample_z=False, **kw)["real"]["sample_z"] is False
    assert evaluate("random", model=str(model_dirs["carracing"]), **kw)["real"]["sample_z"] is False


def test_nan_termination_head_or_decoder_stops_the_dream():
    model = make_tiny_model("carracing")
    with torch.no_grad():
        model.heads.termination.bias.fill_(float("nan"))
    for fast in (True, False):
        env = DreamEnv(model=model, fast=fast)
        env.reset(seed=0)
        with pytest.raises(NumericalError):
            env.step(np.zeros(3, np.float32))
    model = make_tiny_model("carracing")
    with torch.no_grad():
        model.vision.fc_dec.bias.fill_(float("nan"))
    env = DreamEnv(model=model, obs_type="pixels")
    with pytest.raises(NumericalError, match="decoder"):
        env.reset(seed=0)


def test_a_bad_start_latent_changes_nothing():
    env = DreamEnv(model=make_tiny_model("carracing"))
    obs, _ = env.reset(seed=0)
    step1, *_ = env.step(np.zeros(3, np.float32))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="start_latent"):
        env.reset(seed=123, options={"start_latent": np.full(4, np.nan)})
    with pytest.raises(ValueError, match="start_latent"):
        env.reset(options={"start_latent": "abc"})
    again, *_ = env.step(np.zeros(3, np.float32))  # the episode of seed 0 goes on untouched
    np.testing.assert_array_equal(again, step1)


def test_sampled_termination_is_calibrated_seeded_and_the_same_in_numpy_and_torch():
    from dreamgym.envs.core import calibrated, calibrated_float

    p = torch.tensor([0.5, 0.9, 0.01])
    np.testing.assert_allclose(calibrated(p, 10.0).numpy(), [1 / 11, 9 / 19, 0.01 / (0.01 + 0.99 * 10)], rtol=1e-5)
    assert calibrated_float(0.9, 10.0) == pytest.approx(9 / 19)
    model = make_tiny_model("doom")
    with torch.no_grad():
        model.heads.termination.bias.fill_(1.5)  # p(done) ~ 0.8 > 0.5: a threshold dream ends at once
    model.config.heads.termination_pos_weight = 100.0
    assert _run(DreamEnv(model=model), 0, [0] * 50)[0].shape[0] == 1
    lengths = {}
    for fast in (True, False):
        env = DreamEnv(model=model, termination="sample", fast=fast)
        lengths[fast] = [len(_run(env, s, [0] * 2000)[0]) for s in range(40)]
    assert lengths[True] == lengths[False]
    # calibrated p ~ 0.8 / (0.8 + 0.2 * 100) ~ 0.04 per step: episodes last ~25 steps, geometrically
    assert 10 < np.mean(lengths[True]) < 60 and len(set(lengths[True])) > 10
    vec = DreamVectorEnv(num_envs=40, model=model, termination="sample")
    vec.reset(seed=0)
    first_end = np.zeros(40)
    for t in range(2000):
        *_, terminated, truncated, _ = vec.step(np.zeros(40, dtype=np.int64))
        first_end[(first_end == 0) & terminated] = t + 1
        if (first_end > 0).all():
            break
    np.testing.assert_array_equal(first_end, lengths[True])
