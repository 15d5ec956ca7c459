"""import_minari: Minari datasets made here (offline, in a tmp MINARI_DATASETS_PATH) round-trip into dreamgym shards."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.error import DependencyNotInstalled

minari = pytest.importorskip("minari")
pytest.importorskip("h5py", reason="minari's default (hdf5) storage needs h5py: pip install 'minari[hdf5]'")
pytest.importorskip("PIL", reason="minari's storages import Pillow: pip install pillow")

from minari.data_collector import EpisodeBuffer  # noqa: E402

import dreamgym.data.minari as dminari  # noqa: E402
from dreamgym.data.episodes import load_dataset, read_episode, read_meta, shard_paths  # noqa: E402
from dreamgym.data.frames import preprocess_frames  # noqa: E402
from dreamgym.data.minari import import_minari  # noqa: E402
from dreamgym.errors import DatasetError  # noqa: E402

HAS_JAX = importlib.util.find_spec("jax") is not None  # minari.DataCollector needs it ("minari[create]")
HAS_ARROW = importlib.util.find_spec("pyarrow") is not None
NOISE_ID = "DreamgymTestNoise-v0"
NOISE_STEPS = 10
# DataCollector.close() rmtree's the TemporaryDirectory it made instead of cleaning it up (minari 0.5.4): harmless
pytestmark = pytest.mark.filterwarnings("ignore:Implicitly cleaning up:ResourceWarning")


class NoiseEnv(gym.Env):
    """Random 96×96 RGB frames from np_random (so a seed replays them), Discrete(3) actions, reward = action."""

    metadata = {"render_modes": []}

    def __init__(self, dict_obs: bool = False) -> None:
        image = spaces.Box(0, 255, (96, 96, 3), np.uint8)
        self.dict_obs = dict_obs
        self.observation_space = (
            spaces.Dict({"screen": image, "health": spaces.Box(0.0, 100.0, (1,), np.float32)}) if dict_obs else image
        )
        self.action_space = spaces.Discrete(3)

    def _obs(self) -> Any:
        frame = self.np_random.integers(0, 256, (96, 96, 3), dtype=np.uint8)
        return {"screen": frame, "health": np.array([50.0], np.float32)} if self.dict_obs else frame

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        return self._obs(), {}

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict]:
        return self._obs(), float(action), False, False, {}


@pytest.fixture(autouse=True)
def minari_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own Minari datasets folder (minari reads MINARI_DATASETS_PATH at call time)."""
    root = tmp_path / "minari-datasets"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    if NOISE_ID not in gym.registry:
        gym.register(NOISE_ID, entry_point=f"{__name__}:NoiseEnv", max_episode_steps=NOISE_STEPS)
    return root


def _rollout_buffers(env: gym.Env, episodes: int, seed: int) -> list[EpisodeBuffer]:
    """What DataCollector records, built by hand (no jax needed)."""
    buffers = []
    env.action_space.seed(seed)
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        observations, actions, rewards, terms, truncs = [obs], [], [], [], []
        done = False
        while not done:
            action = env.action_space.sample()
            obs, reward, terminated, truncated, _ = env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
            terms.append(terminated)
            truncs.append(truncated)
            done = terminated or truncated
        if isinstance(observations[0], dict):
            observations = {k: [o[k] for o in observations] for k in observations[0]}
        buffers.append(
            EpisodeBuffer(
                id=i,
                seed=seed + i,
                observations=observations,
                actions=actions,
                rewards=rewards,
                terminations=terms,
                truncations=truncs,
                infos={},
            )
        )
    return buffers


