"""Training curves of a run directory, as one PNG.

Whatever the directory (searched recursively) holds is plotted, one subplot each:

- world-model training logs ``log.jsonl`` (``dreamgym train``; rows ``{stage, step, loss, val_loss, ...}``):
  one subplot per stage (V's and M's losses differ by orders of magnitude), train and validation loss;
- CMA-ES ``cmaes_history.jsonl`` (``dreamgym train-agent --algo cmaes``): best and mean fitness per
  generation, and the re-scored best (``eval_mean`` ± ``eval_std``) where recorded;
- Dyna ``rounds.json`` (``dreamgym iterate``): dream and real returns (mean ± std) per round, and their gap.

>>> plot_run("runs/cr-iter", "curves.png")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from gymnasium.error import DependencyNotInstalled

from dreamgym.errors import DatasetError
from dreamgym.utils import atomic_write

WM_LOG, CMAES_LOG, ROUNDS = "log.jsonl", "cmaes_history.jsonl", "rounds.json"
STAGE_ORDER = {"vision": 0, "memory": 1}  # the order dreamgym train runs them


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines log. A last line cut short (a crash while appending) is skipped.

    :param path: the ``.jsonl`` file.
    """
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    rows = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines) and not text.endswith("\n"):
                continue
            raise DatasetError(f"{path}:{i} is not a JSON object ({e.msg}); expected one JSON row per line, "
                               f"as dreamgym writes them. Remove or repair that line.") from e
        if not isinstance(row, dict):
            raise DatasetError(f"{path}:{i}: expected a JSON object per line, got {type(row).__name__}.")
        rows.append(row)
    return rows


def _label(path: Path, run_dir: Path) -> str:
    rel = path.parent.relative_to(run_dir).as_posix()
    return "" if rel == "." else rel


def _series(rows: list[dict[str, Any]], x: str, y: str) -> tuple[list[float], list[float]]:
    """(xs, ys) of the rows that have a finite ``y``; a repeated ``x`` (a resumed run) keeps its last value."""
    points: dict[float, float] = {}
    for row in rows:
        xv, yv = row.get(x), row.get(y)
        if isinstance(xv, (int, float)) and isinstance(yv, (int, float)) and math.isfinite(yv):
            points[xv] = float(yv)
    xs = sorted(points)
    return xs, [points[k] for k in xs]


def _with(label: str, name: str) -> str:
    return f"{label} {name}" if label else name


def _log_scale_if_wide(ax: Any, values: list[float]) -> None:
    if values and min(values) > 0 and max(values) / min(values) > 100:
        ax.set_yscale("log")


def _plot_world_model(ax: Any, stage: str, runs: list[tuple[str, list[dict[str, Any]]]]) -> None:
    values: list[float] = []
    for label, rows in runs:
        for key, style in (("loss", "-"), ("val_loss", "--")):
            xs, ys = _series(rows, "step", key)
            if xs:
                ax.plot(xs, ys, style, marker="." if len(xs) < 30 else None, label=_with(label, key))
                values += ys
    _log_scale_if_wide(ax, values)
    ax.set(title=f"world model: {stage}", xlabel="training step", ylabel="loss")


def _plot_cmaes(ax: Any, runs: list[tuple[str, list[dict[str, Any]]]]) -> None:
    for label, rows in runs:
        for key, style in (("best", "-"), ("mean", ":")):
            xs, ys = _series(rows, "generation", key)
            if xs:
                ax.plot(xs, ys, style, label=_with(label, f"{key} of generation"))
        evals = [r for r in rows if isinstance(r.get("eval_mean"), (int, float)) and "generation" in r]
        if evals:
            ax.errorbar([r["generation"] for r in evals], [r["eval_mean"] for r in evals],
                        yerr=[r.get("eval_std", 0.0) or 0.0 for r in evals], fmt="o", capsize=3,
                        label=_with(label, "best re-scored (± std)"))
    ax.set(title="CMA-ES in the dream", xlabel="generation", ylabel="dream return")


