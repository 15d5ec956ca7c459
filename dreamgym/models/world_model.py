"""WorldModel: V + M + heads + start states, saved as config.json + model.safetensors (+ card, see cards.py).

Models stay stateless: the dream's carry (z, h, c) lives in the envs and is passed in and out.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from dreamgym import rng
from dreamgym.backends import Episodes, Noise
from dreamgym.checkpoint import parse_checkpoint_config
from dreamgym.data.frames import crop_is_valid, extract_frames, preprocess_frames
from dreamgym.errors import ConfigError
from dreamgym.models.heads import Heads, HeadsConfig
from dreamgym.models.hub_mixin import StrictHubMixin
from dreamgym.models.mdnrnn import MDNRNN, MemoryConfig, joint_logits, mixture_nll, sample_mixture
from dreamgym.models.vision import VisionConfig, build_vision
from dreamgym.spaces import action_dim, space_from_dict, space_to_dict

if TYPE_CHECKING:
    from dreamgym.models.lean import LeanDream

FORMAT_VERSION = 1

# The paper's sizes of this backend per real env (z_dim, LSTM units); other envs get DEFAULT_SIZES.
PAPER_SIZES: dict[str, tuple[int, int]] = {"CarRacing-v3": (32, 256), "VizdoomTakeCover-v1": (64, 512),
                                           "Pendulum-v1": (3, 64)}
DEFAULT_SIZES = (32, 256)


def paper_sizes(env_id: str) -> tuple[int, int]:
    """``(z_dim, hidden_size)`` of a VAE + MDN-RNN for ``env_id``: the paper's where it has some."""
    return PAPER_SIZES.get(env_id, DEFAULT_SIZES)


@dataclass
class DreamOptions:
    """How a dream resists being exploited; each is also a ``gym.make`` keyword argument.

    :param temperature_range: ``[low, high]``: each dream episode draws its tau uniformly from this
        range at reset (domain randomisation over the paper's temperature); None: a fixed tau.
    :param disagreement_penalty: lambda of MOPO's pessimism, reward - lambda * disagreement (ensembles).
    :param halt_threshold: MOReL's HALT: an episode ends (``terminated``) once the ensemble's
        disagreement exceeds this; None: never.
    :param halt_penalty: the reward of the step that HALTs (MOReL: a large negative number).
    :param ensemble_draw: with an ensemble, each episode's dynamics come from one member drawn at
        reset (ME-TRPO); False: always member 0. Agents always see member 0's memory h.
    :param dropout_masks: with a model trained with dropout, each episode draws a fresh dropout
        mask on M's output (*Dropout's Dream Land*); False: no mask.
    :param termination: ``"threshold"``: a step terminates when the head's p(done) exceeds
        ``heads.done_threshold`` (the paper); ``"sample"``: it terminates with the head's probability
        calibrated for the positive-class weight it was trained with, sigmoid(logit - log(weight)),
        drawn from the env's seeded noise. The head was trained with deaths weighted
        ``termination_pos_weight`` times, which moves its logit up by log(weight); thresholding that
        at 0.5 kills far more often than reality does.
    :param action_low, action_high: narrower bounds for a Box action space, one number per action
        dimension (or one for all), inside the real env's bounds; None: the real env's. The dream and
        its real twin (:func:`dreamgym.make_real`) both expose the narrowed Box and clip actions to
        it, so an agent trained in the dream acts within it in reality too. CarRacing: a cap on the
        gas (``action_high=[1, 0.3, 1]``) keeps agents from the speeds that the dream pays for and
        reality does not (pretrained/README.md).
    """

    temperature_range: list[float] | None = None
    disagreement_penalty: float = 0.0
    halt_threshold: float | None = None
    halt_penalty: float = 0.0
    ensemble_draw: bool = True
    dropout_masks: bool = True
    termination: str = "threshold"
    action_low: list[float] | None = None
    action_high: list[float] | None = None

    def validate(self) -> None:
        for name in ("action_low", "action_high"):
            v = getattr(self, name)
            if v is None:
                continue
            values = list(v) if isinstance(v, (list, tuple)) else [v]
            if not values or any(isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x)
                                 for x in values):
                raise ConfigError(f"{name} must be a list of finite numbers (one per action dimension, or one "
                                  f"for all), got {v!r}.")
            setattr(self, name, [float(x) for x in values])
        if self.temperature_range is not None:
            r = self.temperature_range
            if not isinstance(r, (list, tuple)) or len(r) != 2:
                raise ConfigError(f"temperature_range must be [low, high], got {r!r}.")
            low, high = (check_temperature(x) for x in r)
            if low > high:
                raise ConfigError(f"temperature_range must have low <= high, got {list(r)}.")
            self.temperature_range = [low, high]
        for name in ("disagreement_penalty", "halt_penalty"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"{name} must be a finite number, got {v!r}.")
        if self.disagreement_penalty < 0:
            raise ConfigError(f"disagreement_penalty must be >= 0, got {self.disagreement_penalty}.")
        if self.termination not in ("threshold", "sample"):
            raise ConfigError(f"termination must be 'threshold' or 'sample', got {self.termination!r}.")
        t = self.halt_threshold
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0 or not math.isfinite(t)):
            raise ConfigError(f"halt_threshold must be a finite number > 0 or None, got {t!r}.")


