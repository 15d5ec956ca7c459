"""Pipeline speed: collection vs the env alone, V training frames/s, M training sequences/s.

Run: python benchmarks/bench_pipeline.py [--device cpu|cuda] [--out benchmarks/results/pipeline.json]
Prints a table and writes it as JSON. Targets (2-core CPU): collection with 2 workers >= 1.8x the
env's single-process steps/s; V >= 520 frames/s at batch 100 (the paper's VAE in plain torch here).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from dreamgym.data.collect import CollectConfig, collect
from dreamgym.data.episodes import Episode
from dreamgym.data.sequences import SequenceDataset
from dreamgym.models.vision import ConvVAE, VisionConfig
from dreamgym.models.world_model import WorldModel
from dreamgym.testing import world_model_config
from dreamgym.train.recipes import _memory_loss


def env_steps_per_s(env_id: str, steps: int) -> float:
    env = gym.make(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    return steps / (time.perf_counter() - start)


def collection(env_id: str, episodes: int, max_steps: int, workers: int) -> dict[str, float]:
    out = tempfile.mkdtemp(prefix="bench-collect-")
    try:
        start = time.perf_counter()
        result = collect(CollectConfig(env_id, out=out, episodes=episodes, max_steps=max_steps, workers=workers),
                         progress=False)
        wall = time.perf_counter() - start
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"steps": result.steps, "wall_s": wall, "steps_per_s": result.steps / wall,
            "steady_steps_per_s": result.steady_steps_per_s, "startup_s": result.startup_s}


def vae_frames_per_s(device: str, batch: int = 100, steps: int = 20) -> float:
    vae = ConvVAE(VisionConfig()).to(device)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-4)
    frames = torch.randint(0, 256, (batch, 64, 64, 3), dtype=torch.uint8, device=device)
    for i in range(steps + 3):
        if i == 3:
            _sync(device)
            start = time.perf_counter()
        loss, _ = vae.loss(frames)
        opt.zero_grad()
        loss.backward()
        opt.step()
    _sync(device)
    return batch * steps / (time.perf_counter() - start)


def memory_sequences_per_s(device: str, batch: int = 64, seq_len: int = 64, steps: int = 10) -> float:
    model = WorldModel(world_model_config("CarRacing-v3")).to(device)
    model.vision.requires_grad_(False)
    rng = np.random.default_rng(0)
    T = 300
    eps = [Episode(np.zeros((T + 1, 1), np.uint8), rng.uniform(0, 1, (T, 3)).astype(np.float32),
                   rng.normal(size=T).astype(np.float32), np.zeros(T, bool), np.zeros(T, bool)) for _ in range(8)]
    mus = [rng.normal(size=(T + 1, 32)).astype(np.float32) for _ in range(8)]
    data = SequenceDataset(mus, [m * 0 - 2 for m in mus], eps, model.action_space, seq_len)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    loss_fn = _memory_loss(True)
    for i in range(steps + 2):
        if i == 2:
            _sync(device)
            start = time.perf_counter()
        idx = torch.randint(len(data), (batch,))
        batch_data = {k: v.to(device) for k, v in data[idx].items()}
        loss, _ = loss_fn(model, batch_data)
        opt.zero_grad()
        loss.backward()
        opt.step()
    _sync(device)
    return batch * steps / (time.perf_counter() - start)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--env", default="CarRacing-v3")
    parser.add_argument("--episodes", type=int, default=24)
    parser.add_argument("--max-steps", type=int, default=500)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "pipeline.json"))
    args = parser.parse_args()
    rows = {}
    single = env_steps_per_s(args.env, 2000)
    rows["env_single_process_steps_per_s"] = single
    for workers in (1, 2):
        c = collection(args.env, args.episodes, args.max_steps, workers)
        rows[f"collect_{workers}w_steps_per_s"] = c["steps_per_s"]
        rows[f"collect_{workers}w_vs_env"] = c["steps_per_s"] / single
        rows[f"collect_{workers}w_wall_s"] = c["wall_s"]
        rows[f"collect_{workers}w_startup_s"] = c["startup_s"]
        rows[f"collect_{workers}w_steady_vs_env"] = c["steady_steps_per_s"] / single
    rows["vae_train_frames_per_s_batch100"] = vae_frames_per_s(args.device)
    rows["memory_train_sequences_per_s_b64_len64"] = memory_sequences_per_s(args.device)
    rows["memory_train_latent_steps_per_s"] = rows["memory_train_sequences_per_s_b64_len64"] * 64
    result = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "device": args.device, "torch_threads": torch.get_num_threads()},
        "env": args.env, "collection": {"episodes": args.episodes, "max_steps": args.max_steps},
        "results": rows,
        "targets": {"collect_2w_vs_env": 1.8, "vae_train_frames_per_s_batch100": 520},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    width = max(map(len, rows))
    for k, v in rows.items():
        print(f"{k:<{width}}  {v:>12,.2f}")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
