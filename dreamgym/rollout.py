"""Rollouts: play a policy until the episode ends and sum the rewards; and the baseline policies.

- :func:`dream_returns`: every dream of a :class:`~dreamgym.envs.dream_vector.DreamVectorEnv` to the
  end of its first episode, as one batch from which finished dreams drop out (CMA-ES, ``evaluate``).
- :func:`play`, :func:`run_episode`, :func:`run_episodes`: one env, step by step (real episodes,
  collection, videos).
- :class:`RandomPolicy`, :class:`BrownianPolicy` (collection, videos) and :class:`RandomAgent`
  (``evaluate``'s ``"random"``): the baselines, seeded as before.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, SupportsFloat

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from dreamgym.errors import ConfigError

if TYPE_CHECKING:
    from dreamgym.envs.dream_vector import DreamVectorEnv

BASELINES = ("random", "brownian")

Policy = Callable[[Any], Any]
"""One observation -> one action."""
RowsAct = Callable[[torch.Tensor, torch.Tensor], Any]
"""(observations of the dreams still running, their rows in the whole batch) -> their actions."""


# ----- one env, step by step ------------------------------------------------------------------
class Step(NamedTuple):
    """One step of :func:`play`: the action taken and what ``env.step`` returned for it."""

    action: Any
    obs: Any
    reward: SupportsFloat
    terminated: bool
    truncated: bool
    info: dict[str, Any]


def play(env: gym.Env, policy: Policy, obs: Any, max_steps: int | None = None) -> Iterator[Step]:
    """Step ``env`` from observation ``obs`` with ``policy`` until the episode ends (or ``max_steps`` steps)."""
    for _ in itertools.count() if max_steps is None else range(max_steps):
        action = policy(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        yield Step(action, obs, reward, terminated, truncated, info)
        if terminated or truncated:
            return


def run_episode(env: gym.Env, policy: Policy, seed: int | None) -> float:
    """The return of one episode of ``policy`` in ``env``, reset with ``seed``."""
    obs, _ = env.reset(seed=seed)
    total = 0.0
    for step in play(env, policy, obs):
        total += float(step.reward)
    return total


def acting(agent: Any) -> Policy:
    """An agent's deterministic action for one observation (controllers and SB3 share ``predict``)."""
    return lambda obs: agent.predict(obs, deterministic=True)[0]


def episode_policy(agent: Any, seed: int) -> Policy:
    """:func:`acting` for the episode reset with ``seed``; a :class:`RandomAgent` is seeded with it first,
    so that episode's draws depend on its seed only, not on which worker plays it or what it played before."""
    if isinstance(agent, RandomAgent):
        agent.space.seed(seed)
    return acting(agent)


def run_episodes(agent: Any, env: gym.Env, episodes: int, seed: int) -> np.ndarray:
    """Returns of ``episodes`` episodes with seeds seed, seed + 1, ... (deterministic actions)."""
    policy = acting(agent)
    return np.asarray([run_episode(env, policy, seed + i) for i in range(episodes)])


