"""The ``rssm`` backend: an RSSM (:mod:`dreamgym.models.rssm`) as a dream, a real twin and a Hub checkpoint.

The carry is ``{"deter": (b, D), "stoch": (b, G*C)}``. What agents see:

- ``obs_type="latent"``: deter ‖ stoch (DreamerV3's features), in [-1, 1] and {0, 1};
- ``obs_type="z"``: the one-hot stochastic latent alone;
- ``obs_type="pixels"`` (frame models): the decoded 64×64 frame.

Temperature divides the prior's logits (tau = 0: each categorical's mode); see :mod:`dreamgym.models.rssm`.
The dream's noise is one uniform per categorical per step, from the env's counter-based stream.
Start states are posterior states of real episodes at their first observation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from dreamgym.backends import Noise
from dreamgym.checkpoint import parse_checkpoint_config
from dreamgym.data.frames import FRAME_SIZE, extract_frames, preprocess_frames
from dreamgym.errors import ConfigError
from dreamgym.models.hub_mixin import StrictHubMixin
from dreamgym.models.rssm import RSSM, RSSMConfig
from dreamgym.models.world_model import DreamOptions, check_temperature
from dreamgym.spaces import action_dim, space_from_dict

BACKEND = "rssm"


@dataclass
class RSSMWorldModelConfig:
    """config.json of an ``rssm`` world model.

    :param env_id: the real env. :param action_space, observation_space: the real env's spaces.
    :param rssm: sizes and loss weights. :param obs_kind: ``"state"`` (vectors) or ``"frames"`` (64×64×3).
    :param obs_dim: the state size (0 for frames). :param frame_key, frame_crop: as the MDN-RNN's.
    Others as :class:`~dreamgym.models.world_model.WorldModelConfig`.
    """

    env_id: str
    action_space: dict[str, Any]
    observation_space: dict[str, Any]
    rssm: RSSMConfig = field(default_factory=RSSMConfig)
    obs_kind: str = "state"
    obs_dim: int = 0
    frame_key: str | None = None
    frame_crop: list[int] | None = None
    max_episode_steps: int = 1000
    default_temperature: float = 1.0
    render_fps: int = 50
    burn_in_steps: int = 0
    num_start_states: int = 1
    storage_dtype: str = "float32"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    dream: DreamOptions = field(default_factory=DreamOptions)
    summary: dict[str, Any] = field(default_factory=dict)
    backend: str = BACKEND
    format_version: int = 1

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config.json") -> "RSSMWorldModelConfig":
        return parse_checkpoint_config(cls, d, where)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        self.rssm.validate()
        self.dream.validate()
        if self.backend != BACKEND:
            raise ConfigError(f"backend must be {BACKEND!r} for an RSSM world model, got {self.backend!r}.")
        if self.obs_kind not in ("state", "frames"):
            raise ConfigError(f"obs_kind must be 'state' or 'frames', got {self.obs_kind!r}.")
        if self.obs_kind == "state" and self.obs_dim < 1:
            raise ConfigError(f"obs_dim must be >= 1 for state observations, got {self.obs_dim}.")
        action_dim(space_from_dict(self.action_space, "config.json['action_space']"))
        space_from_dict(self.observation_space, "config.json['observation_space']")
        for name in ("max_episode_steps", "render_fps", "num_start_states"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.storage_dtype not in ("float32", "float16"):
            raise ConfigError(f"storage_dtype must be 'float32' or 'float16', got {self.storage_dtype!r}.")
        check_temperature(self.default_temperature)

    @property
    def pixels(self) -> bool:
        return self.obs_kind == "frames"


class RSSMWorldModel(
    nn.Module,
    StrictHubMixin,
    library_name="dreamgym",
    tags=["world-model", "gymnasium", "reinforcement-learning", "dreamgym", "rssm", "dreamer"],
    repo_url="https://github.com/dreamgym/dreamgym",
):
    """An RSSM world model with stored start states: the ``rssm`` backend of the dream envs."""

    config_class = RSSMWorldModelConfig
    kind = "world_model"
    done_threshold = 0.5

    def __init__(self, config: RSSMWorldModelConfig | dict) -> None:
        super().__init__()
        if isinstance(config, dict):
            config = RSSMWorldModelConfig.from_dict(config)
        config.validate()
        self.config = config
        self.action_space = space_from_dict(config.action_space)
        self.action_dim = action_dim(self.action_space)
        self.rssm = RSSM(config.rssm, config.obs_kind, config.obs_dim, self.action_dim)
        self.source: dict[str, str] = {}
        n, c = config.num_start_states, config.rssm
        self.register_buffer("start_deter", torch.zeros(n, c.deter))
        self.register_buffer("start_stoch", torch.zeros(n, c.stoch))

    @property
    def device(self) -> torch.device:
        return self.start_deter.device

    @property
    def termination_pos_weight(self) -> float:
        """How much terminal steps weighed in the continue loss: sampled termination divides it back out."""
        return float(self.config.rssm.continue_pos_weight)

    # ----- the protocol --------------------------------------------------------------------------
    def initial(self, index: torch.Tensor, episodes: Any = None) -> dict[str, torch.Tensor]:
        index = index.to(self.device)
        return {"deter": self.start_deter[index], "stoch": self.start_stoch[index]}

    @torch.no_grad()
    def start(self, latent: torch.Tensor) -> dict[str, torch.Tensor]:
        """A real episode's first state whose latent is ``latent``: the memory the real twin has after its first
        observation (one GRU step from zeros with a zero action, as in :meth:`observe`) and this latent."""
        stoch = torch.as_tensor(latent, dtype=torch.float32, device=self.device)
        b = stoch.shape[0]
        deter = self.rssm._core(self.rssm.initial(b, self.device), torch.zeros(b, self.action_dim, device=self.device))
        return {"deter": deter, "stoch": stoch}

    @torch.no_grad()
    def imagine(self, carry: dict[str, torch.Tensor], action: torch.Tensor, tau: torch.Tensor, noise: Noise,
                dtype: torch.dtype = torch.float32) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        u, _ = noise.uniform_and_normal(self.config.rssm.groups)
        return self.rssm.imagine(carry, action, tau, u)

    def prepare(self, obs: Any) -> torch.Tensor:
        """A batch of real observations -> the encoder's input (64×64×3 uint8 frames, or float states)."""
        if self.config.pixels:
            frames = extract_frames(obs, self.config.frame_key)
            return preprocess_frames(frames, self.config.frame_crop, FRAME_SIZE).to(self.device)
        return torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)

    @torch.no_grad()
    def observe(self, carry: dict[str, torch.Tensor] | None, obs: Any, action: torch.Tensor | None,
                sample: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
        x = self.prepare(obs)
        if carry is None:
            carry = self.rssm.initial(x.shape[0], self.device)
        if action is None:
            action = torch.zeros(x.shape[0], self.action_dim, device=self.device)
        return self.rssm.observe(carry, x, action.to(self.device).float())

    def features(self, carry: dict[str, torch.Tensor], obs_type: str) -> torch.Tensor:
        if obs_type == "latent":
            return torch.cat([carry["deter"], carry["stoch"]], dim=-1)
        if obs_type == "z":
            return carry["stoch"].clone()
        if obs_type == "pixels":
            return self.decode(carry)
        raise ConfigError(f"obs_type must be one of ('latent', 'z', 'pixels') for an RSSM world model, got {obs_type!r}.")

    def feature_space(self, obs_type: str) -> spaces.Box:
        c = self.config.rssm
        if obs_type == "latent":  # the GRU's state stays in [-1, 1]; the one-hot latent in {0, 1}
            low = np.concatenate([np.full(c.deter, -1.0), np.zeros(c.stoch)]).astype(np.float32)
            return spaces.Box(low, np.ones(c.feature_dim, np.float32), dtype=np.float32)
        if obs_type == "z":
            return spaces.Box(0.0, 1.0, (c.stoch,), np.float32)
        if obs_type == "pixels":
            if not self.config.pixels:
                raise ConfigError(f"obs_type='pixels' needs a world model that sees frames; this one models "
                                  f"{self.config.env_id} state vectors. Use obs_type='latent' or 'z'.")
            return spaces.Box(0, 255, (64, 64, 3), np.uint8)
        raise ConfigError(f"obs_type must be one of ('latent', 'z', 'pixels') for an RSSM world model, got {obs_type!r}.")

    @torch.no_grad()
    def decode(self, carry: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.rssm.decode(carry)

    # ----- training and cards ----------------------------------------------------------------------
    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        return self.rssm.loss(batch)

    @torch.no_grad()
    def set_start_states(self, obs: torch.Tensor) -> None:
        """Posterior states after each real episode's first stored observation ``obs`` (n, ...), cycled to fill.
        Stored observations are already what the encoder takes (64×64 frames, or states)."""
        b = obs.shape[0]
        carry = self.rssm.observe(self.rssm.initial(b, self.device), obs.to(self.device),
                                  torch.zeros(b, self.action_dim, device=self.device))
        n = self.config.num_start_states
        rows = torch.arange(n) % carry["deter"].shape[0]
        self.start_deter.copy_(carry["deter"][rows])
        self.start_stoch.copy_(carry["stoch"][rows])

    def architecture_lines(self) -> list[str]:
        """The model card's architecture section (:mod:`dreamgym.cards`)."""
        c, r = self.config, self.config.rssm
        source = ("the posterior state (DreamerV3)" if r.heads_input == "posterior"
                  else "the GRU state and a prior sample, as dreams give them")
        return ["## Architecture",
                f"- RSSM (backend `rssm`): GRU {r.deter} units, {r.groups} categoricals × {r.classes} classes, "
                f"MLPs of {r.layers} × {r.hidden}; sees {c.obs_kind}" + (f" of size {c.obs_dim}" if c.obs_dim else ""),
                f"- heads: two-hot reward ({r.reward_bins} bins, symlog), continue (p(done) = 1 - p(continue)), "
                f"learned from {source}" + (f"; terminal steps weigh ×{r.continue_pos_weight:g} in the continue loss "
                                            "(sampled termination divides it back out)"
                                            if r.continue_pos_weight != 1 else ""),
                f"- temperature divides the prior's logits (0: each categorical's mode); default "
                f"{c.default_temperature}; time limit: {c.max_episode_steps} steps",
                f"- weights on disk: {c.storage_dtype}"]

