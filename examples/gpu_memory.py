"""Train a world model's M + heads much longer on a GPU, from its stored latents.

The device machine lent to some sessions can take only 64 MiB of files and 10 minutes a command,
so this script splits the work in three:

1. ``pack`` (here, CPU): a finished run's encoded latents -> one small file. Each latent mean is
   rounded to a quarter of its dimension's median posterior sigma and each log-variance to 0.25,
   then LZMA-compressed: 889k Doom steps fit in about 16 MB. The rounding error (printed) is far
   below the posterior noise that M trains on (z = mu + sigma * eps). The held-out episodes are the
   run's own (``split`` with the run's seed), so the validation numbers stay honest.
2. ``train`` (GPU): continue M + heads from the run's weights with the run's loss
   (``WorldModel.memory_loss``, sampled z, dropout as configured), for a wall-clock budget, with a
   cosine learning rate over that budget; windows are gathered on the GPU. Writes ``last`` and
   ``best`` (lowest held-out loss) M + heads weights and a JSON-lines log.
3. ``assemble`` (here): the run's V + the new M + heads -> a world-model directory with start
   states and the held-out fidelity numbers in its summary, usable as any other dream.

    python examples/gpu_memory.py --part pack --run runs/s14/doom-de --pack gpu/de
    python examples/gpu_memory.py --part train --pack gpu/de --out $OUT/de --seconds 280 --detach-heads  # GPU
    python examples/gpu_memory.py --part assemble --run runs/s14/doom-de --weights OUT/de/last.safetensors \
        --out runs/s15/doom-ded --refit-termination

Session 15 (one H200, 15 minutes of device time in all): two runs per dream, de and v2 in
parallel on the one GPU, about 18 steps/s each at batch 128 x 512 steps.
- Joint loss (the recipe's own, 420 s, 7.6k steps): held-out z NLL fell (de 0.806 -> 0.785) but the
  termination loss rose from step 200 on (0.235 -> 1.19): h memorised the deaths. A refit head
  brought it to 0.39 only, and PPO agents in those dreams scored 186-280 in reality.
- ``--detach-heads`` (280 s, 5.1k steps): z NLL fell further (de 0.806 -> 0.778, v2 0.931 -> 0.874)
  and the termination loss stayed near 0.20.
"""

from __future__ import annotations

import json
import lzma
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from dreamgym.argtypes import parse_cli
from dreamgym.utils import atomic_write

M_PREFIXES = ("memory.", "heads.", "ensemble.")


def _latent_paths(run: Path) -> list[Path]:
    stores = [d for d in (run / "latents").iterdir() if d.is_dir()]
    if len(stores) != 1:
        raise SystemExit(f"{run}/latents holds {len(stores)} latent stores; expected exactly one (the final V's).")
    paths = sorted(stores[0].glob("ep-*.npz"))
    if [int(p.stem[3:]) for p in paths] != list(range(len(paths))):
        raise SystemExit(f"{stores[0]}: the episode shards are not numbered 0..{len(paths) - 1}.")
    return paths


def _atomic_save(state: dict[str, torch.Tensor], path: Path) -> None:
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in state.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))


