"""DreamVectorEnv: the batched core. Every env advances in one torch forward pass."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from dreamgym.backends import Backend
from dreamgym.envs.core import DreamBatch, draw_episode
from dreamgym.envs.render import Viewer
from dreamgym.errors import ConfigError
from dreamgym.models.resolve import resolve_model


class DreamVectorEnv(VectorEnv):
    """``num_envs`` dreams of one world model, natively batched.

    ## Action Space
    The real env's, batched: ``Box(num_envs, *shape)`` or ``MultiDiscrete``. Out-of-bounds
    continuous actions are clipped to the bounds (as the real envs do with them); NaN/inf, wrong
    shapes and out-of-range discrete actions raise :class:`~dreamgym.errors.InvalidActionError`.

    ## Observation Space
    ``obs_type="latent"`` (default): z‖h float32, the paper's controller input; ``"z"``: z only;
    ``"pixels"``: decoded 64×64×3 uint8 frames (frame models only).

    ## Rewards
    The reward head's prediction (or the model's constant reward, e.g. 1 per step for Doom).

    ## Episode Termination
    Terminated when the termination head's p(done) > ``done_threshold``; truncated after
    ``max_episode_steps``. Finished envs reset in the same step (``AutoresetMode.SAME_STEP``):
    their final observation is in ``info["final_obs"]`` (mask ``info["_final_obs"]``). With
    ``autoreset_mode="NextStep"`` they reset on the following step instead.

    ## Arguments
    :param num_envs: number of dreams.
    :param model: a world model (any backend), checkpoint directory, name under pretrained/, or Hub repo id.
    :param revision: Hub revision (branch, tag or commit) when ``model`` is a Hub id.
    :param temperature: tau >= 0; None uses the model's default. Settable later with
        ``env.temperature = ...`` or ``set_attr("temperature", ...)`` (one value or one per env), or
        ``set_temperature(values, indices)`` for some envs.
    :param obs_type: ``"latent"``, ``"zch"`` (z‖c‖h), ``"z"`` or ``"pixels"``.
    :param temperature_range, disagreement_penalty, halt_threshold, halt_penalty, ensemble_draw,
        dropout_masks, termination, action_low, action_high: the dream's options against exploitation, as in
        :class:`DreamEnv`; with an ensemble, ``info["disagreement"]`` holds each env's disagreement of the step.
    :param max_episode_steps: truncate after this many steps (None: the model's time limit).
    :param render_mode: ``"rgb_array"`` or ``"human"``.
    :param device: torch device of the batch (``"cpu"``, ``"cuda"``).
    :param autoreset_mode: ``"SameStep"`` (default) or ``"NextStep"``.
    :param dtype: ``"float32"`` (default) or ``"bfloat16"``: M's matmuls in bfloat16, several times
        faster on CPUs with bf16 instructions (AVX512-BF16, AMX) and on GPUs, at bf16 precision.
    :param dream_id: the registered id this env is made under (set by registration).

    ## Example
    >>> import gymnasium as gym, dreamgym
    >>> envs = gym.make_vec("Dream-CarRacing-v0", num_envs=1024, model="path/to/dir")  # doctest: +SKIP
    >>> obs, info = envs.reset(seed=0)  # doctest: +SKIP

    ## Version History
    * v0: first release.
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 50, "autoreset_mode": AutoresetMode.SAME_STEP}
    per_env_attrs = ("temperature",)  # may differ between envs: each has a set_<name>(values, indices) method

    def __init__(
        self,
        num_envs: int = 1,
        model: Backend | str = "",
        revision: str | None = None,
        temperature: float | None = None,
        obs_type: str = "latent",
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        device: str | torch.device = "cpu",
        autoreset_mode: str | AutoresetMode = AutoresetMode.SAME_STEP,
        dream_id: str | None = None,
        dtype: str = "float32",
        temperature_range: Sequence[float] | None = None,
        disagreement_penalty: float | None = None,
        halt_threshold: float | None = None,
        halt_penalty: float | None = None,
        ensemble_draw: bool | None = None,
        dropout_masks: bool | None = None,
        termination: str | None = None,
        action_low: Sequence[float] | float | None = None,
        action_high: Sequence[float] | float | None = None,
    ) -> None:
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ConfigError(f"num_envs must be a positive integer, got {num_envs!r}.")
        if render_mode not in (None, "rgb_array", "human"):
            raise ConfigError(f"render_mode must be None, 'rgb_array' or 'human', got {render_mode!r}.")
        mode = AutoresetMode(autoreset_mode)
        if mode == AutoresetMode.DISABLED:
            raise ConfigError("autoreset_mode must be 'SameStep' or 'NextStep'; use options={'reset_mask': ...} to reset by hand.")
        self.device = torch.device(device)
        self.model = resolve_model(model, revision, self.device, dream_id=dream_id).eval()
        cfg = self.model.config
        self.num_envs = int(num_envs)
        self.max_episode_steps = int(max_episode_steps if max_episode_steps is not None else cfg.max_episode_steps)
        if self.max_episode_steps < 1:
            raise ConfigError(f"max_episode_steps must be >= 1, got {max_episode_steps}.")
        options = dict(temperature_range=temperature_range, disagreement_penalty=disagreement_penalty,
                       halt_threshold=halt_threshold, halt_penalty=halt_penalty, ensemble_draw=ensemble_draw,
                       dropout_masks=dropout_masks, termination=termination,
                       action_low=action_low, action_high=action_high)
        self._batch = DreamBatch(self.model, self.num_envs, obs_type, self.device, dtype, options)
        self.temperature = cfg.default_temperature if temperature is None else temperature
        self.obs_type = obs_type
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": cfg.render_fps, "autoreset_mode": mode}
        self.single_observation_space = self._batch.single_observation_space
        self.single_action_space = self._batch.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._rngs: list[np.random.Generator] | None = None
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)
        self._viewer: Viewer | None = None
        self._was_reset = False

    # ----- temperature -------------------------------------------------------------------
    @property
    def temperature(self) -> float | np.ndarray:
        """tau: a float when all envs share it, else an array of one per env."""
        return self._batch.temperature()

    @temperature.setter
    def temperature(self, value: float | Sequence[float]) -> None:
        self.set_temperature(value)

    def set_temperature(self, values: float | Sequence[float], indices: Sequence[int] | None = None) -> None:
        """Set tau: one value for every env (or for the envs at ``indices``), or one value per env (per index).

        Bad values (negative, NaN, not numbers, a sequence of the wrong length) raise ConfigError and change nothing.
        """
        self._batch.set_temperature(values, indices)

    # ----- Gymnasium API -----------------------------------------------------------------
    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset all envs, or those in ``options["reset_mask"]`` (a bool array of length num_envs).

        ``seed=s`` seeds env i with s + i (Gymnasium's convention), so env i follows the same
        trajectory as a single DreamEnv reset with seed s + i.
        """
        if isinstance(seed, (int, np.integer)) or seed is None:
            super().reset(seed=None if seed is None else int(seed))
            seeds: list[int | None] = [None if seed is None else int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"Expected {self.num_envs} seeds (one per env), got {len(seeds)}.")
            super().reset(seed=seeds[0])
        if self._rngs is None:
            self._rngs = [seeding.np_random(s)[0] for s in seeds]
        else:
            for i, s in enumerate(seeds):
                if s is not None:
                    self._rngs[i] = seeding.np_random(s)[0]
        mask = np.ones(self.num_envs, dtype=bool)
        if options and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"])
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_:
                raise ValueError(
                    f"options['reset_mask'] must be a bool array of shape ({self.num_envs},), got {mask!r}."
                )
            if not self._was_reset and not mask.all():
                raise ValueError("The first reset must reset every env; call reset() without a reset_mask first.")
        self._reset_envs(np.flatnonzero(mask))
        self._needs_reset[mask] = False
        self._was_reset = True
        return self._batch.observations(), {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._was_reset:
            raise RuntimeError("Call reset() before step(): the dream has no start state yet.")
        batch = self._batch
        action = batch.adapter.batch(actions, self.num_envs)
        reward_t, terminated_t = batch.step(action)
        truncated_t = batch.t >= self.max_episode_steps
        reward = reward_t.cpu().numpy().astype(np.float64)
        terminated = terminated_t.cpu().numpy()
        truncated = truncated_t.cpu().numpy() & ~terminated
        infos: dict[str, Any] = {}
        if batch.num_members > 1:  # how far the ensemble's members disagree on this step's prediction
            infos["disagreement"] = batch.disagreement.cpu().numpy().astype(np.float64)
            infos["_disagreement"] = np.ones(self.num_envs, dtype=bool)
        pending = self._needs_reset
        if pending.any():  # NextStep mode: envs that ended last step start over now, ignoring the action
            self._reset_envs(np.flatnonzero(pending))
            reward[pending], terminated[pending], truncated[pending] = 0.0, False, False
        obs = batch.observations()
        done = terminated | truncated
        if self.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP:
            self._needs_reset = done.copy()
        elif done.any():
            index = np.flatnonzero(done)
            infos["final_obs"] = obs.copy()
            infos["_final_obs"] = done.copy()
            self._reset_envs(index)
            obs[index] = batch.observations()[index]
        return obs, reward, terminated, truncated, infos

    def _reset_envs(self, index: np.ndarray) -> None:
        if len(index) == 0:
            return
        assert self._rngs is not None
        draws = [draw_episode(self._rngs[i], self.model, self._batch.options) for i in index]
        self._batch.reset_envs(index, draws)

    def dream_batch(self) -> DreamBatch:
        """The batched dream state behind this env (for rollouts that step it directly, e.g. CMA-ES)."""
        return self._batch

    def render(self) -> tuple[np.ndarray, ...] | None:
        """rgb_array: a tuple of one (64, 64, 3) decoded frame per env; human: env 0 in a window."""
        if self.render_mode is None:
            return None
        if self.render_mode == "human":
            if self._viewer is None:
                self._viewer = Viewer("dreamgym: " + self.model.config.env_id, fps=self.metadata["render_fps"])
            self._viewer.show(self._batch.frames([0])[0])
            return None
        return tuple(self._batch.frames())

    def close_extras(self, **kwargs: Any) -> None:
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None

    # ----- attributes, as SyncVectorEnv offers them --------------------------------------
    def get_attr(self, name: str) -> tuple[Any, ...]:
        """Per-env values of an attribute; one that holds a value per env (``temperature``) gives each env its own."""
        value = getattr(self, name)
        if isinstance(value, np.ndarray) and value.shape == (self.num_envs,):
            return tuple(value.tolist())
        return tuple(value for _ in range(self.num_envs))

    def set_attr(self, name: str, values: Any) -> None:
        """Set an attribute: one value for all envs, or a list of one per env.

        Those in ``per_env_attrs`` (``temperature``) go through their ``set_<name>(values, indices)`` and may
        differ between envs; any other takes one value, the same for every env.
        """
        if name in self.per_env_attrs:
            getattr(self, f"set_{name}")(values)
            return
        if isinstance(values, (list, tuple)):
            if len(set(map(repr, values))) != 1:
                raise ValueError(f"Only {', '.join(map(repr, self.per_env_attrs))} can differ between the envs of a "
                                 f"DreamVectorEnv, not {name!r}.")
            values = values[0]
        setattr(self, name, values)

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call a method by name (or read an attribute, as ``get_attr``); one result per env, as SyncVectorEnv."""
        attr = getattr(self, name)
        if not callable(attr):
            return self.get_attr(name)
        value = attr(*args, **kwargs)
        return tuple(value for _ in range(self.num_envs))