# ----- many dreams, batched -------------------------------------------------------------------
def dream_returns(
    env: DreamVectorEnv,
    act: RowsAct,
    seed: int | Sequence[int],
    max_steps: int | None = None,
    stats: dict[str, Any] | None = None,
    drop_finished: bool = True,
) -> np.ndarray:
    """First-episode return of every dream of ``env`` (float64, ``(num_envs,)``), reset with ``seed`` first.

    ``seed`` is passed to ``env.reset`` (an int s: dream i gets s + i; or one seed per dream). Each
    dream runs until it terminates or has taken ``max_steps`` steps (None: the env's time limit).
    ``act(obs, rows)`` gets the running dreams' observations (a tensor) and their rows in ``env`` and
    returns their actions. The dream batch is stepped directly; with ``drop_finished`` finished dreams
    leave it (``DreamBatch.subset``), else they run on with their later rewards ignored. The noise is
    per dream, so the returns are those of stepping ``env`` to the end; dropping changes only the
    batch size, which can move float32 results by an ulp (BLAS picks kernels by batch size).
    ``stats["steps"]`` (when given) receives the dream steps actually taken, and ``stats["actions"]``
    the mean and std of each action dimension over the steps of dreams still running (float64; a
    Discrete action is its index), which shows how an agent drives the dream, e.g. how hard it presses
    the gas.
    """
    env.reset(seed=seed if isinstance(seed, (int, np.integer)) else [int(s) for s in seed])
    limit = env.max_episode_steps if max_steps is None else max_steps
    batch = env.dream_batch()
    total = torch.zeros(env.num_envs, dtype=torch.float64)
    rows = torch.arange(env.num_envs)  # which dream each row of the (shrinking) batch is
    running = torch.ones(env.num_envs, dtype=torch.bool)  # per row of the batch
    steps = 0
    moments = np.zeros((3, 0))  # count, sum and sum of squares of each action dimension
    for _ in range(limit):
        steps += batch.num_envs
        actions = act(torch.as_tensor(batch.observations()), rows)
        if isinstance(actions, torch.Tensor):
            actions = actions.cpu().numpy()
        if stats is not None:
            live = np.asarray(actions, np.float64).reshape(batch.num_envs, -1)[running.cpu().numpy()]
            if moments.shape[1] == 0:
                moments = np.zeros((3, live.shape[1]))
            moments += [np.full(live.shape[1], len(live)), live.sum(0), (live**2).sum(0)]
        reward, terminated = batch.step(batch.adapter.batch(actions, batch.num_envs))
        total[rows] += torch.where(running, reward.double().cpu(), 0.0)
        running &= ~(terminated.cpu() | (batch.t.cpu() >= limit))
        if not bool(running.any()):
            break
        if drop_finished and not bool(running.all()):
            batch, rows, running = batch.subset(running), rows[running], running[running]
    if stats is not None:
        stats["steps"] = steps
        count = np.maximum(moments[0], 1)
        mean = moments[1] / count
        std = np.sqrt(np.maximum(moments[2] / count - mean**2, 0.0))
        stats["actions"] = {"mean": [round(float(m), 4) for m in mean], "std": [round(float(v), 4) for v in std]}
    return total.numpy()


def predicting(agent: Any, num_envs: int) -> RowsAct:
    """``agent.predict``'s deterministic actions for the running dreams of a batch of ``num_envs``.

    A :class:`RandomAgent` draws for all ``num_envs`` dreams every step and keeps the running ones'
    draws: the same draws as when every dream was stepped to the end, so its seeded scores hold.
    """
    if isinstance(agent, RandomAgent):
        return lambda obs, rows: agent.sample(num_envs)[rows.numpy()]
    return lambda obs, rows: agent.predict(obs.numpy(), deterministic=True)[0]


# ----- baseline policies ----------------------------------------------------------------------
def is_single(obs: np.ndarray) -> bool:
    """One observation (a latent vector or an HWC frame), not a batch of them."""
    return obs.ndim == 1 or (obs.ndim == 3 and obs.shape[-1] == 3)


class RandomAgent:
    """Uniformly random actions (``space.sample()``), SB3-style: the baseline every score is read against."""

    def __init__(self, space: spaces.Space, seed: int = 0) -> None:
        self.space = space
        self.space.seed(seed)

    def sample(self, n: int) -> np.ndarray:
        """``n`` actions, stacked."""
        return np.stack([self.space.sample() for _ in range(n)])

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, None]:
        obs = np.asarray(observation)
        if is_single(obs):
            return np.asarray(self.space.sample()), None
        return self.sample(len(obs)), None


class ConstantAgent:
    """One action, always: ``"constant:0,0,0"`` (a Box action, comma-separated) or ``"constant:2"`` (Discrete).

    A probe of how a dream listens to actions: in CarRacing, doing nothing earns -100 in reality (the time
    penalty, no tiles), so a dream that pays more for it moves the car on its own."""

    PREFIX = "constant:"

    def __init__(self, space: spaces.Space, spec: str) -> None:
        self.space, self.action = space, parse_constant(spec, space)

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, None]:
        obs = np.asarray(observation)
        if is_single(obs):
            return self.action.copy(), None
        return np.repeat(self.action[None], len(obs), axis=0), None


