"""The lie detector: what a dream predicts, against what happened, along an agent's own real trajectory.

The agent plays the REAL env (:func:`dreamgym.make_real`, seen through the world model), and the
report compares, along each real episode, for any backend of :mod:`dreamgym.backends`:

- **reward**: the reward head, one step imagined at tau = 0 from the real twin's carry at every
  step (teacher-forced), against the real reward, step by step and summed per episode;
- **termination**: p(done) of the same steps against the real terminations;
- **open loop**: k-step rollouts (k = 1, 10, 50) from the teacher-forced carries, driven by the
  agent's real actions, at tau = 0 and sampled at the dream's tau: the error in latent and in summed
  reward, beside a "nothing changes" baseline (z_{t+k} predicted as z_t);
- **dream return**: the dream's return for the same actions from the real first latent (started as
  ``reset(options={"start_latent": z_0})`` starts it, tau = 0, until the dream's predicted termination
  or the real episode's end) against the real return;
- **disagreement** (backends with ``num_members > 1``): the members' disagreement along the real
  trajectory (what a dream reports in ``info["disagreement"]``), and whether it flags the steps where
  the dream errs.

**The latent z** of these metrics is the backend's stochastic latent, ``features(carry, "z")``: V's
latent for the MDN-RNN, the one-hot categoricals for the RSSM (whose squared error per dimension is
then 2 / (groups · classes) per categorical that differs). A latent error compares the dream's z with
the real twin's z at the same step.

**Teacher forcing** through the protocol: the carry at step t is the dream's carry with the real twin's
carry (``observe`` along reality) written over the entries it holds, as a dream's
``reset(options={"start_latent": ...})`` writes ``start``'s. Entries the twin does not keep (an
MDN-RNN ensemble's other members' memories) follow the dream's own step along reality. No dropout
mask: the mean M.

>>> report = fidelity_report("runs/carracing", "agents/cr-cmaes", episodes=10)  # doctest: +SKIP
>>> print("\\n".join(fidelity_card_lines(report)))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from dreamgym.backends import Backend, Carry, Episodes, Noise, is_backend
from dreamgym.errors import CheckpointError, ConfigError
from dreamgym.evaluate import AgentInfo, action_bounds, agent_info, is_baseline, load
from dreamgym.rollout import episode_policy, play
from dreamgym.utils import atomic_write, atomic_write_text

FIDELITY_NAME = "fidelity.json"
HORIZONS = (1, 10, 50)
SERIES_EPISODES = 2  # per-step series kept in the JSON (and plotted) for the first episodes
_CHUNK = 8192  # open-loop rows stepped together: bounds memory for long episodes and many starts


@dataclass
class Trajectory:
    """One real episode as the real twin saw it.

    :param z: (T+1, z) the twin's latents ``features(carry, "z")``, z_0 after any burn-in.
    :param carry: the twin's carry at every step, each entry (T+1, ...): the entries it holds at every step.
    :param actions: (T, a) the agent's actions as the model takes them (clipped; one-hot for Discrete).
    :param rewards: (T,) the real rewards. :param terminated: the real env terminated (not truncated).
    :param seed: the episode's reset seed.
    """

    z: np.ndarray
    carry: dict[str, np.ndarray]
    actions: np.ndarray
    rewards: np.ndarray
    terminated: bool
    seed: int

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def h0(self) -> np.ndarray:
        """The MDN-RNN's memory h at t = 0 (zero unless the model burns in)."""
        return self._entry0("h")

    @property
    def c0(self) -> np.ndarray:
        """The MDN-RNN's LSTM cell c at t = 0."""
        return self._entry0("c")

    def _entry0(self, name: str) -> np.ndarray:
        if name not in self.carry:
            raise AttributeError(f"This backend's carry has no {name!r} (it has {sorted(self.carry)}).")
        return self.carry[name][0]


def _num_members(model: Backend) -> int:
    """The backend's ensemble members (1 without an ensemble)."""
    return getattr(model, "num_members", 1)


# ----- reality ---------------------------------------------------------------------------------
def _twin_carry(twin: Any) -> dict[str, np.ndarray]:
    """The twin's carry (a batch of one) as numpy rows, copied."""
    return {k: v[0].detach().cpu().numpy().copy() for k, v in twin.carry.items()}


