import json
import time
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest

from dreamgym import WorldModel
from dreamgym.cli import main
from dreamgym.data.collect import CollectConfig, collect
from dreamgym.data.episodes import shard_paths
from dreamgym.errors import ConfigError, DatasetError
from dreamgym.train.recipes import RecipeConfig, train_world_model
from dreamgym.train.trainer import TrainConfig


@pytest.fixture(scope="module")
def carracing_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("cr-data")
    collect(CollectConfig("CarRacing-v3", out=str(out), episodes=3, max_steps=40, workers=1), progress=False)
    return out


def test_collect_train_load_make_end_to_end(tmp_path, carracing_data):
    start = time.perf_counter()
    model = train_world_model(carracing_data, tmp_path / "run", RecipeConfig.tiny(), progress=False)
    loaded = WorldModel.from_pretrained(tmp_path / "run")
    env = gym.make("Dream-CarRacing-v0", model=str(tmp_path / "run"), obs_type="pixels")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3)
    env.step(env.action_space.sample())
    assert time.perf_counter() - start < 60
    fid = json.loads((tmp_path / "run" / "config.json").read_text())["summary"]["fidelity"]
    for key in ("vae_recon_mse", "z_nll", "open_loop_mse_k1", "open_loop_mse_k10", "reward_mae",
                "termination_precision", "termination_recall"):
        assert key in fid
    assert np.isfinite(fid["vae_recon_mse"]) and fid["vae_recon_mse"] < 0.2
    card = (tmp_path / "run" / "README.md").read_text()
    assert "vae_recon_mse" in card and "library_name: dreamgym" in card
    # start states are real first latents, not zeros
    assert loaded.start_z.abs().sum() > 0 and model.config.summary["data"]["episodes"] == 3


def test_a_dyna_round_continues_the_last_model(tmp_path, carracing_data):
    import torch

    first = train_world_model(carracing_data, tmp_path / "r0", RecipeConfig.tiny(), progress=False)
    cfg = RecipeConfig.tiny(init_from=str(tmp_path / "r0"), train_vision=False,
                            memory=TrainConfig(steps=1, batch_size=8, lr=1e-9, val_every=1, checkpoint_every=1))
    second = train_world_model(carracing_data, tmp_path / "r1", cfg, progress=False)
    # V kept as it was; M and the heads start from round 0's weights (one step at lr 1e-9 barely moves them)
    for (name, a), b in zip(first.vision.state_dict().items(), second.vision.state_dict().values()):
        assert torch.equal(a, b), name
    for (name, a), b in zip(first.memory.state_dict().items(), second.memory.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5), name
    assert json.loads((tmp_path / "r1" / "config.json").read_text())["summary"]["training"]["vision_steps"] == 0
    with pytest.raises(ConfigError, match="other sizes"):
        train_world_model(carracing_data, tmp_path / "r2", RecipeConfig.tiny(init_from=str(tmp_path / "r0"),
                                                                             hidden_size=8), progress=False)
    with pytest.raises(ConfigError, match="init_from"):
        train_world_model(carracing_data, tmp_path / "r3", RecipeConfig.tiny(train_vision=False), progress=False)
    # loss weights may change between rounds (rare deaths: weigh them more); head shapes may not
    heavier = replace(cfg, heads={"termination_pos_weight": 100.0})
    third = train_world_model(carracing_data, tmp_path / "r4", heavier, progress=False)
    assert third.config.heads.termination_pos_weight == 100.0
    with pytest.raises(ConfigError, match="Unknown heads settings"):
        train_world_model(carracing_data, tmp_path / "r5", RecipeConfig.tiny(heads={"pos_weight": 3}), progress=False)


