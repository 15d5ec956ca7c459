import numpy as np
import pytest

from dreamgym.agents import LinearController
from dreamgym.data.collect import BrownianPolicy, CollectConfig, RandomPolicy, collect
from dreamgym.data.episodes import load_dataset, read_episode, read_meta, shard_paths, validate
from dreamgym.errors import ConfigError, DatasetError

from ..conftest import make_tiny_model


def _cfg(out, **kw):
    base = dict(env_id="Pendulum-v1", out=str(out), episodes=4, max_steps=30, workers=1)
    return CollectConfig(**{**base, **kw})


def test_collect_writes_shards_and_metadata(tmp_path):
    result = collect(_cfg(tmp_path / "d"), progress=False)
    assert result.episodes_written == 4 and result.steps == 4 * 30
    meta = read_meta(tmp_path / "d")
    assert meta.env_id == "Pendulum-v1" and meta.obs_kind == "state" and meta.policy["name"] == "brownian"
    assert "numpy" in meta.versions and meta.seed == 0
    ep = read_episode(shard_paths(tmp_path / "d")[0])
    assert ep.obs.shape == (31, 3) and ep.actions.shape == (30, 1) and ep.truncated[-1] and not ep.terminated.any()


def test_workers_resume_and_determinism(tmp_path):
    collect(_cfg(tmp_path / "a", episodes=2), progress=False)
    resumed = collect(_cfg(tmp_path / "a", episodes=5, workers=2), progress=False)  # 2 processes
    assert resumed.episodes_written == 3 and len(shard_paths(tmp_path / "a")) == 5
    collect(_cfg(tmp_path / "b", episodes=5), progress=False)
    for a, b in zip(shard_paths(tmp_path / "a"), shard_paths(tmp_path / "b")):
        ea, eb = read_episode(a), read_episode(b)
        assert np.array_equal(ea.obs, eb.obs) and np.array_equal(ea.actions, eb.actions)  # seed + i, any worker
    again = collect(_cfg(tmp_path / "a", episodes=5), progress=False)
    assert again.episodes_written == 0


def test_frames_are_64x64_uint8(tmp_path):
    collect(CollectConfig("CarRacing-v3", out=str(tmp_path / "cr"), episodes=1, max_steps=12, workers=1), progress=False)
    meta, episodes = load_dataset(tmp_path / "cr")
    assert meta.obs_kind == "frames" and meta.frame_crop == [0, 84, 0, 96]
    assert episodes[0].obs.shape == (13, 64, 64, 3) and episodes[0].obs.dtype == np.uint8
    assert episodes[0].actions.shape == (12, 3)


def test_frame_crop_keeps_the_dashboard(tmp_path):
    cfg = dict(episodes=1, max_steps=12, workers=1)
    collect(CollectConfig("CarRacing-v3", out=str(tmp_path / "whole"), frame_crop=[0, 96, 0, 96], **cfg), progress=False)
    collect(CollectConfig("CarRacing-v3", out=str(tmp_path / "road"), **cfg), progress=False)
    meta, whole = load_dataset(tmp_path / "whole")
    road = load_dataset(tmp_path / "road")[1][0].obs
    assert meta.frame_crop == [0, 96, 0, 96] and whole[0].obs.shape == road.shape == (13, 64, 64, 3)
    # the same episode: the dashboard (the bottom 12 of 96 rows, black) is in the whole frames only
    assert whole[0].obs[:, -6:].mean() < 40 and road[:, -6:].mean() > 80
    with pytest.raises(DatasetError, match="other settings .*frame_crop"):  # one dataset, one crop
        collect(CollectConfig("CarRacing-v3", out=str(tmp_path / "whole"), **{**cfg, "episodes": 2}), progress=False)


@pytest.mark.parametrize("crop, match", [([0, 97, 0, 96], "reaches outside CarRacing-v3's 96×96"),
                                         ([50, 40, 0, 96], "top < bottom"), ([0, 96, 0], "top, bottom, left, right")])
def test_bad_frame_crop(tmp_path, crop, match):
    with pytest.raises(ConfigError, match=match):
        collect(CollectConfig("CarRacing-v3", out=str(tmp_path / "d"), episodes=1, max_steps=5, workers=1,
                              frame_crop=crop), progress=False)
    with pytest.raises(ConfigError, match="applies to frames"):
        collect(_cfg(tmp_path / "p", frame_crop=[0, 2, 0, 2]), progress=False)


def test_brownian_actions_are_smooth():
    import gymnasium as gym

    space = gym.make("CarRacing-v3").action_space
    rng = np.random.default_rng(0)
    brown = np.array([BrownianPolicy(space, rng)(None) for _ in range(1)] + [])
    policy, rand = BrownianPolicy(space, np.random.default_rng(0)), RandomPolicy(space, np.random.default_rng(0))
    b = np.array([policy(None) for _ in range(500)])
    r = np.array([rand(None) for _ in range(500)])
    assert np.abs(np.diff(b, axis=0)).mean() < 0.35 * np.abs(np.diff(r, axis=0)).mean()
    assert space.contains(b[0]) and brown.shape == (1, 3)


