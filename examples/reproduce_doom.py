"""Doom TakeCover entirely in a dream, and the paper's temperature table; resumable at every stage.

Run (what was run for the Doom dream shipped in sessions 5-13, at commit 13ed96d; today's pretrained/doom-takecover
continues it with examples/doom_expert.py), in this order; the second continues the first:
  python examples/reproduce_doom.py --work runs/doom --episodes 300 --base-only
  python examples/reproduce_doom.py --work runs/doom --episodes 1200 --refine-steps 1500 --dyna-rounds 1 --ship

1. collect --episodes episodes of VizdoomTakeCover-v1 with uniformly random actions (seeds 0..)
2. train the base world model (once, on the episodes collected so far: 300 for the shipped one): VAE (z 64),
   then LSTM 512 + 5 Gaussians + a termination head (reward is the constant 1 per step survived, as in the
   paper), M trained on 64-step windows
2b. refine: M and the heads continue --refine-steps more steps (V kept) on all episodes, in windows of
   --refine-seq-len (512: whole episodes, so M sees every hit from the episode's start, as the dream does)
   with deaths weighted x--pos-weight, into world_model-pw<w>-L<len>-ep<episodes>: the dream the
   controllers train in
2c. --dyna-rounds: the last dream's controller (trained at the k-th of --dyna-temperatures) plays reality
   (--dyna-episodes, a random action with probability --dyna-noise), and M continues --dyna-steps on all data
   into world_model-<tag>-r<k>
3. for each temperature (first in --temperatures first): CMA-ES trains a linear controller on [z, h] only in
   the dream at that temperature, then it is scored over --eval-episodes episodes in the dream at that
   temperature and in the REAL VizdoomTakeCover-v1 (2100-step cap)
4. a random policy in reality, for the baseline
`table-<tag>.json` (tag: pw<w>-L<len>-ep<episodes>[-r<k>]) in --work collects the rows; every stage is skipped
when its output exists.
With --ship: pretrained/doom-takecover gets the fp16 world model, the controller with the best real score (in
controller/), every temperature's eval JSON, a dream-vs-real GIF and the model card with the table.
What these runs measured (the table, termination recall, what the Dyna rounds did) is in pretrained/README.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from dreamgym.agents.cmaes import CMAESConfig, CMAESTrainer
from dreamgym.argtypes import parse_cli
from dreamgym.data.collect import CollectConfig, collect
from dreamgym.evaluate import evaluate
from dreamgym.ship import ShipConfig, pipeline_minutes, ship
from dreamgym.train.recipes import RecipeConfig, train_world_model
from dreamgym.train.trainer import TrainConfig
from dreamgym.utils import atomic_write_text

PAPER = {0.10: (2086, 193), 0.50: (2060, 196), 1.00: (1145, 868), 1.15: (918, 1092), 1.30: (732, 753)}


@dataclass
class Args:
    work: str = "runs/doom"
    """run directory"""
    episodes: int = 300
    """random-action episodes collected"""
    vision_steps: int = 2000
    """the base world model's V steps"""
    memory_steps: int = 2000
    """the base world model's M steps"""
    temperatures: list[float] = field(default_factory=lambda: [1.15, 1.0, 1.3, 0.5, 0.1])
    """one CMA-ES controller per temperature"""
    generations: int = 40
    """CMA-ES generations"""
    population: int = 32
    """CMA-ES candidates per generation"""
    rollouts: int = 4
    """dreams per candidate"""
    eval_episodes: int = 100
    """real (and dream) episodes scoring each controller"""
    workers: int = 2
    """processes"""
    dtype: str = "bfloat16"
    """CMA-ES matmul dtype"""
    pos_weight: float = 100.0
    """deaths' weight in the refine stage's termination loss"""
    refine_steps: int = 1500
    """M steps of the refine stage"""
    refine_seq_len: int = 512
    """M's training window in the refine stage; 512 holds most whole episodes"""
    refine_batch: int = 16
    """M's batch in the refine stage"""
    dyna_rounds: int = 0
    """Dyna rounds after the refine: collect with the last controller, continue M on all data"""
    dyna_temperatures: list[float] = field(default_factory=lambda: [1.15])
    """round k collects with the controller trained at the k-th of these (the last repeats)"""
    dyna_episodes: int = 300
    """episodes each Dyna round collects"""
    dyna_noise: float = 0.3
    """probability of a random action"""
    dyna_steps: int = 800
    """M steps of each Dyna round"""
    base_only: bool = False
    """stop after the base world model (step 2)"""
    ship: bool = False
    """write the result to --ship-to"""
    ship_to: str = "pretrained/doom-takecover"
    """the shipped folder"""


