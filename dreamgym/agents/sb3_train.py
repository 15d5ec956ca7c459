"""Any Stable-Baselines3 algorithm trained in a dream, watched in reality while it learns."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecMonitor

from dreamgym.agents.sb3_io import ALGOS
from dreamgym.envs.core import OBS_TYPES, DreamOptionFields
from dreamgym.errors import ConfigError
from dreamgym.registry import DREAMS
from dreamgym.rollout import run_episodes
from dreamgym.agents.sb3 import DreamVecEnv
from dreamgym.spaces import space_to_dict
from dreamgym.utils import atomic_write_text

OFF_POLICY_BOX = ("sac", "td3", "ddpg")
KEEP = ("last", "best-dream")


@dataclass
class SB3Config(DreamOptionFields):
    """An SB3 run in a dream.

    :param env_id: the Dream id. :param algo: ``ppo``, ``a2c``, ``sac``, ``td3``, ``ddpg`` or ``dqn``.
    :param steps: total dream steps. :param n_envs: dreams stepped together.
    :param model: the world model (None: the shipped one). :param temperature: tau (None: default).
    :param obs_type: ``"latent"``, ``"z"`` or ``"pixels"`` (CnnPolicy).
    :param eval_real_every: evaluate in the REAL env every this many steps (0: never).
    :param eval_real_episodes: real episodes per evaluation. :param algo_kwargs: for the algorithm.
    :param eval_dream_every: score the policy every this many steps on ``eval_dream_episodes`` dream episodes,
        the same ones each time (seeds ``eval_dream_seed`` + i, deterministic actions, one batch), and log
        ``dream/mean_return`` (0: never). Dreams are cheap: 128 Doom episodes take a few seconds.
    :param keep: which policy becomes the agent: ``"last"``, or ``"best-dream"``, the one that scored best on
        those dream episodes (the paper's CMA-ES keeps its best-scored mean the same way). The other is
        saved in ``out/last`` or ``out/best-dream``, an agent directory of its own.
    :param max_steps: dream episode length (None: the model's time limit); SB3 bootstraps a cut episode
        (``TimeLimit.truncated``).
    :param temperature_range, disagreement_penalty, halt_threshold, halt_penalty, termination: the dream's
        options against exploitation (None: the model's default), as for CMA-ES.
    """

    env_id: str = "Dream-CarRacing-v0"
    algo: str = field(default="ppo", metadata={"choices": tuple(ALGOS)})
    steps: int = 1_000_000
    n_envs: int = 64
    model: str | None = None
    temperature: float | None = None
    obs_type: str = field(default="latent", metadata={"choices": OBS_TYPES})
    seed: int = 0
    eval_real_every: int = 0
    eval_real_episodes: int = 3
    device: str = "cpu"
    algo_kwargs: dict[str, Any] = field(default_factory=dict)
    max_steps: int | None = None
    eval_dream_every: int = 0
    eval_dream_episodes: int = 128
    eval_dream_seed: int = 10_000
    keep: str = field(default="last", metadata={"choices": KEEP})


def check_algo_fits(algo: str, action_space: spaces.Space) -> None:
    algo = algo.lower()
    if algo not in ALGOS:
        raise ConfigError(f"algo must be one of {sorted(ALGOS)}, got {algo!r}.")
    if algo in OFF_POLICY_BOX and not isinstance(action_space, spaces.Box):
        raise ConfigError(f"{algo.upper()} needs a continuous (Box) action space; this dream's is {action_space}.")
    if algo == "dqn" and not isinstance(action_space, spaces.Discrete):
        raise ConfigError(f"DQN needs a Discrete action space; this dream's is {action_space}. Try ppo or sac.")


class RealEvalCallback(BaseCallback):
    """Every ``every`` steps, run the agent in the real env and log ``real/mean_return``.

    Users watch transfer happen while the agent trains only in the dream.
    """

    def __init__(self, make_env: Callable[[], gym.Env], every: int, episodes: int = 3, seed: int = 10_000,
                 verbose: int = 1) -> None:
        super().__init__(verbose)
        self.make_env, self.every, self.episodes, self.seed = make_env, every, episodes, seed
        self.history: list[dict[str, float]] = []
        self._env: gym.Env | None = None
        self._next = every

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next += self.every
            self.evaluate()
        return True

    def evaluate(self) -> dict[str, float]:
        if self._env is None:
            self._env = self.make_env()
        returns = run_episodes(self.model, self._env, self.episodes, self.seed)
        row = {"timesteps": int(self.num_timesteps), "mean": float(returns.mean()), "std": float(returns.std())}
        self.history.append(row)
        self.logger.record("real/mean_return", row["mean"])
        self.logger.record("real/std_return", row["std"])
        if self.verbose:
            print(f"[real env] {row['timesteps']} dream steps: return {row['mean']:.1f} ± {row['std']:.1f}")
        return row

    def _on_training_end(self) -> None:
        if self._env is not None:
            self._env.close()


class DreamEvalCallback(BaseCallback):
    """Every ``every`` steps (at the first rollout from then on), and at the end, score the policy on the same
    ``episodes`` dream episodes (one batch, reset with ``seed``, deterministic actions) and log
    ``dream/mean_return``; keep a copy of the best-scoring policy.

    The same dreams each time (common random numbers) make the scores of two checkpoints a paired comparison.
    ``best_state`` holds a copy of the best policy's ``state_dict`` (in memory; nothing is written).
    """

    def __init__(self, make_env: Callable[[], Any], every: int, episodes: int, seed: int, verbose: int = 1) -> None:
        super().__init__(verbose)
        self.make_env, self.every, self.episodes, self.seed = make_env, every, episodes, seed
        self.history: list[dict[str, float]] = []
        self.best: dict[str, float] | None = None
        self.best_state: dict[str, Any] | None = None
        self._env: Any = None
        self._next = every

    def _on_rollout_start(self) -> None:
        # here, between updates: the policy scored is the one that then collects (and, at the end, is saved)
        if self.num_timesteps >= self._next:
            self._next = (self.num_timesteps // self.every + 1) * self.every
            self.evaluate()

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        if not self.history or self.history[-1]["timesteps"] != self.num_timesteps:
            self.evaluate()  # the final policy too: "best" is then chosen among every scored one
        self._env.close()

    def evaluate(self) -> dict[str, float]:
        import numpy as np

        from dreamgym.rollout import dream_returns, predicting

        if self._env is None:
            self._env = self.make_env()
        returns = dream_returns(self._env, predicting(self.model, self.episodes), self.seed)
        if not np.all(np.isfinite(returns)):
            raise FloatingPointError(f"The dream returned non-finite returns at {self.num_timesteps} steps.")
        row = {"timesteps": int(self.num_timesteps), "mean": float(returns.mean()), "std": float(returns.std())}
        self.history.append(row)
        self.logger.record("dream/mean_return", row["mean"])
        if self.best is None or row["mean"] > self.best["mean"]:
            self.best = row
            self.best_state = {k: v.detach().clone() for k, v in self.model.policy.state_dict().items()}
        if self.verbose:
            print(f"[dream] {row['timesteps']} steps: return {row['mean']:.1f} ± {row['std']:.1f} over "
                  f"{self.episodes} episodes (best {self.best['mean']:.1f} at {self.best['timesteps']})")
        return row


def train_sb3(cfg: SB3Config, out: str | Path, progress: bool = True, callbacks: list[BaseCallback] | None = None
              ) -> BaseAlgorithm:
    """Train ``cfg.algo`` on a DreamVecEnv; save ``{algo}-{env_id}.zip`` (huggingface_sb3 naming) + agent.json."""
    from dreamgym.envs.real import make_real

    dream_id = cfg.env_id.split(":", 1)[-1]
    if dream_id not in DREAMS:
        raise ConfigError(f"env_id must be a Dream id, one of {sorted(DREAMS)}; got {cfg.env_id!r}.")
    if cfg.keep not in KEEP:
        raise ConfigError(f"keep must be one of {list(KEEP)}, got {cfg.keep!r}.")
    if cfg.keep == "best-dream" and cfg.eval_dream_every <= 0:
        raise ConfigError("keep='best-dream' chooses among the policies scored in the dream: set eval_dream_every "
                          "(--eval-dream-every N) too, e.g. 50000.")
    world_model = cfg.model or DREAMS[dream_id].pretrained
    limit = {} if cfg.max_steps is None else {"max_episode_steps": cfg.max_steps}
    venv = DreamVecEnv(dream_id, n_envs=cfg.n_envs, model=world_model, temperature=cfg.temperature,
                       obs_type=cfg.obs_type, device=cfg.device, **limit, **cfg.dream_kwargs())
    check_algo_fits(cfg.algo, venv.action_space)
    temperature = float(venv.dream.temperature)  # before learning: a tau range makes it one per env
    policy = "CnnPolicy" if cfg.obs_type == "pixels" else "MlpPolicy"
    # VecMonitor records episode returns, so SB3's logger shows rollout/ep_rew_mean for the dream
    agent = ALGOS[cfg.algo.lower()](policy, VecMonitor(venv), seed=cfg.seed, verbose=0, device=cfg.device,
                                    **cfg.algo_kwargs)
    calls = list(callbacks or [])
    real_cb = None
    if cfg.eval_real_every > 0:
        real_cb = RealEvalCallback(lambda: make_real(dream_id, model=world_model, obs_type=cfg.obs_type,
                                                     action_low=cfg.action_low, action_high=cfg.action_high),
                                   cfg.eval_real_every, cfg.eval_real_episodes)
        calls.append(real_cb)
    out = Path(out)
    name = f"{cfg.algo.lower()}-{dream_id}.zip"
    dream_cb = None
    if cfg.eval_dream_every > 0:
        from dreamgym.envs.dream_vector import DreamVectorEnv

        dream_cb = DreamEvalCallback(
            lambda: DreamVectorEnv(num_envs=cfg.eval_dream_episodes, model=venv.dream.model, temperature=cfg.temperature,
                                   obs_type=cfg.obs_type, dream_id=dream_id, device=cfg.device, **limit,
                                   **cfg.dream_kwargs()),
            cfg.eval_dream_every, cfg.eval_dream_episodes, cfg.eval_dream_seed)
        calls.append(dream_cb)
    agent.learn(total_timesteps=cfg.steps, callback=calls, progress_bar=progress)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"algo": cfg.algo.lower(), "env_id": dream_id, "obs_type": cfg.obs_type, "world_model": str(world_model),
            "temperature": temperature, "config": asdict(cfg),
            "max_episode_steps": venv.dream.max_episode_steps,
            "action_space": space_to_dict(venv.action_space),  # the Box it acts in (narrowed by action_low/high)
            "real_eval": real_cb.history if real_cb else [],
            **({"dream_eval": dream_cb.history} if dream_cb else {})}
    if dream_cb is None:
        agent.save(out / name)
        _write_agent_json(out, meta)
        return agent
    # both policies are kept: the chosen one as the agent, the other in out/last or out/best-dream
    last_row, best_row = {"kept": "last", **dream_cb.history[-1]}, {"kept": "best-dream", **dream_cb.best}
    last_state = {k: v.detach().clone() for k, v in agent.policy.state_dict().items()}
    for kind, state, row in (("last", last_state, last_row), ("best-dream", dream_cb.best_state, best_row)):
        where = out if kind == cfg.keep else out / kind
        where.mkdir(exist_ok=True)
        agent.policy.load_state_dict(state)
        agent.save(where / name)
        _write_agent_json(where, {**meta, "policy": row})
    agent.policy.load_state_dict(dream_cb.best_state if cfg.keep == "best-dream" else last_state)
    return agent


def _write_agent_json(out: Path, meta: dict[str, Any]) -> None:
    atomic_write_text(out / "agent.json", json.dumps(meta, sort_keys=True, indent=2, default=float) + "\n")
