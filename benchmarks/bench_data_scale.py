"""Peak memory of world-model training against the number of episodes (issue 13: data as large as the paper's).

Writes a synthetic Doom-like dataset (64×64×3 uint8 frames, Discrete(3) held actions, one shard per
episode; each size extends the last one, so 10k episodes write 10k shards in all), then trains on
it in a fresh process per size: a few V steps, encode every episode into the latent store, a few M
steps, fidelity, save. The child reports its RSS high-water mark (``ru_maxrss``). Memory should stay
flat across sizes: V holds at most ``--frame-buffer`` frames, encoding holds one episode, and M holds
the latents (2 × z floats a step, z = 64 here as in the paper's Doom model).

Quick run (the default: 1k and 5k episodes of 64 steps; 3.8 GB of raw frames at 5k, which these
compressible synthetic shards store in 84 MB; about 3 minutes on 2 cores):
    python benchmarks/bench_data_scale.py
The full table (results/data_scale.json; about 10 minutes):
    python benchmarks/bench_data_scale.py --episodes 1000 5000 10000
The paper's size, 10k episodes of 200 steps = 2 M frames, 23.5 GB raw, 483 MB of shards, about
8 minutes (results/data_scale_paper.json):
    python benchmarks/bench_data_scale.py --episodes 10000 --steps-per-episode 200 \
        --out benchmarks/results/data_scale_paper.json
Before/after: export an older dreamgym and measure it too (it loads every episode in memory):
    git archive 85b11fd dreamgym | tar -x -C /tmp/old && python benchmarks/bench_data_scale.py --baseline /tmp/old
Prints a table and writes benchmarks/results/data_scale.json. The synthetic data is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def write_dataset(root: Path, start: int, stop: int, steps: int) -> None:
    """Episodes start..stop-1 of a synthetic Doom-like dataset (deterministic per episode)."""
    from gymnasium import spaces

    from dreamgym.data.episodes import DatasetMeta, Episode, shard_name, write_episode, write_meta
    from dreamgym.spaces import space_to_dict

    if start == 0:
        write_meta(root, DatasetMeta(env_id="VizdoomTakeCover-v1", obs_kind="frames", obs_shape=[64, 64, 3],
                                     action_space=space_to_dict(spaces.Discrete(3)),
                                     observation_space={"type": "Dict", "spaces": {}}, frame_key="screen",
                                     policy={"name": "held", "synthetic": True}))
    for i in range(start, stop):
        rng = np.random.default_rng(i)
        # a blocky texture (8×8 cells) scrolled sideways by the held actions: structured, compressible
        texture = np.repeat(np.repeat(rng.integers(0, 256, (8, 16, 3), dtype=np.uint8), 8, 0), 8, 1)  # 64 128 3
        actions = np.repeat(rng.integers(0, 3, steps), rng.integers(1, 11, steps))[:steps]
        shift = np.concatenate([[0], np.cumsum(actions - 1)]) % 64
        obs = np.stack([texture[:, s : s + 64] for s in shift])  # (T+1) 64 64 3
        term = np.zeros(steps, bool)
        term[-1] = True
        write_episode(root / shard_name(i), Episode(obs, actions.astype(np.int64), np.ones(steps, np.float32),
                                                    term, np.zeros(steps, bool)))


def child(data: str, out: str, frame_buffer: int, vision_steps: int, memory_steps: int) -> None:
    """Train once and print one JSON line: peak RSS and stage timings."""
    import torch

    from dreamgym.train.recipes import RecipeConfig, train_world_model
    from dreamgym.train.trainer import TrainConfig

    torch.set_num_threads(1)
    extra = {"frame_buffer": frame_buffer} if "frame_buffer" in RecipeConfig.__dataclass_fields__ else {}
    cfg = RecipeConfig.tiny(z_dim=64, seq_len=32, num_start_states=64,
                            vision=TrainConfig(steps=vision_steps, batch_size=32, val_every=vision_steps, val_batches=2,
                                               checkpoint_every=vision_steps),
                            memory=TrainConfig(steps=memory_steps, batch_size=16, val_every=memory_steps, val_batches=2,
                                               checkpoint_every=memory_steps), **extra)
    stages = _watch_stages()
    start = time.perf_counter()
    model = train_world_model(data, out, cfg, progress=False)
    print(json.dumps({"peak_rss_mb": _peak_mb(), "train_s": time.perf_counter() - start, "peak_after_mb": stages,
                      "timings": model.config.summary["training"], "frames": model.config.summary["data"]["steps"]}))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _watch_stages() -> dict[str, float]:
    """Record the RSS high-water mark after each stage of train_world_model (whichever it has)."""
    from dreamgym.train import recipes, trainer

    stages: dict[str, float] = {}

    def watch(owner: object, name: str, label: str) -> None:
        fn = getattr(owner, name, None)
        if fn is None:
            return

        def wrapped(*args, **kwargs):
            result = fn(*args, **kwargs)
            stages[label if label not in stages else f"{label}2"] = round(_peak_mb(), 1)
            return result

        setattr(owner, name, wrapped)

    watch(recipes, "scan_dataset", "scan")
    watch(recipes, "load_dataset", "load")
    watch(trainer.Trainer, "fit", "fit")  # fit: V, fit2: M
    watch(recipes, "_encode_all", "encode")
    watch(recipes, "encode_episodes", "encode")
    watch(recipes, "fidelity", "fidelity")
    return stages


def measure(data: Path, frame_buffer: int, vision_steps: int, memory_steps: int, pythonpath: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-scale-run-") as run:
        env = {**os.environ, "PYTHONPATH": pythonpath, "SDL_VIDEODRIVER": "dummy", "HF_HUB_OFFLINE": "1"}
        cmd = [sys.executable, __file__, "--child", str(data), str(Path(run) / "run"), "--frame-buffer", str(frame_buffer),
               "--vision-steps", str(vision_steps), "--memory-steps", str(memory_steps)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        latents = Path(run) / "run" / "latents"
        result["latents_mb"] = sum(p.stat().st_size for p in latents.rglob("*.npz")) / 2**20 if latents.is_dir() else 0.0
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--steps-per-episode", type=int, default=64)
    parser.add_argument("--frame-buffer", type=int, default=20_000, help="frames V holds (RecipeConfig.frame_buffer)")
    parser.add_argument("--vision-steps", type=int, default=10)
    parser.add_argument("--memory-steps", type=int, default=10)
    parser.add_argument("--baseline", help="a directory holding an older dreamgym/ package (put on PYTHONPATH) to measure too")
    parser.add_argument("--baseline-max-episodes", type=int, default=1000, help="sizes the baseline is run at")
    parser.add_argument("--workdir", default=None, help="where the synthetic data goes (default: a temp dir)")
    parser.add_argument("--out", default=str(HERE / "results" / "data_scale.json"))
    parser.add_argument("--child", nargs=2, metavar=("DATA", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.frame_buffer, args.vision_steps, args.memory_steps)
        return
    work = Path(tempfile.mkdtemp(prefix="bench-scale-", dir=args.workdir))
    data = work / "data"
    rows, written = [], 0
    repo = str(HERE.parent)
    try:
        for n in sorted(args.episodes):
            t0 = time.perf_counter()
            write_dataset(data, written, n, args.steps_per_episode)
            written = n
            disk_mb = sum(p.stat().st_size for p in data.glob("ep-*.npz")) / 2**20
            print(f"{n} episodes written ({disk_mb:.0f} MB, {time.perf_counter() - t0:.0f} s); training ...", flush=True)
            runs = [("streaming", repo)]
            if args.baseline and n <= args.baseline_max_episodes:
                runs.append(("baseline", str(Path(args.baseline).resolve())))
            for code, path in runs:
                r = measure(data, args.frame_buffer, args.vision_steps, args.memory_steps, path)
                rows.append({"code": code, "episodes": n, "frames": n * (args.steps_per_episode + 1),
                             "dataset_mb": disk_mb, "raw_frames_mb": n * (args.steps_per_episode + 1) * 64 * 64 * 3 / 2**20, **r})
                print(f"  {code}: {r}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'code':10} {'episodes':>8} {'frames':>9} {'raw frames MB':>13} {'shards MB':>9} {'peak RSS MB':>11} "
          f"{'latents MB':>10} {'train s':>8}")
    for r in rows:
        if "error" in r:
            print(f"{r['code']:10} {r['episodes']:>8} error: {r['error']}")
            continue
        print(f"{r['code']:10} {r['episodes']:>8} {r['frames']:>9} {r['raw_frames_mb']:>13.0f} {r['dataset_mb']:>9.0f} "
              f"{r['peak_rss_mb']:>11.0f} {r['latents_mb']:>10.0f} {r['train_s']:>8.0f}")
    result = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
              "settings": {"steps_per_episode": args.steps_per_episode, "frame_buffer": args.frame_buffer,
                           "vision_steps": args.vision_steps, "memory_steps": args.memory_steps, "z_dim": 64},
              "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
