"""``dreamgym dream | play | plot``: the subcommands of :mod:`dreamgym.viz`, added by :func:`register`.

>>> import argparse
>>> parser = argparse.ArgumentParser(prog="dreamgym")
>>> register(parser.add_subparsers(dest="command", required=True))
>>> parser.parse_args(["plot", "runs/cr", "--out", "curves.png"]).out
'curves.png'
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

POLICIES = ("brownian", "random")  # kept equal to dreamgym.viz.video.POLICIES without importing Pillow here


def _dream(args: argparse.Namespace) -> None:
    from dreamgym.viz.video import rollout_frames, video_fps, write_video

    frames = rollout_frames(args.dream_id, model=args.model, agent=args.agent, policy=args.policy,
                            temperature=args.temperature, steps=args.steps, seed=args.seed,
                            side_by_side=args.side_by_side, scale=args.scale)
    fps = video_fps(args.dream_id, args.fps)
    path = write_video(frames, args.out, fps)
    h, w = frames[0].shape[:2]
    print(f"wrote {path}: {len(frames)} frames of {w}x{h} at {fps:g} fps")


def _play(args: argparse.Namespace) -> None:
    from dreamgym.viz.play import play

    summary = play(args.dream_id, model=args.model, temperature=args.temperature, fps=args.fps, scale=args.scale,
                   max_steps=args.max_steps, seed=args.seed)
    print(json.dumps(summary, indent=2))


def _plot(args: argparse.Namespace) -> None:
    from dreamgym.viz.plot import plot_run

    out = args.out or str(Path(args.run_dir) / "curves.png")
    print(f"wrote {plot_run(args.run_dir, out)}")


def register(subparsers: Any) -> None:
    """Add the ``dream``, ``play`` and ``plot`` subcommands; each sets ``func`` to its handler.

    :param subparsers: what ``ArgumentParser.add_subparsers()`` returned.
    """
    p = subparsers.add_parser("dream", help="write a video of a dream episode (optionally beside reality)")
    p.add_argument("dream_id", help="a Dream id, e.g. Dream-CarRacing-v0")
    p.add_argument("--out", required=True, help="the video: .gif (Pillow) or .mp4 (imageio + imageio-ffmpeg)")
    p.add_argument("--model", help="world model (directory, pretrained name or Hub id); default: the agent's, "
                                   "else the shipped one")
    p.add_argument("--agent", help="controller dir, CMA-ES run dir or SB3 zip acting in the dream "
                                   "(default: --policy)")
    p.add_argument("--policy", choices=POLICIES, default="brownian", help="actions when no --agent is given")
    p.add_argument("--temperature", type=float, help="the dream's tau (default: the model's)")
    p.add_argument("--side-by-side", action="store_true", help="play the same actions in the real env, shown beside")
    p.add_argument("--steps", type=int, default=300, help="at most this many steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fps", type=float, help="video frame rate (default: the env's, at most 50)")
    p.add_argument("--scale", type=int, default=4, help="enlarge the 64x64 dream frame this many times")
    p.set_defaults(func=_dream)

    p = subparsers.add_parser("play", help="drive a dream with the keyboard (Tab: the real env; [ ]: tau)")
    p.add_argument("dream_id", help="a Dream id, e.g. Dream-CarRacing-v0")
    p.add_argument("--model", help="world model (directory, pretrained name or Hub id); default: the shipped one")
    p.add_argument("--temperature", type=float, help="the starting tau (default: the model's)")
    p.add_argument("--fps", type=float, help="steps per second (default: the env's; 0: as fast as possible)")
    p.add_argument("--scale", type=int, default=8, help="window: the 64x64 frame enlarged this many times")
    p.add_argument("--max-steps", type=int, help="stop after this many steps")
    p.add_argument("--seed", type=int)
    p.set_defaults(func=_play)

    p = subparsers.add_parser("plot", help="plot a run's training curves (world model, CMA-ES, Dyna rounds)")
    p.add_argument("run_dir", help="a directory written by dreamgym train, train-agent or iterate")
    p.add_argument("--out", help="the PNG (default: RUN_DIR/curves.png)")
    p.set_defaults(func=_plot)


__all__ = ["register"]
