"""One generic trainer: ``(loss, metrics) = loss_fn(model, batch)``, for every stage.

tqdm progress, a validation loss, a JSON-lines log (and TensorBoard if asked), checkpoints every
N steps and on Ctrl-C, exact resume (model, optimiser, data order and RNG state), seeds, and
DistributedDataParallel when launched by torchrun (gloo on CPU, nccl on GPU; rank 0 saves).
A loss that turns NaN/inf stops the run at once with NumericalError; no checkpoint holds NaN weights.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, DistributedSampler
from tqdm.auto import tqdm

from dreamgym.errors import ConfigError, NumericalError
from dreamgym.utils import atomic_write

Batch = dict[str, torch.Tensor]
LossFn = Callable[[nn.Module, Batch], tuple[torch.Tensor, dict[str, float]]]
STATE_NAME = "trainer_state.pt"


@dataclass
class TrainConfig:
    """Optimisation settings of one stage.

    :param steps: optimiser steps. :param batch_size: global batch (split over DDP ranks).
    :param lr: Adam learning rate. :param grad_clip: max gradient norm (0: off).
    :param val_every: steps between validation passes. :param val_batches: batches per pass.
    :param checkpoint_every: steps between checkpoints. :param seed: data order and init noise.
    :param tensorboard: also log to TensorBoard (needs the tensorboard package).
    """

    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    grad_clip: float = 1.0
    val_every: int = 200
    val_batches: int = 8
    checkpoint_every: int = 500
    seed: int = 0
    tensorboard: bool = False

    def validate(self) -> None:
        for name in ("steps", "batch_size", "val_every", "val_batches", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}.")


class _LossModule(nn.Module):
    """Puts the loss in ``forward`` so DistributedDataParallel can wrap it."""

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        return self.loss_fn(self.model, batch)


def distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def finish_distributed() -> None:
    """Leave the process group together: a rank that tears gloo down while another still talks to it
    (rank 0 saving the final checkpoint) can abort the whole run at exit."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


