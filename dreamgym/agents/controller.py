"""C: the paper's controller, a = squash(W·[z, h] + b), saved as config.json + safetensors (models/hub_mixin.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from dreamgym.errors import ConfigError
from dreamgym.models.hub_mixin import StrictHubMixin
from dreamgym.spaces import action_dim, space_from_dict, space_to_dict

CONTROLLER_FORMAT = 1


@dataclass
class ControllerConfig:
    """A linear controller.

    :param obs_dim: input size (z‖h: 32 + 256 = 288 for CarRacing).
    :param action_space: the env's action space (``space_to_dict``).
    :param env_id: the env it acts in (a Dream id, or a real env id).
    :param obs_type: the observation it expects (``"latent"``, ``"zch"`` or ``"z"``).
    :param world_model: the world model whose dream it was trained in (directory, pretrained name or
        Hub id); the real twin must see reality through the same one.
    :param bias: a = squash(W·obs + b); False drops b (the paper's Doom controller).
    :param discrete: for a Discrete(3) space whose action 0 does nothing: ``"argmax"`` (one output
        per action) or ``"threshold"`` (the paper's Doom controller: one output, tanh, below -1/3
        is action 1, above 1/3 action 2, else 0).
    :param hidden: widths of hidden layers (Linear, LayerNorm, SiLU) before the output layer; empty
        (the default): the paper's linear controller, which CMA-ES searches. The Dreamer actor-critic
        (:mod:`dreamgym.agents.dreamer`) saves its actor's mean as such a controller.
    :param summary: training and evaluation numbers, written into the model card.
    """

    obs_dim: int
    action_space: dict[str, Any]
    env_id: str = ""
    obs_type: str = "latent"
    world_model: str = ""
    bias: bool = True
    discrete: str = "argmax"
    hidden: list[int] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    format_version: int = CONTROLLER_FORMAT


class LinearController(
    nn.Module,
    StrictHubMixin,
    library_name="dreamgym",
    tags=["dreamgym", "reinforcement-learning", "cma-es", "world-models"],
):
    """a = squash(W·obs + b): tanh mapped affinely onto a Box's bounds, argmax for a Discrete.

    Its flat parameter vector (``num_params``: (obs_dim + 1) × outputs; 867 for CarRacing)
    is what CMA-ES searches; :meth:`act_batched` evaluates a whole population at once.

    >>> from gymnasium import spaces
    >>> c = LinearController.for_spaces(spaces.Box(-1, 1, (288,)), spaces.Box(-1, 1, (3,)))
    >>> c.num_params
    867
    """

    config_class = ControllerConfig
    kind = "controller"

    def __init__(self, config: ControllerConfig | dict) -> None:
        super().__init__()
        if isinstance(config, dict):
            config = self.parse_config(config)
        if config.obs_dim < 1:
            raise ConfigError(f"obs_dim must be >= 1 (z, or z and h, of the world model), got {config.obs_dim}.")
        self.config = config
        self.source: dict[str, str] = {}  # where it was loaded from (see StrictHubMixin)
        self.action_space = space_from_dict(config.action_space, "config.json['action_space']")
        self.out_dim = action_dim(self.action_space)  # Box: one output per dimension; Discrete: one per action
        if config.discrete not in ("argmax", "threshold"):
            raise ConfigError(f"discrete must be 'argmax' or 'threshold', got {config.discrete!r}.")
        if config.discrete == "threshold":
            if not (isinstance(self.action_space, spaces.Discrete) and self.action_space.n == 3):
                raise ConfigError(
                    f"discrete='threshold' maps one output onto Discrete(3) (none / 1 / 2); this space is "
                    f"{self.action_space}. Use discrete='argmax'.")
            self.out_dim = 1
        if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in config.hidden) or len(config.hidden) > 8:
            raise ConfigError(f"hidden must be a list of at most 8 layer widths >= 1, got {config.hidden!r}.")
        widths = [config.obs_dim, *config.hidden]
        self.body = nn.Sequential(*(m for i in range(len(config.hidden)) for m in (
            nn.Linear(widths[i], widths[i + 1]), nn.LayerNorm(widths[i + 1]), nn.SiLU())))
        self.linear = nn.Linear(widths[-1], self.out_dim, bias=config.bias)
        if isinstance(self.action_space, spaces.Box):
            low = torch.as_tensor(self.action_space.low.reshape(-1), dtype=torch.float32)
            high = torch.as_tensor(self.action_space.high.reshape(-1), dtype=torch.float32)
            self.register_buffer("_scale", (high - low) / 2, persistent=False)
            self.register_buffer("_offset", (high + low) / 2, persistent=False)

    @classmethod
    def for_spaces(cls, observation_space: spaces.Space, action_space: spaces.Space, **kwargs: Any) -> "LinearController":
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
            raise ConfigError(
                f"LinearController needs a flat Box observation (obs_type 'latent' or 'z'), got {observation_space}."
            )
        return cls(ControllerConfig(obs_dim=observation_space.shape[0], action_space=space_to_dict(action_space), **kwargs))

    def _linear_only(self) -> None:
        if self.config.hidden:
            raise ConfigError(f"CMA-ES searches linear controllers; this one has hidden layers {self.config.hidden}.")

    @property
    def num_params(self) -> int:
        if self.config.hidden:
            return sum(p.numel() for p in self.parameters())
        return (self.config.obs_dim + int(self.config.bias)) * self.out_dim

    def get_flat(self) -> np.ndarray:
        self._linear_only()
        parts = [self.linear.weight.reshape(-1)] + ([self.linear.bias] if self.config.bias else [])
        return torch.cat(parts).detach().cpu().numpy().astype(np.float64)

    def set_flat(self, flat: np.ndarray) -> None:
        self._linear_only()
        flat = torch.as_tensor(np.asarray(flat), dtype=torch.float32)
        if flat.shape != (self.num_params,):
            raise ValueError(f"Expected {self.num_params} parameters, got shape {tuple(flat.shape)}.")
        n = self.config.obs_dim * self.out_dim
        with torch.no_grad():
            self.linear.weight.copy_(flat[:n].view(self.out_dim, self.config.obs_dim))
            if self.config.bias:
                self.linear.bias.copy_(flat[n:])

    def squash(self, out: torch.Tensor) -> torch.Tensor:
        """Raw outputs (..., out) -> actions: (..., *box_shape) floats or (...,) int64."""
        if isinstance(self.action_space, spaces.Discrete):
            if self.config.discrete == "threshold":
                x = torch.tanh(out[..., 0])
                return ((x < -1 / 3).long() + 2 * (x > 1 / 3).long()) + int(self.action_space.start)
            return out.argmax(dim=-1) + int(self.action_space.start)
        return (torch.tanh(out) * self._scale + self._offset).view(*out.shape[:-1], *self.action_space.shape)

    @torch.no_grad()
    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.squash(self.linear(self.body(obs)))

    def act_batched(self, flat_params: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """A population acting at once: params (p, num_params), obs (p, r, obs_dim) -> actions (p, r, ...)."""
        self._linear_only()
        p, n = flat_params.shape[0], self.config.obs_dim * self.out_dim
        weight = flat_params[:, :n].view(p, self.out_dim, self.config.obs_dim)
        if self.config.bias:
            out = torch.baddbmm(flat_params[:, None, n:], obs, weight.transpose(1, 2))  # p r o
        else:
            out = torch.bmm(obs, weight.transpose(1, 2))  # p r o
        return self.squash(out)

    def act_rows(self, flat_params: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """Each row its own parameters: params (b, num_params), obs (b, obs_dim) -> actions (b, ...)."""
        self._linear_only()
        b, n = flat_params.shape[0], self.config.obs_dim * self.out_dim
        weight = flat_params[:, :n].view(b, self.out_dim, self.config.obs_dim)
        out = torch.bmm(weight, obs[:, :, None])[:, :, 0]  # b o i @ b i 1 -> b o
        if self.config.bias:
            out = out + flat_params[:, n:]
        return self.squash(out)

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, None]:
        """SB3-style ``predict`` so evaluation code treats controllers and SB3 agents alike."""
        obs = torch.as_tensor(np.asarray(observation, dtype=np.float32))
        single = obs.ndim == 1
        action = self.forward(obs[None] if single else obs).cpu().numpy()
        if isinstance(self.action_space, spaces.Box):
            action = action.astype(self.action_space.dtype)
        return (action[0] if single else action), None