def _plot_rounds(ax: Any, runs: list[tuple[str, list[dict[str, Any]]]]) -> None:
    for label, rows in runs:
        for where in ("dream", "real"):
            pts = [r for r in rows if isinstance(r.get(f"{where}_mean"), (int, float)) and "round" in r]
            if pts:
                ax.errorbar([r["round"] for r in pts], [r[f"{where}_mean"] for r in pts],
                            yerr=[r.get(f"{where}_std", 0.0) or 0.0 for r in pts], marker="o", capsize=3,
                            label=_with(label, f"{where} (mean ± std)"))
        xs, ys = _series(rows, "round", "gap")
        if xs:
            ax.plot(xs, ys, "--", color="grey", label=_with(label, "gap (dream - real)"))
    ax.set(title="Dyna rounds: dream vs reality", xlabel="round", ylabel="return")
    ax.xaxis.get_major_locator().set_params(integer=True)


def _read_rounds(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path} is not valid JSON ({e}); expected the rounds.json dreamgym iterate writes.") from e
    rows = data.get("rounds") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise DatasetError(f"{path}: expected {{\"rounds\": [{{\"round\": 0, \"dream_mean\": ..., ...}}, ...]}}, "
                           f"got {str(data)[:80]!r}.")
    return rows


def plot_run(run_dir: str | Path, out_png: str | Path) -> Path:
    """Plot every training log found under ``run_dir`` into one PNG (written atomically).

    :param run_dir: a world-model run (``dreamgym train --out``), a CMA-ES run, a ``dreamgym iterate`` run,
        or any folder above them.
    :param out_png: the PNG to write.
    :return: ``out_png`` as a Path.
    """
    run_dir, out_png = Path(run_dir), Path(out_png)
    if not run_dir.is_dir():
        raise DatasetError(f"No run directory at {run_dir}: expected a folder written by dreamgym train, "
                           "train-agent or iterate.")
    stages: dict[str, list[tuple[str, list[dict[str, Any]]]]] = defaultdict(list)
    for path in sorted(run_dir.rglob(WM_LOG)):
        by_stage: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in read_jsonl(path):
            by_stage[str(row.get("stage", "training"))].append(row)
        label = _label(path, run_dir)
        for stage, rows in by_stage.items():
            # dreamgym train logs to <run>/stages/<stage>/log.jsonl: the subplot already names the stage
            stages[stage].append((label.removesuffix(f"stages/{stage}").rstrip("/"), rows))
    cmaes = [(_label(p, run_dir), rows) for p in sorted(run_dir.rglob(CMAES_LOG)) if (rows := read_jsonl(p))]
    rounds = [(_label(p, run_dir), rows) for p in sorted(run_dir.rglob(ROUNDS)) if (rows := _read_rounds(p))]
    order = sorted(stages, key=lambda s: (STAGE_ORDER.get(s, len(STAGE_ORDER)), s))
    panels: list[tuple[Any, tuple[Any, ...]]] = [(_plot_world_model, (stage, stages[stage])) for stage in order]
    panels += [(_plot_cmaes, (cmaes,))] if cmaes else []
    panels += [(_plot_rounds, (rounds,))] if rounds else []
    if not panels:
        raise DatasetError(f"Nothing to plot in {run_dir}: expected (anywhere below it) a {WM_LOG} "
                           f"(dreamgym train), a {CMAES_LOG} (dreamgym train-agent --algo cmaes) or a {ROUNDS} "
                           "(dreamgym iterate) with at least one row.")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise DependencyNotInstalled("Plotting training curves needs matplotlib: pip install matplotlib") from e
    # a bare Figure on the Agg canvas: no pyplot, so no global backend switch and no GUI
    fig = Figure(figsize=(8, 3.2 * len(panels)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (draw, args) in zip(axes, panels):
        draw(ax, *args)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    fig.suptitle(run_dir.resolve().name)
    atomic_write(out_png, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    return out_png


__all__ = ["plot_run", "read_jsonl"]
