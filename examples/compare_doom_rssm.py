"""The Dreamer line on Doom TakeCover: RSSM against MDN-RNN dreams from the same frames, three agents, three seeds.

Run: python examples/compare_doom_rssm.py [--work runs/doom-compare] [--seeds 0 1 2]

Steps (session 6 on 2 CPU cores; the table and what it shows are in pretrained/README.md):
1. 600 held-action random episodes of VizdoomTakeCover-v1 (about 10 min)
2. the MDN-RNN dream: the shipped V kept, M and heads continued 800 steps on them (about 19 min)
3. the RSSM dream, ``cpu`` preset, in three stages (about 65 min): 3000 steps of DreamerV3's heads, 1000 with
   the heads learning from the prior's state (``--rssm-heads-input prior``), 1500 with deaths weighed ×100
4. per dream and seed: dreamer, CMA-ES and PPO trained only in the dream (sampled termination), each scored
   over 100 real episodes (seeds 1000-1099) and 100 dream episodes; every step skips what is done
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dreamgym.argtypes import parse_cli
from dreamgym.cli import main
from dreamgym.train.recipes import RecipeConfig, train_world_model
from dreamgym.train.trainer import TrainConfig


@dataclass
class Args:
    work: str = "runs/doom-compare"
    """run directory: data, both world models and every agent"""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """one run per agent and seed"""
    algos: list[str] = field(default_factory=lambda: ["dreamer", "cmaes", "ppo"])
    """the agents"""


AGENT_FLAGS = {
    "dreamer": ["--updates", "1500", "--resume"],
    "cmaes": ["--generations", "30", "--population", "32", "--rollouts", "8", "--eval-every", "10",
              "--eval-candidate", "mean", "--seed-sharing", "pairs", "--resume"],
    "ppo": ["--steps", "300000", "--n-envs", "64", "--algo-kwargs", '{"n_steps": 128, "batch_size": 1024}'],
}


def rssm_stage(data: Path, out: Path, steps: int, seed: int, *extra: str) -> None:
    if not (out / "config.json").is_file():
        main(["train", str(data), "--out", str(out), "--backend", "rssm", "--rssm-preset", "cpu", "--memory-steps",
              str(steps), "--memory-batch", "16", "--seq-len", "32", "--seed", str(seed), *extra]
             + (["--resume"] if (out / "stages").exists() else []))


if __name__ == "__main__":  # real episodes may run in worker processes, which re-import this file
    args = parse_cli(Args, description=__doc__)
    work = Path(args.work)
    data = work / "data"

    # 1. data (collect only writes what is missing)
    main(["collect", "VizdoomTakeCover-v1", "--episodes", "600", "--policy", "held", "--min-steps", "100",
          "--workers", "2", "--seed", "50000", "--out", str(data)])

    # 2. the MDN-RNN dream: the shipped model's V kept, M + heads continued on these episodes
    mdn = work / "mdnrnn"
    if not (mdn / "config.json").is_file():
        memory = TrainConfig(steps=800, batch_size=16, lr=1e-3, val_every=400, checkpoint_every=200)
        recipe = RecipeConfig(memory=memory,
                              seq_len=512, num_start_states=256, storage_dtype="float16", default_temperature=1.15,
                              seed=0, init_from="pretrained/doom-takecover", train_vision=False,
                              heads={"termination_pos_weight": 100.0})
        train_world_model([data], mdn, recipe, resume=(mdn / "stages").exists())

    # 3. the RSSM dream, in three stages
    rssm_stage(data, work / "rssm-a", 3000, 0)
    rssm_stage(data, work / "rssm-b", 1000, 1, "--init-from", str(work / "rssm-a"), "--rssm-heads-input", "prior")
    rssm_stage(data, work / "rssm", 1500, 2, "--init-from", str(work / "rssm-b"), "--rssm-heads-input", "prior",
               "--rssm-continue-pos-weight", "100")

    # 4. agents, each scored in reality
    for name, model, tau in (("mdn", mdn, "1.15"), ("rssm", work / "rssm", "1.0")):
        for algo in args.algos:
            for seed in args.seeds:
                run = work / f"{name}-{algo}-s{seed}"
                if (run / "eval.json").is_file():
                    continue
                main(["train-agent", "Dream-DoomTakeCover-v0", "--algo", algo, "--model", str(model), "--temperature",
                      tau, "--termination", "sample", "--seed", str(seed), "--out", str(run), *AGENT_FLAGS[algo]])
                main(["evaluate", str(run), "--episodes", "100", "--seed", "1000", "--temperature", tau,
                      "--termination", "sample", "--workers", "1"])
