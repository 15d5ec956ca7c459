import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as tmp_mp

from dreamgym.data.episodes import Episode
from dreamgym.data.sequences import SequenceDataset
from dreamgym.errors import ConfigError
from dreamgym.train.recipes import _memory_loss
from dreamgym.train.trainer import TrainConfig, Trainer, finish_distributed

from ..conftest import make_tiny_model


def _sequences(n_eps=6, T=20, seed=0):
    model = make_tiny_model("pendulum")
    rng = np.random.default_rng(seed)
    eps, mus = [], []
    for _ in range(n_eps):
        obs = rng.normal(size=(T + 1, 3)).astype(np.float32)
        eps.append(Episode(obs, rng.uniform(-2, 2, (T, 1)).astype(np.float32), rng.normal(size=T).astype(np.float32),
                           np.zeros(T, bool), np.zeros(T, bool)))
        mus.append(obs)
    return model, SequenceDataset(mus, None, eps, model.action_space, seq_len=8, stride=2)


def _trainer(out, steps=12, batch=8, **kw):
    model, data = _sequences()
    cfg = TrainConfig(steps=steps, batch_size=batch, lr=1e-2, val_every=4, checkpoint_every=5, seed=3)
    return Trainer(model, _memory_loss(False), data, data, cfg, out, name="memory", progress=False, **kw)


def _params(trainer):
    return torch.cat([p.detach().reshape(-1) for p in trainer.model.parameters()])


def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path):
    full = _trainer(tmp_path / "full")
    full.fit()
    interrupted = _trainer(tmp_path / "cut")
    inner = interrupted.loss_module.loss_fn

    def crash_at_step_8(model, batch):
        if interrupted.step == 8 and model.training:  # 8 steps done: Ctrl-C during the 9th
            raise KeyboardInterrupt
        return inner(model, batch)

    interrupted.loss_module.loss_fn = crash_at_step_8
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    assert interrupted.step == 8
    resumed = _trainer(tmp_path / "cut")
    assert resumed.load() and resumed.step == 8
    resumed.fit()
    assert resumed.step == 12
    assert torch.equal(_params(resumed), _params(full))
    assert (tmp_path / "full" / "log.jsonl").read_text().count("\n") == 3


def test_trainer_input_errors(tmp_path):
    model, data = _sequences(n_eps=1, T=8)
    with pytest.raises(ConfigError, match="fewer than one batch"):
        Trainer(model, _memory_loss(False), data, None, TrainConfig(batch_size=64), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="steps must be >= 1"):
        Trainer(model, _memory_loss(False), data, None, TrainConfig(steps=0), tmp_path, progress=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank))
    torch.set_num_threads(1)
    trainer = _trainer(out, steps=10, batch=8)
    metrics = trainer.fit()
    if rank == 0:
        results.put((metrics["val_loss"], _params(trainer).numpy()))
    finish_distributed()


def test_two_process_gloo_ddp_matches_one_process(tmp_path):
    one = _trainer(tmp_path / "one", steps=10, batch=8)
    single = one.fit()["val_loss"]
    ctx = tmp_mp.get_context("spawn")
    results = ctx.SimpleQueue()
    tmp_mp.start_processes(_ddp_worker, args=(2, _free_port(), tmp_path / "two", results), nprocs=2,
                           start_method="spawn")
    ddp_loss, ddp_params = results.get()
    # the two ranks' half-batches are exactly the one process's batch; gradients are averaged
    assert ddp_loss == pytest.approx(single, rel=1e-4)
    np.testing.assert_allclose(ddp_params, _params(one).numpy(), atol=1e-5)
    assert (tmp_path / "two" / "trainer_state.pt").is_file()  # rank 0 saved
