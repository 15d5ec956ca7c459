"""The ``dreamgym`` command: collect | train | validate | train-agent | evaluate | iterate | push | pull |
dream | play | plot.

Flags and presets live here only; the library takes config dataclasses.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from dreamgym.errors import DreamgymError


def _collect(args: argparse.Namespace) -> None:
    from dreamgym.data.collect import CollectConfig, collect

    cfg = CollectConfig(
        env_id=args.env_id, out=args.out, episodes=args.episodes, policy=args.policy,
        env_kwargs=json.loads(args.env_kwargs), agent=args.agent, agent_model=args.agent_model, noise=args.noise,
        workers=args.workers, seed=args.seed, max_steps=args.max_steps, min_steps=args.min_steps,
    )
    result = collect(cfg)
    print(f"{result.out}: {result.episodes_written} new episodes ({result.episodes_total} wanted), "
          f"{result.steps} steps in {result.seconds:.1f} s = {result.steps_per_s:.0f} steps/s")


def _data_dirs(sources: Sequence[str], out: Path) -> list[str]:
    dirs = []
    for src in sources:
        if src.startswith("minari:"):
            from dreamgym.data.minari import import_minari

            dataset_id = src.split(":", 1)[1]
            target = out / "data" / dataset_id.replace("/", "--")
            if not (target / "dataset.json").is_file():
                import_minari(dataset_id, target)
            dirs.append(str(target))
        else:
            dirs.append(src)
    return dirs


def recipe_from_args(args: argparse.Namespace):
    from dreamgym.train.recipes import RecipeConfig

    cfg = RecipeConfig.tiny() if args.preset == "tiny" else RecipeConfig()
    vision = {k: v for k, v in {"steps": args.vision_steps, "batch_size": args.vision_batch, "lr": args.lr,
                                "seed": args.seed, "tensorboard": args.tensorboard}.items() if v is not None}
    memory = {k: v for k, v in {"steps": args.memory_steps, "batch_size": args.memory_batch, "lr": args.lr,
                                "seed": args.seed, "tensorboard": args.tensorboard}.items() if v is not None}
    top = {k: v for k, v in {"z_dim": args.z_dim, "hidden_size": args.hidden_size, "seq_len": args.seq_len,
                             "seed": args.seed, "default_temperature": args.temperature}.items() if v is not None}
    if args.fp16:
        top["storage_dtype"] = "float16"
    if getattr(args, "init_from", None):
        top["init_from"] = args.init_from
    if getattr(args, "keep_vision", False):
        top["train_vision"] = False
    top.update({k: v for k, v in {"ensemble": args.ensemble, "dropout": args.dropout}.items() if v is not None})
    return replace(cfg, vision=replace(cfg.vision, **vision), memory=replace(cfg.memory, **memory), **top)


def _train(args: argparse.Namespace) -> None:
    from dreamgym.train.recipes import train_world_model

    out = Path(args.out)
    model = train_world_model(_data_dirs(args.data, out), out, recipe_from_args(args), resume=args.resume,
                              device=args.device)
    from dreamgym.train.trainer import distributed, finish_distributed

    if distributed()[0] == 0:
        print(json.dumps(model.config.summary, indent=2))
        print(f"saved {out}: gym.make(\"Dream-...-v0\", model={str(out)!r})")
    finish_distributed()


def _validate(args: argparse.Namespace) -> None:
    from dreamgym.data.episodes import validate

    meta, good, bad = validate(args.data)
    print(f"{args.data}: {meta.env_id}, {len(good)} good shard(s), {len(bad)} bad")
    for path, why in bad.items():
        print(f"  BAD {path.name}: {why}")
    if bad:
        sys.exit(1)


def _train_agent(args: argparse.Namespace) -> None:
    if args.algo == "cmaes":
        from dreamgym.agents.cmaes import CMAESConfig, CMAESTrainer

        cfg = CMAESConfig(
            env_id=args.env_id, model=args.model, temperature=args.temperature, population=args.population,
            rollouts=args.rollouts, generations=args.generations, max_steps=args.max_steps, sigma0=args.sigma0,
            eval_every=args.eval_every, eval_rollouts=args.eval_rollouts, seed=args.seed, device=args.device,
            dtype=args.dtype, init=args.init, obs_type=args.obs_type, eval_candidate=args.eval_candidate,
            seed_sharing=args.seed_sharing, bias=not args.no_bias, discrete=args.discrete,
            **_dream_option_values(args),
        )
        trainer = CMAESTrainer(cfg, args.out)
        if args.resume:
            trainer.load()
        elif (Path(args.out) / "cmaes_history.jsonl").exists():
            raise DreamgymError(f"{args.out} already holds a CMA-ES run; pass --resume to continue it, or a new --out.")
        trainer.train()
        print(f"saved {Path(args.out) / 'controller'}: best dream score {trainer.best_eval:.1f}")
        return
    from dreamgym.agents.sb3_train import SB3Config, train_sb3

    cfg = SB3Config(
        env_id=args.env_id, algo=args.algo, steps=args.steps, n_envs=args.n_envs, model=args.model,
        temperature=args.temperature, obs_type=args.obs_type, seed=args.seed, eval_real_every=args.eval_real_every,
        eval_real_episodes=args.eval_real_episodes, device=args.device, algo_kwargs=json.loads(args.algo_kwargs),
    )
    train_sb3(cfg, args.out)
    print(f"saved {args.out}")


def _evaluate(args: argparse.Namespace) -> None:
    from dreamgym.evaluate import evaluate, format_result

    out = args.json or (str(Path(args.agent) / "eval.json") if Path(args.agent).is_dir() else None)
    result = evaluate(args.agent, args.episodes, temperature=args.temperature, env_id=args.env_id, model=args.model,
                      dream=not args.real_only, real=not args.dream_only, workers=args.workers, seed=args.seed, out=out,
                      sample_z=args.sample_z)
    print(format_result(result))
    if out:
        print(f"written {out}")


def _iterate(args: argparse.Namespace) -> None:
    from dreamgym.agents.cmaes import CMAESConfig
    from dreamgym.agents.iterate import IterateConfig, format_rounds, iterate

    cfg = IterateConfig(
        env_id=args.env_id, rounds=args.rounds, episodes=args.episodes, noise=args.noise, max_steps=args.max_steps,
        recipe=recipe_from_args(args),
        cmaes=CMAESConfig(temperature=args.temperature, population=args.population, rollouts=args.rollouts,
                          generations=args.generations, eval_every=args.eval_every, eval_rollouts=args.eval_rollouts,
                          sigma0=args.sigma0),
        eval_episodes=args.eval_episodes, workers=args.workers, seed=args.seed or 0, warm_start=args.warm_start,
    )
    print(format_rounds(iterate(cfg, args.out)))


def _push(args: argparse.Namespace) -> None:
    from dreamgym.hub import push

    result = push(args.folder, args.repo_id, private=args.private, revision=args.revision,
                  commit_message=args.message)
    print(f"pushed {result['kind']} to https://huggingface.co/{result['repo_id']} ({', '.join(result['files'])})")


def _pull(args: argparse.Namespace) -> None:
    from dreamgym.hub import pull

    result = pull(args.repo_id, revision=args.revision)
    print(f"{result['repo_id']} ({result['kind']}) at commit {result['commit']}: {result['path']}")


def add_train_args(p: argparse.ArgumentParser, data: bool = True) -> None:
    if data:
        p.add_argument("data", nargs="+", help="dataset directories, or minari:<dataset-id>")
        p.add_argument("--out", required=True, help="run directory; the WorldModel is saved here")
        p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
        p.add_argument("--temperature", type=float, help="the dream's default temperature")
        p.add_argument("--seed", type=int)
        p.add_argument("--init-from", help="start from this world model's weights (same sizes), e.g. a Dyna round's")
        p.add_argument("--keep-vision", action="store_true", help="with --init-from: keep its V, train only M + heads")
    p.add_argument("--preset", choices=["paper", "tiny"], default="paper", help="paper sizes, or tiny for smoke runs")
    p.add_argument("--vision-steps", type=int)
    p.add_argument("--memory-steps", type=int)
    p.add_argument("--vision-batch", type=int)
    p.add_argument("--memory-batch", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seq-len", type=int)
    p.add_argument("--z-dim", type=int)
    p.add_argument("--hidden-size", type=int)
    p.add_argument("--fp16", action="store_true", help="store weights as float16 (half the file)")
    p.add_argument("--ensemble", type=int, help="members of M + heads, each on a bootstrap resample; dreams draw "
                   "one per episode and report their disagreement (default: 1)")
    p.add_argument("--dropout", type=float, help="dropout on M's output in training; dreams draw a fresh mask "
                   "per episode, as in Dropout's Dream Land (default: 0)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--tensorboard", action="store_true", default=None)


def _add_cmaes_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--generations", type=int, default=300)
    p.add_argument("--population", type=int, default=64)
    p.add_argument("--rollouts", type=int, default=16, help="dream episodes per candidate")
    p.add_argument("--sigma0", type=float, default=0.1)
    p.add_argument("--eval-every", type=int, default=25, help="re-score the best every N generations")
    p.add_argument("--eval-rollouts", type=int, default=1024)


def _add_dream_options(p: argparse.ArgumentParser) -> None:
    """The dream's options against exploitation (gym.make keyword arguments); unset: the model's defaults."""
    p.add_argument("--temperature-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="each dream episode draws its temperature uniformly from [LOW, HIGH] (default: a fixed one)")
    p.add_argument("--disagreement-penalty", type=float,
                   help="ensembles: reward - LAMBDA * disagreement, MOPO's pessimism (default: the model's, 0)")
    p.add_argument("--halt-threshold", type=float,
                   help="ensembles: end the dream episode once disagreement exceeds this, MOReL's HALT "
                        "(default: the model's, never)")
    p.add_argument("--halt-penalty", type=float, help="the reward of a HALTed step (default: the model's, 0)")


def _dream_option_values(args: argparse.Namespace) -> dict[str, object]:
    return {"temperature_range": list(args.temperature_range) if args.temperature_range else None,
            "disagreement_penalty": args.disagreement_penalty, "halt_threshold": args.halt_threshold,
            "halt_penalty": args.halt_penalty}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dreamgym", description="Trained world models as Gymnasium environments.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("collect", help="collect real episodes with a policy")
    p.add_argument("env_id")
    p.add_argument("--out", required=True)
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--policy", choices=["random", "brownian", "agent", "held"], default="brownian",
                   help="held: a random action held for 1..10 steps (the paper's Doom data)")
    p.add_argument("--agent", help="controller directory or SB3 zip (with --policy agent)")
    p.add_argument("--agent-model", help="world model directory the agent sees reality through")
    p.add_argument("--noise", type=float, default=0.1, help="exploration noise of --policy agent")
    p.add_argument("--workers", type=int, default=0, help="processes (0: every core)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, help="cap episode length")
    p.add_argument("--min-steps", type=int, default=0,
                   help="keep only episodes of more steps than this (redrawn deterministically; the paper: 100)")
    p.add_argument("--env-kwargs", default="{}", help="JSON kwargs for gym.make")
    p.set_defaults(func=_collect)

    p = sub.add_parser("train", help="train a world model: V, encode, M + heads")
    add_train_args(p)
    p.set_defaults(func=_train)

    p = sub.add_parser("train-agent", help="train an agent in a dream: cmaes (linear controller) or any SB3 algo")
    p.add_argument("env_id", help="a Dream id, e.g. Dream-CarRacing-v0")
    p.add_argument("--algo", default="cmaes", choices=["cmaes", "ppo", "a2c", "sac", "td3", "ddpg", "dqn"])
    p.add_argument("--out", required=True)
    p.add_argument("--model", help="world model (directory, pretrained name or Hub id); default: the shipped one")
    p.add_argument("--temperature", type=float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--resume", action="store_true", help="continue a CMA-ES run in --out")
    p.add_argument("--init", help="cmaes: start the search from this controller directory (fine-tuning)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                   help="CMA-ES: bfloat16 runs M's matmuls faster on CPUs with bf16 instructions")
    _add_cmaes_args(p)
    p.add_argument("--max-steps", type=int, help="CMA-ES rollout length (default: the time limit)")
    p.add_argument("--steps", type=int, default=1_000_000, help="SB3: total dream steps")
    p.add_argument("--n-envs", type=int, default=64, help="SB3: dreams stepped together")
    p.add_argument("--obs-type", default="latent", choices=["latent", "zch", "z", "pixels"],
                   help="what the agent sees: z‖h (latent), z‖c‖h (zch, the paper's Doom controller), z, or pixels")
    p.add_argument("--eval-candidate", default="mean", choices=["mean", "best"],
                   help="CMA-ES: re-score (and keep if best so far) the search's mean (the paper) or the "
                        "generation's best candidate")
    p.add_argument("--seed-sharing", default="all", choices=["all", "pairs"],
                   help="CMA-ES: all candidates meet the same dreams, or pairs of candidates share theirs (the paper's code)")
    p.add_argument("--no-bias", action="store_true", help="CMA-ES: a controller without bias (the paper's Doom)")
    p.add_argument("--discrete", default="argmax", choices=["argmax", "threshold"],
                   help="CMA-ES, Discrete(3): one output per action, or one tanh output thresholded at ±1/3 "
                        "(the paper's Doom)")
    _add_dream_options(p)
    p.add_argument("--eval-real-every", type=int, default=0, help="SB3: evaluate in the real env every N steps")
    p.add_argument("--eval-real-episodes", type=int, default=3)
    p.add_argument("--algo-kwargs", default="{}", help="SB3: JSON kwargs for the algorithm")
    p.set_defaults(func=_train_agent)

    p = sub.add_parser("evaluate", help="score an agent in the dream and in the real env")
    p.add_argument("agent", help="controller dir, CMA-ES run dir, SB3 zip, or 'random'")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--temperature", type=float)
    p.add_argument("--env-id", help="the Dream id (if the agent does not record it; needed for 'random')")
    p.add_argument("--model", help="world model (default: the one the agent was trained with)")
    p.add_argument("--workers", type=int, default=0, help="processes for real episodes (0: every core)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dream-only", action="store_true")
    p.add_argument("--real-only", action="store_true")
    p.add_argument("--json", help="where to write the results (default: AGENT/eval.json)")
    p.add_argument("--sample-z", action="store_true",
                   help="in the real env, z is drawn from V's posterior instead of its mean (the paper's Doom)")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("iterate", help="Dyna: collect -> world model -> agent -> reality, repeated")
    p.add_argument("env_id", help="the real env, e.g. CarRacing-v3")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", required=True)
    p.add_argument("--episodes", type=int, default=100, help="episodes collected per round")
    p.add_argument("--noise", type=float, default=0.1)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--temperature", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--warm-start", action="store_true",
                   help="later rounds continue the last round's world model (V kept) and controller "
                        "instead of starting from scratch")
    add_train_args(p, data=False)
    _add_cmaes_args(p)
    p.set_defaults(func=_iterate)

    p = sub.add_parser("push", help="publish a world model, controller or SB3 agent to the Hugging Face Hub")
    p.add_argument("folder")
    p.add_argument("repo_id", help="e.g. someone/dream-carracing (SB3 agents: someone/ppo-Dream-CarRacing-v0)")
    p.add_argument("--private", action="store_true")
    p.add_argument("--revision", help="branch to push to")
    p.add_argument("--message", help="commit message")
    p.set_defaults(func=_push)

    p = sub.add_parser("pull", help="download a Hub repo into the cache for offline use, and check it loads")
    p.add_argument("repo_id")
    p.add_argument("--revision")
    p.set_defaults(func=_pull)

    from dreamgym.viz.cli import register as register_viz

    register_viz(sub)  # dream | play | plot

    p = sub.add_parser("validate", help="check every shard of a dataset")
    p.add_argument("data")
    p.set_defaults(func=_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except DreamgymError as e:
        print(f"dreamgym {args.command}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