class Trainer:
    """Train ``model`` on ``train_set`` with ``loss_fn``; checkpoints live in ``out``.

    :param model: the module whose parameters are optimised.
    :param loss_fn: ``(model, batch) -> (loss, metrics)``.
    :param train_set: / :param val_set: datasets indexed by a tensor of indices (one batch).
    :param config: TrainConfig. :param out: directory for the checkpoint and logs.
    :param name: stage name, shown in the progress bar and logs.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        train_set: Dataset,
        val_set: Dataset | None,
        config: TrainConfig,
        out: str | Path,
        name: str = "train",
        device: str | torch.device = "cpu",
        progress: bool = True,
    ) -> None:
        config.validate()
        self.config, self.out, self.name, self.progress = config, Path(out), name, progress
        self.rank, self.world = distributed()
        if config.batch_size % self.world:
            raise ConfigError(f"batch_size {config.batch_size} must divide evenly over {self.world} processes.")
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.out.mkdir(parents=True, exist_ok=True)
        module = self.loss_module = _LossModule(self.model, loss_fn)
        self.module: nn.Module = nn.parallel.DistributedDataParallel(module) if self.world > 1 else module
        self.train_set, self.val_set = train_set, val_set
        self.local_batch = config.batch_size // self.world
        if len(train_set) < config.batch_size:
            raise ConfigError(
                f"{name}: the training set has {len(train_set)} items, fewer than one batch of {config.batch_size}. "
                "Collect more data or lower the batch size."
            )
        self.sampler = DistributedSampler(train_set, num_replicas=self.world, rank=self.rank, shuffle=True,
                                          seed=config.seed, drop_last=True)
        self.optimizer = torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad], lr=config.lr)
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.saved_step: int | None = None  # the step of the checkpoint on disk, if any
        self.history: list[dict[str, float]] = []
        self._writer: Any = None
        torch.manual_seed(config.seed + self.rank)

    # ----- checkpoints -------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.out / STATE_NAME

    def save(self) -> None:
        """Everything needed to continue exactly; rank 0 writes it atomically. Weights holding NaN/inf raise
        NumericalError instead, so the last good checkpoint stays (every rank holds the same weights: all raise)."""
        bad = [n for n, p in self.model.state_dict().items() if p.is_floating_point() and not bool(p.isfinite().all())]
        if bad:
            raise self._diverged(f"the weights {', '.join(bad[:3])} hold NaN/inf at step {self.step}")
        self.saved_step = self.step
        if self.rank != 0:
            return
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "progress": {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch},
            "rng": torch.get_rng_state(),
            "config": asdict(self.config),
        }
        atomic_write(self.state_path, lambda p: torch.save(state, p))

    def load(self) -> bool:
        """Resume from ``out/trainer_state.pt`` if present (weights_only: no pickle); True if resumed."""
        if not self.state_path.is_file():
            return False
        state = torch.load(self.state_path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = state["progress"]["step"]
        self.epoch = state["progress"]["epoch"]
        self.batch_in_epoch = state["progress"]["batch_in_epoch"]
        torch.set_rng_state(state["rng"])
        self.saved_step = self.step
        return True

    def _diverged(self, what: str) -> NumericalError:
        kept = (f"The last good checkpoint (step {self.saved_step}) is kept in {self.state_path}."
                if self.saved_step is not None and self.state_path.is_file() else "No checkpoint was written yet.")
        return NumericalError(
            f"{self.name}: training diverged: {what} (lr {self.config.lr:g}, grad_clip {self.config.grad_clip:g}). "
            f"{kept} Lower the learning rate (--lr) and train again into a new --out.")

    def _check_loss(self, loss: torch.Tensor) -> None:
        """Stop at the first non-finite loss, before its gradients reach the weights; under DDP every rank
        stops together (one rank raising alone would leave the others waiting in the next all-reduce)."""
        bad = (~torch.isfinite(loss.detach())).any().to(torch.float32).reshape(1)
        if self.world > 1:
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        if bad.item():
            raise self._diverged(f"the loss is {loss.detach().cpu().tolist()} at step {self.step + 1} of "
                                 f"{self.config.steps}")

    # ----- loop --------------------------------------------------------------------------------
    def _batches(self):
        """Yield (epoch, index in epoch, batch) forever, continuing from the saved position."""
        while True:
            self.sampler.set_epoch(self.epoch)
            if hasattr(self.train_set, "set_epoch"):  # a dataset streaming from disk loads this epoch's part
                self.train_set.set_epoch(self.epoch)
            order = torch.tensor(list(self.sampler), dtype=torch.long)
            n = len(order) // self.local_batch
            for b in range(self.batch_in_epoch, n):
                idx = order[b * self.local_batch : (b + 1) * self.local_batch]
                yield b, _to(self.train_set[idx], self.device)
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean metrics over the first ``val_batches`` batches of the validation set (fixed order)."""
        if self.val_set is None or len(self.val_set) == 0:
            return {}
        self.model.eval()
        rng_state = torch.get_rng_state()
        torch.manual_seed(12345)  # the same noise on every pass, so passes compare
        totals: dict[str, float] = {}
        count = 0
        bs = self.config.batch_size  # every rank validates the same batches: the numbers agree
        for b in range(min(self.config.val_batches, math.ceil(len(self.val_set) / bs))):
            idx = torch.arange(b * bs, min((b + 1) * bs, len(self.val_set)))
            _, metrics = self.loss_module(_to(self.val_set[idx], self.device))
            for k, v in metrics.items():
                totals[k] = totals.get(k, 0.0) + v
            count += 1
        torch.set_rng_state(rng_state)
        self.model.train()
        return {f"val_{k}": v / count for k, v in totals.items()}

    def fit(self) -> dict[str, float]:
        """Train to ``config.steps``; save every ``checkpoint_every`` steps, at the end and on Ctrl-C."""
        cfg = self.config
        self.model.train()
        bar = tqdm(total=cfg.steps, initial=self.step, desc=self.name, disable=not self.progress or self.rank != 0)
        last: dict[str, float] = {}
        start, start_step = time.perf_counter(), self.step
        batches = self._batches()
        try:
            while self.step < cfg.steps:
                b, batch = next(batches)
                loss, metrics = self.module(batch)
                self._check_loss(loss)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.optimizer.step()
                self.step, self.batch_in_epoch = self.step + 1, b + 1
                last = metrics
                if self.step % cfg.val_every == 0 or self.step == cfg.steps:
                    last = {**metrics, **self.validate()}
                    nonfinite = {k: v for k, v in last.items() if not math.isfinite(v)}
                    if nonfinite:  # the same on every rank: validation sees the same batches
                        raise self._diverged(f"{nonfinite} at step {self.step}")
                    self._log(last)
                if self.step % cfg.checkpoint_every == 0:
                    self.save()
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.4g}")
        except NumericalError:
            bar.close()  # the error then starts on a line of its own
            raise
        except KeyboardInterrupt:
            self.save()
            bar.close()
            if self.rank == 0:
                print(f"\nInterrupted at step {self.step}: saved {self.state_path}; re-run with --resume to continue.")
            raise
        bar.close()
        self.save()
        elapsed = time.perf_counter() - start
        last["steps_per_s"] = (self.step - start_step) / max(elapsed, 1e-9)
        if self._writer is not None:
            self._writer.close()
        return last

    def _log(self, metrics: dict[str, float]) -> None:
        if self.rank != 0:
            return
        row = {"stage": self.name, "step": self.step, **metrics}
        self.history.append(row)
        with open(self.out / "log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if self.config.tensorboard:
            if self._writer is None:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError as e:
                    from gymnasium.error import DependencyNotInstalled

                    raise DependencyNotInstalled("tensorboard logging needs: pip install tensorboard") from e
                self._writer = SummaryWriter(str(self.out / "tensorboard"))
            for k, v in metrics.items():
                self._writer.add_scalar(f"{self.name}/{k}", v, self.step)


def _to(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device) for k, v in batch.items()}
