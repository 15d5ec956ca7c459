"""Data as large as the paper's: held random actions, min_steps, and training that streams from disk."""

import json

import numpy as np
import pytest
import torch
from gymnasium import spaces

import dreamgym.data.collect as collect_mod
from dreamgym.data.collect import CollectConfig, HeldPolicy, collect
from dreamgym.data.episodes import (
    DatasetMeta, Episode, read_episode, shard_name, shard_paths, write_episode, write_meta,
)
from dreamgym.data.latents import LATENTS_DIR, LatentEpisode, ShardRef, encode_to_store, scan_dataset, write_latents
from dreamgym.data.sequences import FrameDataset, FrameReservoir, LatentSequenceDataset, SequenceDataset
from dreamgym.errors import ConfigError, DatasetError
from dreamgym.spaces import space_to_dict
from dreamgym.train.recipes import RecipeConfig, train_world_model
from dreamgym.train.trainer import TrainConfig


def _runs(actions: np.ndarray) -> list[int]:
    """Lengths of the runs of equal consecutive actions."""
    flat = actions.reshape(len(actions), -1)
    change = np.flatnonzero((flat[1:] != flat[:-1]).any(1)) + 1
    return np.diff(np.concatenate([[0], change, [len(flat)]])).tolist()


# ----- held random actions --------------------------------------------------------------------
def test_held_policy_holds_each_action_1_to_10_steps_reproducibly():
    space = spaces.Box(-1, 1, (2,), np.float32)
    policy, again = HeldPolicy(space, np.random.default_rng(7)), HeldPolicy(space, np.random.default_rng(7))
    a = np.stack([policy(None) for _ in range(2000)])
    assert np.array_equal(a, np.stack([again(None) for _ in range(2000)]))
    runs = _runs(a)
    assert min(runs) >= 1 and max(runs) == collect_mod.HOLD_MAX and 4.5 < np.mean(runs) < 6.5  # uniform 1..10
    assert space.contains(a[0]) and len(np.unique(a[:, 0])) == len(runs)  # a fresh uniform draw per run
    d = HeldPolicy(spaces.Discrete(3, start=-1), np.random.default_rng(0))
    assert {d(None) for _ in range(200)} == {-1, 0, 1}


def test_collect_held_is_reproducible_and_recorded(tmp_path):
    cfg = dict(env_id="Pendulum-v1", episodes=2, max_steps=60, workers=1, policy="held")
    collect(CollectConfig(out=str(tmp_path / "a"), **cfg), progress=False)
    collect(CollectConfig(out=str(tmp_path / "b"), **cfg), progress=False)
    for pa, pb in zip(shard_paths(tmp_path / "a"), shard_paths(tmp_path / "b")):
        ea, eb = read_episode(pa), read_episode(pb)
        assert np.array_equal(ea.actions, eb.actions) and np.array_equal(ea.obs, eb.obs)
        assert all(1 <= r <= collect_mod.HOLD_MAX for r in _runs(ea.actions))
    policy = json.loads((tmp_path / "a" / "dataset.json").read_text())["policy"]
    assert policy["name"] == "held" and policy["hold_max"] == 10 and "min_steps" not in policy


# ----- min_steps ------------------------------------------------------------------------------
def test_min_steps_drops_short_episodes_deterministically_and_resumes(tmp_path):
    cfg = dict(env_id="CartPole-v1", episodes=6, workers=1, policy="random", min_steps=25)
    collect(CollectConfig(out=str(tmp_path / "a"), **cfg), progress=False)
    plain = collect(CollectConfig(env_id="CartPole-v1", out=str(tmp_path / "p"), episodes=6, workers=1,
                                  policy="random"), progress=False)
    assert plain.steps < 6 * 26  # random CartPole episodes are often short: some were redrawn
    lengths = [len(read_episode(p)) for p in shard_paths(tmp_path / "a")]
    assert len(lengths) == 6 and min(lengths) > 25
    kept = read_episode(shard_paths(tmp_path / "a")[2])
    shard_paths(tmp_path / "a")[2].unlink()  # resume: the missing episode is drawn again, identically
    assert collect(CollectConfig(out=str(tmp_path / "a"), **cfg), progress=False).episodes_written == 1
    again = read_episode(tmp_path / "a" / shard_name(2))
    assert np.array_equal(again.obs, kept.obs) and np.array_equal(again.actions, kept.actions)
    assert json.loads((tmp_path / "a" / "dataset.json").read_text())["policy"]["min_steps"] == 25


