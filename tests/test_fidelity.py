"""The lie detector: its numbers are the ones computed another way, its files are written."""

import json

import numpy as np
import pytest
import torch

from dreamgym.agents import LinearController
from dreamgym.cli import main
from dreamgym.envs.dream import DreamEnv
from dreamgym.errors import CheckpointError, ConfigError
from dreamgym.evaluate import agent_info, evaluate_real
from dreamgym.fidelity import fidelity_card_lines, fidelity_report, read_report, record_trajectories
from dreamgym.models.mdnrnn import MemoryConfig
from dreamgym.models.world_model import WorldModel

from .conftest import has_vizdoom, make_tiny_model

SECTIONS = {"reward", "termination", "latent", "open_loop", "dream_return", "disagreement", "series", "agent",
            "model", "episodes", "seed", "sample_z", "members", "env_id", "dream_id"}


@pytest.fixture
def pendulum(tmp_path):
    """A tiny Pendulum model with short (60-step) episodes, in its own folder."""
    path = tmp_path / "wm"
    make_tiny_model("pendulum", max_episode_steps=60).save_pretrained(path)
    return path


def _controller(model_dir, seed=0):
    """A deterministic agent saved inside the model folder."""
    torch.manual_seed(seed)
    c = LinearController.for_spaces(DreamEnv(str(model_dir)).observation_space, WorldModel.from_pretrained(
        model_dir).action_space, env_id="Dream-Pendulum-v0", world_model=str(model_dir))
    c.set_flat(np.random.default_rng(seed).normal(0, 1, c.num_params))
    c.save_pretrained(model_dir / "agent")
    return model_dir / "agent"


def _tau0_prediction(model, hs):
    """The most likely component's mean of each latent dimension (tau = 0), written out by hand."""
    logits, mu, _ = model.memory.mixture(hs)  # ... k z
    best = logits.argmax(dim=-2, keepdim=True)
    return mu.gather(-2, best).squeeze(-2)


def test_the_report_has_every_section_and_the_json_and_plot_are_written(pendulum):
    out = pendulum / "fid.json"
    report = fidelity_report(pendulum, "random", 2, workers=1, out=out)
    assert SECTIONS <= set(report)
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert out.with_suffix(".png").stat().st_size > 1000
    assert set(report["open_loop"]["horizons"]) == {"1", "10", "50"}
    assert report["open_loop"]["horizons"]["50"]["starts"] == 4  # starts 0 and 10 of each 60-step episode
    assert report["reward"]["steps"] == 120 and len(report["dream_return"]["real"]) == 2
    assert report["disagreement"] is None and report["members"] == 1
    assert report["termination"]["head"] is False and report["termination"]["terminations"] == 0


def test_the_one_step_open_loop_error_is_the_teacher_forced_error(pendulum):
    report = fidelity_report(pendulum, "random", 2, every=1, horizons=(1, 5), samples=0, workers=1)
    model = WorldModel.from_pretrained(pendulum)
    trajs = record_trajectories(agent_info("random", "Dream-Pendulum-v0", str(pendulum)), str(pendulum), 2, workers=1)
    errors, reward_errors, sums = [], [], []
    with torch.no_grad():
        for t in trajs:  # nn.LSTM over the whole sequence: not the step code the report uses
            hs, _ = model.memory.sequence(torch.from_numpy(t.z[None, :-1]), torch.from_numpy(t.actions[None]),
                                          (torch.from_numpy(t.h0[None]), torch.from_numpy(t.c0[None])))
            errors.append(((_tau0_prediction(model, hs[0]) - torch.from_numpy(t.z[1:])) ** 2).mean(-1).numpy())
            reward = model.heads(hs[0])[0].double().numpy()
            reward_errors.append(np.abs(reward - t.rewards))
            sums.append(reward.sum())
    expected = np.concatenate(errors).mean()
    assert report["open_loop"]["horizons"]["1"]["latent_mse"]["tau0"] == pytest.approx(expected, rel=1e-5)
    assert report["latent"]["one_step_mse"] == pytest.approx(expected, rel=1e-5)
    assert report["reward"]["mae"] == pytest.approx(np.concatenate(reward_errors).mean(), rel=1e-5)
    assert report["reward"]["episode"]["predicted"] == pytest.approx(sums, abs=2e-3)
    assert report["dream_return"]["real"] == pytest.approx([t.rewards.sum() for t in trajs], abs=2e-3)
    assert report["open_loop"]["horizons"]["5"]["starts"] == 2 * (60 - 5 + 1)  # every window inside an episode