def test_a_fresh_memory_on_a_kept_vision_learns_posterior_means(tmp_path, carracing_data):
    import torch

    first = train_world_model(carracing_data, tmp_path / "r0", RecipeConfig.tiny(), progress=False)
    main(["train", str(carracing_data), "--out", str(tmp_path / "r1"), "--preset", "tiny", "--init-from",
          str(tmp_path / "r0"), "--keep-vision", "--fresh-memory", "--memory-z", "mean", "--real-z", "sample",
          "--memory-steps", "1",
          "--lr", "1e-9", "--seed", "7"])
    second = WorldModel.from_pretrained(tmp_path / "r1")
    for (name, a), b in zip(first.vision.state_dict().items(), second.vision.state_dict().values()):
        assert torch.equal(a, b), name  # V kept
    # M and the heads are a new random init, not round 0's (one step at lr 1e-9 barely moves them)
    moved = [not torch.allclose(a, b, atol=1e-3) for a, b in
             zip(first.memory.state_dict().values(), second.memory.state_dict().values())]
    assert all(moved)
    training = json.loads((tmp_path / "r1" / "config.json").read_text())["summary"]["training"]
    assert training["memory_z"] == "mean" and training["fresh_memory"] and training["vision_steps"] == 0
    assert json.loads((tmp_path / "r1" / "recipe.json").read_text())["sample_z"] is False
    assert second.config.real_sample_z and not first.config.real_sample_z
    with pytest.raises(ConfigError, match="fresh_memory=True keeps an existing V"):
        train_world_model(carracing_data, tmp_path / "r2", RecipeConfig.tiny(fresh_memory=True), progress=False)
    # a fresh M may take other sizes: only V is copied (a reward head with a hidden layer on a kept V)
    wider = RecipeConfig.tiny(init_from=str(tmp_path / "r0"), train_vision=False, fresh_memory=True,
                              heads={"hidden": 4}, memory=type(RecipeConfig.tiny().memory)(steps=1, batch_size=4))
    third = train_world_model(carracing_data, tmp_path / "r3", wider, progress=False)
    assert third.config.heads.hidden == 4
    for a, b in zip(first.vision.state_dict().values(), third.vision.state_dict().values()):
        assert torch.equal(a, b)


def test_detach_heads_reaches_the_memory_loss_and_is_recorded(tmp_path, carracing_data, monkeypatch, capsys):
    seen = []
    original = WorldModel.memory_loss

    def spy(self, batch, detach_heads=False):
        seen.append(detach_heads)
        return original(self, batch, detach_heads)

    monkeypatch.setattr(WorldModel, "memory_loss", spy)
    main(["train", str(carracing_data), "--out", str(tmp_path / "d"), "--preset", "tiny", "--vision-steps", "2",
          "--memory-steps", "3", "--detach-heads"])
    assert seen and all(seen)
    assert json.loads((tmp_path / "d" / "recipe.json").read_text())["detach_heads"] is True
    assert json.loads((tmp_path / "d" / "config.json").read_text())["summary"]["training"]["detach_heads"] is True
    seen.clear()
    train_world_model(carracing_data, tmp_path / "j", RecipeConfig.tiny(vision=TrainConfig(steps=2, batch_size=8),
                                                                        memory=TrainConfig(steps=3, batch_size=8)),
                      progress=False)
    assert seen and not any(seen)  # the default trains the heads jointly, as the shipped recipes did
    assert "detach_heads" not in json.loads((tmp_path / "j" / "config.json").read_text())["summary"]["training"]
    with pytest.raises(SystemExit) as e:
        main(["train", str(carracing_data), "--out", str(tmp_path / "r"), "--preset", "tiny", "--backend", "rssm",
              "--detach-heads"])
    assert e.value.code == 2 and "--detach-heads are MDN-RNN options" in capsys.readouterr().err


def test_memory_training_lowers_the_loss(tmp_path):
    collect(CollectConfig("Pendulum-v1", out=str(tmp_path / "d"), episodes=6, max_steps=50, workers=1), progress=False)
    cfg = RecipeConfig.tiny()
    short = train_world_model(tmp_path / "d", tmp_path / "a", RecipeConfig.tiny(memory=type(cfg.memory)(steps=1, batch_size=8)),
                              progress=False)
    long = train_world_model(tmp_path / "d", tmp_path / "b", RecipeConfig.tiny(memory=type(cfg.memory)(
        steps=150, batch_size=8, lr=1e-2, val_every=50)), progress=False)
    assert long.config.summary["fidelity"]["z_nll"] < short.config.summary["fidelity"]["z_nll"] - 0.3


def test_cli_collect_train_resume_validate(tmp_path, capsys):
    data, run = str(tmp_path / "d"), str(tmp_path / "run")
    main(["collect", "Pendulum-v1", "--out", data, "--episodes", "3", "--workers", "1", "--max-steps", "30"])
    main(["train", data, "--out", run, "--preset", "tiny", "--fp16"])
    assert WorldModel.from_pretrained(run).config.storage_dtype == "float16"
    with pytest.raises(SystemExit) as e:
        main(["train", data, "--out", run, "--preset", "tiny"])
    assert e.value.code == 2 and "--resume" in capsys.readouterr().err
    main(["train", data, "--out", run, "--preset", "tiny", "--resume"])  # finished stages are kept
    main(["validate", data])
    assert "3 good shard(s), 0 bad" in capsys.readouterr().out


