"""examples/gpu_memory.py: pack a run's latents, train M + heads from them, assemble a world model."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dreamgym.data.collect import CollectConfig, collect
from dreamgym.errors import ConfigError
from dreamgym.models.world_model import WorldModel
from dreamgym.train.recipes import RecipeConfig, train_world_model

PATH = Path(__file__).parents[1] / "examples" / "gpu_memory.py"


@pytest.fixture(scope="module")
def gm(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("example_gpu_memory", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_pack_train_assemble_round_trip(tmp_path, gm):
    data = tmp_path / "data"
    collect(CollectConfig("CarRacing-v3", out=str(data), episodes=4, max_steps=30, workers=1), progress=False)
    run = tmp_path / "run"
    train_world_model(data, run, RecipeConfig.tiny(), progress=False)
    gm.pack(run, tmp_path / "pack")
    train_eps, val_eps = gm._unpack(tmp_path / "pack")
    assert len(train_eps) + len(val_eps) == 4 and len(val_eps) >= 1
    # the rounded latents stay within a small part of the posterior sigma; actions (Box) come back exactly
    originals = sorted((run / "latents").glob("*/ep-*.npz"))
    with np.load(originals[0]) as d:
        sigma = np.exp(0.5 * d["logvar"])
        ep = next(e for e in train_eps + val_eps if len(e) == len(d["actions"]) and np.array_equal(e.actions, d["actions"]))
        assert np.all(np.abs(ep.mu - d["mu"]) <= 0.125 * np.median(sigma, 0) + 1e-6)
    gm.train(tmp_path / "pack", tmp_path / "gpu", seconds=1.0, batch=2, lr=1e-3, lr_min=1e-4, seq_len=16, seed=0,
             val_every=1, device="cpu", detach_heads=True)
    meta = json.loads((tmp_path / "gpu" / "meta.json").read_text())
    assert meta["stride"] == 8  # the dataset's default, seq_len // 2
    gm.train(tmp_path / "pack", tmp_path / "gpu4", seconds=0.5, batch=2, lr=1e-3, lr_min=1e-4, seq_len=16, seed=0,
             val_every=1, device="cpu", stride=4)  # overlapping training windows; held-out ones unchanged
    meta4 = json.loads((tmp_path / "gpu4" / "meta.json").read_text())
    assert meta4["stride"] == 4 and meta4["val_windows"] == meta["val_windows"]
    assert meta4["train_windows"] >= 2 * meta["train_windows"]
    with pytest.raises(ConfigError, match="stride must be between 1 and seq_len"):
        gm.train(tmp_path / "pack", tmp_path / "gpu0", seconds=0.5, batch=2, lr=1e-3, lr_min=1e-4, seq_len=16,
                 seed=0, val_every=1, device="cpu", stride=17)
    log = [json.loads(line) for line in (tmp_path / "gpu" / "log.jsonl").read_text().splitlines()]
    assert log[0]["step"] == 0 and all(np.isfinite(r["val_loss"]) for r in log)
    new = load_file(str(tmp_path / "gpu" / "last.safetensors"))
    assert new and all(k.startswith(gm.M_PREFIXES) for k in new)
    gm.assemble(run, tmp_path / "gpu" / "last.safetensors", tmp_path / "model", seed=0, refit=True)
    model = WorldModel.from_pretrained(tmp_path / "model")
    for k, v in new.items():  # M is the trained one (the termination head was refitted)
        if not k.startswith("heads.termination"):
            torch.testing.assert_close(model.state_dict()[k].float(), v, atol=2e-3, rtol=1e-2)
    summary = model.config.summary
    assert summary["training"]["gpu_memory"]["detach_heads"] is True
    assert summary["fidelity"]["vae_recon_mse"] == WorldModel.from_pretrained(run).config.summary["fidelity"]["vae_recon_mse"]
    env = gym.make("Dream-CarRacing-v0", model=str(tmp_path / "model"))
    env.reset(seed=0)
    env.step(env.action_space.sample())


def test_assemble_refuses_weights_of_another_shape(tmp_path, gm):
    from safetensors.torch import save_file

    save_file({"memory.lstm.weight_hh_l0": torch.zeros(4, 4)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(SystemExit, match="M \\+ heads"):
        gm.assemble(Path("pretrained/carracing"), tmp_path / "w.safetensors", tmp_path / "out", seed=0)


def test_doom_expert_builds_ded_from_de_with_the_gpu_parts(tmp_path, monkeypatch):
    """examples/doom_expert.py --only ded: pack de, train with the heads detached, assemble with a refit head."""
    import runpy
    import shutil

    data = tmp_path / "data"
    collect(CollectConfig("CarRacing-v3", out=str(data), episodes=4, max_steps=30, workers=1), progress=False)
    work = tmp_path / "work"
    train_world_model(data, work / "de", RecipeConfig.tiny(), progress=False)
    monkeypatch.syspath_prepend(str(PATH.parent))
    monkeypatch.setattr(sys, "argv", ["doom_expert.py", "--work", str(work), "--only", "ded", "--gpu-device", "cpu",
                                      "--gpu-seconds", "1"])
    runpy.run_path(str(PATH.parent / "doom_expert.py"), run_name="__main__")
    gpu = WorldModel.from_pretrained(work / "ded").config.summary["training"]["gpu_memory"]
    assert gpu["detach_heads"] is True and gpu["refit_termination"]["train_steps"] > 0 and gpu["continued_from"] == "de"
    assert (work / "gpu-de-train" / "last.safetensors").is_file()
    shutil.rmtree(work / "gpu-de-pack")  # a finished ded is kept: a second run does no work
    runpy.run_path(str(PATH.parent / "doom_expert.py"), run_name="__main__")
    assert not (work / "gpu-de-pack").exists()