def pack(run: Path, out: Path) -> None:
    from dreamgym.train.recipes import split

    recipe = json.loads((run / "recipe.json").read_text())
    paths = _latent_paths(run)
    _, val = split(list(range(len(paths))), recipe["val_fraction"], recipe["seed"])
    eps = []
    for p in paths:
        with np.load(p, allow_pickle=False) as d:
            eps.append({k: d[k] for k in ("mu", "logvar", "actions", "rewards", "terminated")})
    lengths = np.array([len(e["actions"]) for e in eps], dtype=np.int32)
    mu = np.concatenate([e["mu"] for e in eps]).astype(np.float32)
    logvar = np.concatenate([e["logvar"] for e in eps]).astype(np.float32)
    scale = (0.25 * np.median(np.exp(0.5 * logvar[::7]), axis=0)).astype(np.float32)
    mu_q = np.round(mu / scale).astype(np.int32)
    lv_q = np.round(logvar * 4).astype(np.int32)
    if np.abs(mu_q).max() > 32767 or np.abs(lv_q).max() > 127:
        raise SystemExit("latents out of the packed range")
    err = np.abs(mu_q * scale - mu) / np.exp(0.5 * logvar)
    print(f"{len(paths)} episodes, {int(lengths.sum())} steps; rounding error of mu in units of its posterior sigma: "
          f"mean {float(err.mean()):.3f}, worst {float(err.max()):.3f}")
    z = lambda a: np.frombuffer(lzma.compress(np.ascontiguousarray(a).tobytes(), preset=6), dtype=np.uint8)  # noqa: E731
    actions = np.ascontiguousarray(np.concatenate([e["actions"] for e in eps]))  # int (Discrete) or float (Box)
    arrays = {
        "lengths": lengths, "val": np.isin(np.arange(len(paths)), val), "scale": scale,
        "mu": z(mu_q.astype(np.int16)), "logvar": z(lv_q.astype(np.int8)),
        "actions": z(actions), "actions_dtype": np.array(actions.dtype.str), "actions_shape": np.array(actions.shape),
        "rewards": z(np.concatenate([e["rewards"] for e in eps]).astype(np.float32)),
        "terminated": z(np.concatenate([e["terminated"] for e in eps]).astype(bool)),
    }
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a path
            np.savez(f, **arrays)

    atomic_write(out / "latents.npz", write)
    weights = load_file(str(run / "model.safetensors"))
    _atomic_save({k: v for k, v in weights.items() if k.startswith(M_PREFIXES)}, out / "init.safetensors")
    shutil.copy(run / "config.json", out / "config.json")
    print(f"wrote {out}: " + ", ".join(f"{p.name} {p.stat().st_size / 1e6:.1f} MB" for p in sorted(out.iterdir())))


def _unpack(pack_dir: Path):
    from dreamgym.data.latents import LatentEpisode

    with np.load(pack_dir / "latents.npz", allow_pickle=False) as d:
        lengths, val, scale = d["lengths"].astype(np.int64), d["val"], d["scale"]
        un = lambda k, dt: np.frombuffer(lzma.decompress(d[k].tobytes()), dtype=dt)  # noqa: E731
        zdim = len(scale)
        mu = un("mu", np.int16).reshape(-1, zdim).astype(np.float32) * scale
        logvar = un("logvar", np.int8).reshape(-1, zdim).astype(np.float32) / 4
        actions = un("actions", np.dtype(str(d["actions_dtype"]))).reshape(tuple(d["actions_shape"]))
        rewards, term = un("rewards", np.float32), un("terminated", bool)
    eps, zo, ao = [], 0, 0
    for n in lengths:
        eps.append(LatentEpisode(mu[zo:zo + n + 1], logvar[zo:zo + n + 1], actions[ao:ao + n], rewards[ao:ao + n],
                                 term[ao:ao + n]))
        zo, ao = zo + n + 1, ao + n
    return [e for e, v in zip(eps, val) if not v], [e for e, v in zip(eps, val) if v]


