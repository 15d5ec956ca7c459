"""``dreamgym iterate --backend rssm --algo dreamer``: Dreamer's outer loop, and continuing an RSSM."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from dreamgym.agents.dreamer import DreamerConfig
from dreamgym.errors import ConfigError
from dreamgym.iterate import IterateConfig, iterate
from dreamgym.models.rssm import RSSMConfig
from dreamgym.models.rssm_world_model import RSSMWorldModel, RSSMWorldModelConfig
from dreamgym.train.rssm_recipe import RSSMRecipe, init_rssm_from
from dreamgym.train.trainer import TrainConfig

PENDULUM_ACTIONS = {"type": "Box", "low": -2.0, "high": 2.0, "shape": [1], "dtype": "float32"}
PENDULUM_STATES = {"type": "Box", "low": [-1.0, -1.0, -8.0], "high": [1.0, 1.0, 8.0], "shape": [3], "dtype": "float32"}


def _rssm(seed: int, starts: int = 4, **sizes) -> RSSMWorldModel:
    torch.manual_seed(seed)
    return RSSMWorldModel(RSSMWorldModelConfig(
        env_id="Pendulum-v1", action_space=PENDULUM_ACTIONS, observation_space=PENDULUM_STATES,
        rssm=RSSMConfig.preset("tiny", **sizes), obs_dim=3, max_episode_steps=200, num_start_states=starts))


def test_init_from_copies_every_weight_but_the_start_states(tmp_path):
    old = _rssm(0)
    with torch.no_grad():
        old.start_deter.fill_(0.5)
    old.save_pretrained(tmp_path / "old")
    new = _rssm(1, starts=6, unimix=0.05)  # other start states and loss weights: may differ
    init_rssm_from(new, tmp_path / "old")
    for (name, a), b in zip(old.state_dict().items(), new.state_dict().values()):
        if name.startswith("start_"):
            assert a.shape != b.shape or not torch.equal(a, b), name
        else:
            assert torch.equal(a, b), name


def test_init_from_refuses_other_sizes_backends_and_non_folders(tmp_path, model_dirs):
    _rssm(0).save_pretrained(tmp_path / "old")
    with pytest.raises(ConfigError, match=r"rssm.deter differ"):
        init_rssm_from(_rssm(1, deter=8), tmp_path / "old")
    with pytest.raises(ConfigError, match="is a mdnrnn world model, not an rssm one"):
        init_rssm_from(_rssm(1), model_dirs["pendulum"])
    with pytest.raises(ConfigError, match="not a world-model folder"):
        init_rssm_from(_rssm(1), tmp_path / "nowhere")


def _dreamer_loop(**over) -> IterateConfig:
    rssm = RSSMRecipe(preset="tiny", train=TrainConfig(steps=6, batch_size=2, val_every=3, checkpoint_every=3),
                      seq_len=8, num_start_states=4)
    dreamer = DreamerConfig(env_id="", num_envs=8, horizon=3, chunk=2, checkpoint_every=2, hidden=8, layers=1)
    return IterateConfig(**{**dict(env_id="Pendulum-v1", rounds=2, episodes=3, max_steps=24, workers=1,
                                   eval_episodes=2, backend="rssm", algo="dreamer", train_ratio=1.0, warm_start=True,
                                   rssm=rssm, dreamer=dreamer), **over})


def test_dreamer_outer_loop_collect_train_act(tmp_path):
    cfg = _dreamer_loop()
    rows = iterate(cfg, tmp_path / "d", progress=False)
    # 3 episodes of 24 steps a round, 1 imagined step per real one, 8 dreams x 3 steps an update: 3 updates
    assert [(r["round"], r["dreamer_updates"]) for r in rows] == [(0, 3), (1, 3)]
    for k in (0, 1):
        r = tmp_path / "d" / f"round{k}"
        assert (r / "data" / "dataset.json").is_file() and (r / "eval.json").is_file()
        wm = json.loads((r / "world_model" / "config.json").read_text())
        assert wm["backend"] == "rssm"
        controller = json.loads((r / "agent" / "controller" / "config.json").read_text())
        assert controller["summary"]["algo"] == "dreamer" and controller["summary"]["updates"] == 3
        assert controller["world_model"] == str(r / "world_model")
        assert np.isfinite(rows[k]["real_mean"]) and np.isfinite(rows[k]["dream_mean"])
    r0, r1 = tmp_path / "d" / "round0", tmp_path / "d" / "round1"
    summaries = [json.loads((r / "world_model" / "config.json").read_text())["summary"] for r in (r0, r1)]
    assert "init_from" not in summaries[0] and summaries[1]["init_from"] == str(r0 / "world_model")
    inits = [json.loads((r / "agent" / "dreamer.json").read_text())["init"] for r in (r0, r1)]
    assert inits == [None, str(r0 / "agent" / "controller")]  # the warm round's actor goes on from the last one
    meta = json.loads((r1 / "data" / "dataset.json").read_text())
    assert meta["policy"]["name"] == "agent" and meta["policy"]["agent"] == str(r0 / "agent" / "controller")
    assert iterate(cfg, tmp_path / "d", progress=False) == rows  # everything done: nothing is redone
    with pytest.raises(ConfigError, match="train_ratio: 1.0 recorded, 2.0 now"):
        iterate(replace(cfg, train_ratio=2.0), tmp_path / "d", progress=False)


def test_bad_settings_are_refused_before_any_work(tmp_path):
    for over, match in (({"backend": "dreamer"}, "backend must be one of mdnrnn, rssm"),
                        ({"algo": "ppo"}, "algo must be one of cmaes, dreamer"),
                        ({"train_ratio": 0.0}, "train_ratio must be a finite number > 0"),
                        ({"vision_steps": 5}, "vision_steps sets the MDN-RNN's V")):
        with pytest.raises(ConfigError, match=match):
            iterate(_dreamer_loop(**over), tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()
    assert IterateConfig().dreamer_updates(2000) == 267  # ten 200-step episodes at the defaults (256 x 15)


def test_cli(tmp_path, capsys):
    from dreamgym.cli import main

    base = ["iterate", "Pendulum-v1", "--rounds", "1", "--out", str(tmp_path / "c"), "--episodes", "2", "--max-steps",
            "16", "--workers", "1", "--eval-episodes", "1", "--preset", "tiny", "--backend", "rssm"]
    with pytest.raises(SystemExit):
        main([*base, "--vision-steps", "5"])
    assert "--vision-steps: MDN-RNN options; drop them with --backend rssm" in capsys.readouterr().err
    main([*base, "--algo", "dreamer", "--train-ratio", "3", "--num-envs", "4", "--horizon", "2", "--memory-steps", "4",
          "--memory-batch", "2", "--seq-len", "8"])
    assert "round  episodes" in capsys.readouterr().out
    recorded = json.loads((tmp_path / "c" / "iterate.json").read_text())
    assert (recorded["backend"], recorded["algo"], recorded["train_ratio"]) == ("rssm", "dreamer", 3.0)
    assert (recorded["rssm"]["preset"], recorded["rssm"]["train"]["steps"]) == ("tiny", 4)
    assert (recorded["dreamer"]["num_envs"], recorded["dreamer"]["horizon"]) == (4, 2)
    rows = json.loads((tmp_path / "c" / "rounds.json").read_text())["rounds"]
    assert rows[0]["dreamer_updates"] == 12  # ceil(3 x 32 real steps / (4 x 2))
