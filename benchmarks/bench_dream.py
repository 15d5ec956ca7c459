"""Dream speed against reality and against the hardware's limit.

Run: python benchmarks/bench_dream.py [--device cpu|cuda] [--quick] [--out benchmarks/results/dream.json]

Measures, in one run: the real env's steps/s; DreamEnv (single) steps/s for latent and pixel
observations; DreamVectorEnv at 1..4096 envs; SB3's DreamVecEnv; one CMA-ES generation of
population 64 x 16 rollouts x 1000 steps; torch matmul GFLOP/s and the FLOP bound it implies;
memory of 4096 envs and its growth over many steps. The world model has the paper's CarRacing sizes
(z 32, LSTM 256, 5 Gaussians); its weights are random, which does not change the cost of a step.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import dreamgym
from dreamgym.agents.cmaes import CMAESConfig, CMAESTrainer, rollout_returns
from dreamgym.models.world_model import WorldModel
from dreamgym.testing import world_model_config


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def matmul_gflops(device: str, n: int = 1024, reps: int = 30) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def flops_per_step(model: WorldModel) -> int:
    z, h, a = model.z_dim, model.hidden_size, model.action_dim
    k = model.config.memory.n_mixtures
    lstm = 2 * (z + a + h) * 4 * h
    mdn = 2 * h * 3 * z * k
    heads = 2 * h * 2
    return lstm + mdn + heads


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def real_steps_per_s(env_id: str, seconds: float) -> float:
    env = gym.make(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        n += 1
        if term or trunc:
            env.reset()
    return n / (time.perf_counter() - start)


def single_steps_per_s(model_dir: str, obs_type: str, seconds: float, device: str, fast: bool = True) -> float:
    env = gym.make("Dream-CarRacing-v0", model=model_dir, obs_type=obs_type, device=device, fast=fast)
    env.reset(seed=0)
    action = np.array([0.0, 0.5, 0.0], np.float32)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, term, trunc, _ = env.step(action)
        n += 1
        if term or trunc:
            env.reset()
    return n / (time.perf_counter() - start)


def vector_steps_per_s(model: WorldModel, num_envs: int, seconds: float, device: str, obs_type: str = "latent",
                       dtype: str = "float32", repeats: int = 3) -> float:
    """Median over ``repeats`` windows: this VM's neighbours move single windows by 15-20%."""
    env = dreamgym.DreamVectorEnv(num_envs=num_envs, model=model, obs_type=obs_type, device=device, dtype=dtype)
    env.reset(seed=0)
    actions = np.tile(np.array([0.0, 0.5, 0.0], np.float32), (num_envs, 1))
    for _ in range(5):
        env.step(actions)
    rates = []
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / repeats:
            env.step(actions)
            n += 1
        rates.append(n * num_envs / (time.perf_counter() - start))
    return float(np.median(rates))


def sb3_steps_per_s(model: WorldModel, n_envs: int, seconds: float, device: str) -> float:
    from dreamgym.agents.sb3 import DreamVecEnv

    venv = DreamVecEnv("Dream-CarRacing-v0", n_envs=n_envs, model=model, device=device)
    venv.reset()
    actions = np.tile(np.array([0.0, 0.5, 0.0], np.float32), (n_envs, 1))
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        venv.step(actions)
        n += 1
    return n * n_envs / (time.perf_counter() - start)


def cmaes_generation_s(model: WorldModel, device: str, population: int, rollouts: int, steps: int,
                       dtype: str = "float32") -> float:
    out = tempfile.mkdtemp(prefix="bench-cmaes-")
    trainer = CMAESTrainer(CMAESConfig("Dream-CarRacing-v0", population=population, rollouts=rollouts, generations=1,
                                       max_steps=steps, device=device, dtype=dtype), out, model=model, progress=False)
    params = torch.as_tensor(np.asarray(trainer.es.ask()), dtype=torch.float32)
    start = time.perf_counter()
    rollout_returns(trainer.env, trainer.controller, params, rollouts, list(range(rollouts)), steps)
    return time.perf_counter() - start


