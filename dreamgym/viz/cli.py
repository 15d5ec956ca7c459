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

from dreamgym.argtypes import nonneg_float, nonneg_int, positive_float, positive_int, scale, temperature
from dreamgym.errors import ConfigError
from dreamgym.rollout import BASELINES

POLICIES = tuple(sorted(BASELINES))  # "brownian", "random": the baselines a video can play
MAX_VIDEO_BYTES = 4 * 2**30  # dream holds every frame in memory until it writes the video


def check_video_memory(steps: int, scale: int, side_by_side: bool) -> None:
    """Refuse a video whose frames would not fit in memory, before the first step.

    The estimate is an upper bound: a 128x128 dream frame (state dreams' bars; pixel dreams are 64x64) enlarged
    ``scale`` times, three times as wide beside reality (the widest real render, CarRacing's, adds 1.5 widths).
    """
    need = (steps + 1) * (128 * scale) ** 2 * 3 * (3 if side_by_side else 1)
    if need > MAX_VIDEO_BYTES:
        raise ConfigError(f"--steps {steps} at --scale {scale}{' with --side-by-side' if side_by_side else ''} needs up "
                          f"to {need / 2**30:.1f} GiB of frames in memory, more than {MAX_VIDEO_BYTES / 2**30:g} GiB; "
                          "lower --steps or --scale.")


def _dream(args: argparse.Namespace) -> None:
    from dreamgym.viz.video import rollout_frames, video_fps, write_video

    check_video_memory(args.steps, args.scale, args.side_by_side)
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
    p.add_argument("--temperature", type=temperature, help="the dream's tau (default: the model's)")
    p.add_argument("--side-by-side", action="store_true", help="play the same actions in the real env, shown beside")
    p.add_argument("--steps", type=positive_int, default=300, help="at most this many steps")
    p.add_argument("--seed", type=nonneg_int, default=0, help="seeds the dream, the policy and the real env")
    p.add_argument("--fps", type=positive_float, help="video frame rate (default: the env's, at most 50)")
    p.add_argument("--scale", type=scale, default=4, help="enlarge the 64x64 dream frame this many times (1-16)")
    p.set_defaults(func=_dream)

    p = subparsers.add_parser("play", help="drive a dream with the keyboard (Tab: the real env; [ ]: tau)")
    p.add_argument("dream_id", help="a Dream id, e.g. Dream-CarRacing-v0")
    p.add_argument("--model", help="world model (directory, pretrained name or Hub id); default: the shipped one")
    p.add_argument("--temperature", type=temperature, help="the starting tau (default: the model's)")
    p.add_argument("--fps", type=nonneg_float, help="steps per second (default: the env's; 0: as fast as possible)")
    p.add_argument("--scale", type=scale, default=8, help="window: the 64x64 frame enlarged this many times (1-16)")
    p.add_argument("--max-steps", type=positive_int, help="stop after this many steps (default: never)")
    p.add_argument("--seed", type=nonneg_int, help="seeds the first reset (default: a random one)")
    p.set_defaults(func=_play)

    p = subparsers.add_parser("plot", help="plot a run's training curves (world model, CMA-ES, Dyna rounds)")
    p.add_argument("run_dir", help="a directory written by dreamgym train, train-agent or iterate")
    p.add_argument("--out", help="the PNG (default: RUN_DIR/curves.png)")
    p.set_defaults(func=_plot)


__all__ = ["register"]
