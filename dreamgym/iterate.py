"""Iterative training (Dyna; the paper's section 5): collect -> world model -> agent -> reality, repeated.

Round 0 collects with brownian actions; every later round collects with the previous round's agent
plus exploration noise, retrains the world model on all data so far, retrains the agent in the new
dream and scores it in reality. Every finished step is kept, so a re-run continues.

The world model is the paper's VAE + MDN-RNN (``backend="mdnrnn"``) or an RSSM (``"rssm"``); the agent
a CMA-ES controller (``algo="cmaes"``) or Dreamer's imagination actor-critic (``"dreamer"``), trained
``train_ratio`` imagined steps per real step collected. ``backend="rssm", algo="dreamer"`` is
Dreamer's own outer loop: collect -> train the RSSM -> act.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from dreamgym.agents.cmaes import CMAESConfig, CMAESTrainer
from dreamgym.agents.dreamer import STATE_NAME as DREAMER_STATE
from dreamgym.agents.dreamer import DreamerConfig, DreamerTrainer
from dreamgym.data.collect import CollectConfig, collect
from dreamgym.data.latents import scan_dataset
from dreamgym.errors import ConfigError
from dreamgym.evaluate import evaluate
from dreamgym.registry import dream_spec_for_env
from dreamgym.train.recipes import RecipeConfig, train_world_model
from dreamgym.train.rssm_recipe import RSSMRecipe, train_rssm
from dreamgym.utils import atomic_write_text


Schedule = TypeVar("Schedule")


def at(value: Schedule | list[Schedule], k: int) -> Schedule:
    """Round ``k``'s value of a schedule: a number for every round, or a list with one per round whose last
    value holds for the rounds past its end (``[120, 60]``: 120 episodes in round 0, then 60 each)."""
    return value[min(k, len(value) - 1)] if isinstance(value, list) else value


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
    :param warm_start_agent: False: a warm round's CMA-ES still starts from ``cmaes.init`` and its dreamer from
        ``dreamer.init`` (only the world model continues).
    :param vision_steps: / :param memory_steps: the world model's V and M steps (None: ``recipe``'s).
    :param generations: CMA-ES generations (None: ``cmaes.generations``).
    :param collect_seed: round k's collection seeds from this (None: ``seed + 1_000_000 * k``).
    :param agent_seed: round k's CMA-ES seed (None: ``seed + k``).
    :param eval_seed: round k's scoring seed (None: ``seed + 10_000``).
    :param backend: the world model: ``"mdnrnn"`` (V + M, trained by ``recipe``) or ``"rssm"`` (trained by
        ``rssm``, one stage: ``memory_steps`` sets its steps; a warm round continues the last round's RSSM,
        every weight, through :attr:`RSSMRecipe.init_from`).
    :param algo: the agent: ``"cmaes"`` (``cmaes``) or ``"dreamer"`` (``dreamer``; env_id, model, seed and
        updates are set per round; with ``warm_start_agent`` a warm round's actor starts from the last round's).
    :param train_ratio: dreamer: imagined steps trained per real step collected. Round k, which collected
        ``real_steps`` steps, trains ``ceil(train_ratio * real_steps / (dreamer.num_envs * dreamer.horizon))``
        updates (each imagines ``num_envs * horizon`` steps). The default 512 is DreamerV3's number (which
        counts replayed world-model steps, each starting a 15-step imagination, so its agent sees 15 times
        more): ten 200-step Pendulum episodes give 267 updates at the default 256 dreams x 15 steps.
    :param rssm: RSSM training (``backend="rssm"``). :param dreamer: Dreamer's settings (``algo="dreamer"``).

    ``episodes``, ``eval_episodes``, ``warm_start``, ``vision_steps``, ``memory_steps``, ``generations``
    and the seeds are schedules: one value for every round, or a list of one per round (see :func:`at`).
    """

    env_id: str = "CarRacing-v3"
    rounds: int = 3
    episodes: int | list[int] = 100
    noise: float = 0.1
    max_steps: int | None = None
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    cmaes: CMAESConfig = field(default_factory=CMAESConfig)
    eval_episodes: int | list[int] = 20
    workers: int = 0
    seed: int = 0
    warm_start: bool | list[bool] = False
    device: str = "cpu"
    warm_start_agent: bool = True
    vision_steps: int | list[int] | None = None
    memory_steps: int | list[int] | None = None
    generations: int | list[int] | None = None
    collect_seed: int | list[int] | None = None
    agent_seed: int | list[int] | None = None
    eval_seed: int | list[int] | None = None
    backend: str = field(default="mdnrnn", metadata={"choices": ("mdnrnn", "rssm")})
    algo: str = field(default="cmaes", metadata={"choices": ("cmaes", "dreamer")})
    train_ratio: float = 512.0
    rssm: RSSMRecipe = field(default_factory=RSSMRecipe)
    dreamer: DreamerConfig = field(default_factory=lambda: DreamerConfig(env_id=""))

    def validate(self) -> None:
        if self.rounds < 1:
            raise ConfigError(f"rounds must be >= 1, got {self.rounds}.")
        for name, choices in (("backend", ("mdnrnn", "rssm")), ("algo", ("cmaes", "dreamer"))):
            if getattr(self, name) not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {getattr(self, name)!r}.")
        if isinstance(self.train_ratio, bool) or not (math.isfinite(self.train_ratio) and self.train_ratio > 0):
            raise ConfigError(f"train_ratio must be a finite number > 0 (imagined steps per real step, e.g. 512), "
                              f"got {self.train_ratio!r}.")
        if self.algo == "dreamer":
            self.dreamer.validate()
        if self.backend == "rssm" and self.vision_steps is not None:
            raise ConfigError("vision_steps sets the MDN-RNN's V; an rssm trains in one stage: drop vision_steps and "
                              "set its steps with memory_steps.")
        for name in SCHEDULES:
            value = getattr(self, name)
            if isinstance(value, list) and not value:
                raise ConfigError(f"{name}: a schedule is a value or a non-empty list of one per round, got [].")

    def warm(self, k: int) -> bool:
        """Round k continues round k - 1's world model."""
        return k > 0 and bool(at(self.warm_start, k))

    def dreamer_updates(self, real_steps: int) -> int:
        """Dreamer updates of a round that collected ``real_steps``: ``train_ratio`` imagined steps per real one."""
        per_update = self.dreamer.num_envs * self.dreamer.horizon
        return max(1, math.ceil(self.train_ratio * real_steps / per_update))