def train_controller(agent: Path, wm: Path, tau: float, args: Args) -> Path:
    """CMA-ES in the dream of ``wm`` at ``tau`` into ``agent`` (skipped when done)."""
    history = agent / "cmaes_history.jsonl"
    if not (history.is_file() and len(history.read_text().splitlines()) >= args.generations
            and (agent / "controller" / "config.json").is_file()):
        trainer = CMAESTrainer(CMAESConfig("Dream-DoomTakeCover-v0", model=str(wm), temperature=tau,
                                           population=args.population, rollouts=args.rollouts,
                                           generations=args.generations, eval_every=10, eval_rollouts=64,
                                           sigma0=0.1, seed=0, dtype=args.dtype), agent)
        trainer.load()
        trainer.train()
    return agent


def continue_memory(data: list[Path], init: Path, out: Path, steps: int, seed: int, args: Args) -> None:
    """M and the heads of ``init`` trained ``steps`` more on ``data`` in --refine-seq-len windows (V kept)."""
    if (out / "config.json").is_file():
        return
    recipe = RecipeConfig(
        memory=TrainConfig(steps=steps, batch_size=args.refine_batch, lr=1e-3, val_every=400, checkpoint_every=200),
        seq_len=args.refine_seq_len, num_start_states=256, storage_dtype="float16", default_temperature=1.15,
        seed=seed, init_from=str(init), train_vision=False, heads={"termination_pos_weight": args.pos_weight},
    )
    train_world_model(data, out, recipe, resume=(out / "stages").exists())