def memory_profile(model: WorldModel, device: str, steps: int) -> dict[str, float]:
    gc.collect()
    before = rss_mb()
    env = dreamgym.DreamVectorEnv(num_envs=4096, model=model, device=device, max_episode_steps=1000)
    env.reset(seed=0)
    actions = np.tile(np.array([0.0, 0.5, 0.0], np.float32), (4096, 1))
    for _ in range(20):  # allocator warm-up: the first steps grow the heap once
        env.step(actions)
    after_first = rss_mb()
    samples = []
    for i in range(steps):
        env.step(actions)
        if i % max(steps // 10, 1) == 0:
            samples.append(rss_mb())
    return {"envs": 4096, "rss_before_mb": before, "rss_after_first_step_mb": after_first,
            "cost_of_4096_envs_mb": after_first - before,  # state + the step's working set "rss_after_steps_mb": rss_mb(),
            "growth_over_steps_mb": rss_mb() - after_first, "steps": steps, "dream_steps": steps * 4096,
            "rss_samples_mb": samples}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--quick", action="store_true", help="shorter CMA-ES generation and memory run")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "dream.json"))
    args = parser.parse_args()
    dev, secs = args.device, args.seconds
    torch.manual_seed(0)
    model = WorldModel(world_model_config("CarRacing-v3")).eval()
    with torch.no_grad():
        model.heads.termination[-1].bias.fill_(-30.0) if isinstance(model.heads.termination, torch.nn.Sequential) \
            else model.heads.termination.bias.fill_(-30.0)  # episodes run to the time limit, as a good policy's do
    model_dir = tempfile.mkdtemp(prefix="bench-wm-")
    model.save_pretrained(model_dir)
    rows: dict[str, float] = {}
    real = real_steps_per_s("CarRacing-v3", secs * 2)
    rows["real CarRacing-v3 steps/s"] = real
    gflops = matmul_gflops(dev)
    per_step = flops_per_step(model)
    bound = gflops * 1e9 / per_step
    rows["matmul GFLOP/s"] = gflops
    rows["FLOP bound dream steps/s"] = bound
    for obs_type in ("latent", "pixels"):
        rows[f"DreamEnv single ({obs_type}) steps/s"] = single_steps_per_s(model_dir, obs_type, secs, dev)
    rows["DreamEnv single (latent, fast=False) steps/s"] = single_steps_per_s(model_dir, "latent", secs, dev, fast=False)
    model = model.to(dev)
    for n in (1, 16, 256, 1024, 4096):
        rows[f"DreamVectorEnv x{n} steps/s"] = vector_steps_per_s(model, n, secs, dev)
    rows["DreamVectorEnv x1024 bfloat16 steps/s"] = vector_steps_per_s(model, 1024, secs, dev, dtype="bfloat16")
    rows["DreamVectorEnv x256 pixels frames/s"] = vector_steps_per_s(model, 256, secs, dev, obs_type="pixels")
    rows["SB3 DreamVecEnv x1024 steps/s"] = sb3_steps_per_s(model, 1024, secs, dev)
    steps = 200 if args.quick else 1000
    gen = cmaes_generation_s(model, dev, 64, 16, steps)
    rows[f"CMA-ES generation 64x16x{steps} seconds"] = gen
    rows[f"CMA-ES generation 64x16x{steps} steps/s"] = 64 * 16 * steps / gen
    gen16 = cmaes_generation_s(model, dev, 64, 16, steps, dtype="bfloat16")
    rows[f"CMA-ES generation 64x16x{steps} bfloat16 seconds"] = gen16
    mem = memory_profile(model, dev, 50 if args.quick else 250)
    ratios = {k + " / real": v / real for k, v in rows.items() if "steps/s" in k and "real" not in k and "bound" not in k}
    result = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "device": dev, "torch_threads": torch.get_num_threads()},
        "model": {"z": model.z_dim, "lstm": model.hidden_size, "mixtures": model.config.memory.n_mixtures,
                  "flops_per_dream_step": per_step},
        "results": rows, "ratio_to_real": ratios,
        "fraction_of_flop_bound": {k: v / bound for k, v in rows.items()
                                   if k.startswith("DreamVectorEnv x") and "pixels" not in k and "bfloat16" not in k},
        "memory": mem,
        "targets": {"DreamVectorEnv x1024 steps/s": 250_000, "DreamEnv single (latent) steps/s": 20_000,
                    "pixels frames/s (batched)": 1_000, "CMA-ES generation 64x16x1000 seconds": 6.0,
                    "4096 envs MB": 1024},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    width = max(map(len, rows))
    print(f"{'measurement':<{width}}  {'value':>14}  {'x real':>9}")
    for k, v in rows.items():
        ratio = f"{v / real:9.1f}" if "steps/s" in k and "real" not in k and "bound" not in k else ""
        print(f"{k:<{width}}  {v:>14,.1f}  {ratio:>9}")
    for k, v in result["fraction_of_flop_bound"].items():
        print(f"{k}: {100 * v:.0f}% of the FLOP bound")
    print(f"4096 envs: {mem['cost_of_4096_envs_mb']:.0f} MB; growth over {mem['dream_steps']:,} dream steps: "
          f"{mem['growth_over_steps_mb']:.1f} MB")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