def test_min_steps_errors(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="min_steps"):
        collect(CollectConfig("CartPole-v1", out=str(tmp_path / "x"), episodes=1, max_steps=20, min_steps=20),
                progress=False)
    monkeypatch.setattr(collect_mod, "MAX_REDRAWS", 1)
    with pytest.raises(DatasetError, match="lower --min-steps"):
        collect(CollectConfig("CartPole-v1", out=str(tmp_path / "y"), episodes=1, workers=1, policy="random",
                              min_steps=400), progress=False)


# ----- streaming datasets ---------------------------------------------------------------------
def _frames_dataset(root, lengths, seed=0):
    """A synthetic Doom-like dataset: 64×64×3 uint8 frames, Discrete(3) actions."""
    rng = np.random.default_rng(seed)
    write_meta(root, DatasetMeta(env_id="VizdoomTakeCover-v1", obs_kind="frames", obs_shape=[64, 64, 3],
                                 action_space=space_to_dict(spaces.Discrete(3)),
                                 observation_space={"type": "Dict", "spaces": {}},
                                 frame_key="screen", policy={"name": "held"}))
    for i, n in enumerate(lengths):
        obs = rng.integers(0, 256, (n + 1, 64, 64, 3), dtype=np.uint8)
        obs[:, :, :, 0] = i  # the red channel names the episode
        term = np.zeros(n, bool)
        term[-1] = i % 2 == 0
        ep = Episode(obs, rng.integers(0, 3, n), np.ones(n, np.float32), term, np.zeros(n, bool))
        write_episode(root / shard_name(i), ep)
    return root


def test_frame_reservoir_holds_at_most_max_frames(tmp_path):
    _, refs = scan_dataset(_frames_dataset(tmp_path, [19] * 20))  # 20 episodes of 20 frames
    everything = FrameReservoir(refs, max_frames=10_000)
    assert len(everything) == 400 and torch.equal(everything[torch.arange(400)]["obs"],
                                                  FrameDataset([read_episode(r.path) for r in refs]).obs)
    res = FrameReservoir(refs, max_frames=50, seed=3)
    seen = set()
    for epoch in range(6):
        res.set_epoch(epoch)
        obs = res[torch.arange(len(res))]["obs"]
        assert len(res) == 50 and res.obs.shape[0] == 50 and res.episodes_held <= 3  # 50 frames: 3 episodes of 20
        seen |= set(obs[:, 0, 0, 0].tolist())
    assert len(seen) > 6  # each epoch a fresh subset
    before = res[torch.arange(50)]["obs"].clone()
    res.set_epoch(2), res.set_epoch(5)
    assert torch.equal(res[torch.arange(50)]["obs"], before)  # an epoch reloads the same subset (resume)
    with pytest.raises(ConfigError, match="max_frames"):
        FrameReservoir(refs, max_frames=0)


@pytest.mark.parametrize("lengths,seq_len", [([3, 9, 20, 8], 8), ([1, 2], 5), ([30], 4)])
def test_latent_sequences_equal_padded_sequences(lengths, seq_len, tmp_path):
    rng = np.random.default_rng(0)
    space = spaces.Box(-1, 1, (2,), np.float32)
    eps = [Episode(np.zeros((n + 1, 1)), rng.uniform(-2, 2, (n, 2)).astype(np.float32),
                   rng.normal(size=n).astype(np.float32), rng.random(n) < 0.3, np.zeros(n, bool)) for n in lengths]
    mus = [rng.normal(size=(n + 1, 3)).astype(np.float32) for n in lengths]
    for logvars in ([rng.normal(size=(n + 1, 3)).astype(np.float32) for n in lengths], None):
        old = SequenceDataset(mus, logvars, eps, space, seq_len)
        lat = [LatentEpisode(m, lv, e.actions, e.rewards, e.terminated)
               for m, lv, e in zip(mus, logvars or [None] * len(mus), eps)]
        paths = [tmp_path / f"{logvars is None}-{i}.npz" for i in range(len(lat))]
        for path, ep in zip(paths, lat):
            write_latents(path, ep, "src")
        mapped = LatentSequenceDataset.from_files(paths, space, seq_len, tmp_path / f"flat-{logvars is None}")
        assert isinstance(mapped.mu, np.memmap)
        idx = torch.arange(len(old))
        for new in (LatentSequenceDataset(lat, space, seq_len), mapped):
            assert len(new) == len(old)
            for key, value in old[idx].items():
                assert torch.equal(new[idx][key], value), key
        assert np.array_equal(mapped.first_latents(), np.stack([m[0] for m in mus]))


