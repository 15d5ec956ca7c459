"""The ``dreamgym`` command: collect | train | validate | train-agent | evaluate | fidelity | iterate | ship |
push | pull | dream | play | plot.

Flags and presets live here only; the library takes config dataclasses.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from dreamgym.argtypes import (HelpFormatter, config_from_args, device, field_argument, field_choices, finite_float,
                               json_object, nonneg_float, nonneg_int, out_dir, positive_float, positive_int,
                               temperature)
from dreamgym.errors import ConfigError, DreamgymError
from dreamgym.hub import MAX_PUSH_FILE_BYTES


def _collect(args: argparse.Namespace) -> None:
    from dreamgym.data.collect import CollectConfig, collect

    check_env_kwargs(args.env_id, args.env_kwargs)
    result = collect(config_from_args(CollectConfig, args))
    print(f"{result.out}: {result.episodes_written} new episodes ({result.episodes_total} wanted), "
          f"{result.steps} steps in {result.seconds:.1f} s = {result.steps_per_s:.0f} steps/s")


def check_env_kwargs(env_id: str, kwargs: dict[str, Any]) -> None:
    """Refuse ``--env-kwargs`` names the env's constructor does not take, before any worker starts (instead of a
    TypeError deep inside ``gym.make``). Envs that take ``**kwargs``, or that cannot be looked up here, pass."""
    import inspect

    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    from dreamgym.registry import dream_spec_for_env

    try:
        dream = dream_spec_for_env(env_id)
        if dream is not None and dream.module is not None:
            import importlib

            importlib.import_module(dream.module)  # registers the env (ViZDoom)
        entry = gym.spec(env_id).entry_point
        creator = load_env_creator(entry) if isinstance(entry, str) else entry
        params = inspect.signature(creator).parameters
    except (ImportError, AttributeError, TypeError, ValueError, gym.error.Error):
        return  # collect reports an unknown or uninstalled env itself
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    taken = {n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL}
    taken |= {"max_episode_steps", "disable_env_checker"}  # gym.make's own
    unknown = sorted(set(kwargs) - taken)
    if unknown:
        raise ConfigError(f"--env-kwargs: {env_id} takes no keyword argument(s) {', '.join(map(repr, unknown))}; "
                          f"it takes {', '.join(sorted(taken))}. Drop or rename them.")


def check_algo_kwargs(algo: str, kwargs: dict[str, Any]) -> None:
    """Refuse ``--algo-kwargs`` names the SB3 algorithm does not take (or that dreamgym sets itself)."""
    if algo in ("cmaes", "dreamer"):
        if kwargs:
            raise ConfigError(f"--algo-kwargs is for the SB3 algorithms, not {algo}; got {json.dumps(kwargs)}. Drop it, "
                              "or use the CMA-ES flags (--population, --sigma0, ...) or Dreamer's (--updates, --horizon).")
        return
    import inspect

    from dreamgym.agents.sb3_io import ALGOS

    params = inspect.signature(ALGOS[algo].__init__).parameters
    own = {"self", "policy", "env", "seed", "verbose", "device"}  # set from the other flags
    taken = {n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD or p.kind is p.KEYWORD_ONLY} - own
    unknown = sorted(set(kwargs) - taken)
    if unknown:
        raise ConfigError(f"--algo-kwargs: {algo.upper()} takes no keyword argument(s) {', '.join(map(repr, unknown))}"
                          f"; it takes {', '.join(sorted(taken))} (seed and device have their own flags).")


def _data_dirs(sources: Sequence[str], out: Path) -> list[str]:
    dirs = []
    for src in sources:
        if src.startswith("minari:"):
            from dreamgym.data.minari import import_minari

            dataset_id = src.split(":", 1)[1]
            target = out / "data" / dataset_id.replace("/", "--")
            if not (target / "dataset.json").is_file():
                import_minari(dataset_id, target)
            dirs.append(str(target))
        else:
            dirs.append(src)
    return dirs


def recipe_from_args(args: argparse.Namespace):
    from dreamgym.train.recipes import RecipeConfig

    cfg = RecipeConfig.tiny() if args.preset == "tiny" else RecipeConfig()
    vision = {k: v for k, v in {"steps": args.vision_steps, "batch_size": args.vision_batch, "lr": args.lr,
                                "seed": args.seed, "tensorboard": args.tensorboard}.items() if v is not None}
    memory = {k: v for k, v in {"steps": args.memory_steps, "batch_size": args.memory_batch, "lr": args.lr,
                                "seed": args.seed, "tensorboard": args.tensorboard}.items() if v is not None}
    top = {k: v for k, v in {"z_dim": args.z_dim, "hidden_size": args.hidden_size, "seq_len": args.seq_len,
                             "seed": args.seed, "default_temperature": args.temperature}.items() if v is not None}
    if args.fp16:
        top["storage_dtype"] = "float16"
    if getattr(args, "init_from", None):
        top["init_from"] = args.init_from
    if getattr(args, "keep_vision", False):
        top["train_vision"] = False
    if getattr(args, "fresh_memory", False):
        top["fresh_memory"] = True
    if args.memory_z is not None:
        top["sample_z"] = args.memory_z == "sample"
    if args.real_z is not None:
        top["real_sample_z"] = args.real_z == "sample"
    if args.detach_heads:
        top["detach_heads"] = True
    top.update({k: v for k, v in {"ensemble": args.ensemble, "dropout": args.dropout,
                                  "mixture": getattr(args, "mixture", None)}.items() if v is not None})
    return replace(cfg, vision=replace(cfg.vision, **vision), memory=replace(cfg.memory, **memory), **top)


def rssm_recipe_from_args(args: argparse.Namespace):
    """``dreamgym train --backend rssm``: the RSSM's one stage takes M's flags (steps, batch, lr, window)."""
    from dreamgym.train.rssm_recipe import RSSMRecipe

    recipe = RSSMRecipe(preset="tiny" if args.preset == "tiny" else args.rssm_preset)
    train = {k: v for k, v in {"steps": args.memory_steps, "batch_size": args.memory_batch, "lr": args.lr,
                               "seed": args.seed, "tensorboard": args.tensorboard}.items() if v is not None}
    top = {k: v for k, v in {"seq_len": args.seq_len, "seed": args.seed, "default_temperature": args.temperature,
                             "init_from": getattr(args, "init_from", None)}.items() if v is not None}
    if args.fp16:
        top["storage_dtype"] = "float16"
    rssm = {k: v for k, v in {"heads_input": args.rssm_heads_input,
                              "continue_pos_weight": args.rssm_continue_pos_weight}.items() if v is not None}
    if rssm:
        top["rssm"] = {**recipe.rssm, **rssm}
    return replace(recipe, train=replace(recipe.train, **train), **top)


def _train(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if args.backend == "rssm":
        from dreamgym.train.rssm_recipe import train_rssm

        if (args.keep_vision or args.fresh_memory or args.ensemble or args.dropout or args.memory_z or args.real_z
                or args.detach_heads or args.mixture):
            raise ConfigError("--keep-vision, --fresh-memory, --memory-z, --real-z, --ensemble, --dropout, --mixture "
                              "and --detach-heads are MDN-RNN options; drop them with --backend rssm.")
        model = train_rssm(_data_dirs(args.data, out), out, rssm_recipe_from_args(args), resume=args.resume,
                           device=args.device)
    else:
        from dreamgym.train.recipes import train_world_model

        model = train_world_model(_data_dirs(args.data, out), out, recipe_from_args(args), resume=args.resume,
                                  device=args.device)
    from dreamgym.train.trainer import distributed, finish_distributed

    if distributed()[0] == 0:
        print(json.dumps(model.config.summary, indent=2))
        print(f"saved {out}: gym.make(\"Dream-...-v0\", model={str(out)!r})")
    finish_distributed()


def _validate(args: argparse.Namespace) -> None:
    from dreamgym.data.episodes import validate

    meta, good, bad = validate(args.data)
    print(f"{args.data}: {meta.env_id}, {len(good)} good shard(s), {len(bad)} bad")
    for path, why in bad.items():
        print(f"  BAD {path.name}: {why}")
    if bad:
        sys.exit(1)


def _train_agent(args: argparse.Namespace) -> None:
    check_algo_kwargs(args.algo, args.algo_kwargs)
    if args.algo == "cmaes":
        from dreamgym.agents.cmaes import CMAESConfig, CMAESTrainer

        cfg = config_from_args(CMAESConfig, args, bias=not args.no_bias, **_dream_option_values(args))
        trainer = CMAESTrainer(cfg, args.out)
        if args.resume:
            trainer.load()
        elif (Path(args.out) / "cmaes_history.jsonl").exists():
            raise DreamgymError(f"{args.out} already holds a CMA-ES run; pass --resume to continue it, or a new --out.")
        trainer.train()
        print(f"saved {Path(args.out) / 'controller'}: best dream score {trainer.best_eval:.1f}")
        return
    if args.algo == "dreamer":
        _train_dreamer(args)
        return
    from dreamgym.agents.sb3_train import SB3Config, train_sb3

    train_sb3(config_from_args(SB3Config, args), args.out)
    print(f"saved {args.out}")


def _train_dreamer(args: argparse.Namespace) -> None:
    from dreamgym.agents.dreamer import STATE_NAME, DreamerConfig, DreamerTrainer

    cfg = config_from_args(DreamerConfig, args, dream_options={k: v for k, v in _dream_option_values(args).items() if v is not None})
    trainer = DreamerTrainer(cfg, args.out)
    if args.resume:
        trainer.load()
    elif (Path(args.out) / STATE_NAME).exists():
        raise DreamgymError(f"{args.out} already holds a Dreamer run; pass --resume to continue it, or a new --out.")
    history = trainer.train()
    print(f"saved {Path(args.out) / 'controller'}: last imagined return {history[-1]['return']:.2f}")


def _evaluate(args: argparse.Namespace) -> None:
    from dreamgym.evaluate import evaluate, format_result

    out = args.json or (str(Path(args.agent) / "eval.json") if Path(args.agent).is_dir() else None)
    result = evaluate(args.agent, args.episodes, temperature=args.temperature, env_id=args.env_id, model=args.model,
                      dream=not args.real_only, real=not args.dream_only, workers=args.workers, seed=args.seed, out=out,
                      sample_z=args.sample_z, dream_options=_dream_option_values(args))
    print(format_result(result))
    if out:
        print(f"written {out}")


def _fidelity(args: argparse.Namespace) -> None:
    from gymnasium.error import DependencyNotInstalled

    from dreamgym.errors import ConfigError
    from dreamgym.fidelity import fidelity_report, format_report

    if args.out is None and not Path(args.model).is_dir():
        raise ConfigError(f"--out is needed: MODEL {args.model!r} is not a local directory (a pretrained name or Hub "
                          "id), so there is no folder to write fidelity.json into. Pass --out PATH.json.")
    out = Path(args.out or Path(args.model) / "fidelity.json")
    try:
        report = fidelity_report(args.model, args.agent, args.episodes, seed=args.seed, temperature=args.temperature,
                                 horizons=args.horizons, every=args.every, samples=args.samples,
                                 sample_z=args.sample_z, workers=args.workers, out=out, plot=not args.no_plot)
    except DependencyNotInstalled as e:
        raise ConfigError(f"{e}; {out} was written, the plot was not (or pass --no-plot).") from e
    print(format_report(report))
    print(f"written {out}" + ("" if args.no_plot else f" and {out.with_suffix('.png')}"))


def _schedule(values: Any) -> Any:
    """A schedule flag's values: one value for every round (as before schedules), or a list of one per round."""
    return values[0] if isinstance(values, list) and len(values) == 1 else values


