"""CarRacing-v3 dreams from expert data, with and without dropout (Dropout's Dream Land's recipe), and agents
trained only in them. This is how the shipped pretrained/carracing was made (session 11: xd with dropout 0.2;
session 24: its agent, the mean action of five PPO seeds trained with the gas capped at 0.3). Session 25 measured xf,
xd's V with a fresh M on the same data plus 200 episodes of the expert driving 1.5 times faster (``--ship-dream xf``):
its agents score more, a stranger's PPO less, so it was not shipped (pretrained/README.md, session 25).

The shipped folder: ``python examples/carracing_expert.py --only data x xd ensembles ship --gas-cap 0.3
--ensembles 1 --ensemble-size 5 --ship-ensemble 0``.

Run: python examples/carracing_expert.py [--work runs/carracing-expert]
     [--only data x xd xf xdr xdrs xdrsd xdd agents eval100 ensembles ship]

Each part skips what is done, so the parts can run as separate processes (session 10 ran ``--only agents --dreams
x`` beside ``--only xd``, then ``--only agents --dreams xd``, each with ``OMP_NUM_THREADS=1``). Steps (times and the
table are in pretrained/README.md, "expert data, alone and with dropout dreams"):
1. data: session 7's mix (60 brownian episodes, 60 driven by session 7's shipped controller with action noise
   0.2; that model and controller are read from git history, commit ``S7_SHIPPED``), plus 200 episodes of the
   scripted expert (``--policy expert --noise 0.2``; 826 s with 2 workers); with ``--fast-episodes N``, N episodes of
   the expert at ``--expert-speed 1.5`` and noise 0.2, and N more at noise 0.1 (session 25: 100 each, 347 s with 2
   workers and 695 s with one); with ``--rest-episodes N``, N episodes of that expert (noise 0.1) stopping on the road
   to rest (``--expert-rest-every 300``, half of them starting at rest; session 26/27: 100, 11 min on one worker);
   with ``--cruise-episodes N`` and ``--drift-episodes N``, N episodes of the expert (noise 0.1) whose pedal lapses
   cruise (``--pedal-noise 0.01 --pedal-style cruise``) and N that drive on blind (``--expert-drift-every 250``)
   (session 28: 100 each, about 8 min on 2 workers)
2. x: V and M + heads from scratch on the 320 episodes, session 7's recipe (VAE 3000 steps of 100 frames, M 3000
   steps of 64 sequences of 64 steps), temperature 1.15 (1,228 s on 2 threads)
3. xd: a fresh M + heads with dropout ``--dropout`` on x's V (dreams draw a dropout mask per episode), same
   data and M stage (747 s on one thread at 0.2, the shipped one; session 10 also measured 0.1, session 11 0.3)
3b. xf: the same on xd's V (x's) over the 320 episodes and the fast expert's 200 (session 25; about 14 min on one
   thread)
3c. xdr: xd's M + heads (not fresh) trained 1500 more steps at lr 3e-4 on xd's 320 episodes and the resting expert's
   (session 27; 3 min 14 s on 2 threads): the dream stops paying for standing still, a stranger's CMA-ES stops
   exploiting it, and PPO learns far less in it (pretrained/README.md, session 27; not shipped)
3d. xdrs, xdrsd, xdd: the same fine-tune over xdr's data plus the cruising expert's (xdrs), and plus the blind
   drives (xdrsd); xdd over xd's 320 episodes and the blind drives only (session 28; about 4 min each on 2 threads;
   not shipped)
4. per dream, seed and agent (PPO 300k steps, CMA-ES 20 generations of 32 x 8), trained only in the dream, then
   scored over ``--episodes`` real episodes (seeds 1000 onward, z drawn from V's posterior) and as many dream
   episodes (about 4-6 min per agent and score, one thread)
5. eval100: each xd PPO agent over 100 fresh real episodes (seeds 2000-2099, z drawn) and 100 dream episodes
   (about 18 min per agent on one thread): the targets' protocol
6. ensembles: ``--ensembles`` agent ensembles in xd, each of ``--ensemble-size`` PPO seeds (seeds 0-2 form
   ensemble 0, 3-5 ensemble 1, ...; PPO as in step 4), acting by the mean of their actions (``dreamgym
   ensemble``), each scored as in step 5 (session 12). With ``--gas-cap 0.3`` (session 23) every agent trains
   and is scored with the gas capped at 0.3, as the shipped dream's default is since then; five such seeds
   (``--ensemble-size 5``) scored 753.7 ± 127.8 over the 100 episodes of step 5 in xd, and 838.7 ± 100.0 in xf
   (``--ship-dream xf``, session 25)
7. ship: xd (or ``--ship-dream xf``; the ensembles and eval100 parts then use it too, and their
   runs are named xf-...) and its PPO agent of seed ``--ship-seed`` (or its ensemble ``--ship-ensemble``) as
   ``pretrained/carracing`` (``--ship-to``), with its 100-episode scores and random actions' (100 real episodes,
   seeds 1000-1099), the real twin drawing z from V's posterior by default (what the scores were measured with),
   and the gas capped at 0.3 in the dream and the real twin by default (session 23: ``dream.action_high``; each
   agent's agent.json records the Box it trained in, the full one without ``--gas-cap``, so it is scored as
   trained); then ``dreamgym fidelity`` along 10 real episodes of the shipped agent (about 2.5 min), and the card
   written again with its report
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from dreamgym.argtypes import parse_cli
from dreamgym.cli import main
from dreamgym.train.recipes import RecipeConfig, train_world_model
from dreamgym.train.trainer import TrainConfig


@dataclass
class Args:
    work: str = "runs/carracing-expert"
    """run directory: data, both world models and every agent"""
    only: list[str] = field(default_factory=lambda: ["data", "x", "xd", "agents"],
                            metadata={"choices": ("data", "x", "xd", "xf", "xdr", "xdrs", "xdrsd", "xdd", "agents",
                                                  "eval100", "ensembles", "ship")})
    """which parts to run"""
    dreams: list[str] = field(default_factory=lambda: ["x", "xd"],
                              metadata={"choices": ("x", "xd", "xf", "xdr", "xdrs", "xdrsd", "xdd")})
    """the dreams the agents part trains in"""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """one run per agent and seed"""
    algos: list[str] = field(default_factory=lambda: ["ppo", "cmaes"], metadata={"choices": ("ppo", "cmaes")})
    """the agents"""
    expert_episodes: int = 200
    """episodes of the scripted expert"""
    fast_episodes: int = 0
    """episodes of the scripted expert at ``--expert-speed 1.5`` (session 25: 100), collected by the data part twice:
    at noise 0.2 (data-expert-fast) and at noise 0.1 (data-expert-fast01); the xf part needs them"""
    rest_episodes: int = 0
    """episodes of the fast expert (speed 1.5, noise 0.1) that stops on the road and rests
    (``--expert-rest-every 300``; session 27: 100), collected by the data part into data-rest; the xdr part needs them"""
    cruise_episodes: int = 0
    """episodes of the expert (noise 0.1) whose pedal lapses cruise (``--pedal-noise 0.01 --pedal-style cruise``;
    session 28: 100), collected by the data part into data-cruise; the xdrs and xdrsd parts need them"""
    drift_episodes: int = 0
    """episodes of the expert (noise 0.1) that drives on blind now and then (``--expert-drift-every 250``; session 28:
    100), collected by the data part into data-drift; the xdrsd and xdd parts need them"""
    dropout: float = 0.2
    """dropout on xd's M"""
    episodes: int = 20
    """real (and dream) episodes per agent's score"""
    ensembles: int = 3
    """agent ensembles the ensembles part makes in xd"""
    ensemble_size: int = 3
    """PPO seeds per ensemble"""
    ship_seed: int = 0
    """the seed of the xd PPO agent that ships"""
    ship_dream: str = field(default="xd", metadata={"choices": ("xd", "xf", "xdr", "xdrs", "xdrsd", "xdd")})
    """the dream the ensembles, eval100 and ship parts use (its agents' runs are named after it)"""
    ship_ensemble: int | None = None
    """ship this ensemble of xd (xd-ppo-eN, or xd-ppo-capCAP-eN with --gas-cap) instead of the PPO agent of
    --ship-seed"""
    ship_to: str = "pretrained/carracing"
    """where the ship part writes"""
    gas_cap: float | None = None
    """the agents train (and are scored) with the gas capped at this (``train-agent --action-high 1 CAP 1``);
    their runs are named ``{dream}-{algo}-capCAP-s{seed}`` (the shipped ensemble: 0.3)"""


