"""The staged world-model recipe: V on frames -> encode the dataset -> M + heads on latent sequences.

Every stage runs on the generic :class:`~dreamgym.train.trainer.Trainer`, checkpoints into
``out/stages/<stage>/`` and resumes; the finished WorldModel (with start states and fidelity
metrics in its config and model card) is saved to ``out/``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from dreamgym.data.episodes import DatasetMeta, Episode, read_episode
from dreamgym.data.latents import (
    LatentEpisode, ShardRef, drop_stale_latents, encode_to_store, load_latents, scan_dataset, weights_hash,
)
from dreamgym.data.sequences import FrameReservoir, LatentSequenceDataset
from dreamgym.errors import ConfigError, DatasetError
from dreamgym.models.heads import HeadsConfig
from dreamgym.models.mdnrnn import MemoryConfig, mixture_nll
from dreamgym.models.vision import VisionConfig
from dreamgym.models.world_model import WorldModel, WorldModelConfig, paper_sizes
from dreamgym.registry import dream_spec_for_env
from dreamgym.spaces import encode_actions
from dreamgym.train.trainer import TrainConfig, Trainer, distributed
from dreamgym.utils import atomic_write, atomic_write_text

_E = TypeVar("_E")  # an episode, or a reference to one on disk


@dataclass
class RecipeConfig:
    """A whole world-model training run.

    :param z_dim: / :param hidden_size: / :param n_mixtures: / :param channels: model sizes
    :param mixture: M's mixture over the next latent: ``"per_dim"`` (the paper) or ``"joint"``
        (:class:`~dreamgym.models.mdnrnn.MemoryConfig`)
        (None: the registered env's paper sizes, or 32 / 256 / 5 / paper channels).
    :param vision: / :param memory: the two stages' TrainConfigs.
    :param seq_len: steps per training window for M. :param val_fraction: episodes held out.
    :param sample_z: train M on z sampled from V's posterior (the paper) instead of its mean.
    :param real_sample_z: the checkpoint's default for the real twin: z drawn from V's posterior (True) or its
        mean (False, the default; the reproduction scripts' recorded numbers). Frame models only.
    :param num_start_states: start states kept (first latents of training episodes).
    :param default_temperature: the dream's default tau.
    :param storage_dtype: ``"float16"`` halves the checkpoint.
    :param seed: split, init and data order.
    :param init_from: a world-model checkpoint directory of the same sizes and spaces to start from
        (a Dyna round continuing the last round's model) instead of a random init.
    :param train_vision: False keeps V as it is (``init_from``'s V): only M and the heads train.
    :param fresh_memory: with ``init_from``: take only its V; M and the heads start from a random init (a new M on an
        existing V, e.g. to compare M recipes on one V).
    :param heads: overrides of the env's registered heads settings, e.g. ``{"termination_pos_weight": 100}``
        when deaths are rare in the data.
    :param ensemble: members of M + heads (bootstrap ensemble; 1: one M). :param dropout: dropout on
        M's output while training; dreams then draw a mask per episode (0: none).
    :param detach_heads: the reward and termination heads learn on a detached h, so M's LSTM learns only to
        predict z. On long runs the joint loss lets h memorise the training episodes' few deaths: the held-out
        termination loss rises while z improves (Doom, session 15). False (the default) trains them jointly, as
        every shipped recipe so far did.
    :param frame_buffer: frames V's training holds in memory (64×64×3 uint8: 500,000 are 6 GB); a
        dataset with more frames trains V on a fresh random subset of whole episodes each epoch.
        Every dataset the reproduction scripts train on fits, so their V training is unchanged.
    """

    z_dim: int | None = None
    hidden_size: int | None = None
    n_mixtures: int = 5
    mixture: str = "per_dim"
    channels: list[int] | None = None
    vision: TrainConfig = field(default_factory=lambda: TrainConfig(steps=2000, batch_size=100, lr=1e-3))
    memory: TrainConfig = field(default_factory=lambda: TrainConfig(steps=2000, batch_size=64, lr=1e-3))
    seq_len: int = 64
    val_fraction: float = 0.1
    sample_z: bool = True
    real_sample_z: bool = False
    num_start_states: int = 256
    default_temperature: float = 1.0
    storage_dtype: str = "float32"
    seed: int = 0
    init_from: str | None = None
    train_vision: bool = True
    fresh_memory: bool = False
    heads: dict[str, Any] | None = None
    ensemble: int = 1
    dropout: float = 0.0
    detach_heads: bool = False
    frame_buffer: int = 500_000

    @classmethod
    def tiny(cls, **overrides: Any) -> "RecipeConfig":
        """Seconds on a CPU: for tests and smoke runs."""
        base = cls(
            z_dim=4, hidden_size=16, n_mixtures=2, channels=[4, 8, 8, 16],
            vision=TrainConfig(steps=20, batch_size=16, lr=3e-3, val_every=10, checkpoint_every=10),
            memory=TrainConfig(steps=30, batch_size=8, lr=3e-3, val_every=10, checkpoint_every=10),
            seq_len=8, num_start_states=8,
        )
        return replace(base, **overrides)


def model_config(meta: DatasetMeta, cfg: RecipeConfig) -> WorldModelConfig:
    """The WorldModelConfig for a dataset: spaces and frame settings from the data, sizes from cfg."""
    return build_model_config(
        meta.env_id, meta.action_space, meta.observation_space, cfg, frames=meta.obs_kind == "frames",
        obs_dim=int(np.prod(meta.obs_shape)), env_kwargs=meta.env_kwargs, frame_key=meta.frame_key,
        frame_crop=meta.frame_crop, time_limit=lambda: _time_limit(meta),
    )


def build_model_config(env_id: str, action_space: dict[str, Any], observation_space: dict[str, Any],
                       cfg: RecipeConfig, *, frames: bool, obs_dim: int, env_kwargs: dict[str, Any] | None = None,
                       frame_key: str | None = None, frame_crop: Sequence[int] | None = None,
                       time_limit: Callable[[], int] = lambda: 1000) -> WorldModelConfig:
    """The one place a world model's config is made for an env (training's :func:`model_config` and
    :func:`dreamgym.testing.world_model_config` both come here).

    Sizes come from ``cfg`` (None: the registered env's, else z 32 and LSTM 256); V is a conv VAE on frames or
    the identity on state vectors of ``obs_dim``; the heads, time limit and render rate are the registered
    env's (``time_limit()`` for an unregistered one) with ``cfg.heads`` on top.
    """
    spec = dream_spec_for_env(env_id)
    for name in ("z_dim", "hidden_size"):  # None means the env's default; 0 is not a size
        value = getattr(cfg, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"RecipeConfig.{name} must be a positive integer or None (the env's default), "
                              f"got {value!r}.")
    sizes = paper_sizes(env_id)  # the MDN-RNN backend's default sizes for this env
    z_dim = cfg.z_dim if cfg.z_dim is not None else sizes[0]
    hidden = cfg.hidden_size if cfg.hidden_size is not None else sizes[1]
    if frames:
        channels = {"channels": list(cfg.channels)} if cfg.channels else {}  # else VisionConfig's: the paper's
        vision = VisionConfig(kind="conv_vae", z_dim=z_dim, **channels)
    else:
        vision = VisionConfig(kind="identity", z_dim=obs_dim, obs_dim=obs_dim)
    unknown = sorted(set(cfg.heads or {}) - set(HeadsConfig.__dataclass_fields__))
    if unknown:
        raise ConfigError(f"Unknown heads settings {unknown}; expected some of {sorted(HeadsConfig.__dataclass_fields__)}.")
    heads = HeadsConfig(**{**(spec.heads if spec else {}), **(cfg.heads or {})})
    heads.validate()
    return WorldModelConfig(
        env_id=env_id, action_space=action_space, observation_space=observation_space,
        vision=vision, heads=heads,
        memory=MemoryConfig(hidden_size=hidden, n_mixtures=cfg.n_mixtures, ensemble=cfg.ensemble, dropout=cfg.dropout,
                            mixture=cfg.mixture),
        env_kwargs=dict(env_kwargs or {}), frame_key=frame_key, frame_crop=list(frame_crop) if frame_crop else None,
        max_episode_steps=spec.max_episode_steps if spec else time_limit(),
        default_temperature=cfg.default_temperature, render_fps=spec.render_fps if spec else 30,
        num_start_states=cfg.num_start_states, storage_dtype=cfg.storage_dtype,
        real_sample_z=cfg.real_sample_z and frames,
    )


def _time_limit(meta: DatasetMeta) -> int:
    import gymnasium as gym

    try:
        return gym.spec(meta.env_id).max_episode_steps or 1000
    except gym.error.Error:
        return 1000


def split(episodes: Sequence[_E], fraction: float, seed: int) -> tuple[list[_E], list[_E]]:
    """Hold out whole episodes for validation (at least one when there are two or more)."""
    order = np.random.default_rng(seed).permutation(len(episodes))
    n_val = min(max(int(round(fraction * len(episodes))), 1 if len(episodes) > 1 and fraction > 0 else 0),
                len(episodes) - 1)
    return [episodes[i] for i in order[n_val:]], [episodes[i] for i in order[:n_val]]


# ----- stages -------------------------------------------------------------------------------
def _vision_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    return model.loss(batch["obs"])


def _memory_loss(sample_z: bool, detach_heads: bool = False):
    def loss(model: WorldModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        mu, logvar = batch["mu"], batch["logvar"]
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if sample_z else mu
        return model.memory_loss({"z": z, "action": batch["action"], "reward": batch["reward"],
                                  "terminated": batch["terminated"], "mask": batch["mask"]}, detach_heads)

    return loss


@torch.no_grad()
def encode_obs(model: WorldModel, obs: np.ndarray, batch: int = 512) -> tuple[np.ndarray, np.ndarray | None]:
    """One episode's (mu, logvar) (T+1, z) from V; logvar None for state coders (no posterior noise)."""
    m, lv = [], []
    for i in range(0, len(obs), batch):
        x = torch.as_tensor(obs[i : i + batch])
        mu, logvar = model.vision.encode(x.to(model.start_z.device))
        m.append(mu.cpu())
        lv.append(logvar.cpu() if logvar is not None else None)
    return torch.cat(m).numpy(), (torch.cat(lv).numpy() if lv[0] is not None else None)


def encode_episodes(model: WorldModel, episodes: Sequence[Episode],
                    batch: int = 512) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """(mu, logvar) per episode from V; logvar None for state coders (no posterior noise)."""
    pairs = [encode_obs(model, ep.obs, batch) for ep in episodes]
    logvars = [lv for _, lv in pairs]
    return [mu for mu, _ in pairs], (logvars if logvars[0] is not None else None)  # type: ignore[return-value]


def _normalise_states(model: WorldModel, refs: Sequence[ShardRef]) -> None:
    """Per-dimension mean and std of the training states, one shard at a time (Chan's parallel update)."""
    count, mean, m2 = 0, 0.0, 0.0
    for ref in refs:
        x = read_episode(ref.path).obs.astype(np.float64)
        n, mu = len(x), x.mean(0)
        delta = mu - mean
        m2 = m2 + ((x - mu) ** 2).sum(0) + delta**2 * count * n / (count + n)
        mean, count = mean + delta * n / (count + n), count + n
    with torch.no_grad():
        model.vision.obs_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        model.vision.obs_std.copy_(torch.as_tensor(np.maximum(np.sqrt(m2 / count), 1e-3), dtype=torch.float32))


def _val_frames(refs: Sequence[ShardRef], limit: int = 2048, every: int = 4) -> torch.Tensor:
    """Every ``every``-th frame of the validation episodes, in order, up to ``limit`` (for V's recon MSE)."""
    frames, have = [], 0
    for ref in refs:
        if have >= limit:
            break
        frames.append(read_episode(ref.path).obs[::every][: limit - have].copy())  # not a view of the episode
        have += len(frames[-1])
    return torch.as_tensor(np.concatenate(frames))


@torch.no_grad()
def set_start_states(model: WorldModel, mus: Sequence[np.ndarray], seed: int) -> None:
    """Start states: the first latent (posterior mean) of training episodes, h = c = 0."""
    firsts = torch.as_tensor(np.stack([m[0] for m in mus]))
    n = model.config.num_start_states
    idx = torch.as_tensor(np.random.default_rng(seed).choice(len(firsts), size=n, replace=len(firsts) < n))
    model.start_z.copy_(firsts[idx])
    model.start_h.zero_()
    model.start_c.zero_()


# ----- fidelity -----------------------------------------------------------------------------
@torch.no_grad()
def fidelity(model: WorldModel, episodes: Iterable[Episode | LatentEpisode], mus: Iterable[np.ndarray],
             horizons: Sequence[int] = (1, 10, 50), frames: torch.Tensor | None = None) -> dict[str, float | None]:
    """Held-out numbers: V's reconstruction MSE, M's next-z NLL, open-loop latent MSE at k steps,
    reward MAE and termination precision/recall. ``frames``: the frames V's MSE is measured on
    (default: every 4th of ``episodes``' observations, up to 2,048)."""
    model.eval()
    space = model.action_space
    out: dict[str, float] = {}
    if model.config.pixels:
        if frames is None:
            frames = torch.as_tensor(np.concatenate([ep.obs[::4] for ep in episodes])[:2048])  # type: ignore
        sq = 0.0
        for x in frames.split(256):  # in chunks: decoding 2,048 frames at once holds GBs of activations
            recon = model.vision.decode(model.vision.encode(x)[0])
            sq += float((recon - x.float() / 255.0).pow(2).sum(dtype=torch.float64))
        out["vae_recon_mse"] = sq / max(frames.numel(), 1)
    nll, abs_err, n_steps = [], [], 0
    tp = fp = fn = 0
    open_loop: dict[int, list[float]] = {k: [] for k in horizons}
    for ep, mu in zip(episodes, mus):
        z = torch.as_tensor(mu)[None]  # 1 (T+1) z
        a = torch.as_tensor(encode_actions(ep.actions, space))[None]  # 1 T a
        hs, _ = model.memory.sequence(z[:, :-1], a)
        logits, m, log_sigma = model.memory.mixture(hs)
        nll.append(mixture_nll(logits, m, log_sigma, z[:, 1:], model.config.memory.joint).mean(-1)[0])
        reward, logit = model.heads(hs)
        if model.config.heads.reward:
            abs_err.append((reward[0] - torch.as_tensor(ep.rewards)).abs())
        if model.config.heads.termination:
            pred = torch.sigmoid(logit[0]) > model.config.heads.done_threshold
            true = torch.as_tensor(ep.terminated)
            tp += int((pred & true).sum())
            fp += int((pred & ~true).sum())
            fn += int((~pred & true).sum())
        n_steps += len(ep)
        # open loop from t0 = 0: teacher-free rollout at tau = 0 with the real actions
        T = len(ep)
        if T >= 1:
            h = c = torch.zeros(1, model.hidden_size)
            zt = z[:, 0]
            zero = torch.zeros(1)
            for t in range(min(max(horizons), T)):
                zt, h, c, _, _ = model.imagine_step(zt, h, c, a[:, t], zero, torch.zeros_like(zt), torch.zeros_like(zt))
                if t + 1 in open_loop:
                    open_loop[t + 1].append(float((zt - z[:, t + 1]).pow(2).mean()))
    out["z_nll"] = float(torch.cat(nll).mean())
    for k, errs in open_loop.items():
        if errs:
            out[f"open_loop_mse_k{k}"] = float(np.mean(errs))
    if abs_err:
        out["reward_mae"] = float(torch.cat(abs_err).mean())
    if model.config.heads.termination:
        out["termination_precision"] = tp / (tp + fp) if tp + fp else None  # undefined without positives
        out["termination_recall"] = tp / (tp + fn) if tp + fn else None
        out["termination_positives"] = tp + fn
    out["val_steps"] = n_steps
    return out


# ----- the whole run ------------------------------------------------------------------------
def _check_run_data(out: Path, meta: DatasetMeta, resume: bool, rank: int) -> None:
    """Record the data a run trains on; a resumed run must get data of the same env and spaces."""
    path = out / "stages" / "data.json"
    if resume and path.is_file():
        old = DatasetMeta(**json.loads(path.read_text()))
        differ = meta.compatible(old)
        if differ:
            raise DatasetError(
                f"{out} was trained on {old.env_id} data and this dataset differs in {differ}; its model cannot "
                "continue on it. Train a new run (a new --out), or pass the run's own data."
            )
    elif rank == 0:
        atomic_write_text(path, json.dumps(asdict(meta), sort_keys=True, indent=2) + "\n")


def episodes_fingerprint(episodes: Sequence[Episode]) -> dict[str, Any]:
    """Count, steps and a hash of the episodes in order (actions, rewards, ends, first and last observation).

    The held-out split is drawn over episode positions: other episodes, or more, would move
    validation episodes into training on resume. The frames between are not hashed (too slow).
    """
    import hashlib

    digest = hashlib.sha256()
    for ep in episodes:
        for a in _fingerprint_arrays(ep):
            a = np.ascontiguousarray(a)
            digest.update(f"{a.dtype.str}{a.shape}".encode())
            digest.update(a.tobytes())
    return {"episodes": len(episodes), "steps": int(sum(len(e) for e in episodes)), "sha256": digest.hexdigest()}


def _fingerprint_arrays(ep: Any) -> list[np.ndarray]:
    """The arrays an episode is fingerprinted by; a shard on disk (``ShardRef``) is read on its own, so
    at most one episode's frames are in memory at a time."""
    if not hasattr(ep, "path"):
        return [ep.actions, ep.rewards, ep.terminated, ep.truncated, ep.obs[:1], ep.obs[-1:]]
    with np.load(ep.path, allow_pickle=False) as shard:
        obs = shard["obs"]  # the first and last frames are what is hashed
        return [shard["actions"], shard["rewards"], shard["terminated"], shard["truncated"], obs[:1], obs[-1:]]


def _check_run_episodes(out: Path, episodes: Sequence[Episode], resume: bool, rank: int) -> None:
    """Record which episodes a run trains on; a resumed run must get the very same ones, in the same order."""
    path = out / "stages" / "episodes.json"
    now = episodes_fingerprint(episodes)
    if resume and path.is_file():
        old = json.loads(path.read_text())
        if old != now:
            raise DatasetError(
                f"The data changed since {out} started training: {old['episodes']} episodes ({old['steps']} steps, "
                f"sha256 {old['sha256'][:12]}) recorded in {path}, {now['episodes']} episodes ({now['steps']} steps, "
                f"sha256 {now['sha256'][:12]}) now. Resuming would move held-out episodes into training. Resume "
                "with the run's own data, or train on the new data in a new --out."
            )
    elif rank == 0:
        atomic_write_text(path, json.dumps(now, sort_keys=True, indent=2) + "\n")


def _check_resumed_steps(trainer: Trainer, flag: str) -> None:
    """A resumed stage cannot train fewer steps than it already has: the summary would report the wrong count."""
    if trainer.step > trainer.config.steps:
        raise ConfigError(
            f"{flag} {trainer.config.steps} is below the {trainer.step} steps this run's {trainer.name} stage has "
            f"already trained ({trainer.state_path}). Pass {flag} {trainer.step} or more to resume it, or start a "
            "new run (a new --out)."
        )


def _init_from(model: WorldModel, path: str | Path, fresh_memory: bool = False) -> None:
    """Copy a checkpoint's weights into ``model``; its sizes and spaces must be the same. ``fresh_memory``: copy
    only V's, keeping ``model``'s own (random) M and heads."""
    old = WorldModel.from_pretrained(path)
    mine, theirs = model.config, old.config
    differ = [k for k in ("env_id", "action_space", "observation_space", "vision", "frame_key",
                          "frame_crop") if getattr(mine, k) != getattr(theirs, k)]
    if not fresh_memory:  # with a fresh M only V is copied: M and the heads may take other sizes
        # ensemble size and dropout may change: a single M seeds every member of a new ensemble
        differ += [f"memory.{k}" for k in ("hidden_size", "n_mixtures", "mixture")
                   if getattr(mine.memory, k) != getattr(theirs.memory, k)]
        # the heads' shapes must match; their loss weights and threshold may change
        differ += [f"heads.{k}" for k in ("reward", "termination", "hidden")
                   if getattr(mine.heads, k) != getattr(theirs.heads, k)]
    if differ:
        raise ConfigError(f"init_from={str(path)!r} is a world model of other sizes or spaces ({', '.join(differ)} "
                          "differ) than this recipe and data make; start from a matching checkpoint or from scratch.")
    state = old.state_dict()
    own = model.state_dict()
    for key in own:  # members the old model lacks start as copies of its member 0
        if key.startswith("ensemble.") and key not in state:
            base = key.split(".", 2)[2]  # ensemble.<i>.memory.lstm... -> memory.lstm...
            state[key] = state[base].clone()
    state = {k: v for k, v in state.items() if k in own and (not fresh_memory or k.startswith("vision."))}
    state = {**own, **state} if fresh_memory else state
    # start states are per-dataset: keep this model's buffer shapes, everything else must match exactly
    state = {k: (v if v.shape == own[k].shape else own[k]) for k, v in state.items()}
    model.load_state_dict(state, strict=True)


class _LazyLatents:
    """Latent episodes read from their shards each time they are iterated."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = paths

    def __iter__(self) -> Iterator[LatentEpisode]:
        return (load_latents([p])[0] for p in self.paths)


def _encode_all(model: WorldModel, refs: Sequence[ShardRef], out: Path, rank: int) -> list[Path]:
    """Encode every episode into the latent store (ranks share the work) and drop older V's latents."""
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    v_hash = weights_hash(model.vision)
    paths = encode_to_store(refs, lambda obs: encode_obs(model, obs), v_hash, out, rank, world)
    if torch.distributed.is_initialized():
        torch.distributed.barrier()  # every rank's latents are on disk before any rank reads them
    if rank == 0:
        drop_stale_latents(out, v_hash)
    return paths


@dataclass
class _Run:
    """What every stage of one training run reads: the model, its settings and the split data."""

    model: WorldModel
    cfg: RecipeConfig
    out: Path
    resume: bool
    device: str
    progress: bool
    rank: int
    episodes: Sequence[ShardRef]
    train_eps: list[ShardRef]
    val_eps: list[ShardRef]


def train_world_model(
    data: str | Path | Sequence[str | Path],
    out: str | Path,
    cfg: RecipeConfig | None = None,
    resume: bool = False,
    device: str = "cpu",
    progress: bool = True,
) -> WorldModel:
    """Train a WorldModel on one or more datasets and save it to ``out``.

    >>> model = train_world_model("data/carracing", "runs/carracing")  # doctest: +SKIP
    """
    cfg = cfg or RecipeConfig()
    out = Path(out)
    rank, _ = distributed()
    if out.exists() and any(out.iterdir()) and not resume:
        if (out / "stages").exists() or (out / "config.json").exists():
            raise ConfigError(f"{out} already holds a training run; pass resume=True (--resume) to continue it, or a new --out.")
    if torch.distributed.is_initialized():
        torch.distributed.barrier()  # every rank has checked --out before any rank writes to it
    dirs = [data] if isinstance(data, (str, Path)) else list(data)
    meta, episodes = scan_dataset(*dirs)  # shard paths and lengths: the data streams from disk
    if len(episodes) < 2:
        raise DatasetError(f"Training needs at least 2 episodes (one held out for validation), got {len(episodes)}.")
    _check_run_data(out, meta, resume, rank)
    _check_run_episodes(out, episodes, resume, rank)
    torch.manual_seed(cfg.seed)
    model = WorldModel(model_config(meta, cfg))
    if cfg.init_from is not None:
        _init_from(model, cfg.init_from, cfg.fresh_memory)
    elif not cfg.train_vision or cfg.fresh_memory:
        raise ConfigError(f"{'train_vision=False' if not cfg.train_vision else 'fresh_memory=True'} keeps an existing "
                          "V: pass init_from=<world model directory> too.")
    model = model.to(device)
    train_eps, val_eps = split(episodes, cfg.val_fraction, cfg.seed)
    run = _Run(model, cfg, out, resume, device, progress, rank, episodes, train_eps, val_eps)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    _vision_stage(run)
    timings["vision_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    latent_paths = _encode_stage(run)
    timings["encode_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    train_seq, val_paths = _memory_stage(run, latent_paths)
    timings["memory_s"] = time.perf_counter() - t0
    _finish(run, meta, train_seq, val_paths, timings)
    return model


def _vision_stage(run: _Run) -> dict[str, Any] | None:
    """1. V on frames, into ``out/stages/vision`` (a resumed run loads a finished V); state envs normalise instead."""
    model, cfg = run.model, run.cfg
    vision_dir = run.out / "stages" / "vision"
    vision_done = vision_dir / "vision.safetensors"
    if not model.config.pixels:
        if cfg.train_vision:
            _normalise_states(model, run.train_eps)  # (kept: init_from's normalisation, which its M was trained on)
        return None
    if run.resume and vision_done.is_file():
        model.vision.load_state_dict(load_file(str(vision_done)))
        return None
    if not cfg.train_vision:
        return None  # V stays init_from's
    val_frames = min(cfg.frame_buffer, cfg.vision.val_batches * cfg.vision.batch_size)  # all validation reads
    trainer = Trainer(model.vision, _vision_loss, FrameReservoir(run.train_eps, cfg.frame_buffer, cfg.seed),
                      FrameReservoir(run.val_eps, val_frames, shuffle=False), cfg.vision,
                      vision_dir, name="vision", device=run.device, progress=run.progress)
    if run.resume and trainer.load():
        _check_resumed_steps(trainer, "--vision-steps")
    metrics = trainer.fit()
    if run.rank == 0:
        state = {k: v.contiguous() for k, v in model.vision.state_dict().items()}
        atomic_write(vision_done, lambda p: save_file(state, str(p)))
    return metrics  # (V's frame buffers go with the trainer, before the encode and M stages)


def _encode_stage(run: _Run) -> list[Path]:
    """2. Encode once into ``out/latents/<V hash>/`` (kept across a resume while V is the same)."""
    run.model.eval()
    return _encode_all(run.model, run.episodes, run.out, run.rank)


def _memory_stage(run: _Run, latent_paths: list[Path]) -> tuple[LatentSequenceDataset, list[Path]]:
    """3. M + heads on memory-mapped latents, into ``out/stages/memory`` (resumed from its checkpoint); returns the
    training sequences and the validation episodes' latents."""
    model, cfg = run.model, run.cfg
    index = {id(ep): i for i, ep in enumerate(run.episodes)}
    train_paths = [latent_paths[index[id(ep)]] for ep in run.train_eps]
    val_paths = [latent_paths[index[id(ep)]] for ep in run.val_eps]
    has_logvar = load_latents(train_paths[:1])[0].logvar is not None
    model.train()
    model.vision.requires_grad_(False)  # V frozen: no gradient, which DDP must not wait for
    cache = latent_paths[0].parent
    space = model.action_space
    train_seq = LatentSequenceDataset.from_files(train_paths, space, cfg.seq_len, cache / f"flat-train-r{run.rank}")
    val_seq = LatentSequenceDataset.from_files(val_paths, space, cfg.seq_len, cache / f"flat-val-r{run.rank}")
    trainer = Trainer(model, _memory_loss(cfg.sample_z and has_logvar, cfg.detach_heads), train_seq, val_seq, cfg.memory,
                      run.out / "stages" / "memory", name="memory", device=run.device, progress=run.progress)
    if run.resume and trainer.load():
        _check_resumed_steps(trainer, "--memory-steps")
    trainer.fit()
    return train_seq, val_paths


def _finish(run: _Run, meta: DatasetMeta, train_seq: LatentSequenceDataset, val_paths: list[Path],
            timings: dict[str, float]) -> None:
    """4. Start states, fidelity on the held-out episodes, the summary; save."""
    model, cfg = run.model, run.cfg
    model.eval()
    set_start_states(model, list(train_seq.first_latents()[:, None]), cfg.seed)
    frames = _val_frames(run.val_eps) if model.config.pixels else None
    val_lat = _LazyLatents(val_paths)  # one episode in memory at a time
    fid = fidelity(model.cpu(), val_lat, (ep.mu for ep in val_lat), frames=frames)
    episodes = run.episodes
    model.config.summary = {
        "data": {"episodes": len(episodes), "steps": int(sum(len(e) for e in episodes)), "policy": meta.policy.get("name"),
                 "source": meta.source, "train_episodes": len(run.train_eps), "val_episodes": len(run.val_eps)},
        "training": {"vision_steps": cfg.vision.steps if model.config.pixels and cfg.train_vision else 0,
                     "memory_steps": cfg.memory.steps, "memory_z": "sample" if cfg.sample_z else "mean",
                     **({"fresh_memory": True} if cfg.fresh_memory else {}),
                     **({"detach_heads": True} if cfg.detach_heads else {}), **({"init_from": str(cfg.init_from)} if cfg.init_from else {}),
                     **{k: round(v, 1) for k, v in timings.items()}},
        "fidelity": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in fid.items()},
    }
    if run.rank == 0:
        model.save_pretrained(run.out)
        atomic_write_text(run.out / "recipe.json", json.dumps(asdict(cfg), sort_keys=True, indent=2) + "\n")
