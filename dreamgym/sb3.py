"""Stable-Baselines3 at batched speed: a VecEnv over :class:`DreamVectorEnv`.

>>> from stable_baselines3 import PPO
>>> from dreamgym.sb3 import DreamVecEnv
>>> PPO("MlpPolicy", DreamVecEnv("Dream-CarRacing-v0", n_envs=64)).learn(100_000)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from dreamgym.envs.dream_vector import DreamVectorEnv
from dreamgym.errors import ConfigError


class DreamVecEnv(VecEnv):
    """An SB3 VecEnv whose envs are one batched dream.

    Finished envs reset in the same step, as SB3 expects: ``infos[i]["terminal_observation"]``
    holds the last observation, ``infos[i]["TimeLimit.truncated"]`` says the episode was cut by
    the time limit rather than ended.

    :param env: a Dream id (made with ``gym.make_vec``) or a DreamVectorEnv.
    :param n_envs: number of dreams when ``env`` is an id.
    :param kwargs: passed to ``gym.make_vec`` (``model``, ``temperature``, ``obs_type``, ``device``, ...).
    """

    def __init__(self, env: str | DreamVectorEnv, n_envs: int = 1, **kwargs: Any) -> None:
        if isinstance(env, str):
            env = gym.make_vec(env, num_envs=n_envs, vectorization_mode="vector_entry_point", **kwargs)
        elif kwargs:
            raise ConfigError(f"kwargs {sorted(kwargs)} only apply when env is a Dream id, not a ready DreamVectorEnv.")
        if not isinstance(env.unwrapped, DreamVectorEnv):
            raise ConfigError(f"Expected a Dream id or a DreamVectorEnv, got {type(env).__name__}.")
        self.venv = env
        self.dream: DreamVectorEnv = env.unwrapped
        if self.dream.metadata["autoreset_mode"] != gym.vector.AutoresetMode.SAME_STEP:
            raise ConfigError("DreamVecEnv needs autoreset_mode='SameStep', SB3's convention.")
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
        self._actions: np.ndarray | None = None

    def reset(self) -> VecEnvObs:
        seeds = self._seeds if any(s is not None for s in self._seeds) else None
        obs, _ = self.venv.reset(seed=seeds)
        self.reset_infos = [{} for _ in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        obs, reward, terminated, truncated, info = self.venv.step(self._actions)
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if dones.any():
            final = info["final_obs"]
            for i in np.flatnonzero(dones):
                infos[i]["terminal_observation"] = final[i]
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return obs, reward.astype(np.float32), dones, infos

    def close(self) -> None:
        self.venv.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        return list(self.dream._batch.frames())

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        return list(self._get_indices(indices))

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        values = self.dream.get_attr(attr_name)
        return [values[i] for i in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        index = self._indices(indices)
        if attr_name == "temperature":
            self.dream._batch.set_temperature(value, index)
        elif len(index) == self.num_envs:
            self.dream.set_attr(attr_name, value)
        else:
            raise ValueError(f"Only 'temperature' can be set on some envs of a dream, not {attr_name!r}.")

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any) -> list[Any]:
        value = getattr(self.dream, method_name)(*method_args, **method_kwargs)
        return [value for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._indices(indices)]
