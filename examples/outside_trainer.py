"""A stranger's check of a shipped dream: train with the public Gymnasium API alone, then score in reality.

Run: python examples/outside_trainer.py --trainer cmaes   (pycma's ask/tell on a linear policy)
     python examples/outside_trainer.py --trainer ppo     (Stable-Baselines3's PPO with its defaults)
     python examples/outside_trainer.py --trainer ppo --train-in real   (the same PPO and budget in reality,
                                                                          for comparison; slow)

Nothing here uses dreamgym's trainers: the dream is `gym.make_vec("Dream-CarRacing-v0")` (or SB3's
`make_vec_env` over `gym.make`) with the shipped defaults, and the agent is scored in
`dreamgym.make_real(...)`, the real env seen through the same world model. This is the issue's
robustness check ("a controller that someone else trains with a modest budget in the shipped dream,
through the public API alone, must also transfer"), kept as a script so its numbers can be re-run.
"""

import time
from dataclasses import dataclass, field

import cma
import gymnasium as gym
import numpy as np

import dreamgym
from dreamgym.argtypes import parse_cli


@dataclass
class Args:
    trainer: str = field(default="cmaes", metadata={"choices": ["cmaes", "ppo"]})
    """pycma on a linear tanh policy, or SB3's PPO with its default hyperparameters"""
    dream: str = "Dream-CarRacing-v0"
    """the registered dream (its shipped model and defaults)"""
    model: str | None = None
    """a world-model folder in place of the shipped one (gym.make's model=; to check a dream before shipping it)"""
    seed: int = 0
    """the trainer's seed"""
    generations: int = 100
    """CMA-ES generations"""
    population: int = 16
    """CMA-ES candidates per generation"""
    rollouts: int = 8
    """dream episodes per candidate"""
    steps: int = 200_000
    """PPO's dream steps"""
    n_envs: int = 8
    """PPO's dreams (SB3 DummyVecEnv over gym.make)"""
    episodes: int = 20
    """real episodes to score the agent on"""
    real_seed: int = 1000
    """seed of the first real episode"""
    train_in: str = field(default="dream", metadata={"choices": ["dream", "real"]})
    """where PPO trains: the dream, or (for comparison, same budget) the real twin, which sees reality through the
    same world model (``dreamgym.make_real``); slow: real CarRacing steps at a few hundred per second"""


def kwargs(args: Args) -> dict:
    return {"model": args.model} if args.model else {}


def policy_dim(obs_dim: int, act_space: gym.Space) -> int:
    """How many numbers a linear policy needs: a weight row and a bias per action dimension (Box) or per action
    (Discrete)."""
    if isinstance(act_space, gym.spaces.Discrete):
        return int(act_space.n) * (obs_dim + 1)
    if isinstance(act_space, gym.spaces.Box):
        return act_space.shape[0] * (obs_dim + 1)
    raise TypeError(f"a linear policy needs a Box or Discrete action space, got {act_space}")


def linear_policy(theta: np.ndarray, obs_dim: int, act_space: gym.Space):
    """Box: a = squash(W·obs + b) into the action box. Discrete: a = argmax(W·obs + b), one score per action.
    theta is W and b flattened."""
    n = int(act_space.n) if isinstance(act_space, gym.spaces.Discrete) else act_space.shape[0]
    w, b = theta[: n * obs_dim].reshape(n, obs_dim), theta[n * obs_dim :]
    if isinstance(act_space, gym.spaces.Discrete):
        return lambda obs: np.argmax(obs @ w.T + b, axis=-1)
    lo, hi = act_space.low, act_space.high

    def act(obs: np.ndarray) -> np.ndarray:
        return lo + (np.tanh(obs @ w.T + b) + 1.0) * 0.5 * (hi - lo)

    return act


