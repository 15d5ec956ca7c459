"""How far a single DreamEnv follows env i of a DreamVectorEnv, on the shipped world models.

Run: python benchmarks/drift_single_vs_vector.py [--seeds 16] [--out benchmarks/results/drift.json]

Env i of a vector env reset with ``seed=0`` and a single env reset with ``seed=i`` draw the same noise
and get the same actions. The single env steps either in numpy (the default ``fast=True`` path on the CPU)
or in torch (``fast=False``, the vector env's code at batch size 1). Both agree to float rounding at
first; a rounding difference that flips which mixture component a z dimension samples sends the two
episodes apart. For each seed this records the first step where the observations differ by more than
``--atol`` (or where one episode ends and the other does not); an episode that agrees to its end counts
as never diverging.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import dreamgym  # noqa: F401  (registers the Dream ids)
from dreamgym.envs.dream import DreamEnv
from dreamgym.envs.dream_vector import DreamVectorEnv
from dreamgym.models.resolve import resolve_model
from dreamgym.registry import DREAMS


def first_divergence(dream_id: str, seeds: int, fast: bool, atol: float) -> tuple[list[int | None], int, float]:
    """Per seed, the first step where single env ``seed`` leaves vector env ``seed`` (None: never); the time
    limit; and the largest difference of observations seen while the episodes still agreed."""
    model = resolve_model(DREAMS[dream_id].pretrained, dream_id=dream_id)
    venv = DreamVectorEnv(num_envs=seeds, model=model, dream_id=dream_id)
    limit = venv.model.config.max_episode_steps
    venv.action_space.seed(0)
    actions = [venv.action_space.sample() for _ in range(limit)]
    vobs, _ = venv.reset(seed=0)
    traj = [vobs]
    for a in actions:
        vobs, _, term, trunc, info = venv.step(a)
        done = term | trunc
        traj.append((np.where(done[:, None], info["final_obs"], vobs) if done.any() else vobs, term))
    result: list[int | None] = []
    largest = 0.0
    for i in range(seeds):
        env = DreamEnv(model=model, dream_id=dream_id, fast=fast)
        obs, _ = env.reset(seed=i)
        diverged = None
        for t, a in enumerate(actions, start=1):
            obs, _, term, _, _ = env.step(a[i])  # a bare DreamEnv has no time limit: the loop ends there
            vo, vterm = traj[t]
            gap = float(np.abs(obs - vo[i]).max())
            if gap > atol or bool(term) != bool(vterm[i]):
                diverged = t
                break
            largest = max(largest, gap)
            if term:
                break
        result.append(diverged)
    return result, limit, largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=16, help="episodes (env i <-> seed i) per dream and path")
    parser.add_argument("--atol", type=float, default=1e-3, help="observations further apart than this diverged")
    parser.add_argument("--out", help="also write the numbers here as JSON")
    args = parser.parse_args()
    rows = {}
    for dream_id in ("Dream-Pendulum-v0", "Dream-CarRacing-v0"):
        for fast in (True, False):
            steps, limit, largest = first_divergence(dream_id, args.seeds, fast, args.atol)
            hit = sorted(s for s in steps if s is not None)
            row = {"episodes": len(steps), "time_limit": limit, "agree_to_the_end": len(steps) - len(hit),
                   "first_divergence_steps": steps,
                   "median_first_divergence": float(np.median(hit)) if hit else None,
                   "min_first_divergence": hit[0] if hit else None, "largest_gap_while_agreeing": largest}
            rows[f"{dream_id} {'numpy (fast=True)' if fast else 'torch (fast=False)'}"] = row
            print(f"{dream_id:20s} {'numpy' if fast else 'torch'}: {row['agree_to_the_end']}/{len(steps)} episodes "
                  f"agree to the end ({limit} steps, gap <= {largest:.1e}); the others part at step {hit or '-'}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