S7_SHIPPED = "6fae5b1ad052a4e9ea3bab4ac2de7d6ebd30b5c9"  # the last commit with session 7's carracing + controller


def session7_model(work: Path) -> Path:
    """pretrained/carracing as it was at commit S7_SHIPPED (its controller drove session 7's agent data), from git."""
    out = work / "carracing-s7"
    if not (out / "controller" / "config.json").is_file():
        repo = Path(__file__).resolve().parent.parent
        tar = subprocess.run(["git", "archive", S7_SHIPPED, "pretrained/carracing"], cwd=repo, check=True,
                             capture_output=True).stdout
        with tempfile.TemporaryDirectory(dir=work) as tmp, tarfile.open(fileobj=io.BytesIO(tar)) as archive:
            archive.extractall(tmp)  # git's own archive of this repository
            (Path(tmp) / "pretrained" / "carracing").rename(out)
    return out


AGENT_FLAGS = {
    "cmaes": ["--generations", "20", "--population", "32", "--rollouts", "8", "--eval-every", "10",
              "--eval-rollouts", "256", "--eval-candidate", "mean", "--seed-sharing", "pairs", "--resume",
              "--dtype", "bfloat16"],
    "ppo": ["--steps", "300000", "--n-envs", "64", "--algo-kwargs", '{"n_steps": 128, "batch_size": 1024}'],
}


