"""Steps/s of the dream step alone, a few seconds each: one DreamEnv (numpy fast path and torch),
DreamVectorEnv at 1, 256 and 1024 envs, and an ensemble of 5 at 1024 envs. CarRacing sizes
(z 32, LSTM 256), random weights. For before/after comparisons of the step on one machine:

    python benchmarks/bench_step.py [--seconds 2] [--repeats 3] [--cpu-time]

Each number is the median of ``repeats`` windows (neighbours on a shared machine move single windows).
``--cpu-time``: one torch thread, steps per second of this process's CPU time instead of wall time, and
the best window instead of the median: other jobs on a busy machine only ever slow a window down.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import dreamgym
from dreamgym.models.world_model import WorldModel
from dreamgym.testing import world_model_config


CLOCK = time.perf_counter


def _rate(step, seconds: float, repeats: int, per_step: int = 1) -> float:
    for _ in range(5):
        step()
    rates = []
    for _ in range(repeats):
        n, start = 0, CLOCK()
        while CLOCK() - start < seconds:
            step()
            n += 1
        rates.append(n * per_step / (CLOCK() - start))
    return float(max(rates) if CLOCK is time.process_time else np.median(rates))


def model(ensemble: int = 1) -> WorldModel:
    torch.manual_seed(0)
    cfg = world_model_config("CarRacing-v3")
    cfg.memory.ensemble = ensemble
    m = WorldModel(cfg).eval()
    with torch.no_grad():  # episodes run to the time limit
        for j in range(m.num_members):
            term = m.member(j)[1].termination
            (term[-1] if isinstance(term, torch.nn.Sequential) else term).bias.fill_(-30.0)
    return m


def single(m: WorldModel, fast: bool, seconds: float, repeats: int) -> float:
    env = dreamgym.DreamEnv(model=m, fast=fast)
    env.reset(seed=0)
    action = np.array([0.0, 0.5, 0.0], np.float32)

    def step() -> None:
        if env.step(action)[2]:
            env.reset()
    return _rate(step, seconds, repeats)


def vector(m: WorldModel, n: int, seconds: float, repeats: int) -> float:
    env = dreamgym.DreamVectorEnv(num_envs=n, model=m, max_episode_steps=10**6)
    env.reset(seed=0)
    actions = np.tile(np.array([0.0, 0.5, 0.0], np.float32), (n, 1))
    return _rate(lambda: env.step(actions), seconds, repeats, n)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpu-time", action="store_true", help="one thread; steps per CPU second")
    args = parser.parse_args()
    if args.cpu_time:
        global CLOCK
        CLOCK = time.process_time
        torch.set_num_threads(1)
    s, r = args.seconds / args.repeats, args.repeats
    one, five = model(), model(5)
    rows = {
        "DreamEnv single fast (numpy)": single(one, True, s, r),
        "DreamEnv single fast=False (torch)": single(one, False, s, r),
        "DreamVectorEnv x1": vector(one, 1, s, r),
        "DreamVectorEnv x256": vector(one, 256, s, r),
        "DreamVectorEnv x1024": vector(one, 1024, s, r),
        "DreamVectorEnv x1024 ensemble 5": vector(five, 1024, s, r),
    }
    rows["numpy / torch single"] = rows["DreamEnv single fast (numpy)"] / rows["DreamEnv single fast=False (torch)"]
    print(json.dumps({"dreamgym": dreamgym.__file__, "threads": torch.get_num_threads(), "cpu_time": args.cpu_time,
                      "steps_per_s": rows}, indent=1))


if __name__ == "__main__":
    main()
