"""The RSSM dream step against this machine's FLOP bound (issue 16's target: >= 50 %).

    python benchmarks/bench_rssm.py [--preset cpu] [--envs 1024] [--threads 1] [--device cpu]

FLOPs of one batched dream step are counted, not estimated by hand: forward hooks on every Linear and
GRUCell add 2 * in * out per row (a GRUCell: 3 gates over input and hidden). The bound is measured the
same way on the same threads: the best rate of a square float32 matmul (n = 1024). Reported per window:
the step's time, its GFLOP/s, and the fraction of the bound; the best of ``--repeats`` windows counts
(other jobs on a shared machine only slow windows down). Writes ``benchmarks/results/rssm.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

from dreamgym.backends import Noise
from dreamgym.models.rssm import RSSMConfig
from dreamgym.models.rssm_world_model import RSSMWorldModel, RSSMWorldModelConfig

PENDULUM = dict(env_id="Pendulum-v1", action_space={"type": "Box", "low": -2.0, "high": 2.0, "shape": [1], "dtype": "float32"},
                observation_space={"type": "Box", "low": [-1.0, -1.0, -8.0], "high": [1.0, 1.0, 8.0], "shape": [3],
                                   "dtype": "float32"}, obs_dim=3)


def count_flops(model: nn.Module, step) -> int:
    """FLOPs of one call of ``step()``, from hooks on the matmul layers."""
    total = [0]

    def linear(mod: nn.Linear, inp, out) -> None:
        total[0] += 2 * inp[0].numel() // mod.in_features * mod.in_features * mod.out_features

    def gru(mod: nn.GRUCell, inp, out) -> None:
        rows = inp[0].shape[0]
        total[0] += 2 * rows * 3 * mod.hidden_size * (mod.input_size + mod.hidden_size)

    hooks = [m.register_forward_hook(linear) for m in model.modules() if isinstance(m, nn.Linear)]
    hooks += [m.register_forward_hook(gru) for m in model.modules() if isinstance(m, nn.GRUCell)]
    step()
    for h in hooks:
        h.remove()
    return total[0]


def best_rate(fn, seconds: float, repeats: int, sync) -> float:
    """Calls per second of ``fn``: the best of ``repeats`` windows of about ``seconds``."""
    fn()
    sync()
    best = 0.0
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            fn()
            n += 1
        sync()
        best = max(best, n / (time.perf_counter() - start))
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu", choices=sorted(RSSMConfig.PRESETS))
    p.add_argument("--envs", type=int, default=1024)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "rssm.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model = RSSMWorldModel(RSSMWorldModelConfig(**PENDULUM, rssm=RSSMConfig.preset(args.preset))).to(device).eval()
    b = args.envs
    carry = {"deter": torch.zeros(b, model.config.rssm.deter, device=device),
             "stoch": torch.zeros(b, model.config.rssm.stoch, device=device)}
    action, tau = torch.zeros(b, 1, device=device), torch.ones(b, device=device)
    noise = Noise(torch.arange(b, device=device), torch.zeros(b, dtype=torch.int64, device=device))
    step = lambda: model.imagine(carry, action, tau, noise)  # noqa: E731
    flops = count_flops(model, step)
    steps_per_s = best_rate(step, args.seconds, args.repeats, sync)
    n = 1024
    x, y = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    peak = best_rate(lambda: torch.mm(x, y), args.seconds, args.repeats, sync) * 2 * n ** 3
    result = {"preset": args.preset, "envs": b, "threads": args.threads, "device": str(device),
              "flops_per_step": flops, "steps_per_s": round(steps_per_s, 1), "env_steps_per_s": round(steps_per_s * b),
              "gflops": round(flops * steps_per_s / 1e9, 2), "peak_gflops": round(peak / 1e9, 2),
              "fraction_of_peak": round(flops * steps_per_s / peak, 3)}
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
