"""The Dreamer line's world model: a recurrent state-space model (RSSM), DreamerV2/V3 style.

The state is a deterministic GRU memory ``deter`` and a stochastic latent ``stoch`` of ``groups``
categoricals with ``classes`` classes each (one-hot, flattened). A step of imagination:

    deter' = GRU(MLP(stoch ‖ action), deter)        prior p(stoch' | deter') = categoricals
    reward = symexp(two-hot head(deter' ‖ stoch'))  p(done) = 1 - sigmoid(continue head)

and a step of observation (the real twin, and training) replaces the prior with the posterior
q(stoch' | deter', embed(obs')). Training follows DreamerV3: straight-through one-hot samples with
1 % uniform mixing, KL balancing (dynamics 0.5, representation 0.1) with 1 nat of free bits, symlog
inputs and targets for vector observations, a two-hot symexp reward head, a continue head.

**Temperature.** tau divides the prior's logits before sampling, as it scales the MDN's mixture:
tau = 1 samples the trained prior, tau > 1 flattens it (more surprise), tau < 1 sharpens it, and
tau = 0 takes each categorical's mode (a deterministic dream). The 1 % uniform mix is applied after
the tempering, so tau > 0 never makes a class impossible.

Models stay stateless: the carry ``{"deter": (b, D), "stoch": (b, G*C)}`` is passed in and out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dreamgym.errors import ConfigError


@dataclass
class RSSMConfig:
    """Sizes and loss weights of an RSSM; pick a preset with :meth:`preset`.

    :param deter: GRU units. :param groups: categorical latents. :param classes: classes of each.
    :param hidden: width of every MLP layer. :param layers: hidden layers of the heads and encoders.
    :param depth: channels of the first conv layer (frames only; doubled at each of 4 layers).
    :param unimix: uniform mixture added to every categorical (DreamerV3: 0.01).
    :param free_nats: KL free bits, in nats. :param dyn_scale, rep_scale: KL balancing weights.
    :param reward_bins: bins of the two-hot reward head (symlog space, -20..20).
    :param heads_input: what the reward and continue heads learn from. ``"posterior"`` (DreamerV3): the
        state after seeing the next observation. ``"prior"``: the GRU state after the action and a sample of
        the prior, the state a dream hands them. Use it where the posterior makes the heads' job trivial
        and the prior never learns it: ViZDoom's terminal frame is black, so a posterior-trained continue
        head reads deaths off the black frame, and a dream whose prior rarely draws one never dies.
    :param continue_pos_weight: weight of terminal steps in the continue loss (rare deaths learned
        harder, as the MDN-RNN's ``termination_pos_weight``); it moves the head's done-logit up by
        log(weight), and dreams that sample termination take it back off, so p(done) stays calibrated.
    """

    deter: int = 256
    groups: int = 32
    classes: int = 32
    hidden: int = 256
    layers: int = 2
    depth: int = 16
    unimix: float = 0.01
    free_nats: float = 1.0
    dyn_scale: float = 0.5
    rep_scale: float = 0.1
    reward_bins: int = 255
    heads_input: str = "posterior"
    continue_pos_weight: float = 1.0

    PRESETS = {
        "tiny": dict(deter=16, groups=4, classes=4, hidden=16, layers=1, depth=4, reward_bins=31),
        "cpu": dict(deter=128, groups=16, classes=16, hidden=128, layers=2, depth=16),
        "paper": dict(deter=2048, groups=32, classes=32, hidden=512, layers=2, depth=32),
    }

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "RSSMConfig":
        if name not in cls.PRESETS:
            raise ConfigError(f"Unknown RSSM preset {name!r}; expected one of {sorted(cls.PRESETS)}.")
        return cls(**{**cls.PRESETS[name], **overrides})

    @property
    def stoch(self) -> int:
        return self.groups * self.classes

    @property
    def feature_dim(self) -> int:
        return self.deter + self.stoch

    def validate(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type in ("int", int) and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"rssm.{f.name} must be an integer >= 1, got {v!r}.")
        if not 0.0 <= self.unimix < 1.0:
            raise ConfigError(f"rssm.unimix must be in [0, 1), got {self.unimix}.")
        w = self.continue_pos_weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not (math.isfinite(w) and w >= 1):
            raise ConfigError(f"rssm.continue_pos_weight must be a finite number >= 1, got {w!r}.")
        for name in ("free_nats", "dyn_scale", "rep_scale"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"rssm.{name} must be a finite number >= 0, got {v!r}.")
        if self.heads_input not in ("posterior", "prior"):
            raise ConfigError(f"rssm.heads_input must be 'posterior' or 'prior', got {self.heads_input!r}.")
        if self.reward_bins < 3:
            raise ConfigError(f"rssm.reward_bins must be >= 3, got {self.reward_bins}.")


# ----- DreamerV3's transforms -------------------------------------------------------------------
def symlog(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(x.abs().clamp(max=80.0))


class TwoHot(nn.Module):
    """A head over ``bins`` fixed points in symlog space, read out as symexp of the expected bin."""

    def __init__(self, bins: int, low: float = -20.0, high: float = 20.0) -> None:
        super().__init__()
        self.register_buffer("points", torch.linspace(low, high, bins), persistent=False)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        return symexp((torch.softmax(logits, dim=-1) * self.points).sum(-1))

    def target(self, y: torch.Tensor) -> torch.Tensor:
        """Real targets (...) -> two-hot weights (..., bins) on the two bins around symlog(y)."""
        x = symlog(y).clamp(self.points[0], self.points[-1])
        hi = torch.searchsorted(self.points, x.contiguous()).clamp(1, len(self.points) - 1)
        lo = hi - 1
        w_hi = (x - self.points[lo]) / (self.points[hi] - self.points[lo])
        out = torch.zeros(*x.shape, len(self.points), device=x.device)
        out.scatter_(-1, lo[..., None], (1 - w_hi)[..., None])
        out.scatter_add_(-1, hi[..., None], w_hi[..., None])
        return out

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy against the two-hot target, per element (...)."""
        return -(self.target(y) * torch.log_softmax(logits, dim=-1)).sum(-1)


def mlp(inp: int, hidden: int, out: int, layers: int) -> nn.Sequential:
    """``layers`` × (Linear, LayerNorm, SiLU), then a Linear to ``out``."""
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Linear(inp if i == 0 else hidden, hidden), nn.LayerNorm(hidden), nn.SiLU()]
    mods.append(nn.Linear(hidden if layers else inp, out))
    return nn.Sequential(*mods)