def test_bad_datasets(tmp_path):
    collect(CollectConfig("Pendulum-v1", out=str(tmp_path / "one"), episodes=1, max_steps=10, workers=1), progress=False)
    with pytest.raises(DatasetError, match="at least 2 episodes"):
        train_world_model(tmp_path / "one", tmp_path / "r1", RecipeConfig.tiny(), progress=False)
    collect(CollectConfig("MountainCarContinuous-v0", out=str(tmp_path / "mc"), episodes=1, max_steps=10, workers=1),
            progress=False)
    with pytest.raises(DatasetError, match="cannot be mixed"):
        train_world_model([tmp_path / "one", tmp_path / "mc"], tmp_path / "r2", RecipeConfig.tiny(), progress=False)
    for p in shard_paths(tmp_path / "one"):
        p.unlink()
    with pytest.raises(DatasetError, match="holds no episodes"):
        train_world_model(tmp_path / "one", tmp_path / "r3", RecipeConfig.tiny(), progress=False)
    collect(CollectConfig("Pendulum-v1", out=str(tmp_path / "three"), episodes=3, max_steps=10, workers=1),
            progress=False)
    train_world_model(tmp_path / "three", tmp_path / "r5", RecipeConfig.tiny(memory=TrainConfig(steps=1, batch_size=2)),
                      progress=False)
    collect(CollectConfig("MountainCarContinuous-v0", out=str(tmp_path / "mc3"), episodes=3, max_steps=10, workers=1),
            progress=False)
    with pytest.raises(DatasetError, match="cannot continue on it"):
        train_world_model(tmp_path / "mc3", tmp_path / "r5", RecipeConfig.tiny(), resume=True, progress=False)
    with pytest.raises(ConfigError, match="batch"):
        collect(CollectConfig("Pendulum-v1", out=str(tmp_path / "two"), episodes=2, max_steps=5, workers=1), progress=False)
        train_world_model(tmp_path / "two", tmp_path / "r4", RecipeConfig.tiny(), progress=False)


def test_resume_refuses_changed_data_and_fewer_steps_than_done(tmp_path, capsys):
    data, run = str(tmp_path / "d"), str(tmp_path / "run")
    collect(CollectConfig("Pendulum-v1", out=data, episodes=3, max_steps=10, workers=1), progress=False)
    cfg = RecipeConfig.tiny(memory=TrainConfig(steps=4, batch_size=2, val_every=2, checkpoint_every=2))
    train_world_model(data, run, cfg, progress=False)
    assert json.loads((tmp_path / "run" / "stages" / "episodes.json").read_text())["episodes"] == 3
    with pytest.raises(ConfigError, match="--memory-steps 3 is below the 4 steps"):
        train_world_model(data, run, replace(cfg, memory=replace(cfg.memory, steps=3)), resume=True, progress=False)
    collect(CollectConfig("Pendulum-v1", out=data, episodes=4, max_steps=10, workers=1), progress=False)  # one more
    with pytest.raises(DatasetError, match=r"3 episodes .* recorded .* 4 episodes .* now"):
        train_world_model(data, run, cfg, resume=True, progress=False)
    with pytest.raises(SystemExit) as e:
        main(["train", data, "--out", run, "--preset", "tiny", "--resume", "--memory-steps", "4", "--memory-batch", "2"])
    assert e.value.code == 2 and "The data changed since" in capsys.readouterr().err


def test_zero_sizes_are_refused_not_read_as_defaults(tmp_path):
    from dreamgym.data.episodes import DatasetMeta
    from dreamgym.train.recipes import model_config

    meta = DatasetMeta(env_id="Pendulum-v1", action_space={"type": "Box", "low": -2.0, "high": 2.0, "shape": [1],
                                                             "dtype": "float32"},
                       observation_space={"type": "Box", "low": [-1.0, -1.0, -8.0], "high": [1.0, 1.0, 8.0],
                                          "shape": [3], "dtype": "float32"}, obs_kind="state", obs_shape=[3])
    for field in ("z_dim", "hidden_size"):
        with pytest.raises(ConfigError, match=field):
            model_config(meta, RecipeConfig(**{field: 0}))
    assert model_config(meta, RecipeConfig(hidden_size=None)).memory.hidden_size == 64  # the env's default
