"""dreamgym.rollout: the batched dream rollout equals stepping a DreamVectorEnv to the end; the one-env runner."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from dreamgym.agents.controller import LinearController
from dreamgym.envs.dream_vector import DreamVectorEnv
from dreamgym.rollout import (
    RandomAgent,
    RandomPolicy,
    acting,
    baseline_policy,
    dream_returns,
    play,
    predicting,
    run_episode,
    run_episodes,
)

from .conftest import make_tiny_model

N, STEPS, SEED = 12, 25, 3


def _dream(name: str) -> DreamVectorEnv:
    model = make_tiny_model(name)
    with torch.no_grad():  # p(done) near 0.5: the dreams end at many different steps
        model.heads.termination.bias.fill_(-0.05 if name == "doom" else 0.0)
    return DreamVectorEnv(num_envs=N, model=model, max_episode_steps=STEPS)


def _agent(env: DreamVectorEnv, kind: str) -> object:
    if kind == "random":
        return RandomAgent(env.single_action_space, seed=7)
    controller = LinearController.for_spaces(env.single_observation_space, env.single_action_space)
    controller.set_flat(np.random.default_rng(1).normal(size=controller.num_params))
    return controller


def _stepped_to_the_end(env: DreamVectorEnv, agent: object) -> tuple[np.ndarray, np.ndarray]:
    """The reference: the vector env stepped until every dream ended once, later rewards ignored; also the
    actions taken by dreams still in their first episode, one row per step."""
    obs, _ = env.reset(seed=SEED)
    total, alive, taken = np.zeros(N), np.ones(N, dtype=bool), []
    while alive.any():
        actions, _ = agent.predict(obs, deterministic=True)
        taken.append(np.asarray(actions, np.float64).reshape(N, -1)[alive])
        obs, reward, terminated, truncated, _ = env.step(actions)
        total += reward * alive
        alive &= ~(terminated | truncated)
    return total, np.concatenate(taken)


@pytest.mark.parametrize("kind", ["controller", "random"])
@pytest.mark.parametrize("name", ["doom", "carracing"])  # a Discrete and a Box dream
def test_batched_rollout_equals_stepping_the_vector_env_to_the_end(name, kind):
    env = _dream(name)
    reference, taken = _stepped_to_the_end(env, _agent(env, kind))
    assert len(set(np.round(reference, 6))) > 3  # the dreams really end at different steps
    full, dropped = {}, {}
    kept = dream_returns(env, predicting(_agent(env, kind), N), SEED, stats=full, drop_finished=False)
    np.testing.assert_array_equal(kept, reference)  # the same batch size: bit for bit
    fast = dream_returns(env, predicting(_agent(env, kind), N), SEED, stats=dropped)
    np.testing.assert_allclose(fast, reference, rtol=1e-6, atol=1e-5)  # smaller batches: BLAS rounding only
    assert dropped["steps"] < full["steps"] <= N * STEPS  # finished dreams left the batch
    for stats in (full, dropped):  # the actions of running dreams only, however the batch was stepped
        np.testing.assert_allclose(stats["actions"]["mean"], taken.mean(0), atol=1e-4)
        np.testing.assert_allclose(stats["actions"]["std"], taken.std(0), atol=1e-4)
    assert taken.std(0).min() > 0.01  # the actions vary, so counting finished dreams' steps would show


def test_batched_rollout_takes_seeds_per_dream_rows_and_a_shorter_limit():
    env = _dream("carracing")
    seen: list[torch.Tensor] = []

    def act(obs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        seen.append(rows.clone())
        return torch.zeros(len(rows), 3)

    returns = dream_returns(env, act, [SEED + i for i in range(N)], max_steps=4)
    assert returns.shape == (N,) and returns.dtype == np.float64
    assert torch.equal(seen[0], torch.arange(N)) and len(seen) <= 4
    np.testing.assert_array_equal(returns, dream_returns(env, act, SEED, max_steps=4))  # s: dream i gets s + i


def test_play_stops_at_the_end_or_at_max_steps():
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=0)
    steps = list(play(env, RandomPolicy(env.action_space, np.random.default_rng(0)), obs))
    assert (steps[-1].terminated or steps[-1].truncated) and not any(s.terminated for s in steps[:-1])
    obs, _ = env.reset(seed=0)
    assert len(list(play(env, lambda o: 0, obs, max_steps=3))) == 3


def test_run_episode_sums_the_rewards_of_one_seeded_episode():
    env = gym.make("Pendulum-v1", max_episode_steps=20)
    policy = baseline_policy("brownian", env.action_space, np.random.default_rng(0))
    obs, _ = env.reset(seed=5)
    by_hand = 0.0
    for _ in range(20):
        obs, reward, *_ = env.step(policy(obs))
        by_hand += float(reward)
    again = baseline_policy("brownian", env.action_space, np.random.default_rng(0))
    assert run_episode(env, again, 5) == by_hand
    agent = RandomAgent(env.action_space, seed=0)
    returns = run_episodes(agent, env, 2, seed=5)
    agent.space.seed(0)
    assert returns.shape == (2,) and returns[0] == run_episode(env, acting(agent), 5)
