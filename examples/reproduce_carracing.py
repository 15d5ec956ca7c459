"""Build a CarRacing-v3 dream and a controller trained only in it, then close the dream-to-real gap with
Dyna rounds (the paper's section 5); resumable at every stage. This made the CarRacing model shipped from
session 5 to session 10 (commit 1fb5414, 374.4 real); since session 11, pretrained/carracing comes from
examples/carracing_expert.py, so --ship writes to runs/carracing-shipped unless --ship-to says otherwise.

Run: nohup python examples/reproduce_carracing.py --work runs/carracing --rounds 6 --ship > carracing.log 2>&1 &

Round 0 (in WORK/round0):
1. collect --episodes brownian episodes of CarRacing-v3 (2 workers, seeds 0..)
2. train the world model: the paper's VAE (z 32, 3000 steps), then LSTM 256 + 5 Gaussians + reward/termination
   heads (3000 steps)
3. CMA-ES: a linear controller (867 parameters) trained only in the dream (200 generations, 32 x 8, tau 1.15)
4. evaluate it in the dream and in the REAL CarRacing-v3 (100 episodes), beside a random policy
Round k >= 1 (in WORK/round{k}): collect --round-episodes episodes with round k-1's controller seeing reality
through round k-1's world model, Gaussian action noise 0.2; retrain the world model from scratch on ALL
data so far (VAE 2000 steps, M 3000 steps); CMA-ES 150 generations; evaluate over 50 episodes (dream, real).
In the --warm-rounds (3 and 4), a round's world model continues round k-1's instead of starting from scratch:
V kept, M and the heads trained --warm-memory-steps (1500) more steps on all data (about half the CPU time).
The library's Dyna loop (dreamgym.iterate) runs the rounds: every stage is skipped when its output
exists, so re-running continues after a crash or Ctrl-C; WORK/rounds.json has one row per finished round.
With --ship: the round with the best real score (or --ship-round) is scored again on 100 fresh episodes (seeds
2000..2099, dream and reality) and shipped to --ship-to by dreamgym.ship (fp16 world model, its
controller, eval JSONs, a dream-vs-real GIF and the model card with every number).
What these runs measured is in pretrained/README.md and pretrained/carracing/README.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from dreamgym.agents.cmaes import CMAESConfig
from dreamgym.iterate import IterateConfig, iterate
from dreamgym.argtypes import parse_cli
from dreamgym.evaluate import evaluate
from dreamgym.ship import ShipConfig, pipeline_minutes, ship
from dreamgym.train.recipes import RecipeConfig
from dreamgym.train.trainer import TrainConfig

SCHEDULE_ROUNDS = 32  # per-round lists cover this many rounds (and so stay the same when --rounds grows)


@dataclass
class Args:
    work: str = "runs/carracing"
    """run directory: one round{k}/ folder per round"""
    rounds: int = 1
    """1 = round 0 only; each extra round is a Dyna round"""
    episodes: int = 120
    """brownian episodes collected in round 0"""
    round_episodes: int = 60
    """episodes each later round collects with the last round's controller"""
    noise: float = 0.2
    """Gaussian action noise of the controller collecting"""
    generations: int = 200
    """CMA-ES generations in round 0"""
    round_generations: int = 150
    """CMA-ES generations in later rounds"""
    population: int = 32
    """CMA-ES candidates per generation"""
    rollouts: int = 8
    """dreams per candidate"""
    temperature: float = 1.15
    """the dream's tau, in training and scoring"""
    eval_episodes: int = 100
    """real (and dream) episodes scoring round 0"""
    round_eval_episodes: int = 50
    """real (and dream) episodes scoring later rounds"""
    dtype: str = "bfloat16"
    """CMA-ES matmul dtype"""
    warm_rounds: list[int] = field(default_factory=lambda: [3, 4])
    """rounds whose world model continues the last round's"""
    warm_memory_steps: int = 1500
    """M steps of a warm round"""
    ship: bool = False
    """ship the best round to --ship-to"""
    ship_round: int | None = None
    """ship this round instead of the best"""
    ship_to: str = "runs/carracing-shipped"
    """the shipped folder"""


