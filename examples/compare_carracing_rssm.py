"""The Dreamer line on CarRacing-v3: RSSM against MDN-RNN dreams from the same frames, three agents, three seeds.

Run: python examples/compare_carracing_rssm.py [--work runs/carracing-compare] [--only data mdn rssm agents]

Each part skips what is done, so the parts can run as separate processes (session 7 ran ``--only mdn``, then
``--only agents --dreams mdn``, beside ``--only rssm``, then ``--only agents --dreams rssm``, each with
``OMP_NUM_THREADS=1``; 1 h 40 min in all on 2 cores). Steps (times and the table are in pretrained/README.md):
1. data: 60 brownian episodes, then 60 driven by session 7's shipped controller (read from git history by
   ``carracing_expert.session7_model``; ``pretrained/carracing`` ships a newer model since session 11) with action
   noise 0.2: the shipped model's data mix at half its size, 120,000 steps (about 10 min)
2. the MDN-RNN dream, from scratch on these episodes: the shipped recipe (VAE 3000 steps of 100 frames, M + heads
   3000 steps of 64 sequences of 64 steps), temperature 1.15 (38 min on one thread)
3. the RSSM dream, ``cpu`` preset, from scratch on the same episodes; its heads learn from the prior's state
   (``--rssm-heads-input prior``, which is what a dream hands them: session 6's Doom lesson; 45 min on one thread)
4. per dream, seed and agent (dreamer, CMA-ES, PPO), trained only in the dream, then scored over ``--episodes``
   real episodes (seeds 1000 onward) and as many dream episodes; seeds run outermost, so a cut-short run still
   has every agent at its first seeds (about 6-8 min per agent and score, one thread)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from dreamgym.argtypes import parse_cli
from dreamgym.cli import main
from dreamgym.train.recipes import RecipeConfig, train_world_model
from dreamgym.train.trainer import TrainConfig


@dataclass
class Args:
    work: str = "runs/carracing-compare"
    """run directory: data, both world models and every agent"""
    only: list[str] = field(default_factory=lambda: ["data", "mdn", "rssm", "agents"],
                            metadata={"choices": ("data", "mdn", "rssm", "agents")})
    """which parts to run"""
    dreams: list[str] = field(default_factory=lambda: ["mdn", "rssm"], metadata={"choices": ("mdn", "rssm")})
    """the dreams the agents part trains in"""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """one run per agent and seed"""
    algos: list[str] = field(default_factory=lambda: ["dreamer", "cmaes", "ppo"],
                             metadata={"choices": ("dreamer", "cmaes", "ppo")})
    """the agents"""
    rssm_steps: int = 2500
    """RSSM optimiser steps (16 windows of 32 frames each)"""
    episodes: int = 20
    """real (and dream) episodes per agent's score"""


AGENT_FLAGS = {
    "dreamer": ["--updates", "1000", "--resume"],
    "cmaes": ["--generations", "20", "--population", "32", "--rollouts", "8", "--eval-every", "10",
              "--eval-rollouts", "256", "--eval-candidate", "mean", "--seed-sharing", "pairs", "--resume"],
    "ppo": ["--steps", "300000", "--n-envs", "64", "--algo-kwargs", '{"n_steps": 128, "batch_size": 1024}'],
}
TAU = {"mdn": "1.15", "rssm": "1.0"}


if __name__ == "__main__":  # real episodes may run in worker processes, which re-import this file
    args = parse_cli(Args, description=__doc__)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = [work / "data-brownian", work / "data-agent"]  # one dataset per policy
    models = {"mdn": work / "mdnrnn", "rssm": work / "rssm"}

    if "data" in args.only:  # collect only writes what is missing
        main(["collect", "CarRacing-v3", "--episodes", "60", "--policy", "brownian", "--workers", "2", "--seed", "0",
              "--out", str(data[0])])
        from carracing_expert import session7_model  # examples/ is on sys.path when this script runs

        s7 = session7_model(work)
        main(["collect", "CarRacing-v3", "--episodes", "60", "--policy", "agent", "--agent",
              str(s7 / "controller"), "--agent-model", str(s7), "--noise", "0.2",
              "--workers", "2", "--seed", "100000", "--out", str(data[1])])

    mdn = models["mdn"]
    if "mdn" in args.only and not (mdn / "config.json").is_file():
        stage = dict(lr=1e-3, val_every=500, checkpoint_every=250)
        recipe = RecipeConfig(vision=TrainConfig(steps=3000, batch_size=100, **stage),
                              memory=TrainConfig(steps=3000, batch_size=64, **stage), seq_len=64,
                              num_start_states=256, storage_dtype="float16", default_temperature=1.15, seed=0)
        train_world_model(data, mdn, recipe, resume=(mdn / "stages").exists())

    rssm = models["rssm"]
    if "rssm" in args.only and not (rssm / "config.json").is_file():
        main(["train", *map(str, data), "--out", str(rssm), "--backend", "rssm", "--rssm-preset", "cpu", "--memory-steps",
              str(args.rssm_steps), "--memory-batch", "16", "--seq-len", "32", "--seed", "0",
              "--rssm-heads-input", "prior"] + (["--resume"] if (rssm / "stages").exists() else []))

    if "agents" in args.only:
        for seed in args.seeds:
            for name in args.dreams:
                for algo in args.algos:
                    run = work / f"{name}-{algo}-s{seed}"
                    if (run / "eval.json").is_file():
                        continue
                    extra = ["--dtype", "bfloat16"] if algo == "cmaes" and name == "mdn" else []
                    start = time.perf_counter()
                    main(["train-agent", "Dream-CarRacing-v0", "--algo", algo, "--model", str(models[name]),
                          "--temperature", TAU[name], "--seed", str(seed), "--out", str(run), *AGENT_FLAGS[algo],
                          *extra])
                    (run / "train_seconds.txt").write_text(f"{time.perf_counter() - start:.0f}\n")
                    main(["evaluate", str(run), "--episodes", str(args.episodes), "--seed", "1000", "--temperature",
                          TAU[name], "--workers", "1"])