def make_dataset(
    env: gym.Env, dataset_id: str, episodes: int = 3, seed: int = 0, collector: bool | None = None, **storage: Any
) -> Any:
    """A random-policy Minari dataset: through minari.DataCollector when jax is there, else from buffers.

    ``storage`` takes ``data_format`` / ``jpeg_encoding``.
    """
    collector = HAS_JAX if collector is None else collector
    info = {"algorithm_name": "random", "author": "dreamgym tests", "author_email": "t@example.com", "description": "t"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # minari's nags about eval_env etc.
        if not collector:
            return minari.create_dataset_from_buffers(
                dataset_id, _rollout_buffers(env, episodes, seed), env=env, **info, **storage
            )
        env = minari.DataCollector(env, **storage)
        env.action_space.seed(seed)
        try:
            for i in range(episodes):
                env.reset(seed=seed + i)
                done = False
                while not done:
                    _, _, terminated, truncated, _ = env.step(env.action_space.sample())
                    done = terminated or truncated
            return env.create_dataset(dataset_id=dataset_id, **info)
        finally:
            env.close()


def minari_episodes(dataset_id: str) -> list[Any]:
    return list(minari.load_dataset(dataset_id).iterate_episodes())


@pytest.mark.parametrize(
    "collector",
    [pytest.param(True, marks=pytest.mark.skipif(not HAS_JAX, reason="DataCollector needs jax")), False],
    ids=["DataCollector", "buffers"],
)
def test_state_round_trip(tmp_path: Path, collector: bool) -> None:
    make_dataset(gym.make("Pendulum-v1", max_episode_steps=20), "dreamgym/pendulum-test-v0", collector=collector)
    out = import_minari("dreamgym/pendulum-test-v0", tmp_path / "out")
    assert out == tmp_path / "out"

    meta = read_meta(out)
    assert meta.source == "minari:dreamgym/pendulum-test-v0"
    assert (meta.env_id, meta.obs_kind, meta.obs_shape, meta.frame_key) == ("Pendulum-v1", "state", [3], None)
    assert meta.env_kwargs == {}
    assert meta.action_space["type"] == "Box" and meta.observation_space["shape"] == [3]
    assert meta.policy["name"] == "random" and meta.policy["max_episode_steps"] == 20
    assert meta.policy["minari_jpeg_encoding"] is False
    assert "minari" in meta.versions

    paths = shard_paths(out)
    expected = minari_episodes("dreamgym/pendulum-test-v0")
    assert [p.name for p in paths] == ["ep-000000.npz", "ep-000001.npz", "ep-000002.npz"]
    for path, ep in zip(paths, expected, strict=True):
        got = read_episode(path)
        assert len(got) == 20
        assert got.obs.dtype == np.float32 and got.actions.dtype == np.float32 and got.rewards.dtype == np.float32
        assert got.terminated.dtype == bool and got.truncated.dtype == bool
        np.testing.assert_array_equal(got.obs, ep.observations.astype(np.float32))
        np.testing.assert_array_equal(got.actions, ep.actions)
        np.testing.assert_array_equal(got.rewards, ep.rewards.astype(np.float32))
        np.testing.assert_array_equal(got.terminated, ep.terminations)
        np.testing.assert_array_equal(got.truncated, ep.truncations)
        assert got.truncated[-1] and not got.terminated.any()
    assert len(load_dataset(out)[1]) == 3  # the whole dataset validates


def _raw_frames(seed: int) -> np.ndarray:
    """The frames NoiseEnv showed in the episode reset with ``seed`` (they depend on the seed only)."""
    env = NoiseEnv()
    frames = [env.reset(seed=seed)[0]] + [env.step(0)[0] for _ in range(NOISE_STEPS)]
    return np.stack(frames)


@pytest.mark.parametrize("jpeg", [True, False], ids=["jpeg", "lossless"])
@pytest.mark.parametrize(
    "data_format", ["hdf5", pytest.param("arrow", marks=pytest.mark.skipif(not HAS_ARROW, reason="needs pyarrow"))]
)
def test_frames_round_trip(tmp_path: Path, data_format: str, jpeg: bool) -> None:
    make_dataset(gym.make(NOISE_ID), "dreamgym/noise-test-v0", episodes=2, data_format=data_format, jpeg_encoding=jpeg)
    out = import_minari("dreamgym/noise-test-v0", tmp_path / "out")

    meta = read_meta(out)
    assert (meta.env_id, meta.obs_kind, meta.obs_shape, meta.frame_key, meta.frame_crop) == (
        NOISE_ID,
        "frames",
        [64, 64, 3],
        None,
        None,
    )
    assert meta.action_space == {"type": "Discrete", "n": 3, "start": 0}
    assert meta.policy["minari_jpeg_encoding"] is jpeg and meta.policy["minari_data_format"] == data_format

    expected = minari_episodes("dreamgym/noise-test-v0")
    paths = shard_paths(out)
    assert len(paths) == 2
    for i, (path, ep) in enumerate(zip(paths, expected, strict=True)):
        got = read_episode(path)
        assert got.obs.shape == (NOISE_STEPS + 1, 64, 64, 3) and got.obs.dtype == np.uint8
        np.testing.assert_array_equal(got.obs, preprocess_frames(ep.observations, None, 64).numpy())
        assert got.actions.dtype == np.int64
        np.testing.assert_array_equal(got.actions, ep.actions)
        np.testing.assert_array_equal(got.rewards, ep.actions.astype(np.float32))
        # what Minari stored: JPEG-decoded frames (lossy) or the env's exact frames
        raw = _raw_frames(seed=i)
        assert np.array_equal(ep.observations, raw) is not jpeg
        if not jpeg:
            np.testing.assert_array_equal(got.obs, preprocess_frames(raw, None, 64).numpy())


def test_dict_frames_and_env_kwargs(tmp_path: Path) -> None:
    make_dataset(gym.make(NOISE_ID, dict_obs=True), "dreamgym/noise-dict-v0", episodes=1)
    out = import_minari("minari:dreamgym/noise-dict-v0", tmp_path / "out")
    meta = read_meta(out)
    assert meta.source == "minari:dreamgym/noise-dict-v0"
    assert (meta.obs_kind, meta.frame_key, meta.obs_shape) == ("frames", "screen", [64, 64, 3])
    assert meta.env_kwargs == {"dict_obs": True}
    assert set(meta.observation_space["spaces"]) == {"screen", "health"}
    (ep,) = minari_episodes("dreamgym/noise-dict-v0")
    got = read_episode(shard_paths(out)[0])
    np.testing.assert_array_equal(got.obs, preprocess_frames(ep.observations["screen"], None, 64).numpy())


def test_registered_crop(tmp_path: Path) -> None:
    """A registered dream's real env (CarRacing) gets its crop; frames of another size are resized whole."""
    pytest.importorskip("Box2D", reason="CarRacing needs box2d")
    env = gym.make("CarRacing-v3")
    for name, shape in (("car", (96, 96, 3)), ("carsmall", (48, 48, 3))):
        image = spaces.Box(0, 255, shape, np.uint8)
        _buffers_dataset(f"dreamgym/{name}-v0", env, image, env.action_space, jpeg_encoding=False)
    out = import_minari("dreamgym/car-v0", tmp_path / "car")
    assert read_meta(out).frame_crop == [0, 84, 0, 96]
    (ep,) = minari_episodes("dreamgym/car-v0")
    want = preprocess_frames(ep.observations, (0, 84, 0, 96), 64).numpy()
    np.testing.assert_array_equal(read_episode(shard_paths(out)[0]).obs, want)
    with pytest.warns(UserWarning, match="crop"):
        out = import_minari("dreamgym/carsmall-v0", tmp_path / "small")
    assert read_meta(out).frame_crop is None


def test_unknown_dataset_id(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"dreamgym/nope-v0.*minari download dreamgym/nope-v0"):
        import_minari("dreamgym/nope-v0", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_existing_dataset_needs_overwrite(tmp_path: Path) -> None:
    make_dataset(gym.make("Pendulum-v1", max_episode_steps=5), "dreamgym/p3-v0", episodes=3)
    make_dataset(gym.make("Pendulum-v1", max_episode_steps=5), "dreamgym/p2-v0", episodes=2, seed=7)
    out = import_minari("dreamgym/p3-v0", tmp_path / "out")
    with pytest.raises(DatasetError, match="overwrite=True"):
        import_minari("dreamgym/p2-v0", out)
    assert read_meta(out).source == "minari:dreamgym/p3-v0" and len(shard_paths(out)) == 3  # untouched

    import_minari("dreamgym/p2-v0", out, overwrite=True)
    assert read_meta(out).source == "minari:dreamgym/p2-v0"
    assert [p.name for p in shard_paths(out)] == ["ep-000000.npz", "ep-000001.npz"]  # the stale third shard is gone
    np.testing.assert_array_equal(
        read_episode(shard_paths(out)[1]).obs, minari_episodes("dreamgym/p2-v0")[1].observations
    )


def test_out_must_be_empty_or_new(tmp_path: Path) -> None:
    make_dataset(gym.make("Pendulum-v1", max_episode_steps=5), "dreamgym/p-v0", episodes=1)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetError, match="directory"):
        import_minari("dreamgym/p-v0", tmp_path / "file")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="empty or new directory"):
        import_minari("dreamgym/p-v0", tmp_path / "busy", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["notes.txt"]


def test_interrupted_import_leaves_no_meta_and_reruns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_dataset(gym.make("Pendulum-v1", max_episode_steps=5), "dreamgym/p-v0", episodes=3)
    real_write = dminari.write_episode
    calls = []

    def failing_write(path: Path, episode: Any) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        real_write(path, episode)

    monkeypatch.setattr(dminari, "write_episode", failing_write)
    with pytest.raises(OSError, match="disk full"):
        import_minari("dreamgym/p-v0", tmp_path / "out")
    with pytest.raises(DatasetError, match="No dataset.json"):
        read_meta(tmp_path / "out")
    monkeypatch.setattr(dminari, "write_episode", real_write)
    import_minari("dreamgym/p-v0", tmp_path / "out")  # the leftover shard is no reason to refuse
    assert len(load_dataset(tmp_path / "out")[1]) == 3


def _buffers_dataset(
    dataset_id: str, env: gym.Env | None, obs_space: spaces.Space, act_space: spaces.Space, **storage: Any
) -> None:
    """A one-episode (2-step) dataset of samples of the given spaces."""
    buf = EpisodeBuffer(
        id=0,
        observations=[obs_space.sample() for _ in range(3)],
        actions=[act_space.sample() for _ in range(2)],
        rewards=[0.0, 1.0],
        terminations=[False, True],
        truncations=[False, False],
        infos={},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        minari.create_dataset_from_buffers(
            dataset_id,
            [buf],
            env=env,
            observation_space=obs_space,
            action_space=act_space,
            author_email="t@example.com",
            **storage,
        )


def test_dataset_without_env_spec(tmp_path: Path) -> None:
    _buffers_dataset("dreamgym/nospec-v0", None, spaces.Box(-1, 1, (3,), np.float32), spaces.Discrete(2))
    with pytest.raises(DatasetError, match="no env spec"):
        import_minari("dreamgym/nospec-v0", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("obs_space", "act_space", "match"),
    [
        (spaces.Box(-1, 1, (4, 4), np.float32), spaces.Discrete(2), "observation space.*1-D Box"),
        (spaces.Box(0, 255, (40, 40), np.uint8), spaces.Discrete(2), "observation space.*RGB image"),
        (spaces.Box(-1, 1, (3,), np.float32), spaces.MultiDiscrete([2, 3]), "action space.*Box and Discrete"),
    ],
    ids=["2d-float", "grayscale", "multidiscrete"],
)
def test_unsupported_spaces(tmp_path: Path, obs_space: spaces.Space, act_space: spaces.Space, match: str) -> None:
    _buffers_dataset("dreamgym/odd-v0", gym.make("Pendulum-v1"), obs_space, act_space)
    with pytest.raises(DatasetError, match=match):
        import_minari("dreamgym/odd-v0", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_minari_is_a_dependency_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "minari", None)  # makes `import minari` raise ImportError
    with pytest.raises(DependencyNotInstalled, match=r'pip install "dreamgym\[minari\]"'):
        import_minari("dreamgym/pendulum-test-v0", tmp_path / "out")


def test_missing_storage_package_is_a_dependency_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_dataset(gym.make("Pendulum-v1", max_episode_steps=5), "dreamgym/p-v0", episodes=1)
    monkeypatch.setitem(sys.modules, "h5py", None)
    monkeypatch.delitem(sys.modules, "minari.dataset._storages.hdf5_storage", raising=False)
    with pytest.raises(DependencyNotInstalled, match="h5py"):
        import_minari("dreamgym/p-v0", tmp_path / "out")


def test_cli_trains_a_world_model_on_a_minari_dataset(tmp_path: Path) -> None:
    """`dreamgym train minari:<id>` imports the local dataset into the run, then trains on it."""
    from dreamgym import WorldModel
    from dreamgym.cli import main

    make_dataset(gym.make("Pendulum-v1", max_episode_steps=20), "dreamgym/pendulum-cli-v0", episodes=4,
                 collector=False)
    run = tmp_path / "run"
    main(["train", "minari:dreamgym/pendulum-cli-v0", "--out", str(run), "--preset", "tiny",
          "--memory-batch", "2", "--seq-len", "8"])
    assert read_meta(run / "data" / "dreamgym--pendulum-cli-v0").source == "minari:dreamgym/pendulum-cli-v0"
    model = WorldModel.from_pretrained(run)
    assert model.config.env_id == "Pendulum-v1" and model.config.summary["data"]["source"].startswith("minari:")