def _iterate(args: argparse.Namespace) -> None:
    from dreamgym.agents.cmaes import CMAESConfig
    from dreamgym.iterate import IterateConfig, format_rounds, iterate

    # one value goes where it went before schedules (so the recorded settings of earlier runs still match)
    lists = {k: v for k in ("vision_steps", "memory_steps", "generations")
             if isinstance(v := _schedule(getattr(args, k)), list)}
    flat = argparse.Namespace(**{**vars(args), **{k: (None if k in lists else _schedule(getattr(args, k)))
                                                  for k in ("vision_steps", "memory_steps", "generations")}})
    cmaes = CMAESConfig(temperature=args.temperature, population=args.population, rollouts=args.rollouts,
                        eval_every=args.eval_every, eval_rollouts=args.eval_rollouts, sigma0=args.sigma0,
                        device=args.device, dtype=args.dtype)
    if flat.generations is not None:
        cmaes = replace(cmaes, generations=flat.generations)
    cfg = IterateConfig(
        env_id=args.env_id, rounds=args.rounds, episodes=_schedule(args.episodes), noise=args.noise,
        max_steps=args.max_steps, recipe=recipe_from_args(flat), cmaes=cmaes,
        eval_episodes=_schedule(args.eval_episodes), workers=args.workers, seed=args.seed or 0,
        warm_start=args.warm_start, device=args.device, **lists, **_iterate_dreamer_line(args, flat),
    )
    print(format_rounds(iterate(cfg, args.out)))