def train_cmaes(args: Args):
    envs = gym.make_vec(args.dream, num_envs=args.population * args.rollouts, **kwargs(args))
    obs_dim, act_space = envs.single_observation_space.shape[0], envs.single_action_space
    dim = policy_dim(obs_dim, act_space)
    es = cma.CMAEvolutionStrategy(np.zeros(dim), 0.1, {"popsize": args.population, "seed": args.seed + 1, "verbose": -9})
    best = (-np.inf, None)
    for gen in range(args.generations):
        thetas = es.ask()
        acts = [linear_policy(np.asarray(t), obs_dim, act_space) for t in thetas]
        obs, _ = envs.reset(seed=args.seed * 1_000_003 + gen)
        ret = np.zeros(envs.num_envs)
        alive = np.ones(envs.num_envs, bool)
        while alive.any():
            a = np.concatenate([acts[i](obs[i * args.rollouts : (i + 1) * args.rollouts]) for i in range(len(acts))])
            obs, r, term, trunc, _ = envs.step(a)
            ret += r * alive
            alive &= ~(term | trunc)  # the first episode of each dream counts; autoreset starts a second
        fitness = ret.reshape(args.population, args.rollouts).mean(1)
        es.tell(thetas, (-fitness).tolist())
        if fitness.max() > best[0]:
            best = (float(fitness.max()), np.asarray(thetas[int(fitness.argmax())]))
        print(f"gen {gen:3d}  dream mean {fitness.mean():7.1f}  best {fitness.max():7.1f}", flush=True)
    envs.close()
    # the distribution's mean, as the paper's code keeps, rather than the luckiest candidate
    return linear_policy(np.asarray(es.result.xfavorite), obs_dim, act_space)


def train_ppo(args: Args):
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    if args.train_in == "dream":
        venv = make_vec_env(args.dream, n_envs=args.n_envs, seed=args.seed, env_kwargs=kwargs(args))
    else:
        venv = make_vec_env(lambda: dreamgym.make_real(args.dream, **kwargs(args)), n_envs=args.n_envs, seed=args.seed)
    model = PPO("MlpPolicy", venv, seed=args.seed, verbose=0)
    model.learn(args.steps, progress_bar=False)
    venv.close()
    return lambda obs: model.predict(obs, deterministic=True)[0]


def score(act, make_env, episodes: int, seed: int) -> tuple[float, float, np.ndarray]:
    """Mean and std of the returns, and the mean |action| taken (Discrete: how often each action was taken)."""
    env = make_env()
    act_space = env.action_space
    discrete = isinstance(act_space, gym.spaces.Discrete)
    returns, actions = [], []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        done, total = False, 0.0
        while not done:
            action = act(obs)
            obs, r, term, trunc, _ = env.step(action)
            actions.append(np.eye(act_space.n)[action] if discrete else np.abs(action))
            total += float(r)
            done = term or trunc
        returns.append(total)
    env.close()
    return float(np.mean(returns)), float(np.std(returns)), np.mean(actions, axis=0)


if __name__ == "__main__":
    args = parse_cli(Args, description=__doc__)
    if args.train_in == "real" and args.trainer != "ppo":
        raise SystemExit("--train-in real: PPO only (CMA-ES's thousands of episodes would take days in reality)")
    t0 = time.perf_counter()
    act = train_cmaes(args) if args.trainer == "cmaes" else train_ppo(args)
    train_s = time.perf_counter() - t0
    dream = score(act, lambda: gym.make(args.dream, **kwargs(args)), args.episodes, args.real_seed)
    real = score(act, lambda: dreamgym.make_real(args.dream, **kwargs(args)), args.episodes, args.real_seed)
    print(f"mean |action|: dream {np.round(dream[2], 2).tolist()}, real {np.round(real[2], 2).tolist()}")
    where = "dream" if args.train_in == "dream" else "real twin"
    print(f"{args.trainer} seed {args.seed} (trained in the {where}): trained {train_s:.0f} s; "
          f"dream {dream[0]:.1f} ± {dream[1]:.1f}, "
          f"real {real[0]:.1f} ± {real[1]:.1f} ({args.episodes} episodes each)")