if __name__ == "__main__":  # real episodes run in worker processes, which re-import this file
    args = parse_cli(Args, description=__doc__)
    work = Path(args.work).resolve()

    # 1. random-action data and 2. the base world model
    collect(CollectConfig("VizdoomTakeCover-v1", out=str(work / "data"), episodes=args.episodes, policy="random",
                          workers=args.workers, seed=0))
    wm = work / "world_model"
    if not (wm / "config.json").is_file():
        recipe = RecipeConfig(
            vision=TrainConfig(steps=args.vision_steps, batch_size=100, lr=1e-3, val_every=500, checkpoint_every=250),
            memory=TrainConfig(steps=args.memory_steps, batch_size=64, lr=1e-3, val_every=500, checkpoint_every=250),
            seq_len=64, num_start_states=256, storage_dtype="float16", default_temperature=1.15, seed=0,
        )
        train_world_model(work / "data", wm, recipe, resume=(wm / "stages").exists())
    if args.base_only:
        raise SystemExit(0)

    # 2b. refine M on whole episodes; 2c. Dyna rounds
    tag = run_tag = f"pw{args.pos_weight:g}-L{args.refine_seq_len}-ep{args.episodes}"  # deaths weight, window, data
    data, models, collectors = [work / "data"], [wm, work / f"world_model-{tag}"], []
    continue_memory(data, models[0], models[1], args.refine_steps, 0, args)
    for k in range(1, args.dyna_rounds + 1):
        # Dyna: the last dream's controller (at --dyna-temperatures' k-th) plays reality with exploration noise;
        # M continues on all data so far, so the dream learns what that controller's play looks like
        tau = args.dyna_temperatures[min(k, len(args.dyna_temperatures)) - 1]
        collectors.append(train_controller(work / f"cmaes-{tag}-tau{tau:.2f}", models[-1], tau, args))
        data.append(work / f"data-r{k}")
        collect(CollectConfig("VizdoomTakeCover-v1", out=str(data[-1]), episodes=args.dyna_episodes, policy="agent",
                              agent=str(collectors[-1] / "controller"), agent_model=str(models[-1]),
                              noise=args.dyna_noise, workers=args.workers, seed=100000 * k))
        tag = f"{run_tag}-r{k}"
        models.append(work / f"world_model-{tag}")
        continue_memory(data, models[-2], models[-1], args.dyna_steps, k, args)
    wm = models[-1]

    # 3. the temperature table: a controller per tau, scored in its dream and in reality
    rows = []
    for tau in args.temperatures:
        agent = train_controller(work / f"cmaes-{tag}-tau{tau:.2f}", wm, tau, args)
        path = agent / "eval.json"
        result = json.loads(path.read_text()) if path.is_file() else evaluate(
            agent, episodes=args.eval_episodes, temperature=tau, seed=1000, workers=args.workers, out=path)
        paper = PAPER.get(round(tau, 2), (None, None))
        rows.append({"temperature": tau, "dream": result["dream"]["mean"], "dream_std": result["dream"]["std"],
                     "real": result["real"]["mean"], "real_std": result["real"]["std"],
                     "episodes": len(result["real"]["returns"]), "paper_dream": paper[0], "paper_real": paper[1]})
        atomic_write_text(work / f"table-{tag}.json", json.dumps({"rows": rows}, indent=2) + "\n")
        print(json.dumps(rows[-1]), flush=True)

    # 4. the baseline: a random policy in reality
    path = work / "eval-random.json"
    baseline = json.loads(path.read_text()) if path.is_file() else evaluate(
        "random", env_id="Dream-DoomTakeCover-v0", model=str(wm), episodes=args.eval_episodes, seed=1000,
        dream=False, workers=args.workers, out=path)
    atomic_write_text(work / f"table-{tag}.json", json.dumps({"rows": rows, "random": {
        "real": baseline["real"]["mean"], "real_std": baseline["real"]["std"]}}, indent=2) + "\n")
    print(json.dumps({"random_real": baseline["real"]["mean"], "random_real_std": baseline["real"]["std"]}))

    # 5. ship: the last world model, the controller with the best real score, every temperature's eval
    if args.ship:
        best = max(rows, key=lambda r: r["real"])
        runs = {r["temperature"]: work / f"cmaes-{tag}-tau{r['temperature']:.2f}" for r in rows}
        evals = {f"eval-tau{t:.2f}.json": str(run / "eval.json") for t, run in runs.items()}
        evals["eval-random.json"] = str(work / "eval-random.json")
        table = [{k: (round(v, 1) if isinstance(v, float) and k != "temperature" else v) for k, v in r.items()}
                 for r in rows]
        pipeline = {
            "train_and_cmaes_wall_minutes_2_cores": pipeline_minutes(models, [*runs.values(), *collectors]),
            "base_world_model": "VAE 2000 steps and M 2000 steps (64-step windows, deaths x10) on the first 300 "
                                "episodes",
            "refine": f"M and heads {args.refine_steps} more steps on all {args.episodes} episodes, windows of "
                      f"{args.refine_seq_len} steps, deaths x{args.pos_weight:g}, V kept",
            "dyna": (f"{args.dyna_rounds} round(s): {args.dyna_episodes} episodes each, collected by the previous "
                     f"dream's controller at tau {args.dyna_temperatures[:args.dyna_rounds]} (random action with p "
                     f"{args.dyna_noise:g}), then M and heads "
                     f"{args.dyna_steps} more steps on all data") if args.dyna_rounds else "none",
            "cmaes": f"{args.generations} generations of {args.population} x {args.rollouts} dreams per temperature, "
                     f"{args.dtype}",
            "reproduce": "python examples/reproduce_doom.py --episodes 300 --base-only; then "
                         f"python examples/reproduce_doom.py --episodes {args.episodes} --refine-steps "
                         f"{args.refine_steps} --dyna-rounds {args.dyna_rounds} --dyna-temperatures "
                         f"{' '.join(f'{t:g}' for t in args.dyna_temperatures)} --ship",
        }
        summary = {"temperature_table": table,
                   "controller": f"controller/ was trained at tau {best['temperature']} (best real score)",
                   "pipeline": pipeline}
        out = ship(ShipConfig(str(wm), args.ship_to, controller=str(runs[best["temperature"]]), name="doom-takecover",
                              evals=evals, temperature=best["temperature"], fps=20, summary=summary))
        print(f"shipped {out}")
