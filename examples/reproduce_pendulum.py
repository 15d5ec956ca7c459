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

import argparse
import json
import shutil
from pathlib import Path

from dreamgym.agents.cmaes import CMAESConfig, CMAESTrainer
from dreamgym.data.collect import CollectConfig, collect
from dreamgym.agents import LinearController
from dreamgym.evaluate import evaluate, ship_result
from dreamgym.train.recipes import RecipeConfig, train_world_model
from dreamgym.train.trainer import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="pretrained/pendulum")
    parser.add_argument("--work", default="runs/pendulum-repro")
    parser.add_argument("--generations", type=int, default=200)
    parser.add_argument("--cmaes-seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    work = Path(args.work)
    collect(CollectConfig("Pendulum-v1", out=str(work / "data"), episodes=200, policy="brownian", brownian_sigma=0.3,
                          workers=1, seed=0))
    recipe = RecipeConfig(
        hidden_size=64, n_mixtures=5, seq_len=32, num_start_states=256, seed=0, default_temperature=1.0,
        memory=TrainConfig(steps=6000, batch_size=64, lr=2e-3, val_every=500, checkpoint_every=1000, seed=0),
    )
    if not (work / "world_model" / "config.json").is_file():
        train_world_model(work / "data", work / "world_model", recipe, resume=(work / "world_model").exists())
    dream_scores = {}
    for seed in args.cmaes_seeds:
        run = work / f"cmaes-seed{seed}-gen{args.generations}"
        trainer = CMAESTrainer(CMAESConfig("Dream-Pendulum-v0", model=str(work / "world_model"), temperature=1.3,
                                           population=32, rollouts=16, generations=args.generations, eval_every=10,
                                           eval_rollouts=256, sigma0=0.5, seed=seed), run)
        trainer.load()
        trainer.train()
        dream_scores[seed] = trainer.best_eval
    best = max(dream_scores, key=dream_scores.get)  # chosen in the dream: reality is only for scoring
    print(f"dream scores by CMA-ES seed: {dream_scores}; keeping seed {best}")
    agent = work / f"cmaes-seed{best}-gen{args.generations}"
    result = evaluate(agent, episodes=100, temperature=1.3, seed=1000, workers=0, out=agent / "eval.json")
    baseline = evaluate("random", env_id="Dream-Pendulum-v0", model=str(work / "world_model"), episodes=100,
                        seed=1000, dream=False, workers=0, out=agent / "eval-random.json")
    print(json.dumps({"controller": {k: result[k]["mean"] for k in ("dream", "real")},
                      "random_real": baseline["real"]["mean"]}, indent=2))
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(work / "world_model", out, ignore=shutil.ignore_patterns("stages", "recipe.json"))
    result = ship_result(result, out / "eval.json", agent="controller")  # paths relative to the shipped folder
    baseline = ship_result(baseline, out / "eval-random.json")
    controller = LinearController.from_pretrained(agent / "controller")
    controller.config.world_model = "pendulum"  # the shipped dream it sees reality through (under pretrained/)
    controller.save_pretrained(out / "controller")
    from dreamgym import WorldModel
    from dreamgym.viz.video import rollout_frames, write_video

    # the controller's actions played in the dream (left, started from reality's first state) and in reality
    frames = rollout_frames("Dream-Pendulum-v0", agent=str(out / "controller"), model=str(out), steps=200, seed=5,
                            side_by_side=True, scale=2)
    write_video(frames, out / "dream-vs-real.gif", fps=30)
    model = WorldModel.from_pretrained(out)
    (out / "README.md").unlink()
    model.save_pretrained(out, model_card_kwargs={"eval_results": [result, baseline], "media": ["dream-vs-real.gif"]})
    print(f"written {out}")


if __name__ == "__main__":
    main()
