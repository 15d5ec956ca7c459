"""The ``dreamgym`` command: collect | train | validate.

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
        workers=args.workers, seed=args.seed, max_steps=args.max_steps,
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
    return replace(cfg, vision=replace(cfg.vision, **vision), memory=replace(cfg.memory, **memory), **top)


def _train(args: argparse.Namespace) -> None:
    from dreamgym.train.recipes import train_world_model

    out = Path(args.out)
    model = train_world_model(_data_dirs(args.data, out), out, recipe_from_args(args), resume=args.resume,
                              device=args.device)
    from dreamgym.train.trainer import distributed

    if distributed()[0] == 0:
        print(json.dumps(model.config.summary, indent=2))
        print(f"saved {out}: gym.make(\"Dream-...-v0\", model={str(out)!r})")


def _validate(args: argparse.Namespace) -> None:
    from dreamgym.data.episodes import validate

    meta, good, bad = validate(args.data)
    print(f"{args.data}: {meta.env_id}, {len(good)} good shard(s), {len(bad)} bad")
    for path, why in bad.items():
        print(f"  BAD {path.name}: {why}")
    if bad:
        sys.exit(1)


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="+", help="dataset directories, or minari:<dataset-id>")
    p.add_argument("--out", required=True, help="run directory; the WorldModel is saved here")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--preset", choices=["paper", "tiny"], default="paper", help="paper sizes, or tiny for smoke runs")
    p.add_argument("--vision-steps", type=int)
    p.add_argument("--memory-steps", type=int)
    p.add_argument("--vision-batch", type=int)
    p.add_argument("--memory-batch", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seq-len", type=int)
    p.add_argument("--z-dim", type=int)
    p.add_argument("--hidden-size", type=int)
    p.add_argument("--temperature", type=float, help="the dream's default temperature")
    p.add_argument("--fp16", action="store_true", help="store weights as float16 (half the file)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", default="cpu")
    p.add_argument("--tensorboard", action="store_true", default=None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dreamgym", description="Trained world models as Gymnasium environments.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("collect", help="collect real episodes with a policy")
    p.add_argument("env_id")
    p.add_argument("--out", required=True)
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--policy", choices=["random", "brownian", "agent"], default="brownian")
    p.add_argument("--agent", help="controller directory or SB3 zip (with --policy agent)")
    p.add_argument("--agent-model", help="world model directory the agent sees reality through")
    p.add_argument("--noise", type=float, default=0.1, help="exploration noise of --policy agent")
    p.add_argument("--workers", type=int, default=0, help="processes (0: every core)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, help="cap episode length")
    p.add_argument("--env-kwargs", default="{}", help="JSON kwargs for gym.make")
    p.set_defaults(func=_collect)

    p = sub.add_parser("train", help="train a world model: V, encode, M + heads")
    add_train_args(p)
    p.set_defaults(func=_train)

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
