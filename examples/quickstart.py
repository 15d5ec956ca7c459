"""dreamgym's main job on a shipped model: train a controller ONLY in a dream, then score it in reality.

Run: python examples/quickstart.py               (or `make demo`; CarRacing, ~4-6 min on a 2-core CPU)
     python examples/quickstart.py --env pendulum (under a minute)
No download: the world model ships in pretrained/.

1. gym.make("Dream-CarRacing-v0") loads the shipped world model (pretrained/carracing), offline.
2. An agent learns only in batched dreams: for CarRacing, Stable-Baselines3's PPO on z‖h (64 dreams
   stepped together; ``--members 3`` trains seeds 0-2 that act as one by the mean of their actions, an agent
   ensemble); for Pendulum, CMA-ES on the paper's linear controller.
3. The agent runs unchanged in the REAL env (seeing it through the same V and M), next to a random
   policy; dream and real scores are printed. The CarRacing dream draws a fresh dropout mask in M per
   episode (Dropout's Dream Land), so that the agent cannot rely on one model's errors.
4. A GIF plays the same actions in the dream and in reality side by side (dream-vs-real-<env>.gif).
"""

import os
import tempfile
import time
from dataclasses import dataclass, field

import gymnasium as gym

import dreamgym  # noqa: F401  (registers the Dream-* ids)
from dreamgym.agents.cmaes import CMAESConfig, CMAESTrainer
from dreamgym.agents.ensemble import write_ensemble
from dreamgym.agents.sb3_train import SB3Config, train_sb3
from dreamgym.argtypes import parse_cli
from dreamgym.evaluate import evaluate, format_result
from dreamgym.viz.video import rollout_frames, write_video

JOBS = {  # settings per shipped dream: a few minutes each on 2 CPU cores
    "carracing": dict(dream="Dream-CarRacing-v0", temperature=1.15, algo="ppo", steps=300_000, n_envs=64,
                      algo_kwargs={"n_steps": 128, "batch_size": 1024}, seed=0, members=1, real_episodes=10, gif_steps=300, fps=25),
    "pendulum": dict(dream="Dream-Pendulum-v0", temperature=1.3, algo="cmaes", population=32, rollouts=16,
                     generations=150, sigma0=0.5, dtype="float32", seed=1, real_episodes=20, gif_steps=200, fps=30),
}


@dataclass
class Args:
    env: str = field(default="carracing", metadata={"choices": sorted(JOBS)})
    """which shipped dream"""
    generations: int | None = None
    """CMA-ES generations (default: the job's)"""
    steps: int | None = None
    """PPO's dream steps (default: the job's)"""
    seed: int | None = None
    """the agent's seed (default: the job's); an ensemble's members take seed, seed + 1, ..."""
    members: int | None = None
    """PPO agents trained apart that act as one ensemble (default: the job's; 1: a single agent)"""


if __name__ == "__main__":  # real-env episodes run in worker processes, which re-import this file
    args = parse_cli(Args, description=__doc__)
    job = JOBS[args.env]
    dream, tau = job["dream"], job["temperature"]
    start = time.perf_counter()
    env = gym.make(dream)  # the shipped dream, no model= needed
    print(f"dream: {env.unwrapped.model.config.env_id} world model from {env.unwrapped.model.source['path']}")
    print(f"observation {env.observation_space.shape} (z‖h), action {env.action_space}")

    # 1. an agent, only in the dream
    out = tempfile.mkdtemp(prefix="dreamgym-quickstart-")
    seed = job["seed"] if args.seed is None else args.seed
    if job["algo"] == "ppo":
        members = job["members"] if args.members is None else args.members
        if members < 1:
            raise SystemExit(f"--members: expected 1 or more PPO agents, got {members}")
        for i in range(members):
            train_sb3(SB3Config(dream, algo="ppo", steps=args.steps or job["steps"], n_envs=job["n_envs"],
                                temperature=tau, seed=seed + i, algo_kwargs=job["algo_kwargs"]), f"{out}/ppo-{i}")
        agent_path = f"{out}/ppo-0/ppo-{dream}.zip"
        if members > 1:  # the seeds act as one agent: the mean of their actions
            agent_path = str(write_ensemble([f"{out}/ppo-{i}" for i in range(members)], f"{out}/ensemble"))
    else:
        config = CMAESConfig(dream, temperature=tau, population=job["population"], rollouts=job["rollouts"],
                             generations=args.generations or job["generations"], eval_every=25, eval_rollouts=256,
                             sigma0=job["sigma0"], seed=seed, dtype=job["dtype"])
        CMAESTrainer(config, out).train()
        agent_path = f"{out}/controller"
    print(f"trained {job['algo']} in the dream in {time.perf_counter() - start:.0f} s: {agent_path}")

    # 2. the agent in reality, beside a random policy
    n = job["real_episodes"]  # real episodes run in parallel worker processes
    agent = evaluate(agent_path, episodes=n, temperature=tau, seed=1000, workers=min(n, os.cpu_count() or 1),
                     out=f"{out}/eval.json")
    random = evaluate("random", env_id=dream, episodes=n, seed=1000, dream=False, workers=min(n, os.cpu_count() or 1))
    print(format_result(agent))
    gap = agent["gap"] / max(abs(agent["real"]["mean"]), 1e-9)
    print(f"  the gap is {100 * gap:+.0f} % of the real score")
    print(f"  random policy in reality: {random['real']['mean']:.1f} ± {random['real']['std']:.1f}  ({n} episodes)")

    # 3. the same actions in the dream (left, started from V's latent of reality's first frame) and in reality
    frames = rollout_frames(dream, agent=agent_path, temperature=tau, steps=job["gif_steps"], seed=7,
                            side_by_side=True, scale=2)
    gif = write_video(frames, f"dream-vs-real-{args.env}.gif", fps=job["fps"])
    print(f"wrote {gif} ({len(frames)} frames)")
    print(f"done in {time.perf_counter() - start:.0f} s; agent saved in {agent_path}")
