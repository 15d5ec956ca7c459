"""The lie detector measures any backend through the protocol: an RSSM against the real Pendulum-v1."""

import json
import math

import numpy as np
import pytest
import torch

from dreamgym.agents import LinearController
from dreamgym.envs.dream import DreamEnv
from dreamgym.fidelity import fidelity_card_lines, fidelity_report, read_report

from .models.test_rssm_backend import tiny_rssm
from .test_fidelity import SECTIONS


@pytest.fixture
def rssm_dir(tmp_path):
    """A tiny RSSM of Pendulum (30-step episodes) whose reward head is not constant, with a controller inside."""
    model = tiny_rssm()
    model.config.max_episode_steps = 30
    with torch.no_grad():
        model.rssm.reward[-1].weight.normal_(0.0, 0.3)  # DreamerV3's head starts at zero: every reward 0
    model.save_pretrained(tmp_path / "rssm")
    torch.manual_seed(0)
    c = LinearController.for_spaces(DreamEnv(str(tmp_path / "rssm")).observation_space, model.action_space,
                                    env_id="Dream-Pendulum-v0", world_model=str(tmp_path / "rssm"))
    c.set_flat(np.random.default_rng(0).normal(0, 1, c.num_params))
    c.save_pretrained(tmp_path / "rssm" / "agent")
    return tmp_path / "rssm"


def _numbers(x, path=""):
    """Every number of a JSON-like value, with where it is."""
    if isinstance(x, dict):
        return [n for k, v in x.items() for n in _numbers(v, f"{path}/{k}")]
    if isinstance(x, list):
        return [n for i, v in enumerate(x) for n in _numbers(v, f"{path}[{i}]")]
    return [(path, x)] if isinstance(x, (int, float)) and not isinstance(x, bool) else []


def test_an_rssm_gets_every_section_with_finite_numbers(rssm_dir):
    out = rssm_dir / "fidelity.json"
    report = fidelity_report(rssm_dir, rssm_dir / "agent", 2, horizons=(1, 5, 10), every=1, samples=2, workers=1,
                             out=out)
    assert SECTIONS <= set(report) and report["backend"] == "rssm"
    assert report["members"] == 1 and report["disagreement"] is None
    assert read_report(out) == json.loads(json.dumps(report)) and out.with_suffix(".png").stat().st_size > 1000
    assert all(math.isfinite(v) for _, v in _numbers(report))
    assert report["reward"]["head"] == "learned" and report["reward"]["steps"] == 60
    assert report["termination"]["head"] is True and report["termination"]["threshold"] == 0.5
    for name in ("mae", "bias", "correlation", "real_mean_abs"):
        assert report["reward"][name] is not None, name
    assert report["latent"]["one_step_mse"] is not None and report["latent"]["baseline_mse"] is not None
    for k, h in report["open_loop"]["horizons"].items():
        assert h["starts"] == 2 * (30 - int(k) + 1)
        assert h["latent_mse"]["tau0"] is not None and h["latent_mse"]["sampled"] is not None, k
        assert h["reward_sum_mae"]["tau0"] is not None and h["baseline_mse"] is not None, k
    # the z of the latent metrics is the one-hot categoricals: a squared error of 2 per categorical that differs
    groups, width = 4, 16
    assert 0 <= report["latent"]["one_step_mse"] <= 2 * groups / width
    assert report["open_loop"]["horizons"]["1"]["latent_mse"]["tau0"] == pytest.approx(report["latent"]["one_step_mse"])
    assert len(report["series"]) == 2 and len(report["series"][0]["predicted_reward"]) == 30
    d = report["dream_return"]
    assert len(d["dream"]) == 2 and d["real_steps"] == [30, 30] and all(1 <= s <= 30 for s in d["dream_steps"])
    card = "\n".join(fidelity_card_lines(report))
    assert "latent MSE, τ 0" in card and "the reward head on the real twin's state" in card


def test_the_cli_measures_an_rssm_folder(rssm_dir, capsys):
    from dreamgym.cli import main

    main(["fidelity", str(rssm_dir), "--agent", "random", "--episodes", "2", "--workers", "1", "--samples", "0",
          "--horizons", "1", "5", "--no-plot"])
    report = read_report(rssm_dir / "fidelity.json")
    assert report["backend"] == "rssm" and report["agent"]["path"] == "random" and report["open_loop"]["samples"] == 0
    assert "latent MSE, τ 0" in capsys.readouterr().out