def shipped_dream_options(model: Path, shipped: Path = Path("pretrained/carracing")) -> None:
    """Give a fine-tuned dream the shipped dream's options (the gas cap, ...) and real-twin default (z drawn), which
    sessions 27-28 measured xdr, xdrs, xdrsd and xdd with; written to a temp file, then renamed."""
    config = json.loads((model / "config.json").read_text())
    ours = json.loads((shipped / "config.json").read_text())
    config["dream"], config["real_sample_z"] = ours["dream"], ours["real_sample_z"]
    tmp = model / "config.json.tmp"
    tmp.write_text(json.dumps(config, indent=2))
    os.replace(tmp, model / "config.json")


def recipe(**overrides) -> RecipeConfig:
    """Session 7's CarRacing recipe (the shipped one's stages at 3000 steps each)."""
    stage = dict(lr=1e-3, val_every=500, checkpoint_every=250)
    return RecipeConfig(vision=TrainConfig(steps=3000, batch_size=100, **stage),
                        memory=TrainConfig(steps=3000, batch_size=64, **stage), seq_len=64, num_start_states=256,
                        storage_dtype="float16", default_temperature=1.15, seed=0, **overrides)


if __name__ == "__main__":  # real episodes may run in worker processes, which re-import this file
    args = parse_cli(Args, description=__doc__)
    work = Path(args.work)
    data = [work / "data-brownian", work / "data-agent", work / "data-expert"]  # one dataset per policy
    fast = [work / "data-expert-fast", work / "data-expert-fast01"]  # the expert at speed 1.5, noise 0.2 and 0.1
    rest = work / "data-rest"  # the fast expert, stopping on the road to rest (session 27)
    cruise, drift = work / "data-cruise", work / "data-drift"  # the expert cruising, and driving on blind (session 28)
    models = {name: work / name for name in ("x", "xd", "xf", "xdr", "xdrs", "xdrsd", "xdd")}

    work.mkdir(parents=True, exist_ok=True)
    if "data" in args.only:  # collect only writes what is missing
        main(["collect", "CarRacing-v3", "--episodes", "60", "--policy", "brownian", "--workers", "2", "--seed", "0",
              "--out", str(data[0])])
        s7 = session7_model(work)
        main(["collect", "CarRacing-v3", "--episodes", "60", "--policy", "agent", "--agent",
              str(s7 / "controller"), "--agent-model", str(s7), "--noise", "0.2",
              "--workers", "2", "--seed", "100000", "--out", str(data[1])])
        main(["collect", "CarRacing-v3", "--episodes", str(args.expert_episodes), "--policy", "expert", "--noise",
              "0.2", "--workers", "2", "--seed", "300000", "--out", str(data[2])])
        for noise, seed, out in zip(("0.2", "0.1"), ("400000", "500000"), fast):
            if args.fast_episodes:
                main(["collect", "CarRacing-v3", "--episodes", str(args.fast_episodes), "--policy", "expert", "--noise",
                      noise, "--expert-speed", "1.5", "--workers", "2", "--seed", seed, "--out", str(out)])
        if args.rest_episodes:
            main(["collect", "CarRacing-v3", "--episodes", str(args.rest_episodes), "--policy", "expert", "--noise",
                  "0.1", "--expert-speed", "1.5", "--expert-rest-every", "300", "--workers", "2", "--seed", "600000",
                  "--out", str(rest)])
        if args.cruise_episodes:
            main(["collect", "CarRacing-v3", "--episodes", str(args.cruise_episodes), "--policy", "expert", "--noise",
                  "0.1", "--pedal-noise", "0.01", "--pedal-style", "cruise", "--workers", "2", "--seed", "800000",
                  "--out", str(cruise)])
        if args.drift_episodes:
            main(["collect", "CarRacing-v3", "--episodes", str(args.drift_episodes), "--policy", "expert", "--noise",
                  "0.1", "--expert-drift-every", "250", "--workers", "2", "--seed", "900000", "--out", str(drift)])

    x, xd, xf = models["x"], models["xd"], models["xf"]
    if "x" in args.only and not (x / "config.json").is_file():
        train_world_model(data, x, recipe(), resume=(x / "stages").exists())
    if "xd" in args.only and not (xd / "config.json").is_file():
        train_world_model(data, xd, recipe(init_from=str(x), train_vision=False, fresh_memory=True,
                                           dropout=args.dropout), resume=(xd / "stages").exists())
    if "xf" in args.only and not (xf / "config.json").is_file():
        if not all((f / "dataset.json").is_file() for f in fast):
            raise SystemExit(f"the xf part trains on the fast expert's data ({', '.join(map(str, fast))}), which "
                             f"is not all there: run the data part with --fast-episodes 100 first")
        train_world_model([*data, *fast], xf, recipe(init_from=str(xd), train_vision=False, fresh_memory=True,
                                                    dropout=args.dropout), resume=(xf / "stages").exists())

    if "xdr" in args.only and not (models["xdr"] / "config.json").is_file():
        if not (rest / "dataset.json").is_file():
            raise SystemExit(f"the xdr part trains on the resting expert's data ({rest}), which is not there: run the "
                             f"data part with --rest-episodes 100 first")
        # xd's M + heads (not fresh) trained on: 1500 more steps at lr 3e-4 over xd's data and the resting episodes
        memory = TrainConfig(steps=1500, batch_size=64, lr=3e-4, val_every=500, checkpoint_every=250)
        train_world_model([*data, rest], models["xdr"],
                          replace(recipe(init_from=str(xd), train_vision=False, dropout=args.dropout), memory=memory),
                          resume=(models["xdr"] / "stages").exists())
    # session 28: the same fine-tune of xd over xdr's data and the cruising expert's (xdrs), and the blind drives
    for name, extra in (("xdrs", [rest, cruise]), ("xdrsd", [rest, cruise, drift]), ("xdd", [drift])):
        if name in args.only and not (models[name] / "config.json").is_file():
            flags = {rest: "--rest-episodes 100", cruise: "--cruise-episodes 100", drift: "--drift-episodes 100"}
            missing = [d for d in extra if not (d / "dataset.json").is_file()]
            if missing:
                raise SystemExit(f"the {name} part trains on {', '.join(map(str, missing))}, not there: run the data "
                                 f"part with {' '.join(flags[d] for d in missing)} first")
            memory = TrainConfig(steps=1500, batch_size=64, lr=3e-4, val_every=500, checkpoint_every=250)
            tune = replace(recipe(init_from=str(xd), train_vision=False, dropout=args.dropout), memory=memory)
            train_world_model([*data, *extra], models[name], tune,
                              resume=(models[name] / "stages").exists())
    for name in ("xdr", "xdrs", "xdrsd", "xdd"):  # idempotent: a run stopped after training still gets them
        if name in args.only and (models[name] / "config.json").is_file():
            shipped_dream_options(models[name])

    cap = [] if args.gas_cap is None else ["--action-high", "1", str(args.gas_cap), "1"]
    tag = "" if args.gas_cap is None else f"-cap{args.gas_cap:g}"  # xd-ppo-cap0.3-s0
    dream, dm = args.ship_dream, models[args.ship_dream]  # the ensembles, eval100 and ship parts' dream

    if "agents" in args.only:
        for seed in args.seeds:
            for name in args.dreams:
                for algo in args.algos:
                    run = work / f"{name}-{algo}{tag}-s{seed}"
                    if (run / "eval.json").is_file():
                        continue
                    start = time.perf_counter()
                    main(["train-agent", "Dream-CarRacing-v0", "--algo", algo, "--model", str(models[name]),
                          "--temperature", "1.15", "--seed", str(seed), "--out", str(run), *AGENT_FLAGS[algo], *cap])
                    (run / "train_seconds.txt").write_text(f"{time.perf_counter() - start:.0f}\n")
                    main(["evaluate", str(run), "--episodes", str(args.episodes), "--seed", "1000", "--temperature",
                          "1.15", "--workers", "1", "--sample-z"])

    def score100(run: Path) -> None:
        if not (run / "eval100.json").is_file():
            main(["evaluate", str(run), "--episodes", "100", "--seed", "2000", "--temperature", "1.15",
                  "--workers", "1", "--sample-z", "--json", str(run / "eval100.json")])

    if "ensembles" in args.only:
        for e in range(args.ensembles):
            seeds = range(e * args.ensemble_size, (e + 1) * args.ensemble_size)
            runs = [work / f"{dream}-ppo{tag}-s{seed}" for seed in seeds]
            for seed, run in enumerate(runs, start=e * args.ensemble_size):
                if not (run / "agent.json").is_file():
                    main(["train-agent", "Dream-CarRacing-v0", "--algo", "ppo", "--model", str(dm), "--temperature",
                          "1.15", "--seed", str(seed), "--out", str(run), *AGENT_FLAGS["ppo"], *cap])
            if not (work / f"{dream}-ppo{tag}-e{e}" / "ensemble.json").is_file():
                main(["ensemble", *map(str, runs), "--out", str(work / f"{dream}-ppo{tag}-e{e}")])
            score100(work / f"{dream}-ppo{tag}-e{e}")

    if "eval100" in args.only:
        for seed in args.seeds:
            score100(work / f"{dream}-ppo{tag}-s{seed}")

    if "ship" in args.only:
        run = work / (f"{dream}-ppo{tag}-s{args.ship_seed}" if args.ship_ensemble is None
                      else f"{dream}-ppo{tag}-e{args.ship_ensemble}")
        random = work / "eval-random.json"
        if not random.is_file():  # random actions, beside the agent on the card, as the shipped dream runs them
            main(["evaluate", "random", "--env-id", "Dream-CarRacing-v0", "--model", str(dm), "--episodes", "100",
                  "--seed", "1000", "--temperature", "1.15", "--workers", "2", "--sample-z",
                  "--action-high", "1", "0.3", "1", "--json", str(random)])
        main(["ship", str(dm), "--out", args.ship_to, "--name", "carracing", "--controller", str(run),
              "--eval", f"eval.json={run / 'eval100.json'}", "--eval", f"eval-random.json={random}",
              "--temperature", "1.15", "--sample-z", "--action-high", "1", "0.3", "1"])
        # the lie detector's report along the shipped agent's real episodes, then the card again with it
        main(["fidelity", args.ship_to, "--agent", str(Path(args.ship_to) / "agent"), "--episodes", "10", "--seed", "0",
              "--workers", "1"])
        main(["ship", args.ship_to, "--out", args.ship_to, "--video-steps", "0"])
