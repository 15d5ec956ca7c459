"""Training curves from a fabricated run directory: world-model logs, CMA-ES history, Dyna rounds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from gymnasium.error import DependencyNotInstalled
from PIL import Image

from dreamgym.errors import DatasetError
from dreamgym.viz.plot import plot_run, read_jsonl


def _jsonl(path: Path, rows: list[dict], tail: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)


def _world_model_logs(run: Path) -> None:
    _jsonl(run / "stages" / "vision" / "log.jsonl",
           [{"stage": "vision", "step": s, "loss": 900 / s, "val_loss": 1000 / s, "recon": 1.0} for s in (10, 20, 30)])
    _jsonl(run / "stages" / "memory" / "log.jsonl",
           [{"stage": "memory", "step": s, "loss": 2 - s / 10, "val_loss": 2.5 - s / 10} for s in (10, 20, 30)])


def _cmaes(run: Path) -> None:
    _jsonl(run / "cmaes_history.jsonl",
           [{"generation": g, "best": g * 2.0, "mean": g * 1.0, "fitness": [g, g * 2.0], "seconds": 0.1}
            | ({"eval_mean": g * 1.5, "eval_std": 0.5} if g % 2 == 0 else {}) for g in range(1, 7)])


def _rounds(run: Path) -> None:
    rows = [{"round": k, "episodes_so_far": 10 * (k + 1), "dream_mean": 10.0 + k, "dream_std": 1.0,
             "real_mean": 5.0 + 2 * k, "real_std": 2.0, "gap": 5.0 - k} for k in range(3)]
    (run / "rounds.json").write_text(json.dumps({"config": {}, "rounds": rows}))


def test_a_run_with_every_kind_of_log_gets_one_subplot_each(tmp_path):
    run = tmp_path / "run"
    _world_model_logs(run)
    _cmaes(run / "agent")
    _rounds(run)
    out = plot_run(run, tmp_path / "plots" / "curves.png")
    assert out == tmp_path / "plots" / "curves.png" and list(out.parent.iterdir()) == [out]
    with Image.open(out) as png:
        assert png.format == "PNG" and png.size == (800, 4 * 320)  # vision, memory, CMA-ES, rounds


@pytest.mark.parametrize("make, panels", [(_world_model_logs, 2), (_cmaes, 1), (_rounds, 1)])
def test_each_kind_alone(tmp_path, make, panels):
    make(tmp_path)
    with Image.open(plot_run(tmp_path, tmp_path / "curves.png")) as png:
        assert png.size == (800, panels * 320)
        extrema = png.convert("L").getextrema()
        assert extrema[0] < 100 < extrema[1]  # something is drawn on the white page


def test_a_half_written_last_line_is_skipped_but_a_corrupt_line_is_an_error(tmp_path):
    log = tmp_path / "log.jsonl"
    _jsonl(log, [{"stage": "vision", "step": 1, "loss": 1.0}], tail='{"stage": "vis')
    assert len(read_jsonl(log)) == 1
    plot_run(tmp_path, tmp_path / "curves.png")
    _jsonl(log, [{"stage": "vision", "step": 1, "loss": 1.0}], tail="not json\n")
    with pytest.raises(DatasetError, match=r"log\.jsonl:2"):
        plot_run(tmp_path, tmp_path / "curves.png")


def test_empty_or_missing_run_dirs_are_errors(tmp_path):
    with pytest.raises(DatasetError, match="Nothing to plot"):
        plot_run(tmp_path, tmp_path / "curves.png")
    (tmp_path / "log.jsonl").write_text("")
    with pytest.raises(DatasetError, match="Nothing to plot"):
        plot_run(tmp_path, tmp_path / "curves.png")
    with pytest.raises(DatasetError, match="No run directory"):
        plot_run(tmp_path / "missing", tmp_path / "curves.png")
    (tmp_path / "log.jsonl").unlink()
    (tmp_path / "rounds.json").write_text('{"rounds": 3}')
    with pytest.raises(DatasetError, match="rounds"):
        plot_run(tmp_path, tmp_path / "curves.png")
    assert not (tmp_path / "curves.png").exists()


def test_without_matplotlib_says_what_to_install(tmp_path, monkeypatch):
    _cmaes(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(DependencyNotInstalled, match="pip install matplotlib"):
        plot_run(tmp_path, tmp_path / "curves.png")
