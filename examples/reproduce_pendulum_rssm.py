"""Rebuild pretrained/pendulum-rssm, the Dreamer-line dream of Pendulum, with the settings and seeds used.

Run: python examples/reproduce_pendulum_rssm.py [--out pretrained/pendulum-rssm] [--work runs/pendulum-repro]

Steps (on an idle 2-core CPU: about 5 min for the RSSM, 4–5 min per dreamer seed, 1 min per 100 real episodes):
1. the same data as pretrained/pendulum: 200 brownian episodes of Pendulum-v1 (seed 0), reused if present
2. an RSSM world model, the ``cpu`` preset (GRU 128, 16 × 16 categoricals), 2000 steps of 16 windows of 64 steps
3. the dreamer actor-critic only in that dream, one per seed (1500 updates of 256 dreams × 15 steps); the best
   DREAM score is kept (reality only scores), and every seed is scored over 100 real episodes
4. the world model, the kept controller, every seed's eval JSON and the lie detector's report (20 real
   episodes of the kept controller, tau 1.0) are shipped to --out
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dreamgym.agents.dreamer import DreamerConfig, DreamerTrainer
from dreamgym.argtypes import parse_cli
from dreamgym.data.collect import CollectConfig, collect
from dreamgym.evaluate import evaluate
from dreamgym.fidelity import fidelity_report
from dreamgym.ship import ShipConfig, ship
from dreamgym.train.rssm_recipe import RSSMRecipe, train_rssm
from dreamgym.train.trainer import TrainConfig


@dataclass
class Args:
    out: str = "pretrained/pendulum-rssm"
    """the shipped folder"""
    work: str = "runs/pendulum-repro"
    """run directory (its data/ is shared with examples/reproduce_pendulum.py)"""
    updates: int = 1500
    """dreamer updates per seed"""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """one dreamer run per seed; the best in the dream ships"""


if __name__ == "__main__":  # real episodes may run in worker processes, which re-import this file
    args = parse_cli(Args, description=__doc__)
    work = Path(args.work)

    # 1. data (collect only writes what is missing)
    collect(CollectConfig("Pendulum-v1", out=str(work / "data"), episodes=200, policy="brownian", brownian_sigma=0.3,
                          workers=1, seed=0))

    # 2. the RSSM
    recipe = RSSMRecipe(preset="cpu", seq_len=64, seed=0,
                        train=TrainConfig(steps=2000, batch_size=16, lr=6e-4, val_every=250, checkpoint_every=250))
    wm = work / "rssm"
    if not (wm / "config.json").is_file():
        train_rssm([work / "data"], wm, recipe, resume=(wm / "stages").exists())

    # 3. dreamer per seed, only in the dream; every seed scored in reality, the best DREAM score kept
    runs, dream = {}, {}
    for seed in args.seeds:
        run = runs[seed] = work / f"dreamer-rssm-s{seed}"
        trainer = DreamerTrainer(DreamerConfig("Dream-Pendulum-v0", model=str(wm), num_envs=256, updates=args.updates,
                                               chunk=20, checkpoint_every=100, actor_lr=1e-3, critic_lr=1e-3,
                                               seed=seed), run)
        trainer.load()
        trainer.train()
        result = evaluate(run, episodes=100, seed=1000, workers=1, out=run / "eval.json")
        dream[seed] = result["dream"]["mean"]
        print(f"seed {seed}: dream {result['dream']['mean']:.1f}, real {result['real']['mean']:.1f} "
              f"± {result['real']['std']:.1f}")
    best = max(dream, key=dream.get)

    # 4. ship
    evals = {"eval.json": str(runs[best] / "eval.json")}
    evals.update({f"eval-seed{s}.json": str(runs[s] / "eval.json") for s in args.seeds if s != best})
    out = ship(ShipConfig(str(wm), args.out, controller=str(runs[best]), name="pendulum-rssm", evals=evals))
    fidelity_report(str(out), str(out / "controller"), 20, temperature=1.0, workers=1, out=out / "fidelity.json")
    ship(ShipConfig(str(out), str(out), video_steps=0))  # the card gains the lie detector's section
    print(f"written {out}")