SCHEDULES = ("episodes", "eval_episodes", "warm_start", "vision_steps", "memory_steps", "generations",
             "collect_seed", "agent_seed", "eval_seed")


def iterate(cfg: IterateConfig, out: str | Path, progress: bool = True) -> list[dict[str, Any]]:
    """Run (or continue) the rounds; return one row of numbers per round, also in ``out/rounds.json``."""
    spec = dream_spec_for_env(cfg.env_id)
    if spec is None:
        raise ConfigError(f"iterate needs a real env with a registered dream; {cfg.env_id!r} has none.")
    cfg.validate()
    out = Path(out)
    check_settings(cfg, out)
    rows: list[dict[str, Any]] = []
    data_dirs: list[str] = []
    for k in range(cfg.rounds):
        data_dirs.append(str(_collect_round(cfg, out, k, progress)))
        _train_world_model_round(cfg, out, k, data_dirs, progress)
        _train_agent_round(cfg, out, k, spec.id, progress)
        score = _score_round(cfg, out, k)
        rows.append({"round": k, "episodes_so_far": sum(at(cfg.episodes, j) for j in range(k + 1)),
                     "dream_mean": score["dream"]["mean"], "dream_std": score["dream"]["std"],
                     "real_mean": score["real"]["mean"], "real_std": score["real"]["std"], "gap": score["gap"]})
        if cfg.algo == "dreamer":
            rows[-1]["dreamer_updates"] = _round_updates(cfg, out, k)
        atomic_write_text(out / "rounds.json", json.dumps({"config": asdict(cfg), "rounds": rows}, indent=2,
                                                          sort_keys=True, default=str) + "\n")
    return rows


def _collect_round(cfg: IterateConfig, out: Path, k: int, progress: bool) -> Path:
    """Round 0 with brownian actions; later rounds with the last round's agent plus noise."""
    data = out / f"round{k}" / "data"
    seed = cfg.seed + 1_000_000 * k if cfg.collect_seed is None else at(cfg.collect_seed, k)
    collect_cfg = CollectConfig(cfg.env_id, out=str(data), episodes=at(cfg.episodes, k), workers=cfg.workers,
                                seed=seed, max_steps=cfg.max_steps)
    if k > 0:
        prev = out / f"round{k - 1}"
        collect_cfg = replace(collect_cfg, policy="agent", agent=str(prev / "agent" / "controller"),
                              agent_model=str(prev / "world_model"), noise=cfg.noise)
    collect(collect_cfg, progress=progress)
    return data


def _train_world_model_round(cfg: IterateConfig, out: Path, k: int, data_dirs: list[str], progress: bool) -> None:
    """The world model on all data so far (skipped once saved; resumed when interrupted)."""
    wm = out / f"round{k}" / "world_model"
    if (wm / "config.json").is_file():
        return
    if cfg.backend == "rssm":
        _train_rssm_round(cfg, out, k, data_dirs, progress)
        return
    recipe = cfg.recipe
    if cfg.vision_steps is not None:
        recipe = replace(recipe, vision=replace(recipe.vision, steps=at(cfg.vision_steps, k)))
    if cfg.memory_steps is not None:
        recipe = replace(recipe, memory=replace(recipe.memory, steps=at(cfg.memory_steps, k)))
    if cfg.warm(k):
        recipe = replace(recipe, init_from=str(out / f"round{k - 1}" / "world_model"), train_vision=False)
    train_world_model(data_dirs, wm, recipe, resume=(wm / "stages").exists(), device=cfg.device, progress=progress)