class ConvEncoder(nn.Module):
    """64×64×3 uint8 frames (b, 64, 64, 3) -> embeddings (b, 8·depth·4·4); 4 stride-2 convs."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        chans = [3, depth, 2 * depth, 4 * depth, 8 * depth]
        self.net = nn.Sequential(*(m for i in range(4) for m in (
            nn.Conv2d(chans[i], chans[i + 1], 4, 2, 1), nn.GroupNorm(1, chans[i + 1]), nn.SiLU())))
        self.out_dim = 8 * depth * 16

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.float().permute(0, 3, 1, 2) / 255.0 - 0.5
        return self.net(x).flatten(1)


class ConvDecoder(nn.Module):
    """Features (b, F) -> frames in [0, 1] (b, 64, 64, 3)."""

    def __init__(self, feature_dim: int, depth: int) -> None:
        super().__init__()
        self.depth = depth
        self.inp = nn.Linear(feature_dim, 8 * depth * 16)
        chans = [8 * depth, 4 * depth, 2 * depth, depth]
        mods: list[nn.Module] = []
        for i in range(3):
            mods += [nn.ConvTranspose2d(chans[i], chans[i + 1], 4, 2, 1), nn.GroupNorm(1, chans[i + 1]), nn.SiLU()]
        mods.append(nn.ConvTranspose2d(depth, 3, 4, 2, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        x = self.inp(feat).view(-1, 8 * self.depth, 4, 4)
        return (self.net(x) + 0.5).permute(0, 2, 3, 1)


class RSSM(nn.Module):
    """Encoder, recurrent core, prior and posterior, and the decoder, reward and continue heads.

    ``obs_kind`` is ``"state"`` (vectors of ``obs_dim``, seen through symlog) or ``"frames"``
    (64×64×3 uint8). ``action_dim`` is the width of the encoded action (one-hot for Discrete).
    """

    def __init__(self, config: RSSMConfig, obs_kind: str, obs_dim: int, action_dim: int) -> None:
        super().__init__()
        config.validate()
        if obs_kind not in ("state", "frames"):
            raise ConfigError(f"obs_kind must be 'state' or 'frames', got {obs_kind!r}.")
        self.config, self.obs_kind, self.obs_dim, self.action_dim = config, obs_kind, obs_dim, action_dim
        c = config
        if obs_kind == "frames":
            self.encoder: nn.Module = ConvEncoder(c.depth)
            embed = self.encoder.out_dim
            self.decoder: nn.Module = ConvDecoder(c.feature_dim, c.depth)
        else:
            embed = c.hidden
            self.encoder = mlp(obs_dim, c.hidden, embed, c.layers)
            self.decoder = mlp(c.feature_dim, c.hidden, obs_dim, c.layers)
        self.img_in = nn.Sequential(nn.Linear(c.stoch + action_dim, c.hidden), nn.LayerNorm(c.hidden), nn.SiLU())
        self.gru = nn.GRUCell(c.hidden, c.deter)
        self.prior = mlp(c.deter, c.hidden, c.stoch, 1)
        self.posterior = mlp(c.deter + embed, c.hidden, c.stoch, 1)
        self.reward = mlp(c.feature_dim, c.hidden, c.reward_bins, c.layers)
        self.cont = mlp(c.feature_dim, c.hidden, 1, c.layers)
        self.twohot = TwoHot(c.reward_bins)
        for head in (self.reward[-1],):  # DreamerV3: the reward head starts at zero
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    # ----- pieces ------------------------------------------------------------------------------
    def initial(self, batch: int, device: torch.device | None = None) -> dict[str, torch.Tensor]:
        c = self.config
        return {"deter": torch.zeros(batch, c.deter, device=device), "stoch": torch.zeros(batch, c.stoch, device=device)}

    def embed(self, obs: torch.Tensor) -> torch.Tensor:
        return self.encoder(obs) if self.obs_kind == "frames" else self.encoder(symlog(obs.float()))

    def _probs(self, logits: torch.Tensor) -> torch.Tensor:
        """(..., G*C) logits -> (..., G, C) probabilities with the uniform mix."""
        c = self.config
        probs = torch.softmax(logits.view(*logits.shape[:-1], c.groups, c.classes), dim=-1)
        return (1 - c.unimix) * probs + c.unimix / c.classes

    def _sample_st(self, logits: torch.Tensor) -> torch.Tensor:
        """A straight-through one-hot sample (training): the forward pass is one-hot, the
        gradient is the probabilities'."""
        probs = self._probs(logits)
        index = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1).view(probs.shape[:-1])
        onehot = F.one_hot(index, self.config.classes).float()
        return (onehot + probs - probs.detach()).flatten(-2)

    def features(self, carry: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([carry["deter"], carry["stoch"]], dim=-1)

    def _core(self, carry: dict[str, torch.Tensor], action: torch.Tensor) -> torch.Tensor:
        return self.gru(self.img_in(torch.cat([carry["stoch"], action], dim=-1)), carry["deter"])

    def heads(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features -> reward (...), p(done) (...)."""
        reward = self.twohot.mean(self.reward(feat))
        p_done = 1.0 - torch.sigmoid(self.cont(feat)[..., 0])
        return reward, p_done

    # ----- dreams and the real twin -------------------------------------------------------------
    @torch.no_grad()
    def imagine(self, carry: dict[str, torch.Tensor], action: torch.Tensor, tau: torch.Tensor, u: torch.Tensor
                ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """One dream step for a batch. ``tau`` (b,) temperatures; ``u`` (b, groups) uniforms in [0, 1)
        (from :mod:`dreamgym.rng`), one per categorical: the sample is the class where the CDF
        passes u. Returns the next carry, reward (b,) and p(done) (b,)."""
        c = self.config
        deter = self._core(carry, action)
        logits = self.prior(deter).view(-1, c.groups, c.classes)
        t = tau.view(-1, 1, 1)
        tempered = torch.where(t > 0, logits / t.clamp(min=1e-8), logits)
        probs = (1 - c.unimix) * torch.softmax(tempered, dim=-1) + c.unimix / c.classes
        cdf = probs.cumsum(-1)
        sampled = (cdf < u[..., None] * cdf[..., -1:]).sum(-1).clamp(max=c.classes - 1)
        index = torch.where(t[..., 0] > 0, sampled, logits.argmax(-1))
        stoch = F.one_hot(index, c.classes).float().flatten(1)
        nxt = {"deter": deter, "stoch": stoch}
        reward, p_done = self.heads(self.features(nxt))
        return nxt, reward, p_done

    @torch.no_grad()
    def observe(self, carry: dict[str, torch.Tensor], obs: torch.Tensor, action: torch.Tensor
                ) -> dict[str, torch.Tensor]:
        """One real step: the carry after ``action`` and then seeing ``obs``; stoch is the posterior's mode."""
        deter = self._core(carry, action)
        logits = self.posterior(torch.cat([deter, self.embed(obs)], dim=-1)).view(-1, self.config.groups,
                                                                                  self.config.classes)
        return {"deter": deter, "stoch": F.one_hot(logits.argmax(-1), self.config.classes).float().flatten(1)}

    @torch.no_grad()
    def decode(self, carry: dict[str, torch.Tensor]) -> torch.Tensor:
        """The carry -> frames (b, 64, 64, 3) uint8 or states (b, obs_dim) float32."""
        x = self.decoder(self.features(carry))
        if self.obs_kind == "frames":
            return (x * 255.0).round().clamp(0, 255).to(torch.uint8)
        return symexp(x)

    # ----- training ----------------------------------------------------------------------------
    def observe_sequence(self, obs: torch.Tensor, action: torch.Tensor, first: torch.Tensor | None = None
                         ) -> dict[str, torch.Tensor]:
        """Posterior states along real sequences.

        obs (b, T+1, ...), action (b, T, a): state t+1 comes from state t, action t and obs t+1;
        state 0 from a zero state, a zero action and obs 0. Returns ``deter``, ``stoch`` (b, T+1, ·)
        and the prior and posterior logits (b, T+1, G*C).
        """
        b, steps = obs.shape[0], obs.shape[1]
        embed = self.embed(obs.flatten(0, 1)).view(b, steps, -1)
        carry = self.initial(b, obs.device)
        zero = torch.zeros(b, self.action_dim, device=obs.device)
        out: dict[str, list[torch.Tensor]] = {"deter": [], "stoch": [], "prior": [], "post": []}
        for t in range(steps):
            deter = self._core(carry, zero if t == 0 else action[:, t - 1])
            prior = self.prior(deter)
            post = self.posterior(torch.cat([deter, embed[:, t]], dim=-1))
            carry = {"deter": deter, "stoch": self._sample_st(post)}
            for k, v in (("deter", deter), ("stoch", carry["stoch"]), ("prior", prior), ("post", post)):
                out[k].append(v)
        return {k: torch.stack(v, dim=1) for k, v in out.items()}

    def _kl(self, post: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        """KL(post || prior) summed over the categoricals, (...)."""
        p, q = self._probs(post), self._probs(prior)
        return (p * (p.log() - q.log())).sum((-1, -2))

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """DreamerV3's world-model loss on sequences.

        batch: ``obs`` (b, T+1, ...), ``action`` (b, T, a), ``reward`` (b, T), ``terminated`` (b, T),
        ``mask`` (b, T) valid steps. Reward t and continuation t are predicted from state t+1.
        """
        c = self.config
        obs, mask = batch["obs"], batch["mask"].float()
        states = self.observe_sequence(obs, batch["action"])
        feat = torch.cat([states["deter"], states["stoch"]], dim=-1)
        obs_mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)  # obs 0 is always real
        recon = self.decoder(feat.flatten(0, 1)).reshape(*obs.shape[:2], -1)
        if self.obs_kind == "frames":
            target = obs.float().flatten(2) / 255.0
        else:
            target = symlog(obs.float()).flatten(2)
        dec = ((recon - target) ** 2).sum(-1)
        dec = (dec * obs_mask).sum() / obs_mask.sum()
        nxt = feat[:, 1:]
        if c.heads_input == "prior":  # the heads see what a dream gives them: GRU state + a prior sample
            nxt = torch.cat([states["deter"][:, 1:], self._sample_st(states["prior"][:, 1:]).detach()], dim=-1)
        rew = (self.twohot.loss(self.reward(nxt), batch["reward"].float()) * mask).sum() / mask.sum().clamp(min=1)
        cont_target = 1.0 - batch["terminated"].float()
        weight = 1.0 + (c.continue_pos_weight - 1.0) * batch["terminated"].float()
        cont = F.binary_cross_entropy_with_logits(self.cont(nxt)[..., 0], cont_target, weight, reduction="none")
        cont = (cont * mask).sum() / mask.sum().clamp(min=1)
        dyn = self._kl(states["post"].detach(), states["prior"])
        rep = self._kl(states["post"], states["prior"].detach())
        kl_dyn = (dyn.clamp(min=c.free_nats) * obs_mask).sum() / obs_mask.sum()
        kl_rep = (rep.clamp(min=c.free_nats) * obs_mask).sum() / obs_mask.sum()
        loss = dec + rew + cont + c.dyn_scale * kl_dyn + c.rep_scale * kl_rep
        metrics = {"loss": loss.item(), "decoder": dec.item(), "reward": rew.item(), "continue": cont.item(),
                   "kl": (dyn * obs_mask).sum().item() / obs_mask.sum().item()}
        return loss, metrics