MDNRNN_ONLY = ("vision_steps", "vision_batch", "z_dim", "hidden_size", "ensemble", "dropout", "memory_z", "real_z",
               "mixture")


def _iterate_dreamer_line(args: argparse.Namespace, flat: argparse.Namespace) -> dict[str, Any]:
    """``--backend rssm`` and ``--algo dreamer``: the settings they use, set only when chosen (so that the
    recorded settings of runs without them still match)."""
    from dreamgym.agents.dreamer import DreamerConfig

    given = [f"--{k.replace('_', '-')}" for k in MDNRNN_ONLY if getattr(args, k) not in (None, False)]
    if args.backend == "rssm" and given:
        raise ConfigError(f"{', '.join(given)}: MDN-RNN options; drop them with --backend rssm (its one stage takes "
                          "--memory-steps, --memory-batch, --lr and --seq-len).")
    extra: dict[str, Any] = {"backend": args.backend, "algo": args.algo, "train_ratio": args.train_ratio}
    if args.backend == "rssm":
        extra["rssm"] = rssm_recipe_from_args(flat)
    if args.algo == "dreamer":
        extra["dreamer"] = DreamerConfig(env_id="", temperature=args.temperature, num_envs=args.num_envs,
                                         horizon=args.horizon, device=args.device)
    return extra


def _ship(args: argparse.Namespace) -> None:
    from dreamgym.ship import ShipConfig, ship

    evals = {}
    for item in args.eval:
        name, src = item.split("=", 1) if "=" in item else (Path(item).name, item)
        evals[name] = src
    out = ship(config_from_args(ShipConfig, args, evals=evals))
    print(f"shipped {args.world_model} to {out}: gym.make(\"Dream-...-v0\", model={str(out)!r})")


def _ensemble(args: argparse.Namespace) -> None:
    from dreamgym.agents.ensemble import write_ensemble

    out = write_ensemble(args.agents, args.out)
    print(f"wrote an ensemble of {len(args.agents)} agents to {out}: dreamgym evaluate {out}")


def _push(args: argparse.Namespace) -> None:
    from dreamgym.hub import push

    result = push(args.folder, args.repo_id, private=args.private, revision=args.revision,
                  commit_message=args.message, max_file_bytes=int(args.max_file_mb * 1024**2))
    print(f"pushed {result['kind']} to https://huggingface.co/{result['repo_id']} (commit {result['commit']})")


def _pull(args: argparse.Namespace) -> None:
    from dreamgym.hub import pull

    result = pull(args.repo_id, revision=args.revision)
    print(f"{result['repo_id']} ({result['kind']}) at commit {result['commit']}: {result['path']}")