def _train_rssm_round(cfg: IterateConfig, out: Path, k: int, data_dirs: list[str], progress: bool) -> None:
    """The RSSM on all data so far; a warm round starts from round k - 1's (resumed when interrupted)."""
    wm = out / f"round{k}" / "world_model"
    recipe = cfg.rssm
    if cfg.memory_steps is not None:
        recipe = replace(recipe, train=replace(recipe.train, steps=at(cfg.memory_steps, k)))
    if cfg.warm(k):
        recipe = replace(recipe, init_from=str(out / f"round{k - 1}" / "world_model"))
    train_rssm(data_dirs, wm, recipe, resume=(wm / "stages").exists(), device=cfg.device, progress=progress)


def _train_agent_round(cfg: IterateConfig, out: Path, k: int, dream_id: str, progress: bool) -> None:
    """CMA-ES in round k's dream (skipped once finished; resumed when interrupted)."""
    if cfg.algo == "dreamer":
        _train_dreamer_round(cfg, out, k, dream_id, progress)
        return
    agent = out / f"round{k}" / "agent"
    if (agent / "controller" / "config.json").is_file() and (agent / "cmaes.json").is_file():
        return
    warm = cfg.warm(k) and cfg.warm_start_agent
    init = str(out / f"round{k - 1}" / "agent" / "controller") if warm else cfg.cmaes.init
    seed = cfg.seed + k if cfg.agent_seed is None else at(cfg.agent_seed, k)
    cmaes = replace(cfg.cmaes, env_id=dream_id, model=str(out / f"round{k}" / "world_model"), seed=seed, init=init)
    if cfg.generations is not None:
        cmaes = replace(cmaes, generations=at(cfg.generations, k))
    trainer = CMAESTrainer(cmaes, agent, progress=progress)
    trainer.load()
    trainer.train()


def _round_updates(cfg: IterateConfig, out: Path, k: int) -> int:
    """Round k's dreamer updates, from the real steps it collected."""
    _, episodes = scan_dataset(out / f"round{k}" / "data")
    return cfg.dreamer_updates(sum(len(ep) for ep in episodes))


def _train_dreamer_round(cfg: IterateConfig, out: Path, k: int, dream_id: str, progress: bool) -> None:
    """Dreamer in round k's dream, ``train_ratio`` imagined steps per real step of the round (skipped once
    finished; resumed when interrupted)."""
    agent = out / f"round{k}" / "agent"
    updates = _round_updates(cfg, out, k)
    controller = agent / "controller" / "config.json"
    if (agent / DREAMER_STATE).is_file() and controller.is_file():
        if json.loads(controller.read_text()).get("summary", {}).get("updates") == updates:
            return
    seed = cfg.seed + k if cfg.agent_seed is None else at(cfg.agent_seed, k)
    warm = cfg.warm(k) and cfg.warm_start_agent  # the last round's actor goes on, as CMA-ES's mean does
    init = str(out / f"round{k - 1}" / "agent" / "controller") if warm else cfg.dreamer.init
    dreamer = replace(cfg.dreamer, env_id=dream_id, model=str(out / f"round{k}" / "world_model"), seed=seed,
                      updates=updates, init=init)
    trainer = DreamerTrainer(dreamer, agent)
    trainer.load()
    trainer.train(progress=progress)


def _score_round(cfg: IterateConfig, out: Path, k: int) -> dict[str, Any]:
    """Round k's agent in its dream and in reality (kept in ``round{k}/eval.json``)."""
    path = out / f"round{k}" / "eval.json"
    if path.is_file():
        return json.loads(path.read_text())
    seed = cfg.seed + 10_000 if cfg.eval_seed is None else at(cfg.eval_seed, k)
    temperature = cfg.dreamer.temperature if cfg.algo == "dreamer" else cfg.cmaes.temperature
    return evaluate(out / f"round{k}" / "agent", at(cfg.eval_episodes, k), temperature=temperature,
                    workers=cfg.workers, seed=seed, out=path)


SETTINGS_NAME = "iterate.json"
# more rounds extend a run; workers change only how fast (episode i is seeded seed + i in any worker)
MAY_CHANGE = ("rounds", "workers", "device", "cmaes.device", "dreamer.device")  # the devices, too, change only how fast


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
        data = json.loads((out / "rounds.json").read_text())
        recorded = data.get("config") if isinstance(data, dict) else None  # (a list: some script's own rows)
    if recorded is not None:
        # a setting newer than the recorded run reads as its default there (what the run was made with)
        defaults = _flat(json.loads(json.dumps(asdict(IterateConfig()), default=str)))
        old, new = {**defaults, **_flat(recorded)}, _flat(now)
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
