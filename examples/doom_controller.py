"""Train the Doom TakeCover controller in the shipped dream as the paper did, and measure it in reality.

Run (what was run for pretrained/doom-takecover/controller):
  python examples/doom_controller.py --termination sample --seeds 0 1 2 --ship
  python examples/doom_controller.py --termination threshold --seeds 0 1 2      (the comparison)

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

import argparse
import json
import shutil
from pathlib import Path

from dreamgym.agents.cmaes import CMAESConfig, CMAESTrainer
from dreamgym.agents.controller import LinearController
from dreamgym.evaluate import evaluate, ship_result

DREAM, TAU = "Dream-DoomTakeCover-v0", 1.15


def train(out: Path, seed: int, args: argparse.Namespace) -> float:
    """CMA-ES into ``out`` (resumed when interrupted); returns the best scored mean's dream score."""
    cfg = CMAESConfig(DREAM, model=args.model, temperature=TAU, population=32, rollouts=8, generations=30,
                      eval_every=10, eval_rollouts=256, obs_type="zch", bias=False, discrete="threshold",
                      seed_sharing="pairs", eval_candidate="mean", dtype="bfloat16", seed=seed,
                      termination=args.termination)
    trainer = CMAESTrainer(cfg, out)
    trainer.load()
    trainer.train()
    return trainer.best_eval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="doom-takecover", help="the dream (default: the shipped one)")
    parser.add_argument("--termination", choices=["threshold", "sample"], default="sample")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work", default="runs/exp")
    parser.add_argument("--ship", action="store_true")
    parser.add_argument("--ship-to", default="pretrained/doom-takecover")
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        out = Path(args.work) / f"doomab-{args.termination}-s{seed}"
        dream_score = train(out, seed, args)
        path = out / "eval.json"
        result = json.loads(path.read_text()) if path.is_file() else evaluate(
            out, episodes=100, temperature=TAU, seed=1000, workers=2, out=path,
            dream_options={"termination": args.termination})
        rows.append({"seed": seed, "dir": out, "dream_score": dream_score, "result": result})
        print(f"seed {seed}: dream {result['dream']['mean']:.1f}, real {result['real']['mean']:.1f} "
              f"± {result['real']['std']:.1f}")
    reals = [r["result"]["real"]["mean"] for r in rows]
    print(f"real over seeds: mean {sum(reals) / len(reals):.1f}, best {max(reals):.1f}, all {[round(x) for x in reals]}")
    if args.ship:
        ship(rows, args)


def ship(rows: list[dict], args: argparse.Namespace) -> None:
    from dreamgym import WorldModel

    best = max(rows, key=lambda r: r["dream_score"])  # chosen in the dream: reality only scores
    dest = Path(args.ship_to)
    controller = LinearController.from_pretrained(best["dir"] / "controller")
    controller.config.world_model = "doom-takecover"
    if (dest / "controller").exists():
        shutil.rmtree(dest / "controller")
    controller.save_pretrained(dest / "controller")
    for r in rows:
        ship_result(r["result"], dest / f"eval-{args.termination}-seed{r['seed']}.json",
                    agent="controller" if r is best else f"{r['dir'].name}/controller")
    model = WorldModel.from_pretrained(dest)
    model.config.dream.termination = args.termination
    model.save_pretrained(dest)  # config.json records the rule; the weights are unchanged
    from dreamgym.viz.video import rollout_frames, write_video

    # the controller's actions played in the dream (left) and in the real VizdoomTakeCover-v1 (right)
    frames = rollout_frames(DREAM, agent=str(dest / "controller"), model=str(dest), temperature=TAU, steps=300, seed=7,
                            side_by_side=True, scale=2)
    write_video(frames, dest / "dream-vs-real.gif", fps=20)
    model.config.summary["controller"] = (
        f"controller/ is CMA-ES seed {best['seed']} of {[r['seed'] for r in rows]} (best dream score), the paper's "
        f"controller on z‖c‖h in the dream with termination={args.termination!r} at tau {TAU}; real scores over "
        f"100 episodes by seed: {[round(r['result']['real']['mean'], 1) for r in rows]}")
    evals = [json.loads(p.read_text()) for p in sorted(dest.glob("eval*.json"))]
    (dest / "README.md").unlink(missing_ok=True)
    model.save_pretrained(dest, model_card_kwargs={"eval_results": evals, "media": ["dream-vs-real.gif"]})
    WorldModel.from_pretrained(dest)
    print(f"shipped seed {best['seed']} to {dest}")


if __name__ == "__main__":  # real episodes run in worker processes, which re-import this file
    main()
