"""DreamEnv: one dream as a plain ``gymnasium.Env``."""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch

from dreamgym.backends import Backend
from dreamgym.envs.core import DreamBatch, draw_episode
from dreamgym.envs.render import Viewer
from dreamgym.errors import ConfigError
from dreamgym.models.resolve import resolve_model


class DreamEnv(gym.Env):
    """A dream of a real env, learned by a world model (V + M + heads).

    ## Action Space
    The real env's (CarRacing-v3: ``Box([-1, 0, 0], 1, (3,))``; VizdoomTakeCover-v1:
    ``Discrete(3)``; Pendulum-v1: ``Box(-2, 2, (1,))``). Out-of-bounds continuous actions are
    clipped to the bounds, as the real envs do with them; NaN/inf, wrong shapes and out-of-range
    discrete actions raise :class:`~dreamgym.errors.InvalidActionError`.

    ## Observation Space
    ``obs_type="latent"`` (default): z‖h float32, the paper's controller input; ``"zch"``: z‖c‖h
    (the paper's Doom controller input, with the LSTM cell c); ``"z"``: z only;
    ``"pixels"``: the decoded 64×64×3 uint8 frame (frame models only), for CnnPolicy.
    ``render()`` shows the decoded frame; a state-vector dream is drawn by its real env's renderer
    where dreamgym knows how (Pendulum-v1), else as a bar chart of the state.

    ## Rewards
    The reward head's prediction, or the model's constant reward (Doom: 1 per step survived).

    ## Episode Termination
    Terminated when the termination head's p(done) > ``done_threshold`` (``info["done_prob"]``
    reports it); truncated after ``max_episode_steps``, as :class:`DreamVectorEnv` is. Made by
    ``gym.make``, the ``TimeLimit`` wrapper it adds truncates instead (the registered limit, or
    ``gym.make``'s ``max_episode_steps``), as ``gym.make_vec`` passes that limit to the vector env.

    ## Arguments
    :param model: a world model (any backend), checkpoint directory, name under pretrained/, or Hub repo id.
    :param revision: Hub revision when ``model`` is a Hub id.
    :param temperature: tau >= 0 (None: the model's default); ``env.unwrapped.temperature = 1.3``
        changes it while running. tau = 0 is deterministic.
    :param obs_type: ``"latent"``, ``"zch"``, ``"z"`` or ``"pixels"``.
    :param temperature_range: ``(low, high)``: each episode draws its tau uniformly from it at reset.
    :param disagreement_penalty: ensembles: reward - lambda * disagreement (MOPO's pessimism).
    :param halt_threshold: ensembles: terminate once the disagreement exceeds it (MOReL's HALT),
        paying ``halt_penalty`` on that step.
    :param ensemble_draw: ensembles: each episode follows one member drawn at reset (default True).
    :param dropout_masks: dropout-trained models: a fresh dropout mask per episode (default True).
    :param termination: ``"threshold"`` (p(done) > done_threshold, the paper) or ``"sample"``
        (terminate with p(done) calibrated for the head's positive-class weight, from the seeded noise).
    :param action_low, action_high: a narrower Box for the agent, one number per action dimension (or
        one for all), inside the real env's bounds (CarRacing: ``action_high=[1, 0.3, 1]`` caps the gas);
        :func:`dreamgym.make_real` takes the same, so the agent acts within it in reality too.
        Every option's default is the model's ``config.json`` ``dream`` section.
    :param render_mode: ``"rgb_array"`` (the decoded dream frame) or ``"human"`` (a window).
    :param device: torch device.
    :param dtype: ``"float32"`` (default) or ``"bfloat16"``: M's matmuls in bfloat16, several times
        faster on CPUs with bf16 instructions (AVX512-BF16, AMX) and on GPUs, at bf16 precision.
    :param fast: step one env in numpy on the CPU (latent and z observations): several times faster
        than the batched torch step at batch size 1, with the same results up to float rounding.
    :param max_episode_steps: truncate after this many steps (None: the model's time limit); see above.
    :param dream_id: the registered id this env is made under (set by registration): the model
        must dream of that id's real env.

    ## Example
    >>> import gymnasium as gym, dreamgym
    >>> env = gym.make("Dream-CarRacing-v0", temperature=1.15, model="path/to/dir")  # doctest: +SKIP
    >>> obs, info = env.reset(seed=0)  # doctest: +SKIP

    ## Version History
    * v0: first release.
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 50}

    def __init__(
        self,
        model: Backend | str = "",
        revision: str | None = None,
        temperature: float | None = None,
        obs_type: str = "latent",
        render_mode: str | None = None,
        device: str | torch.device = "cpu",
        dream_id: str | None = None,
        dtype: str = "float32",
        fast: bool = True,
        temperature_range: Sequence[float] | None = None,
        disagreement_penalty: float | None = None,
        halt_threshold: float | None = None,
        halt_penalty: float | None = None,
        ensemble_draw: bool | None = None,
        dropout_masks: bool | None = None,
        termination: str | None = None,
        action_low: Sequence[float] | float | None = None,
        action_high: Sequence[float] | float | None = None,
        max_episode_steps: int | None = None,
    ) -> None:
        if render_mode not in (None, "rgb_array", "human"):
            raise ConfigError(f"render_mode must be None, 'rgb_array' or 'human', got {render_mode!r}.")
        self.device = torch.device(device)
        self.model = resolve_model(model, revision, self.device, dream_id=dream_id).eval()
        cfg = self.model.config
        options = dict(temperature_range=temperature_range, disagreement_penalty=disagreement_penalty,
                       halt_threshold=halt_threshold, halt_penalty=halt_penalty, ensemble_draw=ensemble_draw,
                       dropout_masks=dropout_masks, termination=termination,
                       action_low=action_low, action_high=action_high)
        # one env on the CPU: the backend's numpy step if it has one (same results without torch's per-op overhead)
        lean = fast and self.device.type == "cpu" and dtype == "float32" and obs_type != "pixels"
        self._batch = DreamBatch(self.model, 1, obs_type, self.device, dtype, options, lean=lean)
        self.temperature = cfg.default_temperature if temperature is None else temperature
        self.max_episode_steps = int(max_episode_steps if max_episode_steps is not None else cfg.max_episode_steps)
        if self.max_episode_steps < 1:
            raise ConfigError(f"max_episode_steps must be >= 1, got {max_episode_steps}.")
        self.obs_type = obs_type
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": cfg.render_fps}
        self.observation_space = self._batch.single_observation_space
        self.action_space = self._batch.action_space
        self._viewer: Viewer | None = None
        self._was_reset = False

    @property
    def _lean(self) -> Any:
        """The backend's numpy step this dream runs on, or None (the batched torch step)."""
        return self._batch.lean

    @property
    def temperature(self) -> float:
        """tau >= 0; set it while running for curricula."""
        return float(self._batch.temperature())

    @temperature.setter
    def temperature(self, value: float) -> None:
        if np.ndim(value) != 0:
            raise ConfigError(f"temperature must be one number >= 0 for a single dream, got {value!r}. "
                              "Per-env temperatures belong to a vector env (set_attr('temperature', [...])).")
        self.set_temperature(value)

    def set_temperature(self, values: float | Sequence[float], indices: Sequence[int] | None = None) -> None:
        """Set tau, as ``env.temperature = x``; ``values`` and ``indices`` (at most ``[0]``) as in DreamVectorEnv."""
        if indices is not None and list(indices) not in ([], [0]):
            raise ConfigError(f"A DreamEnv is one dream (index 0); got indices {list(indices)!r}.")
        self._batch.set_temperature(values, indices)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a dream from a stored real start state, or from ``options={"start_latent": z}``.

        ``start_latent`` (z of shape (z_dim,), e.g. ``real_obs[:z_dim]`` of the real twin) starts the
        dream where a real episode starts (h = c = 0), so dream and reality can be compared step by step.
        """
        z = None
        if options and options.get("start_latent") is not None:  # checked before anything changes
            shape = self.model.feature_space("z").shape
            try:
                z = np.asarray(options["start_latent"], dtype=np.float32)
            except (TypeError, ValueError) as e:
                raise ValueError(f"options['start_latent'] must be {shape[0]} finite floats, got "
                                 f"{options['start_latent']!r}.") from e
            if z.shape != shape or not np.isfinite(z).all():
                raise ValueError(f"options['start_latent'] must be {shape[0]} finite floats, got {z!r}.")
        super().reset(seed=seed)
        draw = draw_episode(self.np_random, self.model, self._batch.options)
        self._batch.reset_envs(np.array([0]), [draw])
        start = draw.start
        if z is not None:
            self._batch.set_state(0, torch.as_tensor(z))
            start = -1
        self._was_reset = True
        if self.render_mode == "human":
            self.render()
        info = {"start_state": start, "model_source": dict(self.model.source)}
        if self._batch.num_members > 1:
            info["member"] = draw.member
        if draw.tau is not None:
            info["temperature"] = draw.tau
        return self._batch.observations()[0], info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self._was_reset:
            raise RuntimeError("Call reset() before step(): the dream has no start state yet.")
        batch = self._batch
        reward, terminated = batch.step(batch.single_action(action))
        obs = batch.observations()[0]
        info = {"done_prob": float(batch.last_done_prob[0])}
        if batch.num_members > 1:
            info["disagreement"] = float(batch.disagreement[0])
        if self.render_mode == "human":
            self.render()
        terminated = bool(terminated[0])
        # made by gym.make (spec set), its TimeLimit wrapper owns the limit
        truncated = not terminated and self.spec is None and int(batch.t[0]) >= self.max_episode_steps
        return obs, float(reward[0]), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='rgb_array' to gym.make.")
            return None
        frame = self._batch.frames()[0]
        if self.render_mode == "human":
            if self._viewer is None:
                self._viewer = Viewer("dreamgym: " + self.model.config.env_id, fps=self.metadata["render_fps"])
            self._viewer.show(frame)
            return None
        return frame

    def close(self) -> None:
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None
