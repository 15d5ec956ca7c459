"""dreamgym quickstart: a dream as a Gymnasium env, batched, in SB3, and its real twin.

Run: python examples/quickstart.py   (or `make demo`)

Until the pretrained dreams ship in pretrained/, this tour builds a small, *untrained* world model
of Pendulum-v1, so the numbers it prints are speeds and API shapes, not agent scores.
"""

import tempfile
import time

import gymnasium as gym
import numpy as np
from stable_baselines3 import PPO

import dreamgym
from dreamgym.sb3 import DreamVecEnv
from dreamgym.testing import world_model_config

# 1. A world model checkpoint: config.json + model.safetensors + README.md (Hub-ready).
checkpoint = tempfile.mkdtemp(prefix="dream-pendulum-")
dreamgym.WorldModel(world_model_config("Pendulum-v1")).save_pretrained(checkpoint)

# 2. The dream as a registered Gymnasium env, with a temperature.
env = gym.make("Dream-Pendulum-v0", model=checkpoint, temperature=1.15)
obs, info = env.reset(seed=0)
steps, start = 0, time.perf_counter()
while time.perf_counter() - start < 1.0:
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    steps += 1
    if terminated or truncated:
        obs, info = env.reset()
print(f"DreamEnv: obs {obs.shape}, {steps / (time.perf_counter() - start):,.0f} steps/s")

# 3. 1024 dreams in one forward pass per step.
envs = gym.make_vec("Dream-Pendulum-v0", num_envs=1024, model=checkpoint)
envs.reset(seed=0)
actions = np.zeros((1024, 1), np.float32)
start = time.perf_counter()
for _ in range(50):
    envs.step(actions)
print(f"DreamVectorEnv x1024: {50 * 1024 / (time.perf_counter() - start):,.0f} steps/s")

# 4. Stable-Baselines3 on the batched dream.
agent = PPO("MlpPolicy", DreamVecEnv("Dream-Pendulum-v0", n_envs=16, model=checkpoint), n_steps=64, seed=0)
agent.learn(total_timesteps=2048)

# 5. The same policy, unchanged, in the real Pendulum-v1 seen through the same world model.
real = dreamgym.make_real("Dream-Pendulum-v0", model=checkpoint)
assert real.observation_space == env.observation_space and real.action_space == env.action_space
obs, _ = real.reset(seed=0)
total, done = 0.0, False
while not done:
    action, _ = agent.predict(obs, deterministic=True)
    obs, reward, terminated, truncated, _ = real.step(action)
    total, done = total + reward, terminated or truncated
print(f"PPO (2048 dream steps, untrained model) in the real Pendulum-v1: return {total:.1f}")