if __name__ == "__main__":  # real episodes run in worker processes, which re-import this file
    args = parse_cli(Args, description=__doc__)
    work = Path(args.work).resolve()  # datasets record the agent by absolute path
    rounds = range(SCHEDULE_ROUNDS)

    # 1. the Dyna rounds: collect -> world model -> CMA-ES in its dream -> score in reality
    stage = dict(lr=1e-3, val_every=500, checkpoint_every=250)
    recipe = RecipeConfig(vision=TrainConfig(steps=3000, batch_size=100, **stage),
                          memory=TrainConfig(steps=3000, batch_size=64, **stage), seq_len=64, num_start_states=256,
                          storage_dtype="float16", default_temperature=args.temperature, seed=0)
    cmaes = CMAESConfig(temperature=args.temperature, population=args.population, rollouts=args.rollouts,
                        eval_every=25, eval_rollouts=256, sigma0=0.1, dtype=args.dtype)
    cfg = IterateConfig(
        env_id="CarRacing-v3", rounds=args.rounds, episodes=[args.episodes, args.round_episodes], noise=args.noise,
        recipe=recipe, cmaes=cmaes, eval_episodes=[args.eval_episodes, args.round_eval_episodes], workers=2, seed=0,
        warm_start=[k in args.warm_rounds for k in rounds], warm_start_agent=False,  # only M continues
        vision_steps=[3000, 2000],
        memory_steps=[args.warm_memory_steps if k in args.warm_rounds else 3000 for k in rounds],
        generations=[args.generations, args.round_generations],
        collect_seed=[0] + [500_000 + 100_000 * k for k in rounds][:-1], agent_seed=0, eval_seed=1000,
    )
    rows = iterate(cfg, work)
    for row in rows:
        print(json.dumps(row), flush=True)

    # 2. the baseline: a random policy in reality
    random_eval = work / "eval-random.json"
    if not random_eval.is_file():
        evaluate("random", env_id="Dream-CarRacing-v0", model=str(work / "round0" / "world_model"),
                 episodes=args.eval_episodes, seed=1000, dream=False, workers=2, out=random_eval)

    # 3. ship the best round (by its real score), scored again on 100 fresh episodes
    if args.ship:
        best = args.ship_round if args.ship_round is not None else max(rows, key=lambda r: r["real_mean"])["round"]
        src = work / f"round{best}"
        final = src / "eval-ship.json"
        if not final.is_file():
            evaluate(src / "agent", episodes=100, temperature=args.temperature, seed=2000, workers=2, out=final)
        done = [work / f"round{k}" for k in range(best + 1)]
        pipeline = {
            "rounds": best + 1, "real_episodes_collected": rows[best]["episodes_so_far"],
            "data_policy": f"round 0 brownian, then each round's controller with action noise {args.noise}",
            "train_and_cmaes_wall_minutes_2_cores": pipeline_minutes([d / "world_model" for d in done],
                                                                     [d / "agent" for d in done]),
            "cmaes": f"population {args.population} x {args.rollouts} dreams, tau {args.temperature}, {args.dtype}",
            "real_scores_by_round": [round(r["real_mean"], 1) for r in rows[: best + 1]],
            "reproduce": f"python examples/reproduce_carracing.py --rounds {best + 1} --ship",
        }
        out = ship(ShipConfig(str(src / "world_model"), args.ship_to, controller=str(src / "agent"), name="carracing",
                              evals={"eval.json": str(final), "eval-random.json": str(random_eval)},
                              temperature=args.temperature, fps=25, summary={"pipeline": pipeline}))
        result = json.loads((out / "eval.json").read_text())
        print(f"shipped round {best} to {out}: real {result['real']['mean']:.1f} ± {result['real']['std']:.1f}, "
              f"dream {result['dream']['mean']:.1f} over 100 episodes")