class GpuWindows:
    """:class:`LatentSequenceDataset`'s windows gathered on the device (same padding and mask)."""

    def __init__(self, ds, device: torch.device) -> None:
        t = lambda a: torch.as_tensor(np.asarray(a)).to(device)  # noqa: E731
        self.mu, self.logvar, self.action = t(ds.mu), t(ds.logvar), t(ds.action)
        self.reward, self.terminated = t(ds.reward), t(ds.terminated)
        self.n, self.z_off, self.a_off = t(ds.n), t(ds.z_off), t(ds.a_off)
        self.ep, self.t0 = ds.ep.to(device), ds.t0.to(device)
        self.steps = torch.arange(ds.seq_len + 1, device=device)

    def __len__(self) -> int:
        return len(self.ep)

    def __getitem__(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        e = self.ep[index]
        n = self.n[e][:, None]
        t = self.t0[index][:, None] + self.steps
        z_ok = (t <= n)[..., None]
        z_rows = self.z_off[e][:, None] + torch.minimum(t, n)
        a_ok = (t < n)[:, :-1]
        a_rows = self.a_off[e][:, None] + torch.minimum(t[:, :-1], n - 1)
        zero = torch.zeros((), device=self.mu.device)
        return {"mu": torch.where(z_ok, self.mu[z_rows], zero),
                "logvar": torch.where(z_ok, self.logvar[z_rows], torch.full((), -30.0, device=zero.device)),
                "action": torch.where(a_ok[..., None], self.action[a_rows], zero),
                "reward": torch.where(a_ok, self.reward[a_rows], zero),
                "terminated": torch.where(a_ok, self.terminated[a_rows], zero), "mask": a_ok.float()}


def train(pack_dir: Path, out: Path, seconds: float, batch: int, lr: float, lr_min: float, seq_len: int,
          seed: int, val_every: int, device: str, detach_heads: bool = False, stride: int | None = None) -> None:
    from dreamgym.checkpoint import parse_checkpoint_config
    from dreamgym.data.sequences import LatentSequenceDataset
    from dreamgym.models.world_model import WorldModel, WorldModelConfig
    from dreamgym.train.recipes import _memory_loss

    t_start = time.time()
    torch.manual_seed(seed)
    dev = torch.device(device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    cfg = parse_checkpoint_config(WorldModelConfig, json.loads((pack_dir / "config.json").read_text()), "config.json")
    model = WorldModel(cfg)
    init = load_file(str(pack_dir / "init.safetensors"))
    missing, unexpected = model.load_state_dict(init, strict=False)
    if unexpected or any(k.startswith(M_PREFIXES) for k in missing):
        raise SystemExit(f"init weights do not match: missing {missing}, unexpected {unexpected}")
    model.to(dev).train()
    model.vision.requires_grad_(False)
    train_eps, val_eps = _unpack(pack_dir)
    train_ds = LatentSequenceDataset(train_eps, model.action_space, seq_len, stride)  # held-out: the default stride
    tr = GpuWindows(train_ds, dev)
    va = GpuWindows(LatentSequenceDataset(val_eps, model.action_space, seq_len), dev)
    loss_fn = _memory_loss(True, detach_heads)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "log.jsonl", "a")
    gen = torch.Generator(device=dev).manual_seed(seed)

    def validate() -> dict[str, float]:
        model.eval()
        state = torch.random.get_rng_state(), (torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None)
        torch.manual_seed(12345)
        tot: dict[str, float] = {}
        count = 0
        with torch.no_grad():
            for i in range(0, len(va), batch):
                idx = torch.arange(i, min(i + batch, len(va)), device=dev)
                _, m = loss_fn(model, va[idx])
                w = len(idx)
                for k, v in m.items():
                    tot[k] = tot.get(k, 0.0) + v * w
                count += w
        torch.random.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], dev)
        model.train()
        return {f"val_{k}": v / count for k, v in tot.items()}

    m_keys = [k for k in model.state_dict() if k.startswith(M_PREFIXES)]
    save = lambda name: _atomic_save({k: v for k, v in model.state_dict().items() if k in m_keys}, out / name)  # noqa: E731
    best = validate()
    print(json.dumps({"step": 0, **best, "setup_s": round(time.time() - t_start, 1)}), flush=True)
    log.write(json.dumps({"step": 0, **best}) + "\n")
    best_loss, step, t0, last_save = best["val_loss"], 0, time.time(), time.time()
    save("best.safetensors")
    while (elapsed := time.time() - t0) < seconds:
        for g in opt.param_groups:
            g["lr"] = lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * min(elapsed / seconds, 1.0)))
        idx = torch.randint(len(tr), (batch,), device=dev, generator=gen)
        loss, metrics = loss_fn(model, tr[idx])
        if not torch.isfinite(loss):
            raise SystemExit(f"loss {loss.item()} at step {step}: stopped, the last good weights are on disk")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % val_every == 0:
            v = validate()
            rec = {"step": step, "s": round(time.time() - t0, 1), "lr": opt.param_groups[0]["lr"], **metrics, **v}
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            if v["val_loss"] < best_loss:
                best_loss = v["val_loss"]
                save("best.safetensors")
        if time.time() - last_save > 60:
            save("last.safetensors")
            last_save = time.time()
    v = validate()
    rec = {"step": step, "s": round(time.time() - t0, 1), "final": True, **v}
    print(json.dumps(rec), flush=True)
    log.write(json.dumps(rec) + "\n")
    if v["val_loss"] < best_loss:
        save("best.safetensors")
    save("last.safetensors")
    meta = {"steps": step, "seconds": round(time.time() - t0, 1), "batch": batch, "seq_len": seq_len, "lr": lr,
            "lr_min": lr_min, "seed": seed, "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "train_windows": len(tr), "val_windows": len(va), "torch": torch.__version__, "detach_heads": detach_heads,
            "stride": train_ds.stride}
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta), flush=True)