def test_collect_with_a_trained_agent(tmp_path):
    model = make_tiny_model("pendulum")
    model.save_pretrained(tmp_path / "wm")
    import gymnasium as gym

    dream = gym.make("Dream-Pendulum-v0", model=str(tmp_path / "wm"))
    LinearController.for_spaces(dream.observation_space, dream.action_space).save_pretrained(tmp_path / "ctrl")
    cfg = _cfg(tmp_path / "d", episodes=2, policy="agent", agent=str(tmp_path / "ctrl"), agent_model=str(tmp_path / "wm"),
               noise=0.0)
    collect(cfg, progress=False)
    meta, episodes = load_dataset(tmp_path / "d")
    assert meta.policy["name"] == "agent" and episodes[0].obs.shape == (31, 3)  # real states, not latents
    collect(_cfg(tmp_path / "b", episodes=1), progress=False)
    meta, episodes = load_dataset(tmp_path / "b", tmp_path / "d")  # a Dyna round's data beside the first
    assert len(episodes) == 3 and meta.policy["name"] == "brownian+agent" and len(meta.policy["datasets"]) == 2


def test_collect_with_a_zch_controller(tmp_path):
    """The real twin shows the agent the observation it was trained on (the paper's Doom controller sees z‖c‖h)."""
    model = make_tiny_model("pendulum")
    model.save_pretrained(tmp_path / "wm")
    import gymnasium as gym

    dream = gym.make("Dream-Pendulum-v0", model=str(tmp_path / "wm"), obs_type="zch")
    LinearController.for_spaces(dream.observation_space, dream.action_space, obs_type="zch",
                                env_id="Dream-Pendulum-v0").save_pretrained(tmp_path / "ctrl")
    cfg = _cfg(tmp_path / "d", episodes=1, policy="agent", agent=str(tmp_path / "ctrl"), agent_model=str(tmp_path / "wm"))
    collect(cfg, progress=False)
    assert len(load_dataset(tmp_path / "d")[1]) == 1


def test_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="NoSuchEnv-v0"):
        collect(_cfg(tmp_path / "x", env_id="NoSuchEnv-v0"), progress=False)
    with pytest.raises(ConfigError, match="policy must be one of"):
        collect(_cfg(tmp_path / "x", policy="greedy"), progress=False)
    with pytest.raises(ConfigError, match="agent_model"):
        collect(_cfg(tmp_path / "x", policy="agent"), progress=False)
    collect(_cfg(tmp_path / "d", episodes=1), progress=False)
    with pytest.raises(DatasetError, match="other settings .*policy"):
        collect(_cfg(tmp_path / "d", episodes=2, policy="random"), progress=False)
    with pytest.raises(DatasetError, match="No dataset.json"):
        load_dataset(tmp_path / "empty")


def test_corrupt_shard_is_reported_by_name(tmp_path):
    collect(_cfg(tmp_path / "d", episodes=3), progress=False)
    victim = shard_paths(tmp_path / "d")[1]
    victim.write_bytes(victim.read_bytes()[:100])  # truncated, as by a crash of another tool
    _, good, bad = validate(tmp_path / "d")
    assert len(good) == 2 and list(bad) == [victim]
    with pytest.raises(DatasetError, match=victim.name):
        load_dataset(tmp_path / "d")


def test_a_failed_write_loses_nothing(tmp_path, monkeypatch):
    collect(_cfg(tmp_path / "d", episodes=2), progress=False)
    before = {p.name: p.read_bytes() for p in (tmp_path / "d").iterdir()}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("dreamgym.data.episodes.np.lib.format.write_array", disk_full)
    with pytest.raises(DatasetError, match="No space left"):
        collect(_cfg(tmp_path / "d", episodes=3), progress=False)
    assert {p.name: p.read_bytes() for p in (tmp_path / "d").iterdir()} == before