def test_window_stride_defaults_to_half_a_window_and_refuses_gaps_and_zero():
    """Both sequence datasets share one stride rule; stride 0 used to fall back to the default silently, a
    negative one gave no windows at all, and one above seq_len left steps in no window."""
    rng = np.random.default_rng(0)
    space = spaces.Box(-1, 1, (2,), np.float32)
    n, seq_len = 40, 8
    ep = Episode(np.zeros((n + 1, 1)), rng.uniform(-1, 1, (n, 2)).astype(np.float32), np.zeros(n, np.float32),
                 np.zeros(n, bool), np.zeros(n, bool))
    mu = rng.normal(size=(n + 1, 3)).astype(np.float32)
    make = {"padded": lambda st: SequenceDataset([mu], None, [ep], space, seq_len, st),
            "latent": lambda st: LatentSequenceDataset([LatentEpisode(mu, None, ep.actions, ep.rewards, ep.terminated)],
                                                       space, seq_len, st)}
    for name, build in make.items():
        assert build(None).stride == 4 and len(build(None)) == (n - seq_len) // 4 + 1, name
        assert build(1).stride == 1 and len(build(1)) == n - seq_len + 1, name
        for bad in (0, -2, seq_len + 1):
            with pytest.raises(ConfigError, match="stride must be between 1 and seq_len"):
                build(bad)


def test_latents_are_encoded_once_and_reused(tmp_path, monkeypatch):
    _, refs = scan_dataset(_frames_dataset(tmp_path / "d", [4, 6, 5]))
    calls = []

    def encode(obs):
        calls.append(len(obs))
        return obs[:, 0, 0, :2].astype(np.float32), np.zeros((len(obs), 2), np.float32)

    paths = encode_to_store(refs, encode, "a" * 64, tmp_path / "run")
    assert len(calls) == 3 and all(p.is_file() for p in paths) and paths[0].parent.name == "a" * 16
    assert encode_to_store(refs, encode, "a" * 64, tmp_path / "run") == paths and len(calls) == 3  # reused
    write_episode(refs[1].path, read_episode(refs[1].path))  # a rewritten source shard is encoded again
    encode_to_store(refs, encode, "a" * 64, tmp_path / "run")
    assert len(calls) == 4
    encode_to_store(refs, encode, "b" * 64, tmp_path / "run", rank=1, world=2)  # another V, rank 1 of 2
    assert len(calls) == 5


def test_training_streams_with_a_small_frame_buffer_and_resumes(tmp_path, monkeypatch):
    data = _frames_dataset(tmp_path / "d", [15] * 12)
    held: list[int] = []
    original = FrameReservoir.set_epoch

    def spy(self, epoch):
        original(self, epoch)
        held.append(self.episodes_held)

    monkeypatch.setattr(FrameReservoir, "set_epoch", spy)
    cfg = RecipeConfig.tiny(frame_buffer=40,
                            vision=TrainConfig(steps=12, batch_size=8, val_every=6, checkpoint_every=6),
                            memory=TrainConfig(steps=3, batch_size=4, val_every=3, checkpoint_every=3))
    model = train_world_model(data, tmp_path / "run", cfg, progress=False)
    assert held and max(held) <= 3  # 40 frames of 16-frame episodes: never more than 3 episodes in memory
    assert len(held) >= 3  # V's 12 steps of 5 batches: epochs 0, 1 and 2 each loaded (plus the validation set)
    summary = model.config.summary
    assert summary["data"]["episodes"] == 12 and np.isfinite(summary["fidelity"]["vae_recon_mse"])
    store = list((tmp_path / "run" / LATENTS_DIR).iterdir())
    assert len(store) == 1 and len(list(store[0].glob("ep-*.npz"))) == 12
    mtimes = {p: p.stat().st_mtime_ns for p in store[0].glob("ep-*.npz")}
    again = train_world_model(data, tmp_path / "run", cfg, resume=True, progress=False)  # V done: latents reused
    assert {p: p.stat().st_mtime_ns for p in store[0].glob("ep-*.npz")} == mtimes
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_scan_dataset_keeps_paths_and_lengths_only(tmp_path):
    _frames_dataset(tmp_path, [3, 5])
    meta, refs = scan_dataset(tmp_path)
    assert meta.env_id == "VizdoomTakeCover-v1"
    assert refs == [ShardRef(p, n) for p, n in zip(shard_paths(tmp_path), [3, 5])]
