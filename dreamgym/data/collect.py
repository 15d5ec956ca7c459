"""Collect real episodes with a policy, in parallel worker processes, resumably.

Each episode is written as its own shard the moment it ends (temp file + rename), so Ctrl-C or a
crash loses at most the episodes in flight, and running the same command again continues with
the episodes still missing. Episode i is always reset with ``seed + i``, whichever worker runs it
(with ``min_steps``, a too-short draw is replaced by deterministic redraws: see CollectConfig).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from tqdm.auto import tqdm

from dreamgym.data.episodes import (
    DatasetMeta,
    Episode,
    package_versions,
    read_meta,
    shard_name,
    shard_paths,
    write_episode,
    write_meta,
)
from dreamgym.data.experts import CarRacingPursuit, check_expert, expert_name, make_expert
from dreamgym.data.frames import FRAME_SIZE, crop_is_valid, extract_frames, preprocess_frames
from dreamgym.errors import CheckpointError, ConfigError, DatasetError
from dreamgym.registry import dream_spec_for_env, make_real_env
from dreamgym.rollout import BrownianPolicy, RandomPolicy, play
from dreamgym.spaces import space_to_dict

POLICIES = ("random", "brownian", "agent", "held", "expert")
LOCK_NAME = ".collect.lock"
STALE_TMP_GLOBS = (".ep-*.npz.*.tmp", ".dataset.json.*.tmp")  # atomic_write's temp files of killed writers
HOLD_MAX = 10  # policy "held": each random action lasts 1..HOLD_MAX steps (the paper's Doom data)
MAX_REDRAWS = 100  # with min_steps: draws of one episode before collection gives up
REDRAW_SEED_STRIDE = 1 << 20  # redraw k of episode i resets with seed + i + k * stride


@dataclass
class CollectConfig:
    """One collection run.

    :param env_id: any registered Gymnasium env id. :param env_kwargs: its kwargs.
    :param out: dataset directory. :param episodes: how many episodes the dataset should hold.
    :param policy: ``"random"``, ``"brownian"`` (smoothly varying actions), ``"held"`` (a uniform
        random action held for 1..10 steps, the paper's Doom data), ``"agent"`` or ``"expert"`` (a
        scripted player that reads the simulator's state, :mod:`dreamgym.data.experts`; CarRacing and
        VizdoomTakeCover).
    :param agent: with policy ``"agent"``: a controller directory or SB3 zip.
    :param agent_model: the world model the agent sees reality through (a checkpoint directory).
    :param noise: exploration noise for the agent: Gaussian std as a fraction of each Box
        action's half-range, or the probability of a random Discrete action. For the expert: its
        steering noise and how often it lapses (:class:`~dreamgym.data.experts.CarRacingPursuit`,
        :class:`~dreamgym.data.experts.TakeCoverDodger`).
    :param pedal_noise: with policy ``"expert"``: the probability per step that its pedals become a random
        setting held for 10-40 steps while it steers, so that M must learn what gas and brake do
        (:mod:`dreamgym.data.experts`; 0: off).
    :param pedal_style: with ``pedal_noise``: ``"random"`` pedals (above), or ``"cruise"``: a steady gas in [0.1, 0.35]
        and no brake held for 50-300 steps, the way dream-trained agents drive in reality, so that the data shows
        what taking curves that way costs (:class:`~dreamgym.data.experts.CarRacingPursuit`).
    :param expert_speed: with policy ``"expert"`` on CarRacing: its target speeds are multiplied by this, so
        that the data shows laps finished inside the time limit (1.5; :class:`~dreamgym.data.experts.CarRacingPursuit`).
    :param expert_rest_every: with policy ``"expert"`` on CarRacing: the car stops on the road and rests (no pedals, a
        light brake or a creep) on average once every this many steps, and half of the episodes begin at rest, so
        that the data shows what reality pays for standing still (0: never;
        :class:`~dreamgym.data.experts.CarRacingPursuit`).
    :param expert_drift_every: with policy ``"expert"`` on CarRacing: the expert drives on blind (one nearly straight
        action held 100-300 steps) on average once every this many steps, and half of the episodes begin so, so that
        the data shows the car leaving the road and staying on the grass (0: never;
        :class:`~dreamgym.data.experts.CarRacingPursuit`).
    :param brownian_sigma: per-step std of the brownian walk, as a fraction of the half-range.
    :param workers: processes; ``0`` uses every core.
    :param seed: episode i is reset with ``seed + i``.
    :param max_steps: cap episode length (None: the env's time limit).
    :param frame_crop: ``[top, bottom, left, right]`` pixels of each raw frame kept before it is resized to
        64×64, instead of the registered crop (CarRacing's ``[0, 84, 0, 96]`` drops the dashboard with its
        speed, ABS, steering and gyro bars; ``[0, 96, 0, 96]`` keeps the whole frame). A world model trained
        on the data reads reality the same way. None: the registered crop, or the whole frame.
    :param min_steps: keep only episodes of more than this many steps (the paper dropped Doom
        episodes of 100 frames or fewer). A shorter one is drawn again, deterministically: draw k of
        episode i resets with ``seed + i + k * 2**20`` and its own rng, so episode i is the same on
        every run and a resumed run never re-collects a dropped episode forever (0: keep all).
    """

    env_id: str
    out: str
    episodes: int = 100
    policy: str = field(default="brownian", metadata={"choices": POLICIES})
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    agent: str | None = None
    agent_model: str | None = None
    noise: float = 0.1
    pedal_noise: float = 0.0
    pedal_style: str = field(default="random", metadata={"choices": CarRacingPursuit.PEDAL_STYLES})
    expert_speed: float = 1.0
    expert_rest_every: int = 0
    expert_drift_every: int = 0
    brownian_sigma: float = 0.15
    workers: int = 0
    seed: int = 0
    max_steps: int | None = None
    min_steps: int = 0
    frame_crop: list[int] | None = None

    def validate(self) -> None:
        if self.policy not in POLICIES:
            raise ConfigError(f"policy must be one of {POLICIES}, got {self.policy!r}.")
        if self.policy == "agent" and (self.agent is None or self.agent_model is None):
            raise ConfigError("policy='agent' needs agent=<controller dir or SB3 zip> and agent_model=<world model dir>.")
        if self.policy == "expert":
            check_expert(self.env_id)
        if self.pedal_noise and self.policy != "expert":
            raise ConfigError(f"pedal_noise drives the scripted expert's pedals: it needs policy='expert', got "
                              f"policy={self.policy!r}. Use noise for the other policies, or leave pedal_noise at 0.")
        if not 0.0 <= self.pedal_noise <= 1.0:
            raise ConfigError(f"pedal_noise is a probability per step, in [0, 1]; got {self.pedal_noise}.")
        if self.pedal_noise and expert_name(self.env_id) != "CarRacing":
            raise ConfigError(f"pedal_noise drives the CarRacing expert's gas and brake; {self.env_id}'s expert has "
                              f"no pedals. Leave pedal_noise at 0 and set its lapses with noise.")
        if self.pedal_style not in CarRacingPursuit.PEDAL_STYLES:
            raise ConfigError(f"pedal_style must be one of {CarRacingPursuit.PEDAL_STYLES}, got {self.pedal_style!r}.")
        if self.pedal_style != "random" and not self.pedal_noise:
            raise ConfigError(f"pedal_style={self.pedal_style!r} shapes the expert's pedal lapses, and pedal_noise=0 "
                              "turns them off. Set pedal_noise too (0.01: a lapse begins about once every 100 steps).")
        if self.noise < 0:
            raise ConfigError(f"noise must be >= 0, got {self.noise}.")
        if self.expert_speed != 1.0 and (self.policy != "expert" or expert_name(self.env_id) != "CarRacing"):
            raise ConfigError(f"expert_speed scales the CarRacing expert's target speeds: it needs policy='expert' on "
                              f"CarRacing, got policy={self.policy!r} on {self.env_id}. Leave expert_speed at 1.")
        if self.expert_rest_every and (self.policy != "expert" or expert_name(self.env_id) != "CarRacing"):
            raise ConfigError(f"expert_rest_every stops the CarRacing expert's car on the road: it needs "
                              f"policy='expert' on CarRacing, got policy={self.policy!r} on {self.env_id}. "
                              f"Leave expert_rest_every at 0.")
        rest = self.expert_rest_every
        if isinstance(rest, bool) or not isinstance(rest, int) or rest < 0:
            raise ConfigError(f"expert_rest_every is the mean number of steps between rests, an int >= 0 (0: never); "
                              f"got {rest!r}. 300 is what session 26 used.")
        drift = self.expert_drift_every
        if isinstance(drift, bool) or not isinstance(drift, int) or drift < 0:
            raise ConfigError(f"expert_drift_every is the mean number of steps between blind drives, an int >= 0 "
                              f"(0: never); got {drift!r}. 250 is what session 28 used.")
        if drift and (self.policy != "expert" or expert_name(self.env_id) != "CarRacing"):
            raise ConfigError(f"expert_drift_every makes the CarRacing expert drive on blind: it needs policy='expert' "
                              f"on CarRacing, got policy={self.policy!r} on {self.env_id}. "
                              "Leave expert_drift_every at 0.")
        if not self.expert_speed > 0:
            raise ConfigError(f"expert_speed multiplies the expert's target speeds; it must be > 0, got "
                              f"{self.expert_speed}. 1 is the expert as it was; 1.5 finishes most laps in time.")
        if self.episodes < 1:
            raise ConfigError(f"episodes must be >= 1, got {self.episodes}.")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0 (0: one process per core), got {self.workers}.")
        crop = self.frame_crop
        if not crop_is_valid(crop):
            raise ConfigError(f"frame_crop must be [top, bottom, left, right] with 0 <= top < bottom and "
                              f"0 <= left < right, e.g. [0, 96, 0, 96] for a whole 96×96 frame; got {crop}.")
        if self.min_steps < 0 or (self.max_steps is not None and self.min_steps >= self.max_steps):
            raise ConfigError(f"min_steps must be >= 0 and below max_steps ({self.max_steps}) so that an episode "
                              f"can be kept, got {self.min_steps}.")


@dataclass
class CollectResult:
    """What a collection run did. ``startup_s``: from the start until the first worker's env was ready."""

    out: str
    episodes_written: int
    episodes_total: int
    steps: int
    seconds: float
    startup_s: float = 0.0

    @property
    def steps_per_s(self) -> float:
        return self.steps / max(self.seconds, 1e-9)

    @property
    def steady_steps_per_s(self) -> float:
        """Steps per second once the workers were up (process start and imports excluded)."""
        return self.steps / max(self.seconds - self.startup_s, 1e-9)


# ----- policies -----------------------------------------------------------------------------
class HeldPolicy:
    """A uniform random action held for a number of steps drawn uniformly from 1..``hold_max``:
    the paper's random Doom data (a jittering agent would barely move)."""

    def __init__(self, space: spaces.Space, rng: np.random.Generator, hold_max: int = HOLD_MAX) -> None:
        self.draw, self.rng, self.hold_max = RandomPolicy(space, rng), rng, hold_max
        self.action: Any = None
        self.left = 0

    def __call__(self, obs: Any) -> Any:
        if self.left == 0:
            self.action, self.left = self.draw(obs), int(self.rng.integers(1, self.hold_max + 1))
        self.left -= 1
        return self.action


class AgentPolicy:
    """A trained agent plus exploration noise, acting on the real twin's observations."""

    def __init__(self, agent: Any, space: spaces.Space, rng: np.random.Generator, noise: float) -> None:
        self.agent, self.space, self.rng, self.noise = agent, space, rng, noise

    def __call__(self, obs: Any) -> Any:
        action, _ = self.agent.predict(obs, deterministic=True)
        space = self.space
        if isinstance(space, spaces.Discrete):
            if self.rng.random() < self.noise:
                return int(space.start + self.rng.integers(space.n))
            return int(np.asarray(action).reshape(()))
        half = (space.high - space.low) / 2
        noisy = np.asarray(action, dtype=np.float64) + self.noise * half * self.rng.normal(size=space.shape)
        return np.clip(noisy, space.low, space.high).astype(space.dtype)


# ----- what the data looks like ---------------------------------------------------------------
def describe_env(env_id: str, env: gym.Env, frame_crop: Sequence[int] | None = None) -> dict[str, Any]:
    """obs_kind, obs_shape, frame_key and frame_crop for an env's observations (``frame_crop``: instead of the
    registered crop; checked against the frame's size)."""
    spec = dream_spec_for_env(env_id)
    space = env.observation_space
    frame_key, crop = None, None
    if spec is not None:
        frame_key, crop = spec.frame_key, (list(spec.frame_crop) if spec.frame_crop else None)
    elif isinstance(space, spaces.Dict):
        images = [k for k, s in space.spaces.items() if isinstance(s, spaces.Box) and len(s.shape) == 3]
        if len(images) != 1:
            raise ConfigError(f"{env_id}: expected one image in its Dict observation, got {space}.")
        frame_key = images[0]
    image = space[frame_key] if frame_key is not None else space
    if isinstance(image, spaces.Box) and len(image.shape) == 3 and image.shape[-1] == 3:
        if frame_crop is not None:
            height, width = image.shape[:2]
            if frame_crop[1] > height or frame_crop[3] > width:
                raise ConfigError(f"frame_crop {list(frame_crop)} reaches outside {env_id}'s {height}×{width} frames; "
                                  f"bottom must be <= {height} and right <= {width} ([0, {height}, 0, {width}] keeps "
                                  "the whole frame).")
            crop = list(frame_crop)
        return {"obs_kind": "frames", "obs_shape": [FRAME_SIZE, FRAME_SIZE, 3], "frame_key": frame_key, "frame_crop": crop}
    if frame_crop is not None:
        raise ConfigError(f"frame_crop applies to frames, but {env_id} observes {image}. Leave frame_crop unset.")
    if isinstance(image, spaces.Box) and len(image.shape) == 1:
        return {"obs_kind": "state", "obs_shape": list(image.shape), "frame_key": None, "frame_crop": None}
    raise ConfigError(
        f"{env_id} has observation space {space}; dreamgym collects RGB frames (H, W, 3) or flat state vectors. "
        "Wrap the env (e.g. FlattenObservation, or render_mode='rgb_array' with an image wrapper)."
    )


def _make_env(cfg: CollectConfig) -> gym.Env:
    if cfg.policy == "agent":
        from dreamgym.envs.real import make_real

        from dreamgym.evaluate import agent_info

        from dreamgym.evaluate import action_bounds

        try:  # the twin shows the agent what it was trained on (z‖h, z‖c‖h), in the Box it was trained in
            info = agent_info(cfg.agent)
            obs_type, bounds = info.obs_type, action_bounds(info)
        except (ConfigError, CheckpointError):  # reported with its cause when the agent loads
            obs_type, bounds = "latent", {}
        env = make_real(cfg.agent_model, env_id=cfg.env_id, obs_type=obs_type, **bounds,
                        **cfg.env_kwargs)  # the user's id
        if env.model.config.env_id != cfg.env_id:
            raise ConfigError(f"agent_model {cfg.agent_model} is a world model of {env.model.config.env_id}, not {cfg.env_id}.")
        return gym.wrappers.TimeLimit(env, cfg.max_steps) if cfg.max_steps is not None else env
    kwargs = dict(cfg.env_kwargs)
    if cfg.max_steps is not None:
        kwargs["max_episode_steps"] = cfg.max_steps
    return make_real_env(cfg.env_id, **kwargs)


def _make_policy(cfg: CollectConfig, env: gym.Env, rng: np.random.Generator, agent: Any) -> Callable[[Any], Any]:
    if cfg.policy == "random":
        return RandomPolicy(env.action_space, rng)
    if cfg.policy == "brownian":
        return BrownianPolicy(env.action_space, rng, cfg.brownian_sigma)
    if cfg.policy == "held":
        return HeldPolicy(env.action_space, rng)
    if cfg.policy == "expert":
        return make_expert(cfg.env_id, env, rng, cfg.noise, cfg.pedal_noise, cfg.expert_speed, cfg.expert_rest_every,
                           cfg.pedal_style, cfg.expert_drift_every)
    return AgentPolicy(agent, env.action_space, rng, cfg.noise)


def run_episode(env: gym.Env, policy: Callable[[Any], Any], seed: int, desc: dict[str, Any]) -> Episode:
    """One episode: raw observations become 64×64 frames (in batches) or float32 states."""
    obs, info = env.reset(seed=seed)
    raw = [info.get("real_obs", obs)]
    actions, rewards, terms, truncs = [], [], [], []
    for step in play(env, policy, obs):
        raw.append(step.info.get("real_obs", step.obs))
        actions.append(step.action)
        rewards.append(step.reward)
        terms.append(step.terminated)
        truncs.append(step.truncated)
    if desc["obs_kind"] == "frames":
        frames = [extract_frames(o, desc["frame_key"]) for o in raw]
        stored = np.concatenate(
            [preprocess_frames(np.stack(frames[i : i + 256]), desc["frame_crop"], FRAME_SIZE).numpy()
             for i in range(0, len(frames), 256)]
        )
    else:
        stored = np.asarray(raw, dtype=np.float32)
    action_arr = np.asarray(actions)
    action_arr = action_arr.astype(np.int64) if action_arr.dtype.kind in "iu" else action_arr.astype(np.float32)
    return Episode(
        obs=stored,
        actions=action_arr,
        rewards=np.asarray(rewards, dtype=np.float32),
        terminated=np.asarray(terms, dtype=bool),
        truncated=np.asarray(truncs, dtype=bool),
    )


def _collect_one(cfg: CollectConfig, env: gym.Env, agent: Any, desc: dict[str, Any], i: int) -> Episode:
    """Episode i: reset with seed + i; one of min_steps steps or fewer is drawn again (draw k: seed
    + i + k * REDRAW_SEED_STRIDE, rng (seed, i, k)), so the episode kept is the same on every run."""
    for k in range(MAX_REDRAWS + 1):
        rng = np.random.default_rng([cfg.seed, i] if k == 0 else [cfg.seed, i, k])
        episode = run_episode(env, _make_policy(cfg, env, rng, agent), cfg.seed + i + k * REDRAW_SEED_STRIDE, desc)
        if len(episode) > cfg.min_steps:
            return episode
    raise DatasetError(f"Episode {i} lasted {cfg.min_steps} steps or fewer in {MAX_REDRAWS + 1} draws; "
                       f"lower --min-steps (given {cfg.min_steps}) or use a policy that survives longer.")


def _worker(cfg: CollectConfig, desc: dict[str, Any], indices: list[int], messages: Any, own_process: bool = True) -> None:
    """Collect the episodes ``indices``; report each finished one on ``messages``."""
    import torch

    parent = os.getppid()
    if own_process:
        torch.set_num_threads(1)  # one core per worker; the workers together use them all
    try:
        env = _make_env(cfg)
        messages.put(("ready", os.getpid(), time.perf_counter()))
        agent = None
        if cfg.policy == "agent":
            from dreamgym.agents import load_agent

            agent = load_agent(cfg.agent, env.observation_space, env.action_space)
        for i in indices:
            if own_process and os.getppid() != parent:
                break  # the collecting process is gone (killed): stop instead of running on as an orphan
            episode = _collect_one(cfg, env, agent, desc, i)
            write_episode(Path(cfg.out) / shard_name(i), episode)
            messages.put(("episode", i, len(episode)))
        env.close()
    except KeyboardInterrupt:
        pass
    except BaseException as e:  # report, so the main process can say which worker failed and why
        messages.put(("error", os.getpid(), f"{type(e).__name__}: {e}"))
    messages.put(("exit", os.getpid(), None))


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold ``out/.collect.lock`` for the whole run: two collects into one folder would race on dataset.json."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out={str(out)!r} is a file; collect needs a dataset directory. Pass another --out.")
    if out.is_symlink() and not out.exists():
        raise ConfigError(f"out={str(out)!r} is a link to {str(out.readlink())!r}, which does not exist; collect needs "
                          "a dataset directory. Create the link's target first, or pass another --out.")
    out.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no flock; collect there unguarded
        yield
        return
    with open(out / LOCK_NAME, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            raise DatasetError(
                f"Another process is collecting into {out} (it holds {out / LOCK_NAME}). Wait for it to finish, "
                "or pass another --out."
            ) from e
        yield  # the lock goes with the file, also when the process is killed


def _remove_stale_tmp(out: Path) -> int:
    """Delete temp files that killed workers left (only while holding the lock: no writer is running)."""
    stale = [p for pattern in STALE_TMP_GLOBS for p in out.glob(pattern)]
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


def _prepare(cfg: CollectConfig) -> tuple[dict[str, Any], list[int]]:
    """Write or check dataset.json; return the data description and the episodes still missing."""
    cfg.validate()
    out = Path(cfg.out)
    _remove_stale_tmp(out)
    env = _make_env(cfg)
    real_env = env.unwrapped  # the real env's own spaces, also under the agent's real twin
    desc = describe_env(cfg.env_id, real_env, cfg.frame_crop)
    policy = {"name": cfg.policy, "noise": cfg.noise, "brownian_sigma": cfg.brownian_sigma,
              "agent": cfg.agent, "agent_model": cfg.agent_model, "max_steps": cfg.max_steps}
    # recorded only when used, so that datasets collected before these settings existed still resume
    policy.update({"hold_max": HOLD_MAX} if cfg.policy == "held" else {})
    policy.update({"min_steps": cfg.min_steps} if cfg.min_steps else {})
    if cfg.pedal_noise:  # PEDAL_START recorded too: data collected before it existed is not resumed under it
        policy.update({"pedal_noise": cfg.pedal_noise, "pedal_start": CarRacingPursuit.PEDAL_START})
    if cfg.pedal_style != "random":
        policy.update({"pedal_style": cfg.pedal_style, "cruise_gas": list(CarRacingPursuit.CRUISE_GAS),
                       "cruise_steps": list(CarRacingPursuit.CRUISE_STEPS)})
    policy.update({"expert_speed": cfg.expert_speed} if cfg.expert_speed != 1.0 else {})
    if cfg.expert_rest_every:
        policy.update({"expert_rest_every": cfg.expert_rest_every, "rest_start": CarRacingPursuit.REST_START})
    if cfg.expert_drift_every:
        policy.update({"expert_drift_every": cfg.expert_drift_every, "drift_start": CarRacingPursuit.DRIFT_START,
                       "drift_steps": list(CarRacingPursuit.DRIFT_STEPS)})
    meta = DatasetMeta(
        env_id=cfg.env_id, env_kwargs=cfg.env_kwargs, action_space=space_to_dict(real_env.action_space),
        observation_space=space_to_dict(real_env.observation_space), policy=policy, seed=cfg.seed,
        versions=package_versions(), **desc,
    )
    env.close()
    if (out / "dataset.json").exists():
        old = read_meta(out)
        differ = old.compatible(meta) + [k for k in ("policy", "seed") if getattr(old, k) != getattr(meta, k)]
        if differ:
            raise DatasetError(
                f"{out} already holds a dataset collected with other settings ({', '.join(differ)} differ). "
                "Re-run with the same settings to continue it, or pass a new --out."
            )
    else:
        write_meta(out, meta)
    have = {int(p.stem.split("-")[1]) for p in shard_paths(out)}
    return desc, [i for i in range(cfg.episodes) if i not in have]


def collect(cfg: CollectConfig, progress: bool = True) -> CollectResult:
    """Collect until ``cfg.out`` holds ``cfg.episodes`` episodes; resumable, parallel.

    >>> collect(CollectConfig("CarRacing-v3", out="data/carracing", episodes=200, workers=2))  # doctest: +SKIP
    """
    cfg.validate()
    with _locked(Path(cfg.out)):
        return _collect(cfg, progress)


def _collect(cfg: CollectConfig, progress: bool) -> CollectResult:
    desc, todo = _prepare(cfg)
    before = len(shard_paths(cfg.out))
    workers = min(cfg.workers or os.cpu_count() or 1, max(len(todo), 1))
    start = time.perf_counter()
    steps = written = 0
    bar = tqdm(total=cfg.episodes, initial=cfg.episodes - len(todo), desc=f"collect {cfg.env_id}",
               unit="ep", disable=not progress)
    errors: list[str] = []
    ready: list[float] = []
    if todo and workers == 1:
        messages: Any = _ListQueue()
        _worker(cfg, desc, todo, _Reporter(messages, bar), own_process=False)
        steps, written = messages.steps, messages.episodes
        errors = messages.errors
    elif todo:
        ctx = mp.get_context("spawn")
        messages = ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(cfg, desc, todo[w::workers], messages), daemon=True)
                 for w in range(workers)]
        for p in procs:
            p.start()
        running = len(procs)
        interrupted = False
        try:
            while running:
                try:
                    kind, a, b = messages.get(timeout=1.0)
                except queue_mod.Empty:
                    if not any(p.is_alive() for p in procs):
                        break
                    continue
                if kind == "episode":
                    steps, written = steps + b, written + 1
                    bar.update(1)
                    bar.set_postfix(steps_per_s=f"{steps / (time.perf_counter() - start):.0f}")
                elif kind == "error":
                    errors.append(b)
                elif kind == "ready":
                    ready.append(b)
                else:
                    running -= 1
        except KeyboardInterrupt:
            interrupted = True
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
                p.join()
        if interrupted:  # counted after the workers stopped: shards written since their last message count too
            on_disk = len(shard_paths(cfg.out))
            bar.write(f"Interrupted: {on_disk - before} new episodes are on disk ({on_disk} in all, "
                      f"{cfg.episodes} wanted); run the same command again to continue.")
            raise KeyboardInterrupt
    bar.close()
    if errors:
        raise DatasetError(f"Collection failed in a worker: {errors[0]}. {written} new episodes were kept in {cfg.out}.")
    startup = (min(ready) - start) if ready else 0.0  # perf_counter is system-wide on Linux
    return CollectResult(cfg.out, written, cfg.episodes, steps, time.perf_counter() - start, max(startup, 0.0))


class _ListQueue:
    """In-process stand-in for the worker queue (workers=1)."""

    def __init__(self) -> None:
        self.steps = self.episodes = 0
        self.errors: list[str] = []


class _Reporter:
    def __init__(self, sink: _ListQueue, bar: tqdm) -> None:
        self.sink, self.bar, self.start = sink, bar, time.perf_counter()

    def put(self, message: tuple[str, Any, Any]) -> None:
        kind, _, b = message
        if kind == "episode":
            self.sink.steps += b
            self.sink.episodes += 1
            self.bar.update(1)
            self.bar.set_postfix(steps_per_s=f"{self.sink.steps / (time.perf_counter() - self.start):.0f}")
        elif kind == "error":
            self.sink.errors.append(b)


