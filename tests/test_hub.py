"""Hub loading without network: a cache pre-filled in huggingface_hub's layout, HF_HUB_OFFLINE=1."""

import shutil

import gymnasium as gym
import huggingface_hub.constants
import pytest

from dreamgym import CheckpointError, WorldModel

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path, model_dirs, monkeypatch):
    """models--someone--dream-pendulum with refs main and v1 pointing at one snapshot."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    repo = tmp_path / "models--someone--dream-pendulum"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "README.md"):
        shutil.copy(model_dirs["pendulum"] / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "refs" / "v1").write_text(COMMIT)
    return tmp_path


def test_from_pretrained_hub_id_offline(hub_cache):
    model = WorldModel.from_pretrained("someone/dream-pendulum", revision="v1")
    assert model.config.env_id == "Pendulum-v1"
    env = gym.make("Dream-Pendulum-v0", model="someone/dream-pendulum", revision="v1")
    env.reset(seed=0)


def test_uncached_hub_id_offline_names_the_repo(hub_cache):
    with pytest.raises(CheckpointError, match="someone/not-cached"):
        WorldModel.from_pretrained("someone/not-cached")
    with pytest.raises(CheckpointError, match="someone/dream-pendulum"):
        WorldModel.from_pretrained("someone/dream-pendulum", revision="v2")
