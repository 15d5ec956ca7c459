"""Train the Doom TakeCover controller in the shipped dream as the paper did, and measure it in reality.

Run (what was run for the controller shipped in sessions 5-13, in the dream of that time, commit 13ed96d; today's
pretrained/doom-takecover ships a PPO agent instead, examples/doom_expert.py):
  python examples/doom_controller.py --termination sample --seeds 0 1 2 --ship
  python examples/doom_controller.py --termination threshold --seeds 0 1 2      (the comparison)
What they measured is in pretrained/README.md.

The world model is the shipped one (examples/reproduce_doom.py builds it); only the controller and the
dream's termination rule change:
1. for each CMA-ES seed: the paper's controller (one tanh output on z‖c‖h, no bias, thresholded at ±1/3)
   and CMA-ES (the mean re-scored every 10 generations and the best scored mean kept; candidates share
   dreams in pairs), 32 candidates × 8 dreams, 30 generations, tau 1.15, bfloat16 matmuls
2. the dream's termination: "threshold" (p(done) > 0.5, the paper) or "sample" (a step ends with
   p(done) calibrated for the head's death weight, sigmoid(logit - log 100), drawn from the dream's noise)
3. every seed's controller in its dream and in the REAL VizdoomTakeCover-v1 over 100 episodes (seeds 1000..)
With --ship: the seed with the best DREAM score (reality only scores) becomes
pretrained/doom-takecover/controller, every seed's eval JSON is written there, the world model's
config.json records the termination rule as the dream's default, and the card is regenerated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from dreamgym.agents.cmaes import CMAESConfig, CMAESTrainer
from dreamgym.argtypes import parse_cli
from dreamgym.evaluate import evaluate
from dreamgym.ship import ShipConfig, ship

DREAM, TAU = "Dream-DoomTakeCover-v0", 1.15


@dataclass
class Args:
    model: str = "doom-takecover"
    """the dream (default: the shipped one)"""
    termination: str = field(default="sample", metadata={"choices": ("threshold", "sample")})
    """the dream's termination rule"""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """one CMA-ES run per seed"""
    work: str = "runs/exp"
    """run directory"""
    ship: bool = False
    """ship the seed with the best dream score to --ship-to"""
    ship_to: str = "pretrained/doom-takecover"
    """the shipped folder (its world model is kept)"""


if __name__ == "__main__":  # real episodes run in worker processes, which re-import this file
    args = parse_cli(Args, description=__doc__)

    # 1. per seed: CMA-ES into its run (resumed when interrupted), then scored in the dream and in reality
    rows = []
    for seed in args.seeds:
        out = Path(args.work) / f"doomab-{args.termination}-s{seed}"
        cfg = CMAESConfig(DREAM, model=args.model, temperature=TAU, population=32, rollouts=8, generations=30,
                          eval_every=10, eval_rollouts=256, obs_type="zch", bias=False, discrete="threshold",
                          seed_sharing="pairs", eval_candidate="mean", dtype="bfloat16", seed=seed,
                          termination=args.termination)
        trainer = CMAESTrainer(cfg, out)
        trainer.load()
        trainer.train()
        path = out / "eval.json"
        result = json.loads(path.read_text()) if path.is_file() else evaluate(
            out, episodes=100, temperature=TAU, seed=1000, workers=2, out=path,
            dream_options={"termination": args.termination})
        rows.append({"seed": seed, "dir": out, "dream_score": trainer.best_eval, "result": result})
        print(f"seed {seed}: dream {result['dream']['mean']:.1f}, real {result['real']['mean']:.1f} "
              f"± {result['real']['std']:.1f}")
    reals = [r["result"]["real"]["mean"] for r in rows]
    print(f"real over seeds: mean {sum(reals) / len(reals):.1f}, best {max(reals):.1f}, all {[round(x) for x in reals]}")

    # 2. ship: the best seed IN THE DREAM (reality only scores) beside the shipped world model, which records
    # the termination rule as its dream's default
    if args.ship:
        best = max(rows, key=lambda r: r["dream_score"])
        summary = {"controller": (
            f"controller/ is CMA-ES seed {best['seed']} of {[r['seed'] for r in rows]} (best dream score), the paper's "
            f"controller on z‖c‖h in the dream with termination={args.termination!r} at tau {TAU}; real scores over "
            f"100 episodes by seed: {[round(r['result']['real']['mean'], 1) for r in rows]}")}
        evals = {f"eval-{args.termination}-seed{r['seed']}.json": str(r["dir"] / "eval.json") for r in rows}
        ship(ShipConfig(args.ship_to, args.ship_to, controller=str(best["dir"]), name="doom-takecover", evals=evals,
                        temperature=TAU, fps=20, termination=args.termination, summary=summary))
        print(f"shipped seed {best['seed']} to {args.ship_to}")