@torch.no_grad()
def _features(model, episodes, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """M's h along each episode (z sampled from V's posterior, as M trains) and the termination flags."""
    from dreamgym.spaces import encode_actions

    g = torch.Generator().manual_seed(seed)
    hs, ds = [], []
    for ep in episodes:
        mu, lv = torch.as_tensor(ep.mu[:-1]), torch.as_tensor(ep.logvar[:-1])
        z = mu + torch.exp(0.5 * lv) * torch.randn(mu.shape, generator=g)
        h, _ = model.memory.sequence(z[None], torch.as_tensor(encode_actions(ep.actions, model.action_space))[None])
        hs.append(h[0])
        ds.append(torch.as_tensor(ep.terminated, dtype=torch.float32))
    return torch.cat(hs), torch.cat(ds)


def refit_termination(model, train_eps, val_eps, seed: int, steps: int = 8000, batch: int = 8192) -> dict[str, float]:
    """Fit the termination head again on M's frozen h, stopping where the held-out loss is lowest.

    Long GPU runs learn z well but the head memorises the few hundred deaths (its held-out loss
    rises from the first few hundred steps); a linear head on the final h, with M's dropout and
    the same positive weight, is the head the held-out episodes pick."""
    head = model.heads.termination
    cfg = model.config
    w = torch.tensor(cfg.heads.termination_pos_weight)
    p = cfg.memory.dropout
    h_tr, d_tr = _features(model, train_eps, seed)
    h_va, d_va = _features(model, val_eps, seed + 1)
    bce = lambda logit, d: torch.nn.functional.binary_cross_entropy_with_logits(logit, d, pos_weight=w)  # noqa: E731
    with torch.no_grad():
        before = float(bce(head(h_va)[:, 0], d_va))
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    best, best_state, best_step = before, {k: v.clone() for k, v in head.state_dict().items()}, 0
    for step in range(1, steps + 1):
        idx = torch.randint(len(h_tr), (batch,), generator=g)
        x = torch.nn.functional.dropout(h_tr[idx], p, training=p > 0)
        loss = bce(head(x)[:, 0], d_tr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            with torch.no_grad():
                v = float(bce(head(h_va)[:, 0], d_va))
            if v < best:
                best, best_step = v, step
                best_state = {k: v.clone() for k, v in head.state_dict().items()}
    head.load_state_dict(best_state)
    return {"val_bce_before": round(before, 4), "val_bce_after": round(best, 4), "best_step": best_step,
            "train_steps": len(h_tr)}


def assemble(run: Path, weights: Path, out: Path, seed: int, refit: bool = False) -> None:
    from dreamgym.data.latents import load_latents
    from dreamgym.models.world_model import WorldModel
    from dreamgym.train.recipes import fidelity, set_start_states, split

    model = WorldModel.from_pretrained(run)
    new = load_file(str(weights))
    own = model.state_dict()
    if set(new) != {k for k in own if k.startswith(M_PREFIXES)}:
        raise SystemExit(f"{weights} does not hold exactly {run}'s M + heads weights")
    model.load_state_dict({**own, **new}, strict=True)
    recipe = json.loads((run / "recipe.json").read_text())
    paths = _latent_paths(run)
    train_p, val_p = split(paths, recipe["val_fraction"], recipe["seed"])
    firsts = [np.load(p, allow_pickle=False)["mu"][:1] for p in train_p]
    set_start_states(model, firsts, recipe["seed"])
    val = load_latents(val_p)
    refit_info = None
    if refit:
        model.eval()
        refit_info = refit_termination(model, load_latents(train_p), val, seed)
        print(json.dumps({"refit_termination": refit_info}), flush=True)
    empty = torch.zeros((0, 64, 64, 3), dtype=torch.uint8) if model.config.pixels else None
    fid = fidelity(model.eval(), val, (ep.mu for ep in val), frames=empty)
    if model.config.pixels:  # V is the run's own: its reconstruction error is the run's
        fid["vae_recon_mse"] = (model.config.summary or {}).get("fidelity", {}).get("vae_recon_mse")
    meta_path = weights.parent / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    summary = dict(model.config.summary or {})
    training = dict(summary.get("training", {}))
    training["gpu_memory"] = {**meta, "weights": weights.name, "continued_from": run.name,
                              **({"refit_termination": refit_info} if refit_info else {})}
    summary["training"] = training
    summary["fidelity"] = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in fid.items()}
    model.config.summary = summary
    model.save_pretrained(out)
    print(json.dumps(summary["fidelity"]))


@dataclass
class Args:
    part: str = field(default="pack", metadata={"choices": ("pack", "train", "assemble")})
    """pack (CPU: a run's latents -> a small file), train (GPU: M + heads) or assemble (CPU: run's V + new M)"""
    run: str = "runs/s14/doom-de"
    """the finished training run whose latents, weights and split are used (pack, assemble)"""
    pack: str = "gpu/de"
    """the packed folder (pack writes it, train reads it)"""
    out: str = "runs/gpu-de"
    """train: where best/last weights and the log go; assemble: the new world-model directory"""
    weights: str = "runs/gpu-de/last.safetensors"
    """assemble: the M + heads weights that train wrote"""
    seconds: float = 420.0
    """train: wall-clock budget; the learning rate follows a cosine over it"""
    batch: int = 128
    """train: windows per step"""
    lr: float = 1e-3
    """train: first learning rate"""
    lr_min: float = 1e-4
    """train: last learning rate"""
    seq_len: int = 512
    """train: window length"""
    stride: int | None = None
    """train: steps between training windows' starts (default: seq_len // 2, the dataset's; windows never run past
    an episode's end, so with 512-step windows a 1000-step episode's last 232 steps are in no window; a smaller
    stride covers more of each episode; held-out windows keep the default)"""
    seed: int = 0
    """train and assemble: noise, data order, start states"""
    val_every: int = 200
    """train: steps between held-out losses"""
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    """train: torch device"""
    detach_heads: bool = False
    """train: the heads learn on a detached h, so M learns z only (what worked on Doom)"""
    refit_termination: bool = False
    """assemble: fit the termination head again on the new M's h, early-stopped on held-out episodes"""


if __name__ == "__main__":
    args = parse_cli(Args, description=__doc__)
    if args.part == "pack":
        pack(Path(args.run), Path(args.pack))
    elif args.part == "train":
        train(Path(args.pack), Path(args.out), args.seconds, args.batch, args.lr, args.lr_min, args.seq_len,
              args.seed, args.val_every, args.device, args.detach_heads, args.stride)
    else:
        assemble(Path(args.run), Path(args.weights), Path(args.out), args.seed, args.refit_termination)
