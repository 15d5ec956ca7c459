"""Build a CarRacing-v3 dream and a controller trained only in it; resumable at every stage.

Run: nohup python examples/reproduce_carracing.py --work runs/carracing > carracing.log 2>&1 &

Stages (each is skipped when its output exists, so re-running continues after a crash or Ctrl-C):
1. collect --episodes brownian episodes of CarRacing-v3 (2 workers)
2. train the world model: the paper's VAE (z 32), then LSTM 256 + 5 Gaussians + reward/termination heads
3. CMA-ES: a linear controller (867 parameters) trained only in the dream
4. evaluate it in the dream and in the REAL CarRacing-v3, beside a random policy
Sizes and seeds are the defaults below; the settings used for a shipped model are in its card.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dreamgym.agents.cmaes import CMAESConfig, CMAESTrainer
from dreamgym.data.collect import CollectConfig, collect
from dreamgym.evaluate import evaluate
from dreamgym.train.recipes import RecipeConfig, train_world_model
from dreamgym.train.trainer import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="runs/carracing")
    parser.add_argument("--episodes", type=int, default=120)
    parser.add_argument("--vision-steps", type=int, default=3000)
    parser.add_argument("--memory-steps", type=int, default=3000)
    parser.add_argument("--generations", type=int, default=200)
    parser.add_argument("--population", type=int, default=32)
    parser.add_argument("--rollouts", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=1.15)
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()
    work = Path(args.work)
    collect(CollectConfig("CarRacing-v3", out=str(work / "data"), episodes=args.episodes, policy="brownian",
                          workers=2, seed=0))
    wm = work / "world_model"
    if not (wm / "config.json").is_file():
        recipe = RecipeConfig(
            vision=TrainConfig(steps=args.vision_steps, batch_size=100, lr=1e-3, val_every=500, checkpoint_every=250),
            memory=TrainConfig(steps=args.memory_steps, batch_size=64, lr=1e-3, val_every=500, checkpoint_every=250),
            seq_len=64, num_start_states=256, storage_dtype="float16", default_temperature=args.temperature, seed=0,
        )
        train_world_model(work / "data", wm, recipe, resume=(wm / "stages").exists())
    agent = work / "cmaes"
    trainer = CMAESTrainer(CMAESConfig("Dream-CarRacing-v0", model=str(wm), temperature=args.temperature,
                                       population=args.population, rollouts=args.rollouts,
                                       generations=args.generations, eval_every=25, eval_rollouts=256,
                                       sigma0=0.1, seed=0, dtype=args.dtype), agent)
    trainer.load()
    trainer.train()
    result = evaluate(agent, episodes=args.eval_episodes, temperature=args.temperature, seed=1000, workers=2,
                      out=agent / "eval.json")
    baseline = evaluate("random", env_id="Dream-CarRacing-v0", model=str(wm), episodes=args.eval_episodes,
                        seed=1000, dream=False, workers=2, out=agent / "eval-random.json")
    print(json.dumps({"dream": result["dream"]["mean"], "real": result["real"]["mean"],
                      "real_std": result["real"]["std"], "random_real": baseline["real"]["mean"]}, indent=2))


if __name__ == "__main__":
    main()