def record_episode(agent: Any, twin: Any, seed: int) -> Trajectory:
    """Play one episode of ``agent`` (deterministic actions) in a real twin; record what it saw."""
    policy = episode_policy(agent, seed)  # a random agent's draws depend on the episode only, not on the worker
    obs, _ = twin.reset(seed=seed)
    zs, carries, actions, rewards = [twin.latent()], [_twin_carry(twin)], [], []
    terminated = False
    for step in play(twin, policy, obs):
        actions.append(twin.adapter.single_numpy(step.action))
        zs.append(twin.latent())
        carries.append(_twin_carry(twin))
        rewards.append(step.reward)
        terminated = step.terminated
    kept = set.intersection(*(set(c) for c in carries))  # e.g. an MDN-RNN ensemble's start holds more entries
    carry = {k: np.stack([c[k] for c in carries]) for k in sorted(kept)}
    return Trajectory(np.stack(zs).astype(np.float32), carry, np.stack(actions).astype(np.float32),
                      np.asarray(rewards, dtype=np.float64), bool(terminated), seed)


def _record_chunk(info: AgentInfo, model: Any, seeds: list[int], sample_z: bool | None) -> list[Trajectory]:
    from dreamgym.envs.real import make_real

    if not is_backend(model):
        torch.set_num_threads(1)  # a worker process: one core each
    twin = make_real(info.env_id, model=model, obs_type=info.obs_type, sample_z=sample_z, **action_bounds(info))
    agent = load(info, twin.observation_space, twin.action_space, seeds[0])
    try:
        return [record_episode(agent, twin, s) for s in seeds]
    finally:
        twin.close()


def record_trajectories(info: AgentInfo, model: Any, episodes: int, seed: int = 0, workers: int = 0,
                        sample_z: bool | None = None) -> list[Trajectory]:
    """Real episodes of an agent (episode i reset with seed + i), spread over spawned worker processes.

    A loaded world model (not a path) is played in this process.
    """
    seeds = [seed + i for i in range(episodes)]
    workers = min(workers or os.cpu_count() or 1, episodes)
    if workers == 1 or is_backend(model):
        return _record_chunk(info, model, seeds, sample_z)
    chunks = [seeds[w::workers] for w in range(workers)]
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        parts = list(pool.map(_record_chunk, [info] * workers, [model] * workers, chunks, [sample_z] * workers))
    by_seed = {t.seed: t for part in parts for t in part}
    return [by_seed[s] for s in seeds]