def test_ctrl_c_loses_only_episodes_in_flight_and_a_rerun_continues(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "cr"
    # long enough that Ctrl-C lands mid-run even when the machine is busy and this loop polls late
    cmd = [sys.executable, "-m", "dreamgym.cli", "collect", "CarRacing-v3", "--out", str(out), "--episodes", "16",
           "--max-steps", "200", "--workers", "2"]
    # SIGINT's default action, as a terminal's program has it: a runner started in the background (`cmd &` in a
    # script) ignores SIGINT, its children inherit that, and Python then installs no KeyboardInterrupt handler
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while len(shard_paths(out)) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole process group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()[-2000:]
    _, good, bad = validate(out)
    assert not bad and 2 <= len(good) < 16
    assert not list(out.glob(".*.tmp"))  # no half-written shard left behind
    result = collect(CollectConfig("CarRacing-v3", out=str(out), episodes=16, max_steps=200, workers=2),
                     progress=False)
    assert result.episodes_written == 16 - len(good) and len(shard_paths(out)) == 16


def test_workers_stop_when_the_collecting_process_is_killed(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "p"
    cmd = [sys.executable, "-m", "dreamgym.cli", "collect", "Pendulum-v1", "--out", str(out), "--episodes", "100000",
           "--workers", "2"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while len(shard_paths(out)) < 2 and time.time() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # the parent only (`kill -9`, the OOM killer): its workers are orphaned
        proc.wait(timeout=10)
        time.sleep(1.0)
        count = len(shard_paths(out))
        time.sleep(1.0)
        assert len(shard_paths(out)) == count  # no orphan goes on collecting
        assert 2 <= count < 100000
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the workers share the session's process group
        except ProcessLookupError:
            pass


def test_agent_models_env_id_cannot_import_a_module(tmp_path, monkeypatch):
    import json
    import sys

    (tmp_path / "dreamgym_probe_collect.py").write_text("IMPORTED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    make_tiny_model("pendulum").save_pretrained(tmp_path / "wm")
    config = json.loads((tmp_path / "wm" / "config.json").read_text())
    (tmp_path / "wm" / "config.json").write_text(json.dumps({**config, "env_id": "dreamgym_probe_collect:Pendulum-v1"}))
    cfg = _cfg(tmp_path / "d", episodes=1, policy="agent", agent=str(tmp_path / "ctrl"), agent_model=str(tmp_path / "wm"))
    with pytest.raises(ConfigError, match="dreamgym_probe_collect:Pendulum-v1"):
        collect(cfg, progress=False)
    assert "dreamgym_probe_collect" not in sys.modules


def test_negative_workers_are_refused(tmp_path, capsys):
    from dreamgym.cli import main

    with pytest.raises(ConfigError, match="workers must be >= 0"):
        collect(_cfg(tmp_path / "d", workers=-3), progress=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["collect", "Pendulum-v1", "--out", str(tmp_path / "d"), "--workers", "-3"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "dreamgym collect: error: argument --workers" in err and "'-3'" in err
    assert not (tmp_path / "d").exists()


def test_a_second_collect_into_the_same_out_is_refused(tmp_path):
    import fcntl

    out = tmp_path / "d"
    collect(_cfg(out, episodes=1), progress=False)
    with open(out / ".collect.lock", "a") as held:  # as another collect process holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(DatasetError, match="Another process is collecting into"):
            collect(_cfg(out, episodes=2), progress=False)
    assert len(shard_paths(out)) == 1
    assert collect(_cfg(out, episodes=2), progress=False).episodes_written == 1  # released: it continues


def test_temp_files_of_killed_workers_are_removed(tmp_path):
    out = tmp_path / "d"
    collect(_cfg(out, episodes=1), progress=False)
    stale = [out / ".ep-000001.npz.k3j2h1.tmp", out / ".dataset.json.abcd.tmp"]
    for p in stale:
        p.write_bytes(b"half")
    collect(_cfg(out, episodes=2), progress=False)
    assert not any(p.exists() for p in stale) and len(shard_paths(out)) == 2
    with pytest.raises(ConfigError, match="is a file"):
        collect(_cfg(out / "dataset.json"), progress=False)
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    with pytest.raises(ConfigError, match="does not exist"):
        collect(_cfg(tmp_path / "link"), progress=False)


def test_interrupt_message_counts_the_shards_on_disk(tmp_path, monkeypatch, capsys):
    """Ctrl-C before the workers' messages were read: the message still counts every shard written."""
    import multiprocessing as mp
    import time
    from types import SimpleNamespace

    import dreamgym.data.collect as collect_mod

    out = tmp_path / "d"
    spawn = mp.get_context("spawn")

    def queue():
        q = spawn.Queue()

        def get(timeout=None):  # the workers run on; the main process is interrupted before reading a message
            deadline = time.time() + 60
            while len(shard_paths(out)) < 2 and time.time() < deadline:
                time.sleep(0.05)
            raise KeyboardInterrupt

        q.get = get
        return q

    monkeypatch.setattr(collect_mod, "mp", SimpleNamespace(get_context=lambda kind: SimpleNamespace(
        Queue=queue, Process=spawn.Process)))
    with pytest.raises(KeyboardInterrupt):
        collect(_cfg(out, episodes=4, max_steps=5, workers=2), progress=False)
    on_disk = len(shard_paths(out))
    assert on_disk >= 2 and f"Interrupted: {on_disk} new episodes are on disk" in capsys.readouterr().out