def parse_constant(spec: str, space: spaces.Space) -> np.ndarray:
    """The action of a ``"constant:..."`` agent, checked against ``space``; a ConfigError says what fits."""
    text = spec[len(ConstantAgent.PREFIX):] if spec.startswith(ConstantAgent.PREFIX) else spec
    if isinstance(space, spaces.Discrete):
        expected = f"an integer in [{space.start}, {space.start + space.n - 1}], e.g. 'constant:{space.start}'"
    elif isinstance(space, spaces.Box) and len(space.shape) == 1:
        expected = (f"{space.shape[0]} comma-separated numbers within [{', '.join(f'{x:g}' for x in space.low)}] .. "
                    f"[{', '.join(f'{x:g}' for x in space.high)}], e.g. 'constant:{','.join(['0'] * space.shape[0])}'")
    else:
        raise ConfigError(f"A constant agent needs a Discrete or a flat Box action space, got {space}.")
    try:
        if isinstance(space, spaces.Discrete):
            action = np.asarray(int(text.strip()), dtype=space.dtype)
        else:
            action = np.asarray([float(x) for x in text.split(",")], dtype=space.dtype)
    except ValueError:
        action = None
    if action is None or not np.all(np.isfinite(action)) or not space.contains(action):
        raise ConfigError(f"A constant agent for {space} needs {expected}; got {spec!r}.")
    return action


class RandomPolicy:
    """Uniformly random actions drawn from ``rng``: one observation -> one action."""

    def __init__(self, space: spaces.Space, rng: np.random.Generator) -> None:
        self.space, self.rng = space, rng

    def __call__(self, obs: Any) -> Any:
        if isinstance(self.space, spaces.Discrete):
            return int(self.space.start + self.rng.integers(self.space.n))
        return self.rng.uniform(self.space.low, self.space.high).astype(self.space.dtype)


class BrownianPolicy:
    """Actions that drift smoothly: a random walk in [-1, 1] mapped onto the bounds.

    Purely random actions make CarRacing data nearly useless (the car jitters in place); a walk
    holds steering and gas long enough to drive somewhere. Discrete: the action persists and
    switches with probability ``sigma``.
    """

    def __init__(self, space: spaces.Space, rng: np.random.Generator, sigma: float = 0.15) -> None:
        self.space, self.rng, self.sigma = space, rng, sigma
        if isinstance(space, spaces.Box):
            self.x = rng.uniform(-1, 1, size=space.shape)
        else:
            self.x = int(rng.integers(space.n))

    def __call__(self, obs: Any) -> Any:
        space = self.space
        if isinstance(space, spaces.Discrete):
            if self.rng.random() < self.sigma:
                self.x = int(self.rng.integers(space.n))
            return int(space.start + self.x)
        self.x = np.clip(self.x + self.sigma * self.rng.normal(size=space.shape), -1, 1)
        low, high = space.low, space.high
        return (low + (self.x + 1) / 2 * (high - low)).astype(space.dtype)


def check_baseline(name: str) -> None:
    """A ConfigError unless ``name`` is one of :data:`BASELINES`."""
    if name not in BASELINES:
        raise ConfigError(f"policy must be one of {BASELINES} (or pass agent=<controller dir, CMA-ES run or SB3 zip>), "
                          f"got {name!r}.")


def baseline_policy(name: str, space: spaces.Space, rng: np.random.Generator, sigma: float = 0.15) -> Policy:
    """The baseline ``name`` (``"random"`` or ``"brownian"``, walk step ``sigma``) acting in ``space``."""
    check_baseline(name)
    return RandomPolicy(space, rng) if name == "random" else BrownianPolicy(space, rng, sigma)


__all__ = ["BASELINES", "BrownianPolicy", "Policy", "RandomAgent", "RandomPolicy", "RowsAct", "Step", "acting",
           "baseline_policy", "check_baseline", "dream_returns", "episode_policy", "play", "predicting", "run_episode", "run_episodes"]
