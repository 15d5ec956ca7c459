"""Training that diverges stops at the first non-finite loss, and the last good checkpoint stays (issue 14)."""

from __future__ import annotations

import json

import pytest
import torch

from dreamgym.cli import main
from dreamgym.data.collect import CollectConfig, collect
from dreamgym.errors import NumericalError

from .test_trainer import _trainer


def test_a_nan_loss_stops_at_once_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = _trainer(tmp_path)  # checkpoints every 5 steps, validates every 4
    inner = trainer.loss_module.loss_fn

    def nan_at_step_8(model, batch):
        loss, metrics = inner(model, batch)
        return (loss * float("nan"), metrics) if trainer.step == 7 and model.training else (loss, metrics)

    trainer.loss_module.loss_fn = nan_at_step_8
    with pytest.raises(NumericalError, match=r"memory: training diverged: the loss is nan at step 8 of 12.*"
                                             r"last good checkpoint \(step 5\)"):
        trainer.fit()
    state = torch.load(tmp_path / "trainer_state.pt", weights_only=True)
    assert state["progress"]["step"] == 5
    assert all(bool(v.isfinite().all()) for v in state["model"].values() if v.is_floating_point())
    log = (tmp_path / "log.jsonl").read_text()
    assert "NaN" not in log and "Infinity" not in log and log.count("\n") == 1  # step 4 only


def test_weights_turned_inf_are_never_saved(tmp_path):
    trainer = _trainer(tmp_path, steps=3)
    trainer.config.lr = 1e37  # lr 1e37: Adam's first step already blows the weights up
    for group in trainer.optimizer.param_groups:
        group["lr"] = 1e37
    with pytest.raises(NumericalError, match=r"diverged.*No checkpoint was written yet.*--lr"):
        trainer.fit()
    assert not (tmp_path / "trainer_state.pt").exists()


def test_train_cli_with_a_huge_lr_is_a_clean_error(tmp_path, capsys):
    data = tmp_path / "data"
    collect(CollectConfig("Pendulum-v1", out=str(data), episodes=3, max_steps=30, workers=1), progress=False)
    with pytest.raises(SystemExit) as e:
        main(["train", str(data), "--out", str(tmp_path / "run"), "--preset", "tiny", "--lr", "1e37"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "dreamgym train: error:" in err and "diverged" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "model.safetensors").exists()
    for line in (tmp_path / "run").rglob("log.jsonl"):
        assert all(json.loads(r).get("loss", 0) == json.loads(r).get("loss", 0) for r in line.read_text().splitlines())
