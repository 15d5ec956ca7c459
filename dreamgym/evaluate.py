"""Score any agent in a dream and in reality: mean ± std, and the dream-to-real gap."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import multiprocessing as mp
import numpy as np
from gymnasium import spaces

from dreamgym.checkpoint import read_config, read_json_object
from dreamgym.errors import ConfigError
from dreamgym.registry import DREAMS
from dreamgym.rollout import ConstantAgent, RandomAgent, dream_returns, episode_policy, predicting, run_episode
from dreamgym.utils import atomic_write_text


@dataclass
class AgentInfo:
    """Where an agent comes from and what it needs: ``kind`` is controller, sb3, ensemble, random or constant."""

    path: str
    kind: str
    env_id: str
    obs_type: str
    world_model: str
    algo: str | None = None
    action_space: dict[str, Any] | None = None  # the Box it was trained in (``space_to_dict``); None: the model's


def action_bounds(info: AgentInfo) -> dict[str, Any]:
    """``action_low`` / ``action_high`` of the Box the agent was trained in, as dream and make_real keyword
    arguments; {} when it does not record one (the model's own bounds then apply)."""
    if info.action_space is None:
        return {}
    from dreamgym.spaces import space_from_dict

    space = space_from_dict(info.action_space, f"{info.path}: action_space")
    if not isinstance(space, spaces.Box):
        return {}
    return {"action_low": space.low.reshape(-1).tolist(), "action_high": space.high.reshape(-1).tolist()}


def agent_info(path: str | Path, env_id: str | None = None, model: str | None = None, obs_type: str | None = None
               ) -> AgentInfo:
    """Read an agent's metadata (a controller's or CMA-ES run's config.json, or agent.json beside an SB3 zip);
    kwargs override."""
    p = Path(path)
    if is_baseline(path):
        kind = "random" if str(path) == "random" else "constant"
        if env_id is None:
            raise ConfigError(f"The {kind} agent needs env_id (a Dream id) to know its action space.")
        dream = env_id.split(":", 1)[-1]
        return AgentInfo(str(path), kind, dream, obs_type or "latent", model or DREAMS[dream].pretrained)
    from dreamgym.agents import locate_agent

    kind, p = locate_agent(p)
    if kind == "ensemble":
        from dreamgym.agents.ensemble import read_ensemble

        meta = read_ensemble(p)
        info = AgentInfo(str(p), kind, meta["env_id"], meta["obs_type"], meta["world_model"],
                         action_space=_recorded_space(meta, p / "ensemble.json"))
    elif kind == "controller":
        cfg = read_config(p)
        info = AgentInfo(str(p), kind, cfg.get("env_id", ""), cfg.get("obs_type", "latent"), cfg.get("world_model", ""),
                         action_space=_recorded_space(cfg, p / "config.json"))
    else:
        meta = read_json_object(p.parent / "agent.json") if (p.parent / "agent.json").is_file() else {}
        info = AgentInfo(str(p), kind, meta.get("env_id", ""), meta.get("obs_type", "latent"),
                         meta.get("world_model", ""), meta.get("algo"),
                         action_space=_recorded_space(meta, p.parent / "agent.json"))
    info.env_id = (env_id or info.env_id).split(":", 1)[-1]
    info.world_model = model or info.world_model or (DREAMS[info.env_id].pretrained if info.env_id in DREAMS else "")
    info.obs_type = obs_type or info.obs_type
    if info.env_id not in DREAMS:
        raise ConfigError(f"Agent {path} does not say which dream it acts in; pass env_id (one of {sorted(DREAMS)}).")
    return info


def _recorded_space(meta: dict[str, Any], where: Path) -> dict[str, Any] | None:
    """The action space an agent's metadata records (None if it records none), checked to be one."""
    d = meta.get("action_space")
    if d is None:
        return None
    from dreamgym.spaces import space_from_dict

    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected 'action_space' to be a space (an object), got {str(d)[:80]}.")
    space_from_dict(d, f"{where}: action_space")
    return d


def is_baseline(agent: str | Path) -> bool:
    """``"random"`` or ``"constant:..."``: an agent named by a string, with no files."""
    return str(agent) == "random" or str(agent).startswith(ConstantAgent.PREFIX)


def load(info: AgentInfo, observation_space: spaces.Space, action_space: spaces.Space, seed: int = 0) -> Any:
    if info.kind == "random":
        return RandomAgent(action_space, seed)
    if info.kind == "constant":
        return ConstantAgent(action_space, info.path)
    from dreamgym.agents import load_agent

    return load_agent(info.path, observation_space, action_space, algo=info.algo)


def evaluate_dream(info: AgentInfo, episodes: int, temperature: float | None = None, seed: int = 0,
                   max_steps: int | None = None, dream_options: dict[str, Any] | None = None,
                   stats: dict[str, Any] | None = None) -> np.ndarray:
    """Returns of ``episodes`` dream episodes, run as one batch (env i seeded seed + i); ``stats`` (when given)
    receives the steps taken and the agent's actions' mean and std per dimension (:func:`dream_returns`)."""
    from dreamgym.envs.dream_vector import DreamVectorEnv

    env = DreamVectorEnv(num_envs=episodes, model=info.world_model, temperature=temperature, obs_type=info.obs_type,
                         max_episode_steps=max_steps, dream_id=info.env_id,
                         **{**action_bounds(info), **{k: v for k, v in (dream_options or {}).items() if v is not None}})
    agent = load(info, env.single_observation_space, env.single_action_space, seed)
    # every dream stepped to the end: its scores stay bit-identical to those measured before (dropping
    # finished dreams would shrink the batch, and BLAS's small-batch kernels round differently)
    return dream_returns(env, predicting(agent, episodes), seed, stats=stats, drop_finished=False)


def _real_chunk(info: AgentInfo, seeds: list[int], sample_z: bool | None = None,
                bounds: dict[str, Any] | None = None) -> list[float]:
    import torch

    from dreamgym.envs.real import make_real

    torch.set_num_threads(1)
    env = make_real(info.env_id, model=info.world_model, obs_type=info.obs_type, sample_z=sample_z,
                    **{**action_bounds(info), **(bounds or {})})
    agent = load(info, env.observation_space, env.action_space, seeds[0])
    returns = [run_episode(env, episode_policy(agent, s), s) for s in seeds]
    env.close()
    return returns


def evaluate_real(info: AgentInfo, episodes: int, seed: int = 0, workers: int = 0,
                  sample_z: bool | None = None, bounds: dict[str, Any] | None = None) -> np.ndarray:
    """Returns of ``episodes`` real episodes (seeds seed + i), spread over worker processes.

    ``bounds``: ``action_low`` / ``action_high`` for the agent's Box, over those it records (:func:`action_bounds`).

    ``sample_z``: the agent sees z drawn from V's posterior (True) or its mean (False); None: the world
    model's default (:func:`dreamgym.envs.real.default_sample_z`)."""
    seeds = [seed + i for i in range(episodes)]
    workers = min(workers or os.cpu_count() or 1, episodes)
    if workers == 1:
        return np.asarray(_real_chunk(info, seeds, sample_z, bounds))
    chunks = [seeds[w::workers] for w in range(workers)]
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        parts = list(pool.map(_real_chunk, [info] * workers, chunks, [sample_z] * workers, [bounds] * workers))
    by_seed = {s: r for chunk, part in zip(chunks, parts) for s, r in zip(chunk, part)}
    return np.asarray([by_seed[s] for s in seeds])


def _stats(returns: np.ndarray) -> dict[str, Any]:
    return {"mean": float(returns.mean()), "std": float(returns.std()), "episodes": int(len(returns)),
            "returns": [round(float(r), 3) for r in returns]}


def evaluate(
    agent: str | Path,
    episodes: int = 100,
    *,
    temperature: float | None = None,
    env_id: str | None = None,
    model: str | None = None,
    dream: bool = True,
    real: bool = True,
    workers: int = 0,
    seed: int = 0,
    out: str | Path | None = None,
    sample_z: bool | None = None,
    dream_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score an agent (controller dir, CMA-ES run, SB3 zip, agent ensemble or ``"random"``) in the dream and in reality.

    Returns (and writes to ``out`` as JSON) ``{"dream": {mean, std, ...}, "real": {...}, "gap": dream - real}``.
    The dream part also holds ``actions``: the mean and std of each action dimension over the dreams' steps,
    how the agent drives the dream (in most CarRacing dreams measured, the PPO seeds that press the gas
    hardest there score worse in reality: pretrained/README.md).
    If ``out`` holds earlier results of the same agent, a part not measured now (``dream=False`` or
    ``real=False``) is kept from them, with the seed and temperature it was measured with.
    Real episodes run in ``workers`` spawned processes (0: one per core), so a script that calls this
    needs the usual ``if __name__ == "__main__":`` guard (or ``workers=1``).

    >>> evaluate("agents/cr-cmaes", episodes=100, out="agents/cr-cmaes/eval.json")  # doctest: +SKIP
    """
    if episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {episodes}.")
    if not (dream or real):
        raise ConfigError("Nothing to evaluate: dream and real are both off (--dream-only and --real-only together). "
                          "Pass at most one of them.")
    info = agent_info(agent, env_id, model)
    result: dict[str, Any] = {"agent": asdict(info), "seed": seed, "temperature": temperature}
    earlier = read_earlier(out, info) if out is not None else None
    start = time.perf_counter()
    if dream:
        options = {k: v for k, v in (dream_options or {}).items() if v is not None}
        stats: dict[str, Any] = {}
        returns = evaluate_dream(info, episodes, temperature, seed, dream_options=options, stats=stats)
        result["dream"] = {**_stats(returns), "seed": seed, "temperature": temperature, "actions": stats["actions"],
                           **({"options": options} if options else {})}
    if real:
        if sample_z is None:  # the model's default, recorded as what it resolved to
            from dreamgym.envs.real import default_sample_z
            from dreamgym.models.resolve import resolve_model

            sample_z = default_sample_z(resolve_model(info.world_model))
        bounds = {k: v for k, v in (dream_options or {}).items() if k in ("action_low", "action_high") and v is not None}
        result["real"] = {**_stats(evaluate_real(info, episodes, seed, workers, sample_z, bounds)), "seed": seed,
                          "sample_z": sample_z}
    result["seconds"] = round(time.perf_counter() - start, 2)
    result = merge_results(earlier, result)
    if out is not None:
        atomic_write_text(out, json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


SAME_AGENT_FIELDS = ("kind", "env_id", "obs_type", "world_model", "algo")


def read_earlier(path: str | Path, info: AgentInfo) -> dict[str, Any] | None:
    """The results already in ``path`` (None if none), refused if they are of another agent or world model."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{path} exists but is not a readable results file ({e}); evaluate would overwrite it. "
                          "Move it away, or pass another --json / out=.") from e
    if not isinstance(earlier, dict) or not isinstance(earlier.get("agent"), dict):
        raise ConfigError(f"{path} exists but is not a `dreamgym evaluate` results file; move it away, or pass another "
                          "--json / out=.")
    mine = asdict(info)
    differ = [f"{k}: {earlier['agent'].get(k)!r} there, {mine[k]!r} now" for k in SAME_AGENT_FIELDS
              if earlier["agent"].get(k, mine[k]) != mine[k]]
    if differ:
        raise ConfigError(f"{path} holds results of another agent or world model ({'; '.join(differ)}); they would mix. "
                          "Pass another --json / out= for these results.")
    return earlier


def merge_results(earlier: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """``new`` over ``earlier``: a part (dream, real) not measured again is kept, with the settings it was measured with.

    Each part records its own ``seed`` (and the dream its ``temperature``); the top-level ``temperature``
    is the dream part's, the one the model card names.
    """
    merged = dict(new)
    for where in ("dream", "real"):
        if where not in new and earlier and isinstance(earlier.get(where), dict):
            kept = {"seed": earlier.get("seed"), **earlier[where]}  # older files kept the settings at the top
            if where == "dream":
                kept.setdefault("temperature", earlier.get("temperature"))
            merged[where] = kept
    if "dream" in merged:
        merged["temperature"] = merged["dream"]["temperature"]
    if "dream" in merged and "real" in merged:
        merged["gap"] = merged["dream"]["mean"] - merged["real"]["mean"]
    return merged


def ship_result(result: dict[str, Any], dest: str | Path, agent: str | None = None) -> dict[str, Any]:
    """Write an evaluate result into a shipped model folder ``dest``, its paths relative to that folder.

    The world model becomes ``"."`` (the folder itself); the agent becomes ``agent`` (e.g.
    ``"controller"`` when the controller ships beside the model), or else its last two path parts: no
    path of the machine that measured it (``/home/...``) is written into a file that ships.
    """
    out = json.loads(json.dumps(result))
    info = out.get("agent", {})
    info["world_model"] = "."
    if info.get("kind") not in ("random", "constant"):
        info["path"] = agent if agent is not None else "/".join(Path(str(info.get("path", "agent"))).parts[-2:])
    atomic_write_text(dest, json.dumps(out, indent=2, sort_keys=True) + "\n")
    return out


def format_result(result: dict[str, Any]) -> str:
    lines = [f"agent: {result['agent']['path']} in {result['agent']['env_id']}"]
    for where in ("dream", "real"):
        if where in result:
            r = result[where]
            lines.append(f"  {where:<5} {r['mean']:9.1f} ± {r['std']:.1f}  ({r['episodes']} episodes)")
            if isinstance(r.get("actions"), dict) and isinstance(r["actions"].get("mean"), list):
                means = ", ".join(f"{float(m):.2f}" for m in r["actions"]["mean"][:8])
                lines.append(f"        mean action [{means}{', ...' if len(r['actions']['mean']) > 8 else ''}]")
    if "gap" in result:
        lines.append(f"  dream - real gap: {result['gap']:.1f}")
    return "\n".join(lines)
