"""Doom TakeCover dreams from random and expert data with dropout (Dropout's Dream Land's recipe, as
CarRacing's shipped dream), and agents trained only in them (sessions 14-16).

Run: python examples/doom_expert.py [--work runs/doom-expert] [--only data de v2 ded agents ship]
What shipped as pretrained/doom-takecover in session 14: ``--only data de agents ship --temperatures 1.0 --seeds 0 1 2 3 4``.
What ships since session 16: ``--only data de ded agents ship --dreams ded --ship-dream ded --temperatures 1.0
--seeds 0 1 2 3 4 --ppo-steps 1000000 --keep-best-dream --ship-seed 2`` (ded needs a GPU: see step 3b).

Each part skips what is done. Steps (times and the table are in pretrained/README.md, "Doom TakeCover: a
scripted dodger's data and dropout dreams"):
1. data: 1500 episodes of held random keys (the paper's Doom data, ``--policy held --min-steps 100``), and
   episodes of the scripted dodger (``--policy expert``, :class:`dreamgym.data.experts.TakeCoverDodger`)
   capped at 512 steps, M's training window: 250 at noise 1.5 and 250 at noise 3 (for de), 500 more at
   noise 2 (for v2). About 8 min for the held data and 2 min per 250 expert episodes, with 2 workers
2. de: the Doom dream shipped in sessions 5-13 (examples/reproduce_doom.py; read from git history, commit
   ``S5_SHIPPED``): its M and heads continued 1000 steps with dropout 0.2 (a fresh mask per dream episode) on
   the held data and the first 500 expert episodes; V kept; 512-step windows, batch 16, deaths x100 (1,050 s
   on 2 threads, of which 223 s encode the frames)
3. v2: de's V continued 2000 steps (batches of 100 frames) on all the data, then its M and heads 800 steps
   as in de on the new latents
3b. ded: de's M + heads trained on for ``--gpu-seconds`` (280) on a GPU with the heads on a detached h
   (examples/gpu_memory.py: pack, train ``--detach-heads``, assemble ``--refit-termination``). Session 15 ran it
   on one H200 (5.1k steps of 128 windows, sharing the GPU with a second run); the step count follows the GPU's
   speed, so another GPU trains a different number of steps. On a CPU the same seconds give a few dozen steps:
   pass ``--gpu-device cpu --gpu-seconds`` of hours for a like-for-like model
4. agents, per dream, temperature and seed: PPO (``--ppo-steps``, 300k: 38 s; 1M with ``--keep-best-dream``, which
   scores the policy on 128 dream episodes every 50k steps and keeps the best: 4-5 min; 64 dreams, sampled termination),
   scored over 100 real episodes (seeds 1000-1099) and 100 dream episodes (the table's CMA-ES rows:
   ``python examples/doom_controller.py --model WORK/de``, tau 1.15; the tau-1.0 ones in pretrained/README.md)
5. ship: ``--ship-dream`` (de or ded), its dream's default temperature set to the agents' first ``--temperatures``, with the PPO agent of
   ``--ship-seed`` scored again on 100 fresh real episodes (seeds 2000-2099) as ``eval.json``, its first score
   as ``eval-seeds1000.json``, random actions' as ``eval-random.json``, and the lie detector's report over 20
   real episodes as ``fidelity.json``
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from dreamgym.argtypes import parse_cli
from dreamgym.cli import main
from dreamgym.train.recipes import RecipeConfig, train_world_model
from dreamgym.train.trainer import TrainConfig

DREAM = "Dream-DoomTakeCover-v0"
S5_SHIPPED = "13ed96d914834cbcc5116e4b0e24b371502c6611"  # the last commit with the Doom dream of sessions 5-13, which de continues


def session5_model(work: Path) -> Path:
    """pretrained/doom-takecover as it was at commit S5_SHIPPED, from git (de starts from its V, M and heads)."""
    out = work / "doom-takecover-s5"
    if not (out / "config.json").is_file():
        repo = Path(__file__).resolve().parent.parent
        tar = subprocess.run(["git", "archive", S5_SHIPPED, "pretrained/doom-takecover"], cwd=repo, check=True,
                             capture_output=True).stdout
        with tempfile.TemporaryDirectory(dir=work) as tmp, tarfile.open(fileobj=io.BytesIO(tar)) as archive:
            archive.extractall(tmp)  # git's own archive of this repository
            (Path(tmp) / "pretrained" / "doom-takecover").rename(out)
    return out


@dataclass
class Args:
    work: str = "runs/doom-expert"
    """run directory: data, the world models and every agent"""
    only: list[str] = field(default_factory=lambda: ["data", "de", "agents"],
                            metadata={"choices": ("data", "de", "v2", "ded", "agents", "ship")})
    """which parts to run"""
    dreams: list[str] = field(default_factory=lambda: ["de"], metadata={"choices": ("de", "v2", "ded")})
    """the dreams the agents part trains in"""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """one PPO run per seed"""
    temperatures: list[float] = field(default_factory=lambda: [1.15])
    """dream temperatures the agents train (and are scored) at"""
    ppo_steps: int = 300_000
    """dream steps per PPO run (runs of other lengths than 300k are named ...-ppo<K>k-s<seed>)"""
    keep_best_dream: bool = False
    """score each PPO run in the dream every --eval-dream-every steps (128 episodes) and keep its best-scoring policy"""
    eval_dream_every: int = 50_000
    """with --keep-best-dream: dream steps between scores (session 17's 2M-step runs: 100000)"""
    ship_seed: int = 1
    """the PPO seed (of --ship-dream, at the first --temperatures) that the ship part ships"""
    ship_dream: str = field(default="de", metadata={"choices": ("de", "ded")})
    """the dream the ship part ships"""
    gpu_seconds: float = 280.0
    """ded: wall-clock budget of the GPU training (session 15: 280 s on an H200)"""
    gpu_device: str = "cuda"
    """ded: torch device of the GPU training"""
    ship_to: str = "pretrained/doom-takecover"
    """where the ship part writes"""


def seed_scores(work: Path, name: str, tau: str, args: Args) -> dict:
    """Every PPO seed's mean over its 100 real episodes (seeds 1000-1099) and 100 dream episodes: the spread the card
    reports beside the shipped seed."""
    evals = {s: json.loads((work / f"{name}-t{tau}-{ppo_tag(args.ppo_steps)}-s{s}" / "eval.json").read_text())
             for s in args.seeds}
    return {"seeds": list(args.seeds), "real": [round(e["real"]["mean"], 1) for e in evals.values()],
            "dream": [round(e["dream"]["mean"], 1) for e in evals.values()]}


def ppo_tag(steps: int) -> str:
    """The agents' run-name part: "ppo" for the 300k-step runs of session 14, "ppo1000k" for 1M."""
    return "ppo" if steps == 300_000 else f"ppo{steps // 1000}k"


def recipe(init: Path | str, memory_steps: int, vision_steps: int = 0) -> RecipeConfig:
    """M + heads continued with dropout 0.2 (and V too when vision_steps > 0), the shipped Doom refine's settings."""
    return RecipeConfig(
        vision=TrainConfig(steps=vision_steps, batch_size=100, lr=1e-3, val_every=500, checkpoint_every=250),
        memory=TrainConfig(steps=memory_steps, batch_size=16, lr=1e-3, val_every=250, checkpoint_every=100),
        seq_len=512, num_start_states=256, storage_dtype="float16", default_temperature=1.15, seed=0,
        init_from=str(init), train_vision=vision_steps > 0, heads={"termination_pos_weight": 100.0}, dropout=0.2)


if __name__ == "__main__":  # real episodes may run in worker processes, which re-import this file
    args = parse_cli(Args, description=__doc__)
    work = Path(args.work)
    held, e15, e3, e2 = (work / name for name in ("data-held", "data-expert-n1.5", "data-expert-n3", "data-expert-n2"))
    models = {"de": work / "de", "v2": work / "v2", "ded": work / "ded"}

    work.mkdir(parents=True, exist_ok=True)
    if "data" in args.only:  # collect only writes what is missing
        common = ["--workers", "2"]
        main(["collect", "VizdoomTakeCover-v1", "--out", str(held), "--episodes", "1500", "--policy", "held",
              "--min-steps", "100", "--seed", "70000", *common])
        for out, episodes, noise, seed in ((e15, 250, "1.5", 80000), (e3, 250, "3", 81000), (e2, 500, "2", 82000)):
            main(["collect", "VizdoomTakeCover-v1", "--out", str(out), "--episodes", str(episodes), "--policy",
                  "expert", "--noise", noise, "--max-steps", "512", "--seed", str(seed), *common])

    de, v2 = models["de"], models["v2"]
    if "de" in args.only and not (de / "config.json").is_file():
        train_world_model([held, e15, e3], de, recipe(session5_model(work), 1000), resume=(de / "stages").exists())
    if "v2" in args.only and not (v2 / "config.json").is_file():
        train_world_model([held, e15, e3, e2], v2, recipe(de, 800, vision_steps=2000), resume=(v2 / "stages").exists())

    ded = models["ded"]
    if "ded" in args.only and not (ded / "config.json").is_file():
        import gpu_memory  # examples/gpu_memory.py, beside this file

        packed, trained = work / "gpu-de-pack", work / "gpu-de-train"
        if not (packed / "config.json").is_file():
            gpu_memory.pack(de, packed)
        if not (trained / "last.safetensors").is_file():
            gpu_memory.train(packed, trained, args.gpu_seconds, batch=128, lr=1e-3, lr_min=1e-4, seq_len=512, seed=0,
                             val_every=200, device=args.gpu_device, detach_heads=True)
        gpu_memory.assemble(de, trained / "last.safetensors", ded, seed=0, refit=True)

    if "agents" in args.only:
        for name in args.dreams:
            for tau in args.temperatures:
                for seed in args.seeds:
                    run = work / f"{name}-t{tau:g}-{ppo_tag(args.ppo_steps)}-s{seed}"
                    if (run / "eval.json").is_file():
                        continue
                    start = time.perf_counter()
                    best = ["--eval-dream-every", str(args.eval_dream_every), "--eval-dream-episodes", "128", "--keep",
                            "best-dream"]
                    main(["train-agent", DREAM, "--algo", "ppo", "--model", str(models[name]), "--steps",
                          str(args.ppo_steps), "--n-envs", "64", "--algo-kwargs", '{"n_steps": 128, "batch_size": 1024}',
                          "--termination", "sample", "--temperature", f"{tau:g}", "--seed", str(seed), "--out", str(run),
                          *(best if args.keep_best_dream else [])])
                    (run / "train_seconds.txt").write_text(f"{time.perf_counter() - start:.0f}\n")
                    main(["evaluate", str(run), "--episodes", "100", "--seed", "1000", "--temperature", f"{tau:g}",
                          "--termination", "sample", "--workers", "1"])

    if "ship" in args.only:
        tau = f"{args.temperatures[0]:g}"
        name = args.ship_dream
        shipped = models[name]
        run, staged = work / f"{name}-t{tau}-{ppo_tag(args.ppo_steps)}-s{args.ship_seed}", work / f"{name}-ship"
        fresh, random = run / "eval2000.json", work / f"eval-random-{name}-t{tau}.json"
        if not fresh.is_file():
            main(["evaluate", str(run), "--episodes", "100", "--seed", "2000", "--temperature", tau, "--termination",
                  "sample", "--workers", "1", "--json", str(fresh)])
        if not random.is_file():
            main(["evaluate", "random", "--env-id", DREAM, "--model", str(shipped), "--episodes", "100", "--seed", "1000",
                  "--temperature", tau, "--termination", "sample", "--workers", "1", "--json", str(random)])
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir()
        for file in ("config.json", "model.safetensors"):
            shutil.copy(shipped / file, staged / file)
        config = json.loads((staged / "config.json").read_text())
        config["default_temperature"] = float(tau)  # the dream's default is the one its agent trained at
        config["summary"]["training"]["init_from"] = f"pretrained/doom-takecover at commit {S5_SHIPPED[:7]}"  # no local path
        (staged / "config.json.tmp").write_text(json.dumps(config, indent=2))
        os.replace(staged / "config.json.tmp", staged / "config.json")
        every = f"{args.eval_dream_every // 1000}k"
        kept = (f", the policy that scored best on 128 dream episodes scored every {every} steps"
                if args.keep_best_dream else "")
        summary = {"agent": f"agent/ is PPO (SB3, {args.ppo_steps // 1000}k dream steps, 64 dreams, tau {tau}, sampled "
                            f"termination{kept}) seed {args.ship_seed} of {args.seeds}, chosen by its real score over 100 "
                            f"episodes (seeds 1000-1099, eval-seeds1000.json); eval.json scores it on 100 fresh episodes "
                            f"(seeds 2000-2099)",
                   "reproduce": f"python examples/doom_expert.py --only data de {'ded ' if name == 'ded' else ''}agents "
                                f"ship --dreams {name} --ship-dream {name} --temperatures {tau} "
                                f"--seeds {' '.join(map(str, args.seeds))} --ship-seed {args.ship_seed}"
                                + (f" --ppo-steps {args.ppo_steps}" if args.ppo_steps != 300_000 else "")
                                + (" --keep-best-dream" if args.keep_best_dream else "")
                                + (f" --eval-dream-every {args.eval_dream_every}" if args.eval_dream_every != 50_000 else ""),
                   "ppo_100_episodes_by_seed": seed_scores(work, name, tau, args)}
        main(["ship", str(staged), "--out", args.ship_to, "--name", "doom-takecover", "--controller", str(run),
              "--eval", f"eval.json={fresh}", "--eval", f"eval-seeds1000.json={run / 'eval.json'}",
              "--eval", f"eval-random.json={random}", "--temperature", tau, "--termination", "sample", "--mean-z",
              "--video-steps", "200", "--summary", json.dumps(summary)])
        main(["fidelity", args.ship_to, "--agent", str(Path(args.ship_to) / "agent"), "--episodes", "20", "--seed",
              "1000", "--temperature", tau, "--workers", "1"])
        # ship the folder again in place, so that its card carries the report fidelity just wrote
        main(["ship", args.ship_to, "--out", args.ship_to, "--video-steps", "0",
              *[f for e in ("eval.json", "eval-seeds1000.json", "eval-random.json")
                for f in ("--eval", f"{e}={Path(args.ship_to) / e}")]])  # the card lists them in this order
