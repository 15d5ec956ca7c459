"""Stable-Baselines3 at batched speed: a VecEnv over :class:`DreamVectorEnv`.

>>> from stable_baselines3 import PPO
>>> from dreamgym.agents.sb3 import DreamVecEnv
>>> PPO("MlpPolicy", DreamVecEnv("Dream-CarRacing-v0", n_envs=64)).learn(100_000)  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
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
        """Reset every dream with the seeds of ``seed()`` and the options of ``set_options()`` (used once, as
        DummyVecEnv does); the dreams reset in one batch, so every env must get the same options."""
        seeds = self._seeds if any(s is not None for s in self._seeds) else None
        obs, _ = self.venv.reset(seed=seeds, options=self._batch_options())
        self.reset_infos = [{} for _ in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return obs

    def _batch_options(self) -> dict[str, Any] | None:
        """The one options dict of ``set_options()`` for the whole batch (None: none set)."""
        first = self._options[0]
        if not all(_same_options(o, first) for o in self._options[1:]):
            raise ConfigError("DreamVecEnv resets all its dreams in one batch, so set_options() takes one dict for "
                              f"every env (or a list of equal dicts); got {self._options!r}.")
        return dict(first) if first else None

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
        return list(self.dream.dream_batch().frames())

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        return list(self._get_indices(indices))

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        values = self.dream.get_attr(attr_name)
        return [values[i] for i in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set ``value`` on the envs at ``indices``; only ``dream.per_env_attrs`` (temperature) can be set on some."""
        index = self._indices(indices)
        if attr_name in self.dream.per_env_attrs:
            getattr(self.dream, f"set_{attr_name}")(value, index)
        elif len(index) == self.num_envs:
            self.dream.set_attr(attr_name, value)
        else:
            raise ValueError(f"Only {', '.join(map(repr, self.dream.per_env_attrs))} can be set on some envs of a "
                             f"dream, not {attr_name!r}.")

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any) -> list[Any]:
        """Call a method of the dream for the envs at ``indices``: one call for the batch, one result per env.

        A method with an ``indices`` parameter (``set_temperature``) gets them; any other acts on every env,
        so it takes no ``indices`` but all.
        """
        index = self._indices(indices)
        method = getattr(self.dream, method_name)
        if "indices" in inspect.signature(method).parameters:
            method_kwargs = {**method_kwargs, "indices": index}
        elif len(index) != self.num_envs:
            raise ValueError(f"{method_name}() acts on every dream of the batch at once; call it without indices.")
        value = method(*method_args, **method_kwargs)
        return [value for _ in index]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._indices(indices)]


def _same_options(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two reset options dicts are equal (numpy arrays in them compared elementwise)."""
    try:
        return bool(a == b)
    except ValueError:  # the truth value of an array: compare key by key
        return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
