"""Ship a run: its world model, agent and scores as one pretrained-style folder (``dreamgym ship``).

The folder is what ``pretrained/<name>`` holds and ``dreamgym push`` uploads: the world model's config
and weights, the agent (a linear controller as ``controller/``, an SB3 agent as ``agent/``: its zip and
agent.json, loaded without pickle; either names the shipped dream by ``name``), the ``eval*.json``
results with paths relative to the folder, a dream-vs-real GIF, and both model cards regenerated from
those numbers. It is built beside ``out`` and swapped in only once it loads strictly, so a failed ship
leaves the folder that was there.

>>> ship(ShipConfig("runs/carracing/round2/world_model", "pretrained/carracing",  # doctest: +SKIP
...                 controller="runs/carracing/round2/agent", evals={"eval.json": "runs/carracing/round2/eval.json"}))
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dreamgym.checkpoint import read_json_object
from dreamgym.errors import ConfigError

# a run's training leftovers: the shipped folder holds only what loads, plays and documents the model
NOT_SHIPPED = ("stages", "latents", "recipe.json", "README.md", "*.tmp")
VIDEO_NAME = "dream-vs-real.gif"
AGENT_DIRS = ("controller", "agent")  # a shipped linear controller; a shipped SB3 agent (zip + agent.json)


@dataclass
class ShipConfig:
    """What to ship, and where.

    :param world_model: the world-model directory (a run's, or a shipped folder to update in place).
    :param out: the folder to write (replaced as a whole once the new one loads).
    :param controller: the agent: a controller directory or CMA-ES run directory, shipped as
        ``out/controller``, or an SB3 run (zip + agent.json), shipped as ``out/agent``. It replaces any
        agent ``world_model`` holds (None: keep the one it holds, if any).
    :param name: what the shipped agent's metadata records as its world model, e.g. ``"carracing"``
        for ``pretrained/carracing`` (None: ``out``'s folder name).
    :param evals: shipped file name -> ``dreamgym evaluate`` JSON; the card lists them in this order,
        then any ``eval*.json`` the folder already holds.
    :param temperature: tau of the GIF's dream (None: the model's default).
    :param video_steps: steps of the dream-vs-real GIF, played by the agent (0: no GIF).
    :param video_seed: its episode seed. :param fps: its frame rate.
    :param termination: record this rule as the dream's default termination (None: unchanged).
    :param real_sample_z: record whether the real twin draws z from V's posterior by default (the paper's
        code) or takes its mean (None: unchanged); ship what the agent's scores were measured with.
    :param action_high: record this narrower Box's upper bounds as the dream's default (``action_high`` of
        :class:`~dreamgym.models.world_model.DreamOptions`, which the real twin follows too; None: unchanged).
    :param summary: entries added to the world model's recorded summary (and so to its card).
    """

    world_model: str
    out: str
    controller: str | None = None
    name: str | None = None
    evals: dict[str, str] = field(default_factory=dict)
    temperature: float | None = None
    video_steps: int = 300
    video_seed: int = 7
    fps: float = 25.0
    termination: str | None = field(default=None, metadata={"choices": ("threshold", "sample")})
    real_sample_z: bool | None = None
    action_high: list[float] | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if not (Path(self.world_model) / "config.json").is_file():
            raise ConfigError(f"world_model {self.world_model!r} is not a world-model directory (no config.json); "
                              "pass a trained run's world_model folder.")
        for name, src in self.evals.items():
            if Path(name).name != name or not name.startswith("eval") or not name.endswith(".json"):
                raise ConfigError(f"eval file name {name!r}: expected a plain name eval*.json, e.g. eval.json.")
            if not Path(src).is_file():
                raise ConfigError(f"eval {name}: {src!r} is not a file; pass a dreamgym evaluate JSON.")
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise ConfigError(f"out {self.out!r} is a file; ship writes a folder. Pass another path.")
        if self.video_steps < 0 or not self.fps > 0:
            raise ConfigError(f"video_steps must be >= 0 and fps > 0, got {self.video_steps} and {self.fps}.")


def ship(cfg: ShipConfig) -> Path:
    """Write ``cfg.out`` (see the module's docstring); return its path."""
    from dreamgym.backends import load_backend

    cfg.validate()
    out = Path(cfg.out)
    tmp = out.with_name(out.name + ".ship.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(cfg.world_model, tmp, ignore=shutil.ignore_patterns(*NOT_SHIPPED))
    try:
        source = _ship_controller(cfg, tmp)
        evals = _ship_evals(cfg, tmp, source)
        model = load_backend(tmp)  # any backend: config.json's "backend" picks the class
        if cfg.termination is not None:
            model.config.dream.termination = cfg.termination
        if cfg.action_high is not None:
            from dreamgym.envs.core import dream_options

            model.config.dream.action_high = [float(x) for x in cfg.action_high]
            dream_options(model, None)  # bounds that do not fit the model's action space fail before anything ships
        if cfg.real_sample_z is not None:
            if not hasattr(model.config, "real_sample_z"):
                raise ConfigError(f"real_sample_z: the {type(model).__name__} backend has no V posterior to draw "
                                  "z from; leave it out.")
            model.config.real_sample_z = cfg.real_sample_z
        model.config.summary.update(cfg.summary)
        model.save_pretrained(tmp)  # the config the GIF's dream plays by
        (tmp / "README.md").unlink()
        media = [VIDEO_NAME] if _ship_video(cfg, tmp) else [m for m in (VIDEO_NAME,) if (tmp / m).is_file()]
        model.save_pretrained(tmp, model_card_kwargs={"eval_results": evals, "media": media})
        load_backend(tmp)  # strict loads before the new folder replaces the old
        _check_agent(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap(tmp, out)
    return out


def _ship_controller(cfg: ShipConfig, tmp: Path) -> tuple[Path, str] | None:
    """Copy the agent into ``tmp``, its metadata naming the shipped dream: a controller (or CMA-ES run) as
    ``controller/``, an SB3 zip (with the ``agent.json`` train-agent writes beside it) as ``agent/``.
    Return its source and the folder it shipped as; None when no new agent ships."""
    from dreamgym.agents import copy_agent, locate_agent
    from dreamgym.agents.controller import LinearController

    if cfg.controller is None:
        if (tmp / "controller" / "config.json").is_file():  # the kept controller: its card regenerated too
            LinearController.from_pretrained(tmp / "controller").save_pretrained(tmp / "controller")
        return None

    kind, path = locate_agent(Path(cfg.controller))
    name = cfg.name or Path(cfg.out).name  # the shipped dream the agent sees reality through
    for folder in AGENT_DIRS:  # an agent of the old world model would not fit the new one
        shutil.rmtree(tmp / folder, ignore_errors=True)
    if kind == "ensemble":  # its members, gathered again under the shipped dream's name
        from dreamgym.agents.ensemble import member_paths, write_ensemble

        write_ensemble(member_paths(path), tmp / "agent", world_model=name)
        return Path(path).resolve(), "agent"
    copy_agent(path, tmp / ("agent" if kind == "sb3" else "controller"), name)
    return Path(path).resolve(), "agent" if kind == "sb3" else "controller"


def shipped_agent(folder: str | Path) -> Path | None:
    """The agent a shipped folder holds (``controller/`` or ``agent/``), or None."""
    for name in AGENT_DIRS:
        if (Path(folder) / name).is_dir():
            return Path(folder) / name
    return None


def _ship_evals(cfg: ShipConfig, tmp: Path, shipped: tuple[Path, str] | None) -> list[dict[str, Any]]:
    """Write the given results with folder-relative paths; return every eval*.json: given ones first, then the
    folder's own, eval.json before the rest (so shipping a folder onto itself keeps its headline score first)."""
    from dreamgym.evaluate import ship_result

    for name, src in cfg.evals.items():
        result = read_json_object(src)
        path = Path(str(result.get("agent", {}).get("path", "")))
        mine = shipped is not None and path.exists() and path.resolve() == shipped[0]
        ship_result(result, tmp / name, agent=shipped[1] if mine else None)
    names = list(cfg.evals) + sorted((p.name for p in tmp.glob("eval*.json") if p.name not in cfg.evals),
                                     key=lambda n: (n != "eval.json", n))
    return [read_json_object(tmp / n) for n in names]


def _check_agent(tmp: Path) -> None:
    """The shipped agent loads strictly and acts in the shipped dream for a few steps."""
    import numpy as np

    from dreamgym.evaluate import agent_info, evaluate_dream

    agent = shipped_agent(tmp)
    if agent is None:
        return
    returns = evaluate_dream(agent_info(agent, model=str(tmp)), episodes=1, max_steps=2)
    if not np.isfinite(returns).all():
        raise ConfigError(f"the agent to ship got a non-finite return {returns} in the shipped dream.")


def _ship_video(cfg: ShipConfig, tmp: Path) -> bool:
    """The agent's actions played in the dream (left, from V's latent of reality's first frame) and in the
    real env (right); False when there is no GIF to make."""
    agent = shipped_agent(tmp)
    if cfg.video_steps == 0 or agent is None or cfg.controller is None:
        return False
    from dreamgym.evaluate import agent_info
    from dreamgym.viz.video import rollout_frames, write_video

    dream_id = agent_info(agent, model=str(tmp)).env_id
    frames = rollout_frames(dream_id, agent=str(agent), model=str(tmp), temperature=cfg.temperature,
                            steps=cfg.video_steps, seed=cfg.video_seed, side_by_side=True, scale=2)
    write_video(frames, tmp / VIDEO_NAME, fps=cfg.fps)
    return True


def _swap(tmp: Path, out: Path) -> None:
    """Put ``tmp`` in ``out``'s place; the old folder is removed only after the rename."""
    old = out.with_name(out.name + ".ship.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def pipeline_minutes(world_models: list[str | Path], cmaes_runs: list[str | Path]) -> float:
    """Wall minutes the world models trained (their recorded ``summary.training``) and the CMA-ES runs searched
    (their ``cmaes_history.jsonl``): the cost a card reports."""
    seconds = 0.0
    for wm in dict.fromkeys(map(Path, world_models)):
        training = read_json_object(Path(wm) / "config.json").get("summary", {}).get("training", {})
        seconds += sum(v for k, v in training.items() if k.endswith("_s"))
    for run in dict.fromkeys(map(Path, cmaes_runs)):
        seconds += sum(json.loads(line)["seconds"] for line in (Path(run) / "cmaes_history.jsonl").open())
    return round(seconds / 60, 1)