PER_ROUND = " (one value, or one per round: the last holds for the later rounds)"


def add_train_args(p: argparse.ArgumentParser, data: bool = True, schedule: bool = False) -> None:
    """The world-model training flags; ``schedule``: iterate's, whose steps may be given per round."""
    each = {"nargs": "+"} if schedule else {}
    more = PER_ROUND if schedule else ""
    if data:
        p.add_argument("data", nargs="+", help="dataset directories, or minari:<dataset-id>")
        p.add_argument("--out", required=True, type=out_dir, help="run directory; the WorldModel is saved here")
        p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
        p.add_argument("--temperature", type=temperature, help="the dream's default temperature (default: 1.0)")
        p.add_argument("--seed", type=nonneg_int, help="data order and init noise (default: the preset's, 0)")
        p.add_argument("--init-from", help="start from this world model's weights (same sizes), e.g. a Dyna round's "
                                           "(default: random init)")
        p.add_argument("--keep-vision", action="store_true", help="with --init-from: keep its V, train only M + heads")
        p.add_argument("--fresh-memory", action="store_true", help="with --init-from: take only its V; M and the heads "
                                                                   "start from a random init")
    p.add_argument("--preset", choices=["paper", "tiny"], default="paper", help="paper sizes, or tiny for smoke runs")
    p.add_argument("--vision-steps", type=positive_int, **each,
                   help="V (VAE) optimiser steps" + more + " (default: the preset's)")
    p.add_argument("--memory-steps", type=positive_int, **each,
                   help="M (MDN-RNN) + heads optimiser steps" + more + " (default: the preset's)")
    p.add_argument("--vision-batch", type=positive_int, help="V batch size in frames (default: the preset's)")
    p.add_argument("--memory-batch", type=positive_int, help="M batch size in sequences (default: the preset's)")
    p.add_argument("--lr", type=positive_float, help="Adam learning rate of both stages (default: the preset's)")
    p.add_argument("--seq-len", type=positive_int, help="M's training sequence length in steps "
                                                        "(default: the preset's)")
    p.add_argument("--z-dim", type=positive_int, help="latent size of V (default: the env's, else 32)")
    p.add_argument("--hidden-size", type=positive_int, help="LSTM size of M (default: the env's, else 256)")
    p.add_argument("--fp16", action="store_true", help="store weights as float16 (half the file)")
    p.add_argument("--memory-z", choices=["sample", "mean"], help="M learns z sampled from V's posterior (the paper) "
                   "or its mean (default: sample)")
    p.add_argument("--real-z", choices=["mean", "sample"], help="what z the model's real twin shows agents by "
                   "default: V's posterior mean, or a draw from it as M saw in training (default: mean)")
    p.add_argument("--ensemble", type=positive_int, help="members of M + heads, each on a bootstrap resample; dreams "
                   "draw one per episode and report their disagreement (default: 1, a single M)")
    p.add_argument("--dropout", type=nonneg_float, help="dropout on M's output in training; dreams draw a fresh mask "
                   "per episode, as in Dropout's Dream Land (default: 0, none)")
    p.add_argument("--mixture", choices=["per_dim", "joint"], help="M's mixture over the next latent: each dimension "
                   "draws its own component (per_dim, the paper), or one component for the whole latent (joint: a "
                   "sample is one coherent outcome) (default: per_dim)")
    p.add_argument("--detach-heads", action="store_true", help="the reward and termination heads learn on a "
                   "detached h, so M's LSTM learns only z and cannot memorise the training episodes' deaths "
                   "(default: off, the heads train jointly)")
    p.add_argument("--device", default="cpu", type=device, help="torch device to train on: cpu, cuda, cuda:N or mps")
    p.add_argument("--tensorboard", action="store_true", default=None, help="also log to TensorBoard "
                                                                            "(needs the tensorboard package)")


def _add_cmaes_args(p: argparse.ArgumentParser, schedule: bool = False) -> None:
    """The CMA-ES flags; ``schedule``: iterate's, whose generations may be given per round."""
    from dreamgym.agents.cmaes import CMAESConfig as C

    each = {"nargs": "+"} if schedule else {}
    field_argument(p, C, "generations", type=positive_int, **each,
                   help="CMA-ES generations" + (PER_ROUND if schedule else ""))
    field_argument(p, C, "population", type=positive_int, help="CMA-ES candidates per generation (>= 4)")
    field_argument(p, C, "rollouts", type=positive_int, help="dream episodes per candidate")
    field_argument(p, C, "sigma0", type=positive_float, help="CMA-ES initial step size")
    field_argument(p, C, "eval_every", type=positive_int, help="re-score the best every N generations")
    field_argument(p, C, "eval_rollouts", type=positive_int, help="dream episodes of each re-score")
    field_argument(p, C, "dtype", help="CMA-ES: bfloat16 runs M's matmuls faster on CPUs with bf16 instructions")


