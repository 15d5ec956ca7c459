"""The dream | play | plot subcommands, on a parser built the way dreamgym.cli builds its own."""

from __future__ import annotations

import argparse
import json

import pytest
from PIL import Image

from dreamgym.errors import ConfigError, DreamgymError
from dreamgym.viz import cli as viz_cli
from dreamgym.viz.cli import register
from dreamgym.viz.video import POLICIES


def _run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="dreamgym")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)


def test_dream_writes_a_side_by_side_gif(tmp_path, model_dirs, capsys):
    out = tmp_path / "dream.gif"
    _run(["dream", "Dream-CarRacing-v0", "--out", str(out), "--model", str(model_dirs["carracing"]), "--steps", "4",
          "--side-by-side", "--temperature", "1.15", "--policy", "random", "--seed", "2", "--fps", "10"])
    with Image.open(out) as gif:
        assert gif.n_frames == 5 and gif.size == (640, 256) and gif.info["duration"] == 100
    assert "5 frames of 640x256 at 10 fps" in capsys.readouterr().out


def test_dream_errors_are_dreamgym_errors(tmp_path, model_dirs):
    with pytest.raises(ConfigError, match=r"\.gif, \.mp4"):
        _run(["dream", "Dream-Pendulum-v0", "--out", str(tmp_path / "d.webm"), "--model", str(model_dirs["pendulum"]),
              "--steps", "1"])
    with pytest.raises(SystemExit):  # argparse rejects an unknown policy before anything runs
        _run(["dream", "Dream-Pendulum-v0", "--out", "d.gif", "--policy", "greedy"])
    assert viz_cli.POLICIES == tuple(sorted(POLICIES))


def test_plot_writes_a_png_and_reports_an_empty_dir(tmp_path, capsys):
    (tmp_path / "cmaes_history.jsonl").write_text(json.dumps({"generation": 1, "best": 1.0, "mean": 0.5}) + "\n")
    _run(["plot", str(tmp_path), "--out", str(tmp_path / "c.png")])
    assert (tmp_path / "c.png").stat().st_size > 1000
    _run(["plot", str(tmp_path)])
    assert (tmp_path / "curves.png").is_file()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DreamgymError, match="Nothing to plot"):
        _run(["plot", str(tmp_path / "empty")])


def test_play_runs_headless_for_a_few_steps(model_dirs, capsys):
    _run(["play", "Dream-Pendulum-v0", "--model", str(model_dirs["pendulum"]), "--temperature", "0.5", "--fps", "0",
          "--max-steps", "3", "--scale", "2"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 3 and summary["temperature"] == 0.5