@pytest.mark.skipif(not has_vizdoom(), reason="vizdoom is not installed: pip install 'dreamgym[doom]'")
def test_a_reward_head_equal_to_the_real_reward_has_no_reward_error():
    """Doom pays 1 per step survived, which the Doom dream's constant reward is exactly."""
    model = make_tiny_model("doom", max_episode_steps=150)
    report = fidelity_report(model, "random", 2, workers=1)
    assert report["reward"]["mae"] == 0.0 and report["reward"]["episode"]["mae"] == 0.0
    for h in report["open_loop"]["horizons"].values():
        assert h["reward_sum_mae"]["tau0"] == 0.0 or h["starts"] == 0
    t = report["termination"]
    assert t["head"] and t["terminations"] == len(t["p_at_terminal"])
    assert t["terminations"] == sum(n < 150 for n in report["dream_return"]["real_steps"])
    with torch.no_grad():  # a termination head that always fires: the dream ends after its first step
        model.heads.termination.bias.fill_(10.0)
    report = fidelity_report(model, "random", 2, workers=1, samples=0)
    assert report["dream_return"]["dream"] == [1.0, 1.0] and report["dream_return"]["dream_steps"] == [1, 1]
    t = report["termination"]
    assert t["recall"] == 1.0 and t["false_alarm_rate"] == 1.0 and t["mean_p_at_terminal"] > 0.99


def test_the_dream_return_is_what_a_dream_env_pays_for_the_same_actions(pendulum):
    agent = _controller(pendulum)
    report = fidelity_report(pendulum, agent, 2, workers=1, samples=1)
    trajs = record_trajectories(agent_info(agent), str(pendulum), 2, workers=1)
    env = DreamEnv(str(pendulum), temperature=0.0)
    for t, dream, steps in zip(trajs, report["dream_return"]["dream"], report["dream_return"]["dream_steps"]):
        env.reset(seed=123, options={"start_latent": t.z[0]})
        total = sum(env.step(a)[1] for a in t.actions)  # Pendulum's M input is the action itself
        assert dream == pytest.approx(total, abs=2e-3) and steps == len(t)
    real = evaluate_real(agent_info(agent), 2, workers=1)
    assert report["dream_return"]["real"] == pytest.approx(real.tolist(), abs=2e-3)
    assert report["agent"]["path"] == "agent"  # inside the model folder: stored relative to it


def test_an_ensemble_reports_disagreement_and_whether_it_flags_errors(tmp_path):
    model = make_tiny_model("pendulum", max_episode_steps=40, memory=MemoryConfig(hidden_size=8, n_mixtures=2, ensemble=3))
    report = fidelity_report(model, "random", 2, workers=1, out=tmp_path / "f.json")
    d = report["disagreement"]
    assert d["members"] == 3 and d["mean"] > 0 and d["max"] >= d["mean"]
    assert -1 <= d["one_step_error_correlation"] <= 1 and set(d["open_loop_error_correlation"]) == {"1", "10", "50"}
    assert len(report["series"][0]["disagreement"]) == 40
    assert (tmp_path / "f.png").is_file()
    assert any("ensemble of 3" in line for line in fidelity_card_lines(report))


def test_the_cli_writes_both_files_and_the_card_reports_them(pendulum, capsys):
    assert "dream against reality" not in str(WorldModel.from_pretrained(pendulum).generate_model_card())
    main(["fidelity", str(pendulum), "--agent", "random", "--episodes", "2", "--workers", "1", "--samples", "1"])
    assert (pendulum / "fidelity.json").is_file() and (pendulum / "fidelity.png").is_file()
    assert "written" in capsys.readouterr().out
    report = read_report(pendulum / "fidelity.json")
    assert report["episodes"] == 2 and report["open_loop"]["samples"] == 1
    card = str(WorldModel.from_pretrained(pendulum).generate_model_card())
    assert "dream against reality" in card and "![fidelity](fidelity.png)" in card and "| latent MSE, τ 0 |" in card


def test_bad_input_gets_a_clear_error(pendulum, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["fidelity", "someone/dream-pendulum", "--agent", "random"])
    assert e.value.code == 2 and "--out is needed" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="episodes must be"):
        fidelity_report(pendulum, "random", 0)
    with pytest.raises(ConfigError, match="horizons must be"):
        fidelity_report(pendulum, "random", 1, horizons=(0,))
    doom = tmp_path / "doom"
    make_tiny_model("doom").save_pretrained(doom)
    with pytest.raises(ConfigError, match="acts in Dream-Pendulum-v0"):
        fidelity_report(doom, _controller(pendulum), 1, workers=1)
    (pendulum / "fidelity.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="Re-run `dreamgym fidelity`"):
        WorldModel.from_pretrained(pendulum).generate_model_card()


def test_a_constant_agent_is_measured_and_named_as_given(pendulum):
    """'constant:A' plays one action in reality; the dream replays it; the report names the agent as given."""
    report = fidelity_report(pendulum, "constant:0.5", 1, workers=1, samples=0, horizons=(1,))
    assert report["agent"]["path"] == "constant:0.5" and report["agent"]["kind"] == "constant"
    assert len(report["dream_return"]["real"]) == 1
    with pytest.raises(ConfigError, match="1 comma-separated numbers"):
        fidelity_report(pendulum, "constant:5", 1, workers=1)