def _add_real_z(p: argparse.ArgumentParser) -> None:
    """--sample-z / --mean-z: what z the real twin shows (default: the world model's ``real_sample_z``)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--sample-z", dest="sample_z", action="store_const", const=True, default=None,
                   help="in the real env, z is drawn from V's posterior (the paper's code) (default: the model's "
                        "real_sample_z)")
    g.add_argument("--mean-z", dest="sample_z", action="store_const", const=False,
                   help="in the real env, z is V's posterior mean (default: the model's real_sample_z)")


def _add_dream_options(p: argparse.ArgumentParser) -> None:
    """The dream's options against exploitation (gym.make keyword arguments); unset: the model's defaults."""
    from dreamgym.agents.cmaes import CMAESConfig

    p.add_argument("--temperature-range", type=temperature, nargs=2, metavar=("LOW", "HIGH"),
                   help="each dream episode draws its temperature uniformly from [LOW, HIGH] (default: a fixed one)")
    p.add_argument("--disagreement-penalty", type=nonneg_float,
                   help="ensembles: reward - LAMBDA * disagreement, MOPO's pessimism (default: the model's, 0)")
    p.add_argument("--halt-threshold", type=positive_float,
                   help="ensembles: end the dream episode once disagreement exceeds this, MOReL's HALT "
                        "(default: the model's, never)")
    field_argument(p, CMAESConfig, "termination",
                   help="a dream step ends when p(done) > the model's threshold (the paper), or with p(done) "
                        "calibrated for the death weight the head was trained with (default: the model's, threshold)")
    p.add_argument("--halt-penalty", type=finite_float, help="the reward of a HALTed step (default: the model's, 0)")
    p.add_argument("--no-dropout-masks", dest="dropout_masks", action="store_const", const=False, default=None,
                   help="a dropout-trained M dreams with its mean network, not a fresh dropout mask per episode "
                        "(default: the model's, a mask per episode)")
    p.add_argument("--action-low", type=finite_float, nargs="+", metavar="A",
                   help="a narrower Box for the agent in the dream and in reality: its lower bounds, one per action "
                        "dimension or one for all, inside the real env's (default: the model's, the real env's)")
    p.add_argument("--action-high", type=finite_float, nargs="+", metavar="A",
                   help="its upper bounds, e.g. 1 0.3 1 caps CarRacing's gas at 0.3 (default: the model's, the real "
                        "env's)")


def _dream_option_values(args: argparse.Namespace) -> dict[str, object]:
    return {"temperature_range": list(args.temperature_range) if args.temperature_range else None,
            "disagreement_penalty": args.disagreement_penalty, "halt_threshold": args.halt_threshold,
            "halt_penalty": args.halt_penalty, "termination": args.termination, "dropout_masks": args.dropout_masks,
            "action_low": args.action_low, "action_high": args.action_high}


def _add_collect_parser(sub: Any) -> None:
    from dreamgym.data.collect import CollectConfig as C

    p = sub.add_parser("collect", help="collect real episodes with a policy")
    p.add_argument("env_id", help="a registered Gymnasium id, e.g. CarRacing-v3")
    p.add_argument("--out", required=True, type=out_dir, help="dataset directory (new, or one to add episodes to)")
    field_argument(p, C, "episodes", type=positive_int, help="episodes the dataset should hold")
    field_argument(p, C, "policy", help="who acts; held: a random action held for 1..10 steps (the paper's Doom data); "
                   "expert: a scripted player reading the simulator's state (CarRacing, VizdoomTakeCover; data only)")
    p.add_argument("--agent", help="controller directory or SB3 zip (with --policy agent; default: none)")
    p.add_argument("--agent-model", help="world model directory the agent sees reality through "
                                              "(with --policy agent; default: none)")
    field_argument(p, C, "noise", type=nonneg_float, help="exploration noise of --policy agent or expert")
    field_argument(p, C, "pedal_noise", type=nonneg_float,
                   help="--policy expert: probability per step that its pedals turn random for 10-40 steps (0: off)")
    field_argument(p, C, "pedal_style",
                   help="--policy expert with --pedal-noise: random pedals, or cruise (a steady gas in [0.1, 0.35], no "
                        "brake, for 50-300 steps: how dream-trained agents drive in reality)")
    field_argument(p, C, "expert_speed", type=positive_float,
                   help="--policy expert on CarRacing: multiply its target speeds (1.5 finishes most laps in time)")
    field_argument(p, C, "expert_rest_every", type=nonneg_int,
                   help="--policy expert on CarRacing: stop on the road and rest about once every this many steps, "
                        "half the episodes starting at rest (0: never; 300 cut the dream's pay for standing still)")
    field_argument(p, C, "expert_drift_every", type=nonneg_int,
                   help="--policy expert on CarRacing: drive on blind (one nearly straight action for 100-300 steps) "
                        "about once every this many steps, half the episodes starting so (0: never)")
    field_argument(p, C, "workers", type=nonneg_int, help="processes (0: every core)")
    field_argument(p, C, "seed", type=nonneg_int, help="episode i is seeded with seed + i")
    field_argument(p, C, "max_steps", type=positive_int, help="cap episode length (default: the env's time limit)")
    field_argument(p, C, "min_steps", type=nonneg_int,
                   help="keep only episodes of more steps than this (redrawn deterministically; the paper: 100)")
    field_argument(p, C, "env_kwargs", type=json_object, help="JSON kwargs for gym.make")
    p.add_argument("--frame-crop", type=nonneg_int, nargs=4, metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"),
                   help="pixels of each frame kept before resizing to 64x64, instead of the registered crop "
                        "(CarRacing: 0 84 0 96 drops the dashboard; 0 96 0 96 keeps it; default: the registered one)")
    p.set_defaults(func=_collect)


def _add_train_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train a world model: V, encode, M + heads (or an RSSM: --backend rssm)")
    add_train_args(p)
    p.add_argument("--backend", choices=["mdnrnn", "rssm"], default="mdnrnn",
                   help="mdnrnn: the paper's VAE + MDN-RNN; rssm: a Dreamer-style RSSM trained in one stage "
                        "(--memory-steps, --memory-batch, --lr and --seq-len set it)")
    _add_rssm_preset(p)
    p.set_defaults(func=_train)


def _add_rssm_preset(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rssm-preset", choices=["tiny", "cpu", "paper"], default="cpu",
                   help="rssm sizes: cpu trains Pendulum in minutes on 2 cores; paper is DreamerV3-like, for a GPU "
                        "(--preset tiny: tiny)")
    p.add_argument("--rssm-heads-input", choices=["posterior", "prior"], default=None,
                   help="rssm: what the reward and continue heads learn from: posterior (DreamerV3) or prior (the "
                        "state a dream gives them; for envs whose terminal frame gives deaths away, e.g. ViZDoom's "
                        "black one) (default: posterior)")
    p.add_argument("--rssm-continue-pos-weight", type=float, default=None,
                   help="rssm: weight of terminal steps in the continue loss; dreams with --termination sample "
                        "divide it back out (default: 1)")


def _add_train_agent_parser(sub: Any) -> None:
    from dreamgym.agents.cmaes import CMAESConfig
    from dreamgym.agents.dreamer import DreamerConfig
    from dreamgym.agents.sb3_train import SB3Config

    p = sub.add_parser("train-agent", help="train an agent in a dream: cmaes (linear controller) or any SB3 algo")
    p.add_argument("env_id", help="a Dream id, e.g. Dream-CarRacing-v0")
    field_argument(p, SB3Config, "algo", default="cmaes",
                   choices=["cmaes", "dreamer", *field_choices(SB3Config, "algo")],
                   help="cmaes: a linear controller (the paper's); dreamer: DreamerV3's imagination actor-critic; "
                        "else a Stable-Baselines3 algorithm")
    p.add_argument("--out", required=True, type=out_dir, help="run directory; the agent is saved here")
    p.add_argument("--model", help="world model (directory, pretrained name or Hub id); default: the shipped one")
    p.add_argument("--temperature", type=temperature, help="the dream's tau (default: the model's)")
    field_argument(p, CMAESConfig, "seed", type=nonneg_int, help="seed of the search or the SB3 run")
    field_argument(p, CMAESConfig, "device", type=device, help="torch device: cpu, cuda, cuda:N or mps")
    p.add_argument("--resume", action="store_true", help="continue a CMA-ES or dreamer run in --out")
    p.add_argument("--init", help="cmaes: start the search from this controller directory (fine-tuning; "
                                       "default: from zero)")
    _add_cmaes_args(p)
    p.add_argument("--max-steps", type=positive_int, help="CMA-ES rollout length; SB3: dream episode length, a cut "
                   "episode bootstrapped as a time limit (default: the time limit)")
    field_argument(p, SB3Config, "steps", type=positive_int, help="SB3: total dream steps")
    field_argument(p, SB3Config, "n_envs", type=positive_int, help="SB3: dreams stepped together")
    field_argument(p, DreamerConfig, "num_envs", type=positive_int, help="dreamer: dreams imagined together")
    field_argument(p, DreamerConfig, "updates", type=positive_int, help="dreamer: actor-critic updates")
    field_argument(p, DreamerConfig, "horizon", type=positive_int, help="dreamer: imagination steps per update")
    field_argument(p, CMAESConfig, "obs_type", choices=field_choices(SB3Config, "obs_type"),
                   help="what the agent sees: [z, h] (latent), [z, c, h] (zch, the paper's Doom controller), z alone, "
                        "or decoded 64x64 frames (pixels, SB3)")
    field_argument(p, CMAESConfig, "eval_candidate",
                   help="CMA-ES: re-score (and keep if best so far) the search's mean (the paper) or the "
                        "generation's best candidate")
    field_argument(p, CMAESConfig, "seed_sharing",
                   help="CMA-ES: all candidates meet the same dreams, or pairs of candidates share theirs "
                        "(the paper's code)")
    p.add_argument("--no-bias", action="store_true", help="CMA-ES: a controller without bias (the paper's Doom)")
    field_argument(p, CMAESConfig, "discrete",
                   help="CMA-ES, Discrete(3): one output per action, or one tanh output thresholded at ±1/3 "
                        "(the paper's Doom)")
    _add_dream_options(p)
    field_argument(p, SB3Config, "eval_real_every", type=nonneg_int,
                   help="SB3: evaluate in the real env every N steps (0: never)")
    field_argument(p, SB3Config, "eval_real_episodes", type=positive_int, help="SB3: real episodes per evaluation")
    field_argument(p, SB3Config, "eval_dream_every", type=nonneg_int,
                   help="SB3: score the policy every N steps on the same dream episodes, one batch (0: never)")
    field_argument(p, SB3Config, "eval_dream_episodes", type=positive_int,
                   help="SB3: dream episodes per --eval-dream-every score")
    field_argument(p, SB3Config, "eval_dream_seed", type=nonneg_int,
                   help="SB3: dream episode i of each score is reset with this seed + i")
    field_argument(p, SB3Config, "keep", help="SB3: the agent is the last policy, or the one that scored best in "
                                              "the dream (needs --eval-dream-every); the other goes to OUT/last or "
                                              "OUT/best-dream")
    field_argument(p, SB3Config, "algo_kwargs", type=json_object, help="SB3: JSON kwargs for the algorithm, "
                                                                         "e.g. '{\"learning_rate\": 3e-4}'")
    p.set_defaults(func=_train_agent)


AGENT_HELP = ("controller dir, CMA-ES run dir, SB3 zip, agent ensemble, 'random', or 'constant:A' (one action "
              "always, e.g. constant:0,0,0: how much a dream pays for doing nothing)")


def _add_evaluate_parser(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="score an agent in the dream and in the real env")
    p.add_argument("agent", help=AGENT_HELP)
    p.add_argument("--episodes", type=positive_int, default=100, help="episodes in each of dream and reality")
    p.add_argument("--temperature", type=temperature, help="the dream's tau (default: the model's)")
    p.add_argument("--env-id", help="the Dream id (needed for 'random' and 'constant:A'; default: the one the agent records)")
    p.add_argument("--model", help="world model (default: the one the agent was trained with)")
    p.add_argument("--workers", type=nonneg_int, default=0, help="processes for real episodes (0: every core)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="episode i is seeded with seed + i")
    p.add_argument("--dream-only", action="store_true", help="score in the dream only")
    p.add_argument("--real-only", action="store_true", help="score in the real env only")
    p.add_argument("--json", help="where to write the results (default: AGENT/eval.json)")
    _add_real_z(p)
    _add_dream_options(p)
    p.set_defaults(func=_evaluate)


def _add_fidelity_parser(sub: Any) -> None:
    p = sub.add_parser("fidelity", help="the lie detector: the dream's predictions against reality, along an "
                                        "agent's real episodes")
    p.add_argument("model", help="world model (directory, pretrained name or Hub id)")
    p.add_argument("--agent", required=True, help=AGENT_HELP)
    p.add_argument("--episodes", type=positive_int, default=10, help="real episodes the agent plays")
    p.add_argument("--seed", type=nonneg_int, default=0, help="episode i is reset with SEED + i")
    p.add_argument("--temperature", type=temperature, help="tau of the sampled open-loop rollouts (default: the model's)")
    p.add_argument("--horizons", type=positive_int, nargs="+", default=[1, 10, 50], help="open-loop rollout lengths")
    p.add_argument("--every", type=positive_int, default=10, help="steps between open-loop starts")
    p.add_argument("--samples", type=nonneg_int, default=4, help="sampled open-loop rollouts per start (besides tau 0)")
    _add_real_z(p)
    p.add_argument("--workers", type=nonneg_int, default=0, help="processes for real episodes (0: every core)")
    p.add_argument("--out", help="the JSON (default: MODEL/fidelity.json, if MODEL is a directory); the PNG beside it")
    p.add_argument("--no-plot", action="store_true", help="write the JSON only")
    p.set_defaults(func=_fidelity)


def _add_iterate_parser(sub: Any) -> None:
    from dreamgym.agents.dreamer import DreamerConfig
    from dreamgym.iterate import IterateConfig

    p = sub.add_parser("iterate", help="Dyna: collect -> world model -> agent -> reality, repeated")
    p.add_argument("env_id", help="the real env, e.g. CarRacing-v3")
    field_argument(p, IterateConfig, "rounds", type=positive_int, help="Dyna rounds")
    p.add_argument("--out", required=True, type=out_dir, help="run directory; one subdirectory per round")
    field_argument(p, IterateConfig, "episodes", type=positive_int, nargs="+", help="episodes collected" + PER_ROUND)
    field_argument(p, IterateConfig, "noise", type=nonneg_float, help="exploration noise of the agent collecting")
    field_argument(p, IterateConfig, "max_steps", type=positive_int,
                   help="cap episode length (default: the env's time limit)")
    field_argument(p, IterateConfig, "eval_episodes", type=positive_int, nargs="+",
                   help="real episodes scoring each round's agent" + PER_ROUND)
    field_argument(p, IterateConfig, "workers", type=nonneg_int, help="processes (0: every core)")
    p.add_argument("--temperature", type=temperature, help="the dreams' tau (default: the model's)")
    p.add_argument("--seed", type=nonneg_int, help="seed of every stage (default: 0)")
    p.add_argument("--warm-start", action="store_true",
                   help="later rounds continue the last round's world model (V kept) and controller "
                        "instead of starting from scratch")
    add_train_args(p, data=False, schedule=True)
    field_argument(p, IterateConfig, "backend", help="the world model: mdnrnn (the paper's VAE + MDN-RNN) or rssm "
                   "(Dreamer's; one stage, set by the --memory-* flags; --warm-start continues the last round's)")
    _add_rssm_preset(p)
    field_argument(p, IterateConfig, "algo", help="the agent: cmaes (a linear controller) or dreamer (DreamerV3's "
                   "imagination actor-critic; --backend rssm --algo dreamer is Dreamer's own loop)")
    field_argument(p, IterateConfig, "train_ratio", type=positive_float,
                   help="dreamer: imagined steps trained per real step collected; a round trains "
                        "ceil(ratio x its real steps / (num-envs x horizon)) updates")
    field_argument(p, DreamerConfig, "num_envs", type=positive_int, help="dreamer: dreams imagined together")
    field_argument(p, DreamerConfig, "horizon", type=positive_int, help="dreamer: imagination steps per update")
    _add_cmaes_args(p, schedule=True)
    p.set_defaults(func=_iterate)


def _add_ship_parser(sub: Any) -> None:
    from dreamgym.ship import ShipConfig as S

    p = sub.add_parser("ship", help="a run's world model, agent and scores as one pretrained-style folder")
    p.add_argument("world_model", help="a trained world-model directory (or a shipped folder to update)")
    p.add_argument("--out", required=True, type=out_dir, help="the folder to write, e.g. pretrained/carracing "
                                                             "(replaced once the new one loads)")
    p.add_argument("--controller", help="the agent: a controller or CMA-ES run directory, shipped as OUT/controller, "
                                        "an SB3 train-agent run (zip + agent.json) or an agent ensemble, shipped as "
                                        "OUT/agent "
                                        "(default: keep the one WORLD_MODEL holds)")
    p.add_argument("--name", help="the name the shipped agent records for its dream (default: OUT's name)")
    p.add_argument("--eval", action="append", default=[], metavar="[NAME=]PATH",
                   help="a dreamgym evaluate JSON to ship as NAME (default NAME: its file name), paths made relative; "
                        "repeat for more")
    p.add_argument("--temperature", type=temperature, help="tau of the GIF's dream (default: the model's)")
    field_argument(p, S, "video_steps", type=nonneg_int, help="steps of the dream-vs-real GIF (0: none)")
    field_argument(p, S, "video_seed", type=nonneg_int, help="episode seed of the GIF")
    field_argument(p, S, "fps", type=positive_float, help="frame rate of the GIF")
    field_argument(p, S, "termination", help="record this termination rule as the dream's default "
                                             "(default: unchanged)")
    sample = p.add_mutually_exclusive_group()
    sample.add_argument("--sample-z", dest="real_sample_z", action="store_const", const=True, default=None,
                        help="record that the real twin draws z from V's posterior by default (default: unchanged)")
    sample.add_argument("--mean-z", dest="real_sample_z", action="store_const", const=False,
                        help="record that the real twin takes V's posterior mean by default (default: unchanged)")
    p.add_argument("--action-high", type=finite_float, nargs="+", metavar="A",
                   help="record these upper bounds of a narrower Box as the dream's (and real twin's) default, e.g. "
                        "1 0.3 1 (default: unchanged)")
    field_argument(p, S, "summary", type=json_object, help="JSON entries added to the world model's summary and card")
    p.set_defaults(func=_ship)


def _add_ensemble_parser(sub: Any) -> None:
    p = sub.add_parser("ensemble", help="agents trained apart (e.g. seeds) as one agent: the mean of their actions")
    p.add_argument("agents", nargs="+", help="train-agent runs (SB3: zip + agent.json) or controllers, all trained "
                                            "in the same dream")
    p.add_argument("--out", required=True, type=out_dir, help="the ensemble folder to write (evaluate, fidelity "
                                                             "and ship read it like one agent)")
    p.set_defaults(func=_ensemble)


def _add_push_parser(sub: Any) -> None:
    p = sub.add_parser("push", help="publish a world model, controller or SB3 agent to the Hugging Face Hub")
    p.add_argument("folder", help="a world model, controller or SB3 agent directory")
    p.add_argument("repo_id", help="e.g. someone/dream-carracing (SB3 agents: someone/ppo-Dream-CarRacing-v0)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--revision", help="branch to push to (default: main)")
    p.add_argument("--message", help="commit message (default: one naming the kind of folder)")
    p.add_argument("--max-file-mb", type=positive_float, default=MAX_PUSH_FILE_BYTES / 1024**2,
                   help="refuse to upload any file larger than this")
    p.set_defaults(func=_push)


def _add_pull_parser(sub: Any) -> None:
    p = sub.add_parser("pull", help="download a Hub repo into the cache for offline use, and check it loads")
    p.add_argument("repo_id", help="e.g. someone/dream-carracing")
    p.add_argument("--revision", help="branch, tag or commit (default: main)")
    p.set_defaults(func=_pull)


def _add_validate_parser(sub: Any) -> None:
    p = sub.add_parser("validate", help="check every shard of a dataset")
    p.add_argument("data", help="a dataset directory (written by dreamgym collect)")
    p.set_defaults(func=_validate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dreamgym", description="Trained world models as Gymnasium environments.",
                                     formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, help="what to do; dreamgym COMMAND -h explains it")
    from dreamgym.viz.cli import register as register_viz

    _add_collect_parser(sub)
    _add_train_parser(sub)
    _add_train_agent_parser(sub)
    _add_evaluate_parser(sub)
    _add_fidelity_parser(sub)
    _add_iterate_parser(sub)
    _add_ship_parser(sub)
    _add_ensemble_parser(sub)
    _add_push_parser(sub)
    _add_pull_parser(sub)
    register_viz(sub)  # dream | play | plot
    _add_validate_parser(sub)
    for command in sub.choices.values():
        command.formatter_class = HelpFormatter  # every flag's help shows its default
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except DreamgymError as e:
        print(f"dreamgym {args.command}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