@dataclass
class WorldModelConfig:
    """Everything needed to rebuild a world model and its dream; this is what config.json holds.

    :param env_id: the real env's Gymnasium id (e.g. ``"CarRacing-v3"``).
    :param action_space: the real env's action space, as :func:`dreamgym.spaces.space_to_dict` writes it.
    :param observation_space: the real env's observation space (for make_real's checks).
    :param vision: V's architecture; :param memory: M's; :param heads: the reward/termination heads'.
    :param env_kwargs: kwargs for ``gym.make(env_id)`` in the real twin.
    :param frame_key: key of the image in a dict observation (ViZDoom: ``"screen"``); None otherwise.
    :param frame_crop: ``[top, bottom, left, right]`` pixel bounds kept before resizing to 64×64
        (CarRacing drops its dashboard: ``[0, 84, 0, 96]``); None keeps the whole frame.
    :param max_episode_steps: the real env's time limit, which the dream copies.
    :param default_temperature: tau used when ``gym.make`` gets none.
    :param render_fps: frames per second of renders and videos.
    :param burn_in_steps: start states were recorded after this many real steps; the real twin
        burns in the same number of steps with the neutral action.
    :param real_sample_z: the real twin's default for z: True draws it from V's posterior (what an M trained on
        sampled z saw, and what the paper's code fed its controllers), False takes the posterior mean;
        ``make_real(sample_z=...)`` overrides it.
    :param num_start_states: how many (z, h, c) start states the checkpoint stores.
    :param storage_dtype: ``"float32"`` or ``"float16"`` on disk (always float32 in memory).
    :param dream: the dream's defaults against exploitation (temperature range, ensemble pessimism,
        HALT, dropout masks); ``gym.make`` keyword arguments override them.
    :param summary: data, training and fidelity numbers, written into the model card.
    :param backend: the world-model backend that loads this checkpoint (:mod:`dreamgym.backends`);
        ``"mdnrnn"`` (V + MDN-RNN) here, and for checkpoints written before the field existed.
    :param format_version: the checkpoint format; newer formats are refused.
    """

    env_id: str
    action_space: dict[str, Any]
    observation_space: dict[str, Any]
    vision: VisionConfig = field(default_factory=VisionConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    frame_key: str | None = None
    frame_crop: list[int] | None = None
    max_episode_steps: int = 1000
    default_temperature: float = 1.0
    render_fps: int = 50
    burn_in_steps: int = 0
    real_sample_z: bool = False
    num_start_states: int = 1
    storage_dtype: str = "float32"
    dream: "DreamOptions" = field(default_factory=lambda: DreamOptions())
    summary: dict[str, Any] = field(default_factory=dict)
    backend: str = "mdnrnn"
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        for key in ("action_space", "observation_space"):  # canonical: uniform Box bounds as one number
            try:
                setattr(self, key, space_to_dict(space_from_dict(getattr(self, key))))
            except (ConfigError, KeyError, TypeError, ValueError):
                pass  # left as given: validate() and the env checks say what is wrong with it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config.json") -> "WorldModelConfig":
        """Strict parse: unknown or missing fields, wrong JSON types and newer formats raise CheckpointError."""
        return parse_checkpoint_config(cls, d, where)

    def validate(self) -> None:
        if self.backend != "mdnrnn":
            raise ConfigError(f"config.json's backend is {self.backend!r}, not 'mdnrnn': load it with "
                              "dreamgym.backends.load_backend (or gym.make(..., model=<folder>)), which picks its class.")
        self.vision.validate()
        self.memory.validate()
        self.heads.validate()
        self.dream.validate()
        action_dim(space_from_dict(self.action_space, "config.json['action_space']"))  # Box or Discrete
        space_from_dict(self.observation_space, "config.json['observation_space']")
        crop = self.frame_crop
        if not crop_is_valid(crop):
            raise ConfigError(f"frame_crop must be [top, bottom, left, right] with 0 <= top < bottom and "
                              f"0 <= left < right, or null, got {crop}.")
        if self.render_fps < 1 or self.burn_in_steps < 0:
            raise ConfigError(f"render_fps must be >= 1 and burn_in_steps >= 0, "
                              f"got {self.render_fps}, {self.burn_in_steps}.")
        if self.storage_dtype not in ("float32", "float16"):
            raise ConfigError(f"storage_dtype must be 'float32' or 'float16', got {self.storage_dtype!r}.")
        if self.num_start_states < 1:
            raise ConfigError(f"num_start_states must be >= 1, got {self.num_start_states}.")
        if self.max_episode_steps < 1:
            raise ConfigError(f"max_episode_steps must be >= 1, got {self.max_episode_steps}.")
        try:
            check_temperature(self.default_temperature)
        except ValueError as e:
            raise ConfigError(f"default_temperature: {e}") from e

    @property
    def pixels(self) -> bool:
        """True when V sees frames (a conv VAE), False for state vectors."""
        return self.vision.kind == "conv_vae"


MAX_TEMPERATURE = 1e3  # sqrt(1e3) < 32: sigma * sqrt(tau) and logits / tau stay far inside float32 (useful: 0-1.5)


def check_temperature(value: Any) -> float:
    """Return tau as a float in ``[0, MAX_TEMPERATURE]``, or raise ConfigError (a ValueError) naming the range.

    Python and numpy numbers and 0-d numpy arrays are taken alike; bools, strings and None are not.
    """
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        value = value.item()  # a 0-d array is the same number as the numpy scalar it holds
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"temperature must be a finite number in [0, {MAX_TEMPERATURE:g}], got {value!r} of type "
                          f"{type(value).__name__}.")
    try:
        tau = float(value)
    except OverflowError:  # an int beyond float's range
        tau = math.inf
    if not (math.isfinite(tau) and 0 <= tau <= MAX_TEMPERATURE):
        raise ConfigError(f"temperature must be a finite number in [0, {MAX_TEMPERATURE:g}] (0 = deterministic, "
                          f"1 = as trained), got {value!r}.")
    return tau


