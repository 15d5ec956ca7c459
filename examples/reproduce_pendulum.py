"""Rebuild pretrained/pendulum, the shipped state-vector dream, with the exact settings and seeds used.

Run: python examples/reproduce_pendulum.py [--out pretrained/pendulum] [--work runs/pendulum-repro]

Steps (about two minutes on a 2-core CPU):
1. collect 200 brownian episodes of Pendulum-v1 (seed 0)
2. train the world model: identity V (normalised state), LSTM 64, 5 Gaussians, reward head
3. train CMA-ES linear controllers only in the dream (tau 1.3, one per seed; CMA-ES on this task
   varies a lot between seeds), keep the one with the best DREAM score, and score it in the real env
4. write the checkpoint (with eval.json, a dream-vs-real GIF and the numbers in its model card) to --out
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from dreamgym.agents.cmaes import CMAESConfig, CMAESTrainer
from dreamgym.argtypes import parse_cli
from dreamgym.data.collect import CollectConfig, collect
from dreamgym.evaluate import evaluate
from dreamgym.ship import ShipConfig, ship
from dreamgym.train.recipes import RecipeConfig, train_world_model
from dreamgym.train.trainer import TrainConfig


@dataclass
class Args:
    out: str = "pretrained/pendulum"
    """the shipped folder"""
    work: str = "runs/pendulum-repro"
    """run directory"""
    generations: int = 200
    """CMA-ES generations per seed"""
    cmaes_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """one CMA-ES run per seed; the best in the dream ships"""


if __name__ == "__main__":  # real episodes run in worker processes, which re-import this file
    args = parse_cli(Args, description=__doc__)
    work = Path(args.work)

    # 1. data
    collect(CollectConfig("Pendulum-v1", out=str(work / "data"), episodes=200, policy="brownian", brownian_sigma=0.3,
                          workers=1, seed=0))

    # 2. the world model
    recipe = RecipeConfig(
        hidden_size=64, n_mixtures=5, seq_len=32, num_start_states=256, seed=0, default_temperature=1.0,
        memory=TrainConfig(steps=6000, batch_size=64, lr=2e-3, val_every=500, checkpoint_every=1000, seed=0),
    )
    if not (work / "world_model" / "config.json").is_file():
        train_world_model(work / "data", work / "world_model", recipe, resume=(work / "world_model").exists())

    # 3. CMA-ES per seed, only in the dream; the best DREAM score is kept (reality is only for scoring)
    dream_scores = {}
    for seed in args.cmaes_seeds:
        run = work / f"cmaes-seed{seed}-gen{args.generations}"
        trainer = CMAESTrainer(CMAESConfig("Dream-Pendulum-v0", model=str(work / "world_model"), temperature=1.3,
                                           population=32, rollouts=16, generations=args.generations, eval_every=10,
                                           eval_rollouts=256, sigma0=0.5, seed=seed), run)
        trainer.load()
        trainer.train()
        dream_scores[seed] = trainer.best_eval
    best = max(dream_scores, key=dream_scores.get)
    print(f"dream scores by CMA-ES seed: {dream_scores}; keeping seed {best}")

    # 4. score it and a random policy, and ship
    agent = work / f"cmaes-seed{best}-gen{args.generations}"
    result = evaluate(agent, episodes=100, temperature=1.3, seed=1000, workers=0, out=agent / "eval.json")
    baseline = evaluate("random", env_id="Dream-Pendulum-v0", model=str(work / "world_model"), episodes=100,
                        seed=1000, dream=False, workers=0, out=agent / "eval-random.json")
    print(json.dumps({"controller": {k: result[k]["mean"] for k in ("dream", "real")},
                      "random_real": baseline["real"]["mean"]}, indent=2))
    # the GIF: the controller's actions in the dream (left, started from reality's first state) and in reality
    out = ship(ShipConfig(str(work / "world_model"), args.out, controller=str(agent), name="pendulum",
                          evals={"eval.json": str(agent / "eval.json"),
                                 "eval-random.json": str(agent / "eval-random.json")},
                          video_steps=200, video_seed=5, fps=30))
    print(f"written {out}")