# ----- the dream along reality -----------------------------------------------------------------
def _pad(trajs: Sequence[Trajectory]) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Episodes -> z (b, T+1, z), actions (b, T, a) zero-padded to the longest, lengths (b,)."""
    lengths = np.asarray([len(t) for t in trajs])
    n, big = len(trajs), int(lengths.max())
    z = torch.zeros(n, big + 1, trajs[0].z.shape[1])
    a = torch.zeros(n, big, trajs[0].actions.shape[1])
    for i, t in enumerate(trajs):
        z[i, : len(t) + 1] = torch.from_numpy(t.z)
        a[i, : len(t)] = torch.from_numpy(t.actions)
    return z, a, lengths


def _tile(x: torch.Tensor, members: int) -> torch.Tensor:
    """(b, ...) -> (members b, ...): the rows again for every member followed."""
    return x.repeat(members, *([1] * (x.dim() - 1)))


def _twin_at(trajs: Sequence[Trajectory], t: int, members: int) -> Carry:
    """The twin's carries at step t (an ended episode's last), (members b, ...): the rows again for every member."""
    names = sorted(set.intersection(*(set(tr.carry) for tr in trajs)))
    return {k: _tile(torch.from_numpy(np.stack([tr.carry[k][min(t, len(tr))] for tr in trajs])), members)
            for k in names}


def _write(carry: Carry, new: Carry) -> Carry:
    """Write ``new``'s entries over ``carry``'s, in place (entries may alias, e.g. a member's view), as a
    dream writes ``start``'s; entries ``carry`` lacks are left out."""
    for k, v in new.items():
        if k in carry:
            carry[k][:] = v.to(carry[k].dtype)
    return carry


def _keys(seed: int, n: int, *stream: int) -> torch.Tensor:
    """``n`` noise keys of the report's ``seed`` (another ``stream``, another set)."""
    return torch.from_numpy(np.random.default_rng([seed, 0xF1DE, *stream]).integers(0, 2**63 - 1, n, dtype=np.int64))


def _tf_members(model: Backend, samples: int) -> int:
    """Members the teacher-forced carries follow: 0 for the measures, and those the sampled rollouts follow."""
    k = _num_members(model)
    return 1 if k == 1 else min(k, max(samples, 1))


def _start_carry(model: Backend, members: int, z0: torch.Tensor, twin: Carry, seed: int) -> Carry:
    """The carry at t = 0 of (member m, episode i) rows, member-major: the dream's start from z_0 (following
    member m, no dropout mask), the twin's first carry written over it."""
    rows = members * len(z0)
    episodes = Episodes(_keys(seed, rows, 1), torch.arange(members).repeat_interleave(len(z0)), dropout_masks=False)
    carry = _write(model.initial(torch.zeros(rows, dtype=torch.long), episodes), model.start(_tile(z0, members)))
    return _write(carry, twin)


@torch.no_grad()
def teacher_forced(model: Backend, trajs: Sequence[Trajectory], every: int, samples: int = 0,
                   seed: int = 0) -> dict[str, Any]:
    """One step imagined (tau = 0) from the real twin's carry at every step (all episodes at once).

    Returns per-step arrays (b, T) ``reward``, ``p_done``, ``one_step_mse`` (the imagined z_{t+1}
    against the real one) and ``disagreement``; and the teacher-forced carries (``start_carry``, each
    entry (M, starts, ...), row m following member m) at the open-loop starts t = 0, every, 2 every, ...
    (``starts``: (episode, t) pairs).
    """
    z, a, lengths = _pad(trajs)
    n, big, members = len(trajs), int(lengths.max()), _tf_members(model, samples)
    carry = _start_carry(model, members, z[:, 0], _twin_at(trajs, 0, members), seed)
    keys, tau = _keys(seed, members * n, 2), torch.zeros(members * n)
    out = {name: np.zeros((n, big)) for name in ("reward", "p_done", "one_step_mse", "disagreement")}
    starts, saved = [], []
    for t in range(big):
        if t % every == 0:
            rows = np.flatnonzero(lengths > t)
            starts += [(int(i), t) for i in rows]
            saved.append({k: v.reshape(members, n, *v.shape[1:])[:, rows] for k, v in carry.items()})
        carry, reward, p_done = model.imagine(carry, _tile(a[:, t], members), tau,
                                              Noise(keys, torch.full((members * n,), t)))
        z_pred = model.features(carry, "z")[:n]
        out["reward"][:, t] = reward[:n].numpy()
        out["p_done"][:, t] = p_done[:n].numpy()
        out["one_step_mse"][:, t] = (z_pred - z[:, t + 1]).pow(2).mean(dim=-1).numpy()
        out["disagreement"][:, t] = carry["disagreement"][:n].numpy() if "disagreement" in carry else 0.0
        carry = _write(carry, _twin_at(trajs, t + 1, members))
    out.update(starts=starts, start_carry={k: torch.cat([s[k] for s in saved], dim=1) for k in saved[0]})
    return out


@torch.no_grad()
def open_loop(model: Backend, trajs: Sequence[Trajectory], forced: dict[str, Any], horizons: Sequence[int],
              temperature: float, samples: int, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """k-step rollouts from every start of ``forced`` (its teacher-forced carries), driven by the real actions.

    Row 0 of each start runs at tau = 0 following member 0; rows 1..samples at ``temperature``, row s
    following member (s - 1) mod K (an ensemble's dream draws one member per episode). z is
    ``features(carry, "z")``. Returns, per
    horizon k, arrays (starts, 1 + samples) of the latent MSE at t + k and the predicted minus the
    real reward summed over the k steps (the dream's termination ignored; NaN where the episode ends
    before t + k), and (starts,)
    the "nothing changes" baseline MSE(z_t, z_{t+k}).
    """
    starts, kmax, reps = forced["starts"], max(horizons), 1 + samples
    n = len(starts)
    z0 = torch.from_numpy(np.stack([trajs[i].z[t] for i, t in starts]))
    actions = torch.zeros(n, kmax, trajs[0].actions.shape[1])
    for row, (i, t) in enumerate(starts):
        steps = trajs[i].actions[t: t + kmax]
        actions[row, : len(steps)] = torch.from_numpy(steps)
    tau = torch.tensor([0.0] + [temperature] * samples).repeat(n)  # (n reps,): start-major rows
    member = torch.tensor([0] + [s % _num_members(model) for s in range(samples)]).repeat(n)
    keys = _keys(seed, n * reps)
    pred_z = {q: torch.zeros(n * reps, z0.shape[1]) for q in horizons}
    pred_r = {q: torch.zeros(n * reps) for q in horizons}
    for lo in range(0, n * reps, _CHUNK):
        rows = torch.arange(lo, min(lo + _CHUNK, n * reps))
        src = rows // reps
        carry = {k: v[member[rows], src] for k, v in forced["start_carry"].items()}  # (M, starts, ...) -> (rows, ...)
        total = torch.zeros(len(rows))
        for t in range(kmax):
            noise = Noise(keys[rows], torch.full((len(rows),), t))
            carry, reward, _ = model.imagine(carry, actions[src, t], tau[rows], noise)
            total += reward
            if t + 1 in pred_z:
                pred_z[t + 1][rows], pred_r[t + 1][rows] = model.features(carry, "z"), total
    result = {}
    for q in horizons:
        valid = np.asarray([t + q <= len(trajs[i]) for i, t in starts])
        target = np.stack([trajs[i].z[min(t + q, len(trajs[i]))] for i, t in starts])
        real_sum = np.asarray([trajs[i].rewards[t: t + q].sum() for i, t in starts])
        mse = ((pred_z[q].numpy().reshape(n, reps, -1) - target[:, None]) ** 2).mean(-1)
        err = pred_r[q].numpy().reshape(n, reps) - real_sum[:, None]
        mse[~valid], err[~valid] = np.nan, np.nan
        base = ((z0.numpy() - target) ** 2).mean(-1)
        base[~valid] = np.nan
        result[q] = {"latent_mse": mse, "reward_error": err, "baseline_mse": base, "real_sum": real_sum}
    return result


@torch.no_grad()
def dream_returns(model: Backend, trajs: Sequence[Trajectory]) -> tuple[np.ndarray, np.ndarray]:
    """The dream's return and length for each episode's actions, at tau = 0 from the real first latent.

    The dream is the one agents train in (:class:`~dreamgym.envs.core.DreamBatch`, with the model's own
    dream options), started as ``reset(options={"start_latent": z0})`` does (h = c = 0), following
    member 0 with no dropout mask; it stops at its own predicted termination or the real episode's end.
    """
    from dreamgym.envs.core import DreamBatch

    z, a, lengths = _pad(trajs)
    n = len(trajs)
    batch = DreamBatch(model, n, "z", torch.device("cpu"))
    batch.set_temperature(0.0)
    for i in range(n):
        batch.set_state(i, z[i, 0])
    total, steps = np.zeros(n), np.zeros(n, dtype=np.int64)
    alive = np.ones(n, dtype=bool)
    for t in range(int(lengths.max())):
        reward, terminated = batch.step(a[:, t])
        alive &= t < lengths
        total += reward.numpy() * alive
        steps += alive
        alive &= ~terminated.numpy()
        if not alive.any():
            break
    return total, steps


# ----- numbers -----------------------------------------------------------------------------------
def _num(x: Any) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    x = float(x)
    return x if math.isfinite(x) else None


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation, None where it is undefined (fewer than 2 points, or a constant)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return None
    return _num(np.corrcoef(a, b)[0, 1])


def _mean(x: np.ndarray) -> float | None:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return _num(x.mean()) if len(x) else None


def _steps(per_step: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(b, T) padded -> the valid steps, concatenated."""
    return np.concatenate([row[:n] for row, n in zip(per_step, lengths)])


def _reward_head(model: Backend) -> str:
    """``"learned"``, or ``"constant r"`` for an MDN-RNN whose ``config.heads`` has no reward head."""
    heads = getattr(model.config, "heads", None)
    return "learned" if heads is None or heads.reward else f"constant {heads.constant_reward:g}"


def _termination_head(model: Backend) -> bool:
    """Whether p(done) is learned: an MDN-RNN's ``config.heads.termination``; other backends learn it."""
    heads = getattr(model.config, "heads", None)
    return True if heads is None else bool(heads.termination)


def reward_section(model: Backend, trajs: Sequence[Trajectory], forced: dict[str, Any]) -> dict[str, Any]:
    lengths = np.asarray([len(t) for t in trajs])
    pred, real = _steps(forced["reward"], lengths), np.concatenate([t.rewards for t in trajs])
    pred_ep = np.asarray([row[:n].sum() for row, n in zip(forced["reward"], lengths)])
    real_ep = np.asarray([t.rewards.sum() for t in trajs])
    return {
        "head": _reward_head(model),
        "steps": int(len(real)), "mae": _num(np.abs(pred - real).mean()), "bias": _num((pred - real).mean()),
        "correlation": _corr(pred, real), "real_mean_abs": _num(np.abs(real).mean()),
        "episode": {"predicted": [round(float(x), 3) for x in pred_ep], "real": [round(float(x), 3) for x in real_ep],
                    "mae": _num(np.abs(pred_ep - real_ep).mean()), "correlation": _corr(pred_ep, real_ep)},
    }


def termination_section(model: Backend, trajs: Sequence[Trajectory], forced: dict[str, Any]) -> dict[str, Any]:
    """p(done) against the real terminations: at the terminal step, precision/recall at the threshold."""
    threshold = getattr(model, "done_threshold", 0.5)
    lengths = np.asarray([len(t) for t in trajs])
    p = _steps(forced["p_done"], lengths)
    true = np.concatenate([np.arange(len(t)) == len(t) - 1 if t.terminated else np.zeros(len(t), bool) for t in trajs])
    pred = p > threshold
    tp, fp, fn = int((pred & true).sum()), int((pred & ~true).sum()), int((~pred & true).sum())
    at_end = [float(forced["p_done"][i, len(t) - 1]) for i, t in enumerate(trajs) if t.terminated]
    near = [bool((forced["p_done"][i, max(0, len(t) - 3): len(t)] > threshold).any())
            for i, t in enumerate(trajs) if t.terminated]
    return {
        "head": _termination_head(model), "threshold": threshold, "terminations": len(at_end),
        "p_at_terminal": [round(x, 4) for x in at_end], "mean_p_at_terminal": _mean(np.asarray(at_end)),
        "precision": tp / (tp + fp) if tp + fp else None, "recall": tp / (tp + fn) if tp + fn else None,
        "recall_within_2_steps": _mean(np.asarray(near, dtype=float)),
        "mean_p_nonterminal": _mean(p[~true]), "false_alarm_rate": _mean(pred[~true].astype(float)),
    }


def open_loop_section(rollouts: dict[int, dict[str, np.ndarray]], every: int, temperature: float,
                      samples: int) -> dict[str, Any]:
    horizons = {}
    for q, r in rollouts.items():
        mse, err = r["latent_mse"], r["reward_error"]
        valid = np.isfinite(r["baseline_mse"])
        sampled = samples > 0 and valid.any()
        horizons[str(q)] = {
            "starts": int(valid.sum()),
            "latent_mse": {"tau0": _mean(mse[:, 0]), "sampled": _mean(mse[:, 1:]) if sampled else None},
            "baseline_mse": _mean(r["baseline_mse"]),
            "reward_sum_mae": {"tau0": _mean(np.abs(err[:, 0])), "sampled": _mean(np.abs(err[:, 1:])) if sampled else None},
            "reward_sum_bias": {"tau0": _mean(err[:, 0]), "sampled": _mean(err[:, 1:]) if sampled else None},
            "real_reward_sum_mean": _mean(r["real_sum"][valid]),
        }
    return {"every": every, "samples": samples, "temperature": temperature, "horizons": horizons}


def dream_return_section(trajs: Sequence[Trajectory], dream: np.ndarray, steps: np.ndarray) -> dict[str, Any]:
    real = np.asarray([t.rewards.sum() for t in trajs])
    return {
        "temperature": 0.0, "real": [round(float(x), 3) for x in real], "dream": [round(float(x), 3) for x in dream],
        "real_mean": _num(real.mean()), "dream_mean": _num(dream.mean()), "gap": _num(dream.mean() - real.mean()),
        "correlation": _corr(dream, real), "real_steps": [len(t) for t in trajs], "dream_steps": steps.tolist(),
    }


def disagreement_section(model: Backend, trajs: Sequence[Trajectory], forced: dict[str, Any],
                         rollouts: dict[int, dict[str, np.ndarray]]) -> dict[str, Any] | None:
    """Does the ensemble's disagreement flag where the dream errs? None for a single M."""
    if _num_members(model) == 1:
        return None
    lengths = np.asarray([len(t) for t in trajs])
    d, err = _steps(forced["disagreement"], lengths), _steps(forced["one_step_mse"], lengths)
    top = d >= np.quantile(d, 0.9)
    rest = err[~top].mean() if (~top).any() else np.nan
    windows = {}
    for q, r in rollouts.items():  # mean disagreement over the window the rollout covers
        window = np.asarray([forced["disagreement"][i, t: t + q].mean() for i, t in forced["starts"]])
        windows[str(q)] = _corr(window, r["latent_mse"][:, 0])
    return {
        "members": _num_members(model), "mean": _num(d.mean()), "max": _num(d.max()),
        "one_step_error_correlation": _corr(d, err),
        "top_decile_error_ratio": _num(err[top].mean() / rest) if rest and np.isfinite(rest) else None,
        "open_loop_error_correlation": windows,
    }


def series_section(model: Backend, trajs: Sequence[Trajectory], forced: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-step series of the first episodes, for the plot."""
    out = []
    for i, t in enumerate(trajs[:SERIES_EPISODES]):
        n = len(t)
        row = {"seed": t.seed, "terminated": t.terminated, "real_reward": np.round(t.rewards, 4).tolist()}
        for name, key in (("predicted_reward", "reward"), ("p_done", "p_done"), ("one_step_mse", "one_step_mse")):
            row[name] = np.round(forced[key][i, :n], 5).tolist()
        if _num_members(model) > 1:
            row["disagreement"] = np.round(forced["disagreement"][i, :n], 5).tolist()
        out.append(row)
    return out


# ----- the report --------------------------------------------------------------------------------
def _check(episodes: int, horizons: Sequence[int], every: int, samples: int) -> tuple[int, ...]:
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ConfigError(f"episodes must be an integer >= 1, got {episodes!r}.")
    if not horizons or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in horizons):
        raise ConfigError(f"horizons must be integers >= 1 (steps of open-loop rollout), got {list(horizons)!r}; "
                          f"e.g. {list(HORIZONS)}.")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ConfigError(f"every must be an integer >= 1 (steps between open-loop starts), got {every!r}.")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
        raise ConfigError(f"samples must be an integer >= 0 (sampled rollouts per start), got {samples!r}.")
    return tuple(sorted(set(horizons)))


def _agent(agent: str | Path, dream_id: str, model_ref: str) -> AgentInfo:
    """The agent's metadata, played through ``model_ref``; it must act in the model's dream."""
    if is_baseline(agent):
        return agent_info(agent, dream_id, model_ref)
    try:
        own = agent_info(agent).env_id
    except ConfigError:  # it does not record its dream: it is assumed to act in this one
        own = dream_id
    if own != dream_id:
        raise ConfigError(f"Agent {agent} acts in {own}, but the world model dreams of {dream_id}. "
                          f"Pass an agent trained in a {dream_id} dream, or that dream's world model.")
    return agent_info(agent, dream_id, model_ref)


def _relative(path: str, model: str | Path | Backend) -> str:
    """``path`` relative to the model folder when it lies inside it, else as given."""
    folder = model if not is_backend(model) else model.source.get("path")
    if is_baseline(path) or not folder or not Path(folder).is_dir():
        return path
    try:
        return Path(path).resolve().relative_to(Path(folder).resolve()).as_posix()
    except ValueError:
        return path


def fidelity_report(
    model: str | Path | Backend,
    agent: str | Path,
    episodes: int = 10,
    *,
    seed: int = 0,
    temperature: float | None = None,
    horizons: Sequence[int] = HORIZONS,
    every: int = 10,
    samples: int = 4,
    sample_z: bool | None = None,
    workers: int = 0,
    out: str | Path | None = None,
    plot: bool = True,
) -> dict[str, Any]:
    """Play ``agent`` in the real env and measure how far ``model``'s dream strays from what happened.

    :param model: the world model of any backend: a checkpoint directory, pretrained name, Hub id, or a
        loaded model (played in this process).
    :param agent: a controller directory, CMA-ES run, SB3 zip or ``"random"``; it sees reality
        through ``model`` (its obs_type is the agent's own).
    :param episodes: real episodes; episode i is reset with seed + i.
    :param temperature: tau of the sampled open-loop rollouts (None: the model's default).
    :param horizons: open-loop rollout lengths k. :param every: steps between open-loop starts.
    :param samples: sampled rollouts per start at ``temperature`` (besides the tau-0 one).
    :param sample_z: the real twin draws z from the posterior instead of taking its mean (the MDN-RNN's V;
        a backend may ignore it: the RSSM's twin takes the posterior's mode); None: the model's default.
    :param workers: processes for the real episodes (0: one per core; 1: this process).
    :param out: write the report there as JSON, and the plot beside it (``.png``) if ``plot``.
    :returns: the report: ``reward``, ``termination``, ``latent``, ``open_loop``, ``dream_return``,
        ``disagreement`` (None without an ensemble), ``series``, the ``backend`` and the settings.
    """
    horizons = _check(episodes, horizons, every, samples)
    start = time.perf_counter()
    wm, tau, dream_id = _load(model, temperature)
    model_ref = model if is_backend(model) else str(model)
    info = _agent(agent, dream_id, model_ref if isinstance(model_ref, str) else wm.source.get("path", ""))
    if sample_z is None:
        from dreamgym.envs.real import default_sample_z

        sample_z = default_sample_z(wm)
    trajs = record_trajectories(info, model_ref, episodes, seed, workers, sample_z)
    report = {**_header(wm, model_ref, dream_id, info), "episodes": episodes, "seed": seed, "sample_z": sample_z,
              **measure(wm, trajs, horizons=horizons, every=every, temperature=tau, samples=samples, seed=seed),
              "seconds": round(time.perf_counter() - start, 2)}
    if out is not None:
        atomic_write_text(out, json.dumps(report, indent=2, sort_keys=True) + "\n")
        if plot:
            plot_fidelity(report, Path(out).with_suffix(".png"))
    return report


def _load(model: str | Path | Backend, temperature: float | None) -> tuple[Backend, float, str]:
    """The world model, the tau of the sampled rollouts, and the id of the model's dream."""
    from dreamgym.models.resolve import resolve_model
    from dreamgym.models.world_model import check_temperature
    from dreamgym.registry import dream_spec_for_env

    wm = resolve_model(model).eval()
    tau = check_temperature(wm.config.default_temperature if temperature is None else temperature)
    spec = dream_spec_for_env(wm.config.env_id)
    if spec is None:
        raise ConfigError(f"{wm.config.env_id} has no registered dream; the lie detector plays agents of the "
                          "registered dreams (dreamgym.registry.DREAMS).")
    return wm, tau, spec.id


def _header(wm: Backend, model_ref: str | Backend, dream_id: str, info: AgentInfo) -> dict[str, Any]:
    """What was measured: the model, its backend, the dream and the agent."""
    return {
        "model": model_ref if isinstance(model_ref, str) else wm.source.get("path", "<in memory>"),
        # a Hub id's commit, or a pretrained name; no path of the machine that measured it (the file may ship)
        "model_source": {k: v for k, v in wm.source.items() if k != "path"}, "env_id": wm.config.env_id,
        "backend": getattr(wm.config, "backend", "mdnrnn"), "dream_id": dream_id, "members": _num_members(wm),
        "agent": {"path": _relative(info.path, model_ref), "kind": info.kind, "obs_type": info.obs_type,
                  **({"algo": info.algo} if info.algo else {})},
    }


def measure(wm: Backend, trajs: Sequence[Trajectory], *, horizons: Sequence[int], every: int, temperature: float,
            samples: int, seed: int) -> dict[str, Any]:
    """The report's sections for real episodes ``trajs`` (see :func:`fidelity_report`)."""
    forced = teacher_forced(wm, trajs, every, samples, seed)
    rollouts = open_loop(wm, trajs, forced, horizons, temperature, samples, seed)
    dream, dream_steps = dream_returns(wm, trajs)
    lengths = np.asarray([len(t) for t in trajs])
    one_step = _steps(forced["one_step_mse"], lengths)
    baseline = np.concatenate([((t.z[1:] - t.z[:-1]) ** 2).mean(-1) for t in trajs])
    return {
        "reward": reward_section(wm, trajs, forced),
        "termination": termination_section(wm, trajs, forced),
        "latent": {"one_step_mse": _mean(one_step), "baseline_mse": _mean(baseline)},
        "open_loop": open_loop_section(rollouts, every, temperature, samples),
        "dream_return": dream_return_section(trajs, dream, dream_steps),
        "disagreement": disagreement_section(wm, trajs, forced, rollouts),
        "series": series_section(wm, trajs, forced),
    }


def read_report(path: str | Path) -> dict[str, Any]:
    """A fidelity JSON as ``fidelity_report`` wrote it."""
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"Could not read the fidelity report {path}: {e}. Re-run `dreamgym fidelity` "
                              "to write it again, or delete it.") from e
    if not isinstance(report, dict) or "dream_return" not in report:
        raise CheckpointError(f"{path} is not a fidelity report (no 'dream_return'); re-run `dreamgym fidelity`.")
    return report


# ----- for people ---------------------------------------------------------------------------------
def _f(x: Any, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}g}"


def fidelity_card_lines(report: dict[str, Any]) -> list[str]:
    """A few markdown lines for a model card: the dream against reality."""
    r, d, ol = report["reward"], report["dream_return"], report["open_loop"]
    agent = report["agent"]["path"]
    lines = [f"Measured by `dreamgym fidelity` along {report['episodes']} real episodes of the agent `{agent}` "
             f"(seed {report['seed']}):", ""]
    lines.append(f"- dream return for the same actions (τ 0): {_f(d['dream_mean'], 4)} vs real {_f(d['real_mean'], 4)} "
                 f"(correlation over episodes {_f(d['correlation'], 2)})")
    state = "the real memory h" if report.get("backend", "mdnrnn") == "mdnrnn" else "the real twin's state"
    head = f"the reward head on {state}" if r["head"] == "learned" else f"reward {r['head']}"
    lines.append(f"- reward per step ({head}): MAE {_f(r['mae'])} "
                 f"(mean real |r| {_f(r['real_mean_abs'])}), correlation {_f(r['correlation'], 2)}; per episode "
                 f"MAE {_f(r['episode']['mae'])}")
    t = report["termination"]
    if t["head"]:
        lines.append(f"- termination: p(done) at the real end {_f(t['mean_p_at_terminal'], 2)} ({t['terminations']} "
                     f"ends), precision {_f(t['precision'], 2)} / recall {_f(t['recall'], 2)} at p > {t['threshold']}, "
                     f"mean p elsewhere {_f(t['mean_p_nonterminal'], 2)}")
    ks = list(ol["horizons"])
    cell = lambda k, key, which: _f(ol["horizons"][k][key][which]) if which else _f(ol["horizons"][k][key])  # noqa: E731
    lines += ["", f"| open loop, k steps | {' | '.join(ks)} |", "|---|" + "---|" * len(ks),
              f"| latent MSE, τ 0 | {' | '.join(cell(k, 'latent_mse', 'tau0') for k in ks)} |",
              f"| latent MSE, τ {ol['temperature']:g} ({ol['samples']} samples) | "
              f"{' | '.join(cell(k, 'latent_mse', 'sampled') for k in ks)} |",
              f"| latent MSE if nothing changed | {' | '.join(cell(k, 'baseline_mse', None) for k in ks)} |",
              f"| reward summed over k, MAE at τ 0 | {' | '.join(cell(k, 'reward_sum_mae', 'tau0') for k in ks)} |"]
    dis = report.get("disagreement")
    if dis:
        lines += ["", f"- ensemble of {dis['members']}: disagreement along reality mean {_f(dis['mean'])}, "
                      f"correlation with the one-step latent error {_f(dis['one_step_error_correlation'], 2)}"]
    return lines


def format_report(report: dict[str, Any]) -> str:
    """The report as a few lines for a terminal."""
    return "\n".join(line for line in fidelity_card_lines(report) if line)


def plot_fidelity(report: dict[str, Any], path: str | Path) -> Path:
    """A PNG of the report: reward and p(done) over the first episodes, open-loop error against k,
    dream against real return per episode (and disagreement against error, for ensembles)."""
    from gymnasium.error import DependencyNotInstalled

    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise DependencyNotInstalled("Plotting the fidelity report needs matplotlib: pip install \"dreamgym[viz]\" "
                                     "(or: pip install matplotlib)") from e
    ensemble = report.get("disagreement") is not None
    fig = Figure(figsize=(11, 7.5 if not ensemble else 10), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(3 if ensemble else 2, 2, squeeze=False).reshape(-1)
    ax = axes[0]
    for j, s in enumerate(report["series"]):
        ax.plot(s["real_reward"], color=f"C{j}", label=f"real (seed {s['seed']})")
        ax.plot(s["predicted_reward"], color=f"C{j}", ls="--", label="predicted")
    ax.set(title="reward, teacher-forced", xlabel="step")
    ax = axes[1]
    for j, s in enumerate(report["series"]):
        ax.plot(s["p_done"], color=f"C{j}", label=f"seed {s['seed']}")
        if s["terminated"]:
            ax.axvline(len(s["p_done"]) - 1, color=f"C{j}", ls=":")
    ax.axhline(report["termination"]["threshold"], color="gray", lw=0.8)
    title = "p(done) (dotted: the real end)" if report["termination"]["head"] else "p(done): no termination head"
    ax.set(title=title, xlabel="step", ylim=(-0.02, 1.02))
    ax = axes[2]
    ol = report["open_loop"]
    ks = [int(k) for k in ol["horizons"]]
    for label, get in (("τ 0", lambda h: h["latent_mse"]["tau0"]),
                       (f"τ {ol['temperature']:g}", lambda h: h["latent_mse"]["sampled"]),
                       ("nothing changes", lambda h: h["baseline_mse"])):
        ys = [get(ol["horizons"][str(k)]) for k in ks]
        ax.plot(ks, [np.nan if y is None else y for y in ys], marker="o", label=label)
    ax.set(title="open-loop latent MSE", xlabel="k (steps)", xscale="log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax = axes[3]
    d = report["dream_return"]
    ax.scatter(d["real"], d["dream"], s=14)
    lo, hi = min(d["real"] + d["dream"]), max(d["real"] + d["dream"])
    ax.plot([lo, hi], [lo, hi], color="gray", lw=0.8)
    ax.set(title="return, same actions: dream (τ 0) vs real", xlabel="real", ylabel="dream")
    if ensemble:
        for j, s in enumerate(report["series"]):
            axes[4].plot(s["disagreement"], color=f"C{j}", label=f"seed {s['seed']}")
            axes[5].scatter(s["disagreement"], s["one_step_mse"], s=6, color=f"C{j}")
        axes[4].set(title="ensemble disagreement along reality", xlabel="step")
        axes[5].set(title="one-step latent MSE vs disagreement", xlabel="disagreement", ylabel="MSE")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(f"{report['dream_id']}: the dream against reality ({report['episodes']} episodes)")
    path = Path(path)
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=90))
    return path


__all__ = ["FIDELITY_NAME", "Trajectory", "fidelity_card_lines", "fidelity_report", "format_report",
           "plot_fidelity", "read_report", "record_trajectories"]