class WorldModel(
    nn.Module,
    StrictHubMixin,
    library_name="dreamgym",
    tags=["world-model", "gymnasium", "reinforcement-learning", "dreamgym"],
    repo_url="https://github.com/dreamgym/dreamgym",
):
    """V + M + heads + start states: a dream of one real env.

    >>> from dreamgym.testing import tiny_world_model_config
    >>> model = WorldModel(tiny_world_model_config("Pendulum-v1"))
    >>> z, h, c = model.initial_state(torch.zeros(2, dtype=torch.long))
    >>> tuple(z.shape), tuple(h.shape)
    ((2, 3), (2, 8))
    """

    config_class = WorldModelConfig
    kind = "world_model"

    def __init__(self, config: WorldModelConfig | dict) -> None:
        super().__init__()
        if isinstance(config, dict):
            config = WorldModelConfig.from_dict(config)
        config.validate()
        self.config = config
        self.action_space = space_from_dict(config.action_space)
        self.z_dim = config.vision.z_dim
        self.hidden_size = config.memory.hidden_size
        self.action_dim = action_dim(self.action_space)
        self.vision = build_vision(config.vision)
        self.memory = MDNRNN(config.memory, self.z_dim, self.action_dim)
        self.heads = Heads(config.heads, self.hidden_size)
        # members 1..K-1 of an ensemble (member 0 is memory + heads above, so single models keep their keys)
        self.ensemble = nn.ModuleList(
            nn.ModuleDict({"memory": MDNRNN(config.memory, self.z_dim, self.action_dim),
                           "heads": Heads(config.heads, self.hidden_size)})
            for _ in range(config.memory.ensemble - 1)
        )
        self.source: dict[str, str] = {}  # where it was loaded from: a path, or repo_id + revision + commit
        n = config.num_start_states
        self.register_buffer("start_z", torch.zeros(n, self.z_dim))
        self.register_buffer("start_h", torch.zeros(n, self.hidden_size))
        self.register_buffer("start_c", torch.zeros(n, self.hidden_size))

    # ----- the dream ---------------------------------------------------------------------------
    def initial_state(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stored start states (b,) indices -> z (b, z), h, c (b, H)."""
        return self.start_z[index], self.start_h[index], self.start_c[index]

    @torch.no_grad()
    def imagine_step(
        self,
        z: torch.Tensor,
        h: torch.Tensor,
        c: torch.Tensor,
        action: torch.Tensor,
        temperature: torch.Tensor,
        u: torch.Tensor,
        eps: torch.Tensor,
        compute_dtype: torch.dtype = torch.float32,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One dream step for a batch -> z', h', c', reward (b,), p(done) (b,).

        ``u`` and ``eps`` (b, z) are the step's uniforms and normals (from :mod:`dreamgym.rng`).
        ``compute_dtype=torch.bfloat16`` runs M's two big matmuls in bfloat16 (several times faster
        on CPUs with bf16 instructions); the recurrent state and everything else stay float32.
        """
        h, c = self.memory.step(z, action, h, c, compute_dtype)
        logits, mu, log_sigma = self.memory.mixture(h, compute_dtype)
        z = sample_mixture(logits, mu, log_sigma, temperature, u, eps, self.config.memory.joint)
        reward, done_logit = self.heads(h)
        return z, h, c, reward, torch.sigmoid(done_logit)

    @property
    def num_members(self) -> int:
        """Members of M's ensemble (1 for a single M)."""
        return 1 + len(self.ensemble)

    def member(self, i: int) -> tuple[MDNRNN, Heads]:
        """Member i's M and heads; member 0 is ``memory`` and ``heads``."""
        if i == 0:
            return self.memory, self.heads
        m = self.ensemble[i - 1]
        return m["memory"], m["heads"]

    def _stacked(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every member's fused LSTM weight (K, z+a+H+1, 4H), mixture weight (K, H, 3kz) and bias (K, 1, 3kz),
        rebuilt only when a weight changed."""
        members = [self.member(i)[0] for i in range(self.num_members)]
        params = tuple(p for m in members for p in (*m.lstm.parameters(), *m.mdn.parameters()))
        cache = self.__dict__.setdefault("_stack_cache", {})
        key = (dtype, *((p.data_ptr(), p._version, p.device) for p in params))
        if cache.get("key") != key:
            gates = torch.stack([m._fused_lstm_weight() for m in members]).to(dtype)
            mdn_w = torch.stack([m.mdn.weight.t() for m in members]).to(dtype).contiguous()
            mdn_b = torch.stack([m.mdn.bias for m in members])[:, None]
            cache.update(key=key, value=(gates, mdn_w, mdn_b))
        return cache["value"]

    @torch.no_grad()
    def imagine_step_members(
        self,
        z: torch.Tensor,
        h: torch.Tensor,
        c: torch.Tensor,
        action: torch.Tensor,
        member: torch.Tensor,
        mask: torch.Tensor | None,
        temperature: torch.Tensor,
        u: torch.Tensor,
        eps: torch.Tensor,
        compute_dtype: torch.dtype = torch.float32,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One dream step of every ensemble member at once (two batched matmuls).

        z (b, z), action (b, a); h, c (K, b, H): each member's own memory of the same history.
        ``member`` (b,) picks whose prediction the dream follows; ``mask`` (b, H) or None multiplies
        M's output before the mixture and heads (a dropout mask). Returns z' (b, z), h', c' (K, b, H),
        reward (b,), p(done) (b,) and the disagreement (b,): the standard deviation across members of
        the predicted next latent (mixture mean), root-mean-squared over its dimensions; 0 for one member.
        """
        k, b = h.shape[0], z.shape[0]
        gates_w, mdn_w, mdn_b = self._stacked(compute_dtype)
        ones = torch.ones(k, b, 1, dtype=z.dtype, device=z.device)
        x = torch.cat([z.expand(k, -1, -1), action.expand(k, -1, -1), h, ones], dim=-1)  # K b (z+a+H+1)
        gates = torch.bmm(x.to(compute_dtype), gates_w).float()  # K b 4H
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        hm = h if mask is None else h * mask
        out = (torch.bmm(hm.to(compute_dtype), mdn_w).float() + mdn_b)
        n_mix = self.config.memory.n_mixtures
        out = out.view(k, b, 3, n_mix, self.z_dim)  # K b (3 k z) -> K b 3 k z
        logits, mu, log_sigma = out.unbind(dim=2)
        log_sigma = log_sigma.clamp(-7.0, 5.0)
        joint = self.config.memory.joint
        if joint:
            logits = joint_logits(logits)
        rows = torch.arange(b, device=z.device)
        z_next = sample_mixture(logits[member, rows], mu[member, rows], log_sigma[member, rows], temperature, u, eps,
                                joint)
        rewards, logits_done = zip(*(self.member(j)[1](hm[j]) for j in range(k)))
        reward = torch.stack(rewards)[member, rows]
        p_done = torch.sigmoid(torch.stack(logits_done)[member, rows])
        if k > 1:
            mean = (torch.softmax(logits, dim=2) * mu).sum(dim=2)  # K b k z -> K b z
            disagreement = mean.std(dim=0, unbiased=False).pow(2).mean(dim=-1).sqrt()
        else:
            disagreement = torch.zeros(b, device=z.device)
        return z_next, h, c, reward, p_done, disagreement

    @torch.no_grad()
    def observe_step(
        self, z: torch.Tensor, h: torch.Tensor, c: torch.Tensor, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance M on a real step (z_t, a_t) -> h', c'; the real twin's memory."""
        return self.memory.step(z, action, h, c)

    # ----- the backend protocol (dreamgym.backends): the carry {"z", "h", "c", ...} -------------
    # With an ensemble or a dropout mask the carry also holds every member's memory "h_members",
    # "c_members" (b, K, H) ("h", "c" are member 0's, what agents see), "member" (b,), "mask" (b, H)
    # and, for K > 1, "disagreement" (b,).
    OBS_TYPES = ("latent", "zch", "z", "pixels")
    finite_keys = ("z",)  # the carry entries a dream checks for NaN/inf each step (h, c follow from z)
    done_threshold = property(lambda self: self.config.heads.done_threshold)
    termination_pos_weight = property(lambda self: self.config.heads.termination_pos_weight)

    def _members_mode(self, dropout_masks: bool) -> bool:
        """Whether dreams step every member at once: an ensemble, or a dropout mask to apply."""
        return self.num_members > 1 or (self.config.memory.dropout > 0 and dropout_masks)

    def initial(self, index: torch.Tensor, episodes: Episodes | None = None) -> dict[str, torch.Tensor]:
        """The carry of stored start states ``index`` (b,); every member starts from member 0's memory."""
        z, h, c = self.initial_state(index.to(self.start_z.device))
        return self._carry(z, h, c, episodes)

    def start(self, latent: torch.Tensor) -> dict[str, torch.Tensor]:
        """The carry of a real episode's start: z = ``latent`` (b, z), fresh memory (h = c = 0).
        The episode's own draws (member, mask) are left out: a dream keeps those it has."""
        z = latent.to(self.start_z.device, torch.float32)
        h = torch.zeros(z.shape[0], self.hidden_size, device=z.device)
        return self._memories(z, h, torch.zeros_like(h), self._members_mode(True))

    def _memories(self, z: torch.Tensor, h: torch.Tensor, c: torch.Tensor, members: bool) -> dict[str, torch.Tensor]:
        carry = {"z": z, "h": h, "c": c}
        if members:
            k = self.num_members
            carry["h_members"] = h[:, None].expand(-1, k, -1).clone()
            carry["c_members"] = c[:, None].expand(-1, k, -1).clone()
            carry["h"], carry["c"] = carry["h_members"][:, 0], carry["c_members"][:, 0]
        return carry

    def _carry(self, z: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
               episodes: Episodes | None) -> dict[str, torch.Tensor]:
        members = self._members_mode(True if episodes is None else episodes.dropout_masks)
        carry = self._memories(z, h, c, members)
        if not members:
            return carry
        b, k, dev = z.shape[0], self.num_members, z.device
        member = torch.zeros(b, dtype=torch.long, device=dev) if episodes is None else episodes.member.to(dev)
        carry["member"] = member
        keep = 1.0 - self.config.memory.dropout
        if keep < 1.0 and (episodes is None or episodes.dropout_masks):
            keys = torch.zeros(b, dtype=torch.int64, device=dev) if episodes is None else episodes.keys.to(dev)
            carry["mask"] = dropout_mask(keys, self.hidden_size, keep)
        if k > 1:
            carry["disagreement"] = torch.zeros(b, device=dev)
        return carry

    def imagine(self, carry: dict[str, torch.Tensor], action: torch.Tensor, tau: torch.Tensor, noise: Noise,
                dtype: torch.dtype = torch.float32) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """One dream step of the carry (see :meth:`imagine_step`, :meth:`imagine_step_members`; no autograd)."""
        u, eps = noise.uniform_and_normal(self.z_dim)
        if "h_members" not in carry:
            z, h, c, reward, p_done = self.imagine_step(carry["z"], carry["h"], carry["c"], action, tau, u, eps, dtype)
            return {"z": z, "h": h, "c": c}, reward, p_done
        # members are stored batch-first (b, K, H); the batched matmuls want them K-first
        z, h_k, c_k, reward, p_done, disagreement = self.imagine_step_members(
            carry["z"], carry["h_members"].transpose(0, 1), carry["c_members"].transpose(0, 1), action,
            carry["member"], carry.get("mask"), tau, u, eps, dtype)
        out = {**carry, "z": z, "h": h_k[0], "c": c_k[0], "h_members": h_k.transpose(0, 1),
               "c_members": c_k.transpose(0, 1)}
        if "disagreement" in carry:
            out["disagreement"] = disagreement
        return out, reward, p_done

    @torch.no_grad()
    def observe(self, carry: dict[str, torch.Tensor] | None, obs: Any, action: torch.Tensor | None,
                sample: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
        """The real twin's carry: z from V's posterior of ``obs`` (mean, or a draw with ``sample``);
        h, c advanced by M on the previous z and ``action`` (fresh at an episode's start)."""
        z = self._posterior(obs, sample)
        if carry is None:
            return self.start(z)
        h, c = self.observe_step(carry["z"], carry["h"], carry["c"], action)
        return {"z": z, "h": h, "c": c}

    def _posterior(self, obs: Any, sample: np.random.Generator | None) -> torch.Tensor:
        if sample is None:
            return self.encode(obs)
        with torch.no_grad():
            mu, logvar = self.vision.encode(self.prepare(obs))
        if logvar is None:  # state coders have no posterior noise
            return mu
        eps = torch.as_tensor(sample.standard_normal(mu.shape), dtype=mu.dtype, device=mu.device)
        return mu + torch.exp(0.5 * logvar) * eps

    def features(self, carry: dict[str, torch.Tensor], obs_type: str) -> torch.Tensor:
        """``"latent"``: z‖h; ``"zch"``: z‖c‖h (the paper's Doom controller); ``"z"``; ``"pixels"``: decoded frames."""
        if obs_type == "latent":
            return torch.cat([carry["z"], carry["h"]], dim=-1)
        if obs_type == "zch":
            return torch.cat([carry["z"], carry["c"], carry["h"]], dim=-1)
        if obs_type == "z":
            return carry["z"].clone()
        return self.decode(carry)

    def feature_space(self, obs_type: str) -> spaces.Box:
        """The single-env space of ``features(carry, obs_type)``: h = o * tanh(c) lies in [-1, 1]; z and c are unbounded."""
        z, h = self.z_dim, self.hidden_size
        if obs_type == "latent":
            low = np.concatenate([np.full(z, -np.inf), np.full(h, -1.0)]).astype(np.float32)
            return spaces.Box(low, -low, dtype=np.float32)
        if obs_type == "zch":
            low = np.concatenate([np.full(z + h, -np.inf), np.full(h, -1.0)]).astype(np.float32)
            return spaces.Box(low, np.concatenate([np.full(z + h, np.inf), np.ones(h)]).astype(np.float32),
                              dtype=np.float32)
        if obs_type == "z":
            return spaces.Box(-np.inf, np.inf, (z,), np.float32)
        if obs_type == "pixels":
            if not self.config.pixels:
                raise ConfigError(
                    f"obs_type='pixels' needs a world model that sees frames; this one models {self.config.env_id} "
                    f"state vectors (vision.kind={self.config.vision.kind!r}). Use obs_type='latent' or 'z'."
                )
            size = self.config.vision.image_size
            return spaces.Box(0, 255, (size, size, 3), np.uint8)
        raise ConfigError(f"obs_type must be one of {self.OBS_TYPES}, got {obs_type!r}.")

    def lean(self) -> "LeanDream | None":
        """The numpy single-env dream step (same interface on numpy carries), or None for ensembles."""
        if self.num_members > 1:
            return None
        from dreamgym.models.lean import LeanDream

        return LeanDream(self)

    # ----- V ---------------------------------------------------------------------------------
    def prepare(self, obs: Any) -> torch.Tensor:
        """A batch of real observations -> what V takes: 64×64×3 uint8 frames or float states."""
        device = self.start_z.device
        if self.config.pixels:
            frames = extract_frames(obs, self.config.frame_key)
            return preprocess_frames(frames, self.config.frame_crop, self.config.vision.image_size).to(device)
        return torch.as_tensor(np.asarray(obs, dtype=np.float32), device=device)

    @torch.no_grad()
    def encode(self, obs: Any) -> torch.Tensor:
        """A batch of real observations -> z (b, z), the posterior mean (deterministic)."""
        mu, _ = self.vision.encode(self.prepare(obs))
        return mu

    @torch.no_grad()
    def decode(self, z: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
        """z (b, z), or a carry -> frames (b, 64, 64, 3) uint8, or states (b, obs_dim) float32."""
        if isinstance(z, Mapping):
            z = torch.as_tensor(z["z"]).to(self.start_z.device)
        x = self.vision.decode(z)
        if not bool(torch.isfinite(x).all()):  # NaN frames would turn into silent uint8 garbage
            from dreamgym.errors import NumericalError

            raise NumericalError(
                "V's decoder produced NaN/inf from latents of shape "
                f"{tuple(z.shape)}; the checkpoint's vision weights or the latent are broken. "
                "Check the checkpoint (WorldModel.from_pretrained validates it) or the start_latent you passed."
            )
        if self.config.pixels:
            return (x * 255.0).round().clamp(0, 255).to(torch.uint8)
        return x

    # ----- training --------------------------------------------------------------------------
    def memory_loss(self, batch: dict[str, torch.Tensor],
                    detach_heads: bool = False) -> tuple[torch.Tensor, dict[str, float]]:
        """M + heads loss on latent sequences.

        batch: ``z`` (b, t+1, z) latents, ``action`` (b, t, a) M-ready actions, ``reward`` (b, t),
        ``terminated`` (b, t), ``mask`` (b, t) valid steps. Step t predicts z_{t+1}, r_t, done_t.
        ``detach_heads``: the heads learn on a detached h, so the LSTM learns only to predict z (on long
        runs the joint loss lets h memorise the training episodes' few deaths).
        """
        z, mask = batch["z"], batch["mask"].float()
        k = self.num_members
        total = z.new_zeros(())
        logged: dict[str, float] = {}
        for j in range(k):
            memory, heads = self.member(j)
            # an ensemble's members see bootstrap resamples: Poisson(1) weights per window (online bagging)
            m = mask if k == 1 else mask * torch.poisson(torch.ones(z.shape[0], 1, device=z.device))
            out, _ = memory.sequence(z[:, :-1], batch["action"])
            if self.config.memory.dropout > 0:
                out = F.dropout(out, self.config.memory.dropout, training=self.training)
            logits, mu, log_sigma = memory.mixture(out)
            nll = mixture_nll(logits, mu, log_sigma, z[:, 1:], self.config.memory.joint).mean(dim=-1)  # b t z -> b t
            z_loss = (nll * m).sum() / m.sum().clamp(min=1)
            head_loss, metrics = heads.loss(out.detach() if detach_heads else out, batch["reward"],
                                            batch["terminated"], m)
            total = total + z_loss + head_loss
            if j == 0:
                logged = {"z_nll": z_loss.item(), **metrics}
        loss = total / k
        return loss, {"loss": loss.item(), **logged}


def dropout_mask(keys: torch.Tensor, width: int, keep: float) -> torch.Tensor:
    """(b,) noise keys -> (b, width) inverted-dropout masks (0 or 1/keep), from the key's own stream
    (step -1, which no dream step uses): the same key gives the same mask in every env and path."""
    u, _ = rng.uniform_and_normal(keys, torch.full_like(keys, -1), width)
    return (u < keep).float() / keep
