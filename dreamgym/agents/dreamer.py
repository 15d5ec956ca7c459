"""Dreamer's imagination actor-critic (DreamerV3), trained on any batched dream.

The dream is a :class:`~dreamgym.envs.dream_vector.DreamVectorEnv` (the MDN-RNN's or the RSSM's),
used through the public vector-env API only, so the same trainer works for every backend:

- imagination: ``num_envs`` dreams roll ``horizon`` (15) steps per update from where they are;
  every ``chunk`` updates they all reset to real start states with a fresh seed, so each chunk is
  reproducible on its own and a resumed run matches an uninterrupted one;
- returns: lambda-returns (lambda 0.95) bootstrapped from the critic, zero after a termination and
  from the final observation after a truncation;
- critic: a two-hot head over symlog bins, regularised towards a slow copy (EMA 0.02);
- actor: REINFORCE with the advantage divided by max(1, S), S the EMA of the 95th - 5th percentile
  range of the returns, plus an entropy bonus (3e-4); a bounded normal (mean tanh, std in
  [0.1, 1]) for Box actions, a categorical with 1 % uniform mix for Discrete;
- the actor's mean is saved as a :class:`~dreamgym.agents.controller.LinearController` with hidden
  layers in ``<out>/controller``, so ``dreamgym evaluate``, ``fidelity`` and ``push`` take it as
  they take CMA-ES controllers.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn
from tqdm.auto import tqdm

from dreamgym.agents.controller import ControllerConfig, LinearController
from dreamgym.errors import ConfigError
from dreamgym.models.rssm import TwoHot, mlp
from dreamgym.spaces import space_to_dict
from dreamgym.utils import atomic_write, atomic_write_text

STATE_NAME = "dreamer_state.pt"


@dataclass
class DreamerConfig:
    """Settings of :class:`DreamerTrainer` (DreamerV3's defaults where they fit a small CPU run).

    :param env_id: the Dream id. :param model: its world model (None: the shipped one).
    :param temperature: tau of the dream (None: the model's default). :param obs_type: what the actor sees.
    :param num_envs: dreams imagined at once. :param horizon: imagination steps per update (15).
    :param updates: actor-critic updates. :param chunk: updates between resets of every dream.
    :param gamma: discount. :param lam: lambda of the returns. :param entropy: entropy bonus.
    :param actor_lr, critic_lr: Adam learning rates. :param hidden, layers: actor and critic MLPs.
    :param slow_critic: EMA rate of the slow critic. :param return_decay: EMA rate of the return range.
    :param checkpoint_every: updates between checkpoints (a multiple of ``chunk``).

    The defaults are what trained Pendulum in an RSSM dream (pretrained/pendulum-rssm): learning rates
    of 1e-3 (3e-4 learned several times slower there) and 1500 updates, about 4-5 minutes on one core.
    :param dream_options: :class:`~dreamgym.models.world_model.DreamOptions` overrides.
    :param init: start the actor from this controller (a dreamer run or its ``controller/``, same sizes), e.g.
        the previous Dyna round's; None: a fresh actor. The critic always starts afresh.
    """

    env_id: str
    model: str | None = None
    temperature: float | None = None
    obs_type: str = "latent"
    num_envs: int = 256
    horizon: int = 15
    updates: int = 1500
    chunk: int = 20
    gamma: float = 0.99
    lam: float = 0.95
    entropy: float = 3e-4
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    hidden: int = 128
    layers: int = 2
    slow_critic: float = 0.02
    return_decay: float = 0.99
    checkpoint_every: int = 100
    seed: int = 0
    device: str = "cpu"
    dream_options: dict[str, Any] = field(default_factory=dict)
    init: str | None = None

    def validate(self) -> None:
        for name in ("num_envs", "horizon", "updates", "chunk", "hidden", "layers", "checkpoint_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {v!r}.")
        if self.checkpoint_every % self.chunk:
            raise ConfigError(f"checkpoint_every ({self.checkpoint_every}) must be a multiple of chunk ({self.chunk}): "
                              "a run resumes at the start of a chunk.")
        for name in ("gamma", "lam", "slow_critic", "return_decay"):
            v = getattr(self, name)
            if not 0.0 < v <= 1.0:
                raise ConfigError(f"{name} must be in (0, 1], got {v!r}.")
        for name in ("entropy", "actor_lr", "critic_lr"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {v!r}.")


class Actor(nn.Module):
    """The policy: a controller with hidden layers (its mean) and, for Box actions, a std head."""

    def __init__(self, obs_dim: int, action_space: spaces.Space, hidden: int, layers: int, **meta: Any) -> None:
        super().__init__()
        self.policy = LinearController(ControllerConfig(obs_dim=obs_dim, action_space=space_to_dict(action_space),
                                                        hidden=[hidden] * layers, **meta))
        self.discrete = isinstance(action_space, spaces.Discrete)
        self.std = None if self.discrete else nn.Linear(hidden, self.policy.out_dim)

    def dist(self, obs: torch.Tensor) -> torch.distributions.Distribution:
        x = self.policy.body(obs)
        out = self.policy.linear(x)
        if self.discrete:
            probs = 0.99 * torch.softmax(out, dim=-1) + 0.01 / out.shape[-1]
            return torch.distributions.Categorical(probs=probs)
        std = 0.9 * torch.sigmoid(self.std(x) + 2.0) + 0.1
        return torch.distributions.Independent(torch.distributions.Normal(torch.tanh(out), std), 1)

    def to_env(self, sample: torch.Tensor) -> np.ndarray:
        """A distribution's sample -> env actions (Box: clipped to [-1, 1], then onto the bounds)."""
        if self.discrete:
            return (sample + int(self.policy.action_space.start)).cpu().numpy()
        a = sample.clamp(-1, 1) * self.policy._scale + self.policy._offset
        return a.view(-1, *self.policy.action_space.shape).cpu().numpy().astype(self.policy.action_space.dtype)


def lambda_returns(reward: torch.Tensor, terminated: torch.Tensor, done: torch.Tensor, next_value: torch.Tensor,
                   gamma: float, lam: float) -> torch.Tensor:
    """(H, b) rewards, terminations, ends (terminated or truncated) and values of each step's next
    state -> lambda-returns (H, b). A terminated step bootstraps nothing; an ended one does not
    chain into the next episode's return; the last step bootstraps from its next state's value."""
    boot = next_value * (~terminated).float()
    out = torch.empty_like(reward)
    ret = boot[-1]
    for t in range(reward.shape[0] - 1, -1, -1):
        chained = torch.where(done[t], boot[t], ret)
        ret = reward[t] + gamma * ((1 - lam) * boot[t] + lam * chained)
        out[t] = ret
    return out


class DreamerTrainer:
    """Imagination actor-critic on a batched dream; ``train()`` writes ``<out>/controller``."""

    def __init__(self, config: DreamerConfig, out: str | Path) -> None:
        from dreamgym.envs.dream_vector import DreamVectorEnv
        from dreamgym.registry import DREAMS

        config.validate()
        self.cfg, self.out = config, Path(out)
        self.device = torch.device(config.device)
        dream_id = config.env_id.split(":", 1)[-1]
        if dream_id not in DREAMS:
            raise ConfigError(f"env_id must be a Dream id, one of {sorted(DREAMS)}; got {config.env_id!r}.")
        model_name = config.model or DREAMS[dream_id].pretrained
        self.env = DreamVectorEnv(num_envs=config.num_envs, model=model_name, temperature=config.temperature,
                                  obs_type=config.obs_type, device=config.device, dream_id=dream_id,
                                  **config.dream_options)
        space = self.env.single_observation_space
        if not isinstance(space, spaces.Box) or len(space.shape) != 1:
            raise ConfigError(f"Dreamer acts on flat features (obs_type 'latent', 'zch' or 'z'), got {space}.")
        torch.manual_seed(config.seed)
        self.actor = Actor(space.shape[0], self.env.single_action_space, config.hidden, config.layers,
                           env_id=dream_id, obs_type=config.obs_type, world_model=str(model_name)).to(self.device)
        if config.init is not None:
            self._init_actor(config.init)
        self.twohot = TwoHot(255).to(self.device)
        self.critic = mlp(space.shape[0], config.hidden, 255, config.layers).to(self.device)
        nn.init.zeros_(self.critic[-1].weight)
        nn.init.zeros_(self.critic[-1].bias)
        self.slow = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), config.actor_lr, eps=1e-5)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), config.critic_lr, eps=1e-5)
        self.scale = torch.zeros((), device=self.device)  # EMA of the returns' 95th - 5th percentile range
        self.update = 0
        self.history: list[dict[str, float]] = []

    def _init_actor(self, path: str) -> None:
        """The actor's mean from a saved controller of the same sizes (its std head starts afresh)."""
        from dreamgym.agents import locate_agent

        kind, folder = locate_agent(path)
        given = LinearController.from_pretrained(folder) if kind == "controller" else None
        mine = self.actor.policy
        if given is None or given.config.hidden != mine.config.hidden or given.config.obs_dim != mine.config.obs_dim \
                or given.action_space != mine.action_space:
            raise ConfigError(f"init={path!r} must be a dreamer controller of the same sizes (obs {mine.config.obs_dim}, "
                              f"hidden {mine.config.hidden}, actions {mine.action_space}); got "
                              f"{'an SB3 agent' if given is None else f'obs {given.config.obs_dim}, hidden {given.config.hidden}'}.")
        mine.load_state_dict(given.state_dict())

    # ----- one update --------------------------------------------------------------------------
    def _value(self, net: nn.Module, obs: torch.Tensor) -> torch.Tensor:
        return self.twohot.mean(net(obs))

    def _imagine(self, obs: np.ndarray, gen: torch.Generator) -> tuple[dict[str, torch.Tensor], np.ndarray]:
        """Roll every dream ``horizon`` steps with the sampled policy; returns the segment and the last obs."""
        h = self.cfg.horizon
        seg: dict[str, list[torch.Tensor]] = {k: [] for k in ("obs", "action", "reward", "terminated", "done", "next")}
        for _ in range(h):
            x = torch.as_tensor(obs, device=self.device)
            with torch.no_grad():
                d = self.actor.dist(x)
                a = self._sample(d, gen)
            nxt, reward, term, trunc, info = self.env.step(self.actor.to_env(a))
            real_next = nxt.copy()
            if "_final_obs" in info:
                for i in np.flatnonzero(info["_final_obs"]):
                    real_next[i] = info["final_obs"][i]
            for k, v in (("obs", x), ("action", a), ("reward", torch.as_tensor(reward, dtype=torch.float32)),
                         ("terminated", torch.as_tensor(term)), ("done", torch.as_tensor(term | trunc)),
                         ("next", torch.as_tensor(real_next))):
                seg[k].append(v.to(self.device))
            obs = nxt
        return {k: torch.stack(v) for k, v in seg.items()}, obs

    def _sample(self, d: torch.distributions.Distribution, gen: torch.Generator) -> torch.Tensor:
        """A sample from the policy with this chunk's generator (reproducible across resumes)."""
        if self.actor.discrete:
            u = torch.rand(d.probs.shape[0], 1, generator=gen).to(self.device)
            return (d.probs.cumsum(-1) < u).sum(-1).clamp(max=d.probs.shape[-1] - 1)
        normal = d.base_dist
        return normal.loc + normal.scale * torch.randn(normal.loc.shape, generator=gen).to(self.device)

    def _learn(self, seg: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg = self.cfg
        h, b = seg["reward"].shape
        with torch.no_grad():
            next_value = self._value(self.critic, seg["next"].flatten(0, 1)).view(h, b)
            ret = lambda_returns(seg["reward"], seg["terminated"], seg["done"], next_value, cfg.gamma, cfg.lam)
            lo, hi = torch.quantile(ret.flatten(), torch.tensor([0.05, 0.95], device=self.device))
            self.scale = cfg.return_decay * self.scale + (1 - cfg.return_decay) * (hi - lo)
            slow_target = self._value(self.slow, seg["obs"].flatten(0, 1))
        obs = seg["obs"].flatten(0, 1)
        logits = self.critic(obs)
        critic_loss = (self.twohot.loss(logits, ret.flatten()) + self.twohot.loss(logits, slow_target)).mean()
        self.critic_opt.zero_grad()
        critic_loss.backward()
        nn.utils.clip_grad_norm_(self.critic.parameters(), 100.0)
        self.critic_opt.step()
        with torch.no_grad():
            value = self._value(self.critic, obs)
            adv = (ret.flatten() - value) / torch.clamp(self.scale, min=1.0)
        d = self.actor.dist(obs)
        logp = d.log_prob(seg["action"].flatten(0, 1))
        entropy = d.entropy()
        actor_loss = -(logp * adv).mean() - cfg.entropy * entropy.mean()
        self.actor_opt.zero_grad()
        actor_loss.backward()
        nn.utils.clip_grad_norm_(self.actor.parameters(), 100.0)
        self.actor_opt.step()
        with torch.no_grad():
            for p, q in zip(self.slow.parameters(), self.critic.parameters()):
                p.lerp_(q, cfg.slow_critic)
        return {"return": float(ret.mean()), "reward": float(seg["reward"].mean()), "critic_loss": critic_loss.item(),
                "actor_loss": actor_loss.item(), "entropy": entropy.mean().item(), "scale": float(self.scale)}

    # ----- the loop ----------------------------------------------------------------------------
    def train(self, progress: bool = True) -> list[dict[str, float]]:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / "dreamer.json", json.dumps(asdict(cfg), indent=2))
        bar = tqdm(total=cfg.updates, initial=self.update, desc="dreamer", disable=not progress)
        obs, gen, start = None, None, time.time()
        while self.update < cfg.updates:
            if self.update % cfg.chunk == 0:  # every dream back at a real start state, reproducibly
                chunk = self.update // cfg.chunk
                obs, _ = self.env.reset(seed=cfg.seed * 1_000_003 + chunk)
                gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + chunk)
            seg, obs = self._imagine(obs, gen)
            metrics = self._learn(seg)
            self.update += 1
            self.history.append({"update": self.update, **metrics})
            bar.update(1)
            bar.set_postfix(ret=f"{metrics['return']:.2f}", rew=f"{metrics['reward']:.3f}")
            if self.update % cfg.checkpoint_every == 0 or self.update == cfg.updates:
                self.save(time.time() - start)
        bar.close()
        return self.history

    def save(self, seconds: float = 0.0) -> None:
        """The actor's mean as ``controller/`` (Hub-safe), plus the trainer state for ``--resume``."""
        policy = self.actor.policy
        policy.config.summary = {"algo": "dreamer", "updates": self.update, "seconds": round(seconds, 1),
                                 "dream_return": self.history[-1]["return"] if self.history else None}
        policy.save_pretrained(self.out / "controller")
        state = {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(), "slow": self.slow.state_dict(),
                 "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
                 "scale": self.scale, "update": self.update, "config": asdict(self.cfg)}
        atomic_write(self.out / STATE_NAME, lambda tmp: torch.save(state, tmp))
        atomic_write_text(self.out / "dreamer_history.jsonl", "".join(json.dumps(h) + "\n" for h in self.history))

    def load(self) -> bool:
        """Resume from ``<out>/dreamer_state.pt`` (written by this trainer; refuses changed settings)."""
        path = self.out / STATE_NAME
        if not path.is_file():
            return False
        state = torch.load(path, map_location=self.device, weights_only=True)
        now = asdict(self.cfg)
        changed = sorted(k for k in set(state["config"]) | set(now)
                         if k not in ("updates", "device") and state["config"].get(k) != now.get(k))
        if changed:
            raise ConfigError(f"{self.out} was trained with other settings ({', '.join(changed)}); "
                              "resume with the same ones, or pass a new --out.")
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.slow.load_state_dict(state["slow"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.scale, self.update = state["scale"], int(state["update"])
        hist = self.out / "dreamer_history.jsonl"
        if hist.is_file():
            self.history = [json.loads(line) for line in hist.read_text().splitlines()][: self.update]
        return True


__all__ = ["DreamerConfig", "DreamerTrainer", "lambda_returns"]
