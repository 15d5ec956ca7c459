"""CMA-ES for linear controllers in a dream: a whole generation scored in ONE batched rollout.

population × rollouts dreams advance together in one DreamVectorEnv; the candidates' weights are
one (population, num_params) tensor and act through one batched matmul. pycma's ask/tell does the
search (it minimises, so returns are negated). Resuming replays the recorded fitnesses through
pycma — exact, and nothing is pickled.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from dreamgym.agents.controller import LinearController
from dreamgym.envs.core import DreamOptionFields
from dreamgym.envs.dream_vector import DreamVectorEnv
from dreamgym.errors import ConfigError
from dreamgym.models.world_model import WorldModel, check_temperature
from dreamgym.registry import DREAMS
from dreamgym.rollout import dream_returns
from dreamgym.spaces import same_space
from dreamgym.utils import atomic_write_text

HISTORY_NAME = "cmaes_history.jsonl"
SETTINGS_NAME = "cmaes_settings.json"  # the run's config, written when it starts (cmaes.json: when it ends)
RESUME_MAY_CHANGE = ("generations", "device")  # more generations extend a run; the device changes only speed


@dataclass
class CMAESConfig(DreamOptionFields):
    """A CMA-ES run (the paper's defaults: population 64, 16 rollouts, re-score 1024 every 25).

    :param env_id: the Dream id. :param model: its world model (None: the shipped one).
    :param temperature: tau of the dream (None: the model's default).
    :param population: candidates per generation. :param rollouts: dream episodes per candidate.
    :param generations: how many generations. :param max_steps: rollout length (None: the time limit).
    :param sigma0: CMA-ES initial step size. :param eval_every: re-score the generation's best every
        this many generations, on ``eval_rollouts`` dreams. :param seed: search and dream seeds.
    :param obs_type: ``"latent"`` (z‖h, the paper) or ``"z"``. :param device: torch device.
    :param dtype: ``"float32"``, or ``"bfloat16"`` for M's matmuls (faster on CPUs with bf16 instructions).
    :param init: a controller directory whose parameters start the search (its mean) instead of zeros:
        fine-tune a controller in a new dream, e.g. the last Dyna round's in the next round's world model.
    :param eval_candidate: what is re-scored every ``eval_every`` generations and kept when its score
        is the best so far: ``"mean"``, CMA-ES's mean (the paper), or ``"best"``, the generation's
        luckiest candidate.
    :param seed_sharing: ``"all"``: every candidate meets the same dreams (common random numbers);
        ``"pairs"``: candidates 2i and 2i+1 share their dreams and other pairs get others (the paper's code).
    :param bias: the controller has a bias (False: the paper's Doom controller).
    :param discrete: ``"argmax"`` or ``"threshold"`` (one tanh output for Discrete(3), the paper's Doom).
    :param temperature_range: ``[low, high]``: each dream episode draws its tau from it.
    :param disagreement_penalty, halt_threshold, halt_penalty, termination: the dream's options
        (see :class:`~dreamgym.envs.dream.DreamEnv`); None: the model's defaults.
    """

    env_id: str = "Dream-CarRacing-v0"
    model: str | None = None
    temperature: float | None = None
    population: int = 64
    rollouts: int = 16
    generations: int = 300
    max_steps: int | None = None
    sigma0: float = 0.1
    eval_every: int = 25
    eval_rollouts: int = 1024
    seed: int = 0
    obs_type: str = field(default="latent", metadata={"choices": ("latent", "zch", "z")})
    device: str = "cpu"
    dtype: str = field(default="float32", metadata={"choices": ("float32", "bfloat16")})
    init: str | None = None
    eval_candidate: str = field(default="mean", metadata={"choices": ("mean", "best")})
    seed_sharing: str = field(default="all", metadata={"choices": ("all", "pairs")})
    bias: bool = True
    discrete: str = field(default="argmax", metadata={"choices": ("argmax", "threshold")})

    def validate(self) -> None:
        if self.env_id.split(":", 1)[-1] not in DREAMS:
            raise ConfigError(f"env_id must be a Dream id, one of {sorted(DREAMS)}; got {self.env_id!r}.")
        for name in ("population", "rollouts", "generations", "eval_every", "eval_rollouts"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.population < 4:
            raise ConfigError(f"population must be >= 4 for CMA-ES, got {self.population}.")
        if self.temperature is not None:
            check_temperature(self.temperature)
        if self.obs_type not in ("latent", "zch", "z"):
            raise ConfigError(f"A linear controller takes obs_type 'latent', 'zch' or 'z', got {self.obs_type!r}.")
        if self.eval_candidate not in ("mean", "best"):
            raise ConfigError(f"eval_candidate must be 'mean' or 'best', got {self.eval_candidate!r}.")
        if self.seed_sharing not in ("all", "pairs"):
            raise ConfigError(f"seed_sharing must be 'all' or 'pairs', got {self.seed_sharing!r}.")


def rollout_returns(
    env: DreamVectorEnv,
    controller: LinearController,
    params: torch.Tensor,
    rollouts: int,
    seeds: list[int] | np.ndarray,
    max_steps: int,
    stats: dict[str, int] | None = None,
) -> np.ndarray:
    """First-episode return of every rollout of every candidate: params (p, n) -> (p, rollouts).

    One batched rollout: env p * rollouts + r runs candidate p with seed ``seeds[r]`` (common random
    numbers: every candidate meets the same dreams, so their ranking is fairer), or ``seeds[p, r]``
    when ``seeds`` is (p, rollouts). Finished dreams leave the batch (:func:`dreamgym.rollout.dream_returns`).
    ``stats["steps"]`` (when given) receives the dream steps actually taken.
    """
    p = params.shape[0]
    if env.num_envs != p * rollouts:
        raise ConfigError(f"Expected a vector env of {p * rollouts} dreams, got {env.num_envs}.")
    grid = np.broadcast_to(np.asarray(seeds, dtype=np.int64), (p, rollouts))
    candidate = torch.arange(env.num_envs) // rollouts  # which candidate's parameters each dream uses

    def act(obs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return controller.act_rows(params[candidate[rows]], obs)

    return dream_returns(env, act, grid.reshape(-1).tolist(), max_steps, stats).reshape(p, rollouts)


class CMAESTrainer:
    """Train a LinearController in a dream with CMA-ES; checkpoints in ``out``.

    >>> trainer = CMAESTrainer(CMAESConfig("Dream-CarRacing-v0", model="runs/cr"), "agents/cr-cmaes")  # doctest: +SKIP
    >>> controller = trainer.train()  # doctest: +SKIP
    """

    def __init__(self, config: CMAESConfig, out: str | Path, model: WorldModel | None = None, progress: bool = True) -> None:
        import warnings

        with warnings.catch_warnings():  # pycma warns that matplotlib (for its plots) is missing
            warnings.simplefilter("ignore")
            import cma

        config.validate()
        self.config, self.out, self.progress = config, Path(out), progress
        dream_id = config.env_id.split(":", 1)[-1]
        source: Any = model if model is not None else (config.model or DREAMS[dream_id].pretrained)
        self.env = DreamVectorEnv(
            num_envs=config.population * config.rollouts, model=source, temperature=config.temperature,
            obs_type=config.obs_type, max_episode_steps=config.max_steps, device=config.device, dream_id=dream_id,
            dtype=config.dtype, **config.dream_kwargs(),
        )
        self.max_steps = config.max_steps or self.env.max_episode_steps
        self.controller = LinearController.for_spaces(
            self.env.single_observation_space, self.env.single_action_space, env_id=dream_id,
            obs_type=config.obs_type, world_model=str(config.model or DREAMS[dream_id].pretrained),
            bias=config.bias, discrete=config.discrete,
        )
        self._eval_env: DreamVectorEnv | None = None
        x0 = np.zeros(self.controller.num_params)
        if config.init is not None:
            start = LinearController.from_pretrained(config.init)
            if start.config.obs_dim != self.controller.config.obs_dim or not same_space(
                    start.config.action_space, self.controller.config.action_space):
                raise ConfigError(
                    f"init={config.init!r} is a controller for observations of {start.config.obs_dim} and actions "
                    f"{start.config.action_space}; this dream needs {self.controller.config.obs_dim} and "
                    f"{self.controller.config.action_space}. Start from a controller of the same dream and obs_type."
                )
            x0 = start.get_flat().astype(np.float64)
            self.controller.set_flat(x0)
        self.es = cma.CMAEvolutionStrategy(
            x0, config.sigma0,
            {"popsize": config.population, "seed": config.seed + 1, "verbose": -9},
        )
        self.generation = 0
        self.best_eval = -math.inf
        self.history: list[dict[str, Any]] = []

    # ----- resume by replay -------------------------------------------------------------------
    def load(self) -> bool:
        """Replay ``cmaes_history.jsonl`` through pycma: the search resumes exactly where it stopped."""
        path = self.out / HISTORY_NAME
        if not path.is_file():
            return False
        self._check_resume()
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        for row in rows:
            self.es.tell(self.es.ask(), [-f for f in row["fitness"]])
            self.generation = row["generation"]
            if row.get("eval_mean") is not None:
                self.best_eval = max(self.best_eval, row["eval_mean"])
        self.history = rows
        best = self.out / "controller"
        if (best / "config.json").is_file():
            self.controller = LinearController.from_pretrained(best)
        return True

    def _check_resume(self) -> None:
        """Refuse to resume with other settings: the replay would give recorded fitnesses to other candidates."""
        path = next((p for p in (self.out / SETTINGS_NAME, self.out / "cmaes.json") if p.is_file()), None)
        if path is None:
            return
        old, new = json.loads(path.read_text()), json.loads(json.dumps(asdict(self.config)))
        differ = [f"{k}: {old[k]!r} recorded, {new[k]!r} now" for k in sorted(set(old) & set(new))
                  if k not in RESUME_MAY_CHANGE and old[k] != new[k]]
        if differ:
            raise ConfigError(f"{self.out} holds a CMA-ES run made with other settings ({'; '.join(differ)}; see {path}). "
                              f"Resume it with the recorded ones (only {', '.join(RESUME_MAY_CHANGE)} may change), "
                              "or pass a new --out.")

    def _seeds(self, generation: int, n: int, stream: int) -> list[int]:
        rng = np.random.default_rng([self.config.seed, generation, stream])
        return [int(s) for s in rng.integers(0, 2**31 - 1, size=n)]

    def _generation_seeds(self) -> list[int] | np.ndarray:
        """This generation's dream seeds: (rollouts,) shared by all, or (population, rollouts) shared in pairs."""
        cfg = self.config
        if cfg.seed_sharing == "all":
            return self._seeds(self.generation, cfg.rollouts, 0)
        pairs = (cfg.population + 1) // 2
        grid = np.asarray(self._seeds(self.generation, pairs * cfg.rollouts, 0)).reshape(pairs, cfg.rollouts)
        return np.repeat(grid, 2, axis=0)[: cfg.population]

    def evaluate(self, flat: np.ndarray, rollouts: int, generation: int) -> tuple[float, float]:
        """Mean and std of one candidate's return over ``rollouts`` fresh dreams (one batch)."""
        if self._eval_env is None or self._eval_env.num_envs != rollouts:
            self._eval_env = DreamVectorEnv(
                num_envs=rollouts, model=self.env.model, temperature=self.config.temperature,
                obs_type=self.config.obs_type, max_episode_steps=self.max_steps, device=self.config.device,
                dtype=self.config.dtype, **self.config.dream_kwargs(),
            )
        params = torch.as_tensor(flat, dtype=torch.float32)[None]
        returns = rollout_returns(self._eval_env, self.controller, params, rollouts,
                                  self._seeds(generation, rollouts, 1), self.max_steps)
        return float(returns.mean()), float(returns.std())

    def train(self) -> LinearController:
        cfg = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / SETTINGS_NAME, json.dumps(asdict(cfg), sort_keys=True, indent=2) + "\n")
        bar = tqdm(total=cfg.generations, initial=self.generation, desc="cma-es", unit="gen", disable=not self.progress)
        while self.generation < cfg.generations:
            start = time.perf_counter()
            candidates = self.es.ask()
            params = torch.as_tensor(np.asarray(candidates), dtype=torch.float32)
            stats: dict[str, int] = {}
            fitness = rollout_returns(self.env, self.controller, params, cfg.rollouts,
                                      self._generation_seeds(), self.max_steps, stats).mean(axis=1)
            self.es.tell(candidates, (-fitness).tolist())
            elapsed = time.perf_counter() - start
            self.generation += 1
            row: dict[str, Any] = {
                "generation": self.generation, "fitness": fitness.tolist(), "best": float(fitness.max()),
                "mean": float(fitness.mean()), "seconds": elapsed,
                "dream_steps_per_s": stats["steps"] / elapsed,  # steps taken: finished dreams stop stepping
            }
            if self.generation % cfg.eval_every == 0 or self.generation == cfg.generations:
                # the paper scores CMA-ES's mean: the luckiest candidate's score is biased upwards
                best = self.es.mean.copy() if cfg.eval_candidate == "mean" else np.asarray(candidates[int(fitness.argmax())])
                mean, std = self.evaluate(best, cfg.eval_rollouts, self.generation)
                row.update(eval_mean=mean, eval_std=std)
                if mean > self.best_eval:
                    self.best_eval = mean
                    self.controller.set_flat(best)
                    self.controller.config.summary = {
                        "dream_score": f"{mean:.1f} ± {std:.1f} over {cfg.eval_rollouts} dreams",
                        "generation": self.generation, "population": cfg.population, "rollouts": cfg.rollouts,
                        "temperature": (self.env.model.config.default_temperature if cfg.temperature is None
                                        else cfg.temperature) if cfg.temperature_range is None
                        else f"uniform in {list(cfg.temperature_range)} per episode",
                        "scored": "CMA-ES mean" if cfg.eval_candidate == "mean" else "generation's best",
                    }
                    self.controller.save_pretrained(self.out / "controller")
            self.history.append(row)
            with open(self.out / HISTORY_NAME, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            bar.update(1)
            bar.set_postfix(best=f"{row['best']:.1f}", mean=f"{row['mean']:.1f}",
                            steps_per_s=f"{row['dream_steps_per_s']:.0f}")
        bar.close()
        atomic_write_text(self.out / "cmaes.json", json.dumps(asdict(cfg), sort_keys=True, indent=2) + "\n")
        if not (self.out / "controller" / "config.json").is_file():
            self.controller.set_flat(self.es.result.xfavorite)
            self.controller.save_pretrained(self.out / "controller")
        return self.controller
