"""Iterative training (Dyna; the paper's section 5): collect -> world model -> agent -> reality, repeated.

Round 0 collects with brownian actions; every later round collects with the previous round's agent
plus exploration noise, retrains the world model on all data so far, retrains the agent in the new
dream and scores it in reality. Every finished step is kept, so a re-run continues.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from dreamgym.agents.cmaes import CMAESConfig, CMAESTrainer
from dreamgym.data.collect import CollectConfig, collect
from dreamgym.errors import ConfigError
from dreamgym.evaluate import evaluate
from dreamgym.registry import dream_spec_for_env
from dreamgym.train.recipes import RecipeConfig, train_world_model
from dreamgym.utils import atomic_write_text


@dataclass
class IterateConfig:
    """A Dyna run.

    :param env_id: the real env (one with a registered dream). :param rounds: how many rounds.
    :param episodes: episodes collected per round. :param noise: exploration noise of the agent's data.
    :param recipe: world-model training. :param cmaes: agent training (env_id and model are set per round).
    :param eval_episodes: real and dream episodes scored per round. :param workers: processes.
    :param device: torch device the world models train on (CMA-ES: ``cmaes.device``).
    :param warm_start: rounds after the first continue the last round's world model (V kept, M and the
        heads trained ``recipe.memory.steps`` more steps on all data) and start CMA-ES from its controller,
        instead of starting both from scratch.
    """

    env_id: str = "CarRacing-v3"
    rounds: int = 3
    episodes: int = 100
    noise: float = 0.1
    max_steps: int | None = None
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    cmaes: CMAESConfig = field(default_factory=CMAESConfig)
    eval_episodes: int = 20
    workers: int = 0
    seed: int = 0
    warm_start: bool = False
    device: str = "cpu"


def iterate(cfg: IterateConfig, out: str | Path, progress: bool = True) -> list[dict[str, Any]]:
    """Run (or continue) the rounds; return one row of numbers per round, also in ``out/rounds.json``."""
    spec = dream_spec_for_env(cfg.env_id)
    if spec is None:
        raise ConfigError(f"iterate needs a real env with a registered dream; {cfg.env_id!r} has none.")
    if cfg.rounds < 1:
        raise ConfigError(f"rounds must be >= 1, got {cfg.rounds}.")
    out = Path(out)
    check_settings(cfg, out)
    rows: list[dict[str, Any]] = []
    data_dirs: list[str] = []
    for k in range(cfg.rounds):
        data, wm, agent = out / f"round{k}" / "data", out / f"round{k}" / "world_model", out / f"round{k}" / "agent"
        collect_cfg = CollectConfig(cfg.env_id, out=str(data), episodes=cfg.episodes, workers=cfg.workers,
                                    seed=cfg.seed + 1_000_000 * k, max_steps=cfg.max_steps)
        if k > 0:
            prev = out / f"round{k - 1}"
            collect_cfg = replace(collect_cfg, policy="agent", agent=str(prev / "agent" / "controller"),
                                  agent_model=str(prev / "world_model"), noise=cfg.noise)
        collect(collect_cfg, progress=progress)
        data_dirs.append(str(data))
        if not (wm / "config.json").is_file():
            recipe = cfg.recipe
            if cfg.warm_start and k > 0:
                recipe = replace(recipe, init_from=str(out / f"round{k - 1}" / "world_model"), train_vision=False)
            train_world_model(data_dirs, wm, recipe, resume=(wm / "stages").exists(), device=cfg.device,
                              progress=progress)
        if not (agent / "controller" / "config.json").is_file() or not (agent / "cmaes.json").is_file():
            init = str(out / f"round{k - 1}" / "agent" / "controller") if cfg.warm_start and k > 0 else cfg.cmaes.init
            trainer = CMAESTrainer(replace(cfg.cmaes, env_id=spec.id, model=str(wm), seed=cfg.seed + k, init=init),
                                   agent, progress=progress)
            trainer.load()
            trainer.train()
        score_path = out / f"round{k}" / "eval.json"
        if score_path.is_file():
            score = json.loads(score_path.read_text())
        else:
            score = evaluate(agent, cfg.eval_episodes, temperature=cfg.cmaes.temperature, workers=cfg.workers,
                             seed=cfg.seed + 10_000, out=score_path)
        rows.append({"round": k, "episodes_so_far": cfg.episodes * (k + 1), "dream_mean": score["dream"]["mean"],
                     "dream_std": score["dream"]["std"], "real_mean": score["real"]["mean"],
                     "real_std": score["real"]["std"], "gap": score["gap"]})
        atomic_write_text(out / "rounds.json", json.dumps({"config": asdict(cfg), "rounds": rows}, indent=2,
                                                          sort_keys=True, default=str) + "\n")
    return rows


SETTINGS_NAME = "iterate.json"
# more rounds extend a run; workers change only how fast (episode i is seeded seed + i in any worker)
MAY_CHANGE = ("rounds", "workers", "device", "cmaes.device")  # the devices, too, change only how fast


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"recipe": {"seq_len": 8}}`` -> ``{"recipe.seq_len": 8}``: every setting named by its path."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
    return out


def check_settings(cfg: IterateConfig, out: Path) -> None:
    """Record the run's settings in ``out/iterate.json``; a re-run with other settings is refused, naming them.

    Its data, world models, agents and scores were made with the recorded settings: continuing with
    others would report the new settings on top of old results.
    """
    now = json.loads(json.dumps(asdict(cfg), default=str))
    path = out / SETTINGS_NAME
    recorded = None
    if path.is_file():
        recorded = json.loads(path.read_text())
    elif (out / "rounds.json").is_file():  # a run from before iterate.json: rounds.json carries its config
        recorded = json.loads((out / "rounds.json").read_text()).get("config")
    if recorded is not None:
        # a setting newer than the recorded run reads as its default there (what the run was made with)
        old, new = {**_flat(json.loads(json.dumps(asdict(IterateConfig()), default=str))), **_flat(recorded)}, _flat(now)
        differ = [f"{k}: {old.get(k, '(unset)')!r} recorded, {new.get(k, '(unset)')!r} now"
                  for k in sorted(set(old) | set(new)) if k not in MAY_CHANGE and old.get(k) != new.get(k)]
        if differ:
            raise ConfigError(
                f"{out} holds an iterate run made with other settings ({'; '.join(differ)}). Its data, models and "
                f"scores were made with the recorded ones (in {path}). Re-run with those (only "
                f"{' and '.join(MAY_CHANGE)} may change), or pass a new --out."
            )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(now, indent=2, sort_keys=True) + "\n")


def format_rounds(rows: list[dict[str, Any]]) -> str:
    lines = ["round  episodes  dream (mean ± std)    real (mean ± std)     gap"]
    for r in rows:
        lines.append(f"{r['round']:>5}  {r['episodes_so_far']:>8}  {r['dream_mean']:9.1f} ± {r['dream_std']:<8.1f}"
                     f"  {r['real_mean']:9.1f} ± {r['real_std']:<8.1f}  {r['gap']:8.1f}")
    return "\n".join(lines)
