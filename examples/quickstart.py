"""dreamgym's main job on the shipped model: train a controller ONLY in a dream, then score it in reality.

Run: python examples/quickstart.py   (or `make demo`; about a minute on a 2-core CPU, no download)

1. gym.make("Dream-Pendulum-v0") loads the shipped world model (pretrained/pendulum), offline.
2. CMA-ES trains the paper's linear controller in 512 batched dreams per generation.
3. The controller runs unchanged in the REAL Pendulum-v1 (seen through the same world model),
   next to a random policy; dream and real scores are printed.
4. A GIF plays the same actions in the dream and in reality side by side (dream-vs-real-pendulum.gif).
(pretrained/carracing, the CarRacing version of this job, is not trained yet: see pretrained/README.md.)
"""

import tempfile
import time

import gymnasium as gym

import dreamgym  # noqa: F401  (registers the Dream-* ids)
from dreamgym.agents.cmaes import CMAESConfig, CMAESTrainer
from dreamgym.evaluate import evaluate, format_result
from dreamgym.viz.video import rollout_frames, write_video

def main() -> None:
    start = time.perf_counter()
    env = gym.make("Dream-Pendulum-v0")  # the shipped dream, no model= needed
    print(f"dream: {env.unwrapped.model.config.env_id} world model from {env.unwrapped.model.source['path']}")
    print(f"observation {env.observation_space.shape} (z‖h), action {env.action_space}")

    out = tempfile.mkdtemp(prefix="dreamgym-quickstart-")
    config = CMAESConfig("Dream-Pendulum-v0", temperature=1.3, population=32, rollouts=16, generations=150,
                         eval_every=10, eval_rollouts=256, sigma0=0.5, seed=1)
    CMAESTrainer(config, out).train()  # trains only in the dream

    episodes = 20
    agent = evaluate(out, episodes=episodes, temperature=1.3, seed=1000)  # dream and REAL Pendulum-v1
    random = evaluate("random", env_id="Dream-Pendulum-v0", episodes=episodes, seed=1000, dream=False)
    print(format_result(agent))
    print(f"  random policy in reality: {random['real']['mean']:.1f} ± {random['real']['std']:.1f}")
    # the same actions in the dream (left) and in reality (right)
    frames = rollout_frames("Dream-Pendulum-v0", agent=f"{out}/controller", temperature=1.3, steps=200, seed=7,
                            side_by_side=True)
    gif = write_video(frames, "dream-vs-real-pendulum.gif", fps=30)
    print(f"wrote {gif} ({len(frames)} frames)")
    print(f"done in {time.perf_counter() - start:.0f} s; controller saved in {out}/controller")


if __name__ == "__main__":  # real-env episodes run in worker processes, which re-import this file
    main()
