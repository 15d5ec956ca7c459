"""Hub loading without network: a cache pre-filled in huggingface_hub's layout, HF_HUB_OFFLINE=1."""

import shutil

import gymnasium as gym
import huggingface_hub.constants
import pytest

import dreamgym.errors

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


def test_resolved_commit_is_recorded(hub_cache):
    env = gym.make("Dream-Pendulum-v0", model="someone/dream-pendulum", revision="v1")
    _, info = env.reset(seed=0)
    assert info["model_source"] == {"repo_id": "someone/dream-pendulum", "revision": "v1", "commit": COMMIT}
    assert env.unwrapped.model.source["commit"] == COMMIT


def test_pull_offline_from_the_cache(hub_cache):
    from dreamgym.hub import pull

    result = pull("someone/dream-pendulum", revision="v1")
    assert result["commit"] == COMMIT and result["kind"] == "world_model"
    with pytest.raises(CheckpointError, match="someone/missing"):
        pull("someone/missing")


class FakeApi:
    """Records what push would send; the upload call is the boundary of the test."""

    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, *, folder_path, repo_id, **kwargs):
        from pathlib import Path

        files = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        self.calls.append(("upload_folder", repo_id, files, kwargs))
        return type("CommitInfo", (), {"oid": "f" * 40})()


def test_push_world_model_sends_checkpoint_card_media_and_eval(tmp_path, model_dirs):
    import json

    from huggingface_hub import ModelCard

    from dreamgym.hub import push

    folder = tmp_path / "wm"
    shutil.copytree(model_dirs["carracing"], folder)
    (folder / "dream.gif").write_bytes(b"GIF89a")
    (folder / "notes.txt").write_text("not sent")
    (folder / "eval.json").write_text(json.dumps({"agent": {"path": "agents/c"}, "temperature": 1.15,
                                                  "dream": {"mean": 900.0, "std": 10.0, "episodes": 100},
                                                  "real": {"mean": 850.0, "std": 30.0, "episodes": 100}}))
    api = FakeApi()
    result = push(folder, "someone/dream-carracing", api=api)
    (_, repo, kwargs), (_, repo2, files, upload_kwargs) = api.calls
    assert repo == repo2 == "someone/dream-carracing" and kwargs["exist_ok"]
    assert set(files) == {"config.json", "model.safetensors", "README.md", "dream.gif", "eval.json"}
    card = ModelCard(files["README.md"].decode())
    assert card.data.library_name == "dreamgym"
    assert {"world-model", "gymnasium", "reinforcement-learning", "dreamgym", "CarRacing-v3"} <= set(card.data.tags)
    metrics = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert metrics["mean_reward (c at tau 1.15, real, 100 episodes)"] == "850.00 +/- 30.00"
    assert "dream.gif" in card.text and 'model="someone/dream-carracing"' in card.text
    assert result["commit"] == "f" * 40


def test_push_refuses_a_corrupt_checkpoint_and_keeps_hand_written_cards(tmp_path, model_dirs):
    from dreamgym.hub import push

    folder = tmp_path / "wm"
    shutil.copytree(model_dirs["pendulum"], folder)
    (folder / "README.md").write_text("# My own card\n")
    api = FakeApi()
    push(folder, "someone/p", api=api)
    assert api.calls[1][2]["README.md"] == b"# My own card\n"
    (folder / "model.safetensors").write_bytes(b"broken")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        push(folder, "someone/p", api=FakeApi())
    with pytest.raises(CheckpointError, match="Nothing to push"):
        push(tmp_path / "empty", "someone/p", api=FakeApi())


def test_push_controller_and_sb3_agent(tmp_path, model_dirs):
    import json

    from gymnasium import spaces
    from stable_baselines3 import PPO

    from dreamgym.agents import LinearController
    from dreamgym.hub import push
    from dreamgym.agents.sb3 import DreamVecEnv

    ctrl = LinearController.for_spaces(spaces.Box(-1, 1, (11,)), spaces.Box(-2, 2, (1,)), env_id="Dream-Pendulum-v0")
    ctrl.save_pretrained(tmp_path / "run" / "controller")
    api = FakeApi()
    push(tmp_path / "run", "someone/cmaes-Dream-Pendulum-v0", api=api)
    assert {"config.json", "model.safetensors", "README.md"} <= set(api.calls[1][2])
    venv = DreamVecEnv("Dream-Pendulum-v0", n_envs=2, model=str(model_dirs["pendulum"]))
    agent_dir = tmp_path / "sb3"
    agent_dir.mkdir()
    PPO("MlpPolicy", venv, n_steps=8, batch_size=16).save(agent_dir / "ppo-Dream-Pendulum-v0.zip")
    (agent_dir / "agent.json").write_text(json.dumps({"algo": "ppo", "env_id": "Dream-Pendulum-v0"}))
    api = FakeApi()
    push(agent_dir, "someone/ppo-Dream-Pendulum-v0", api=api)
    files = api.calls[1][2]
    assert set(files) == {"ppo-Dream-Pendulum-v0.zip", "agent.json", "README.md"}
    assert b"library_name: stable-baselines3" in files["README.md"]


def test_push_sends_only_the_kinds_files_and_lists_them(tmp_path, model_dirs, capsys):
    import os

    from dreamgym.hub import push

    folder = tmp_path / "wm"
    shutil.copytree(model_dirs["pendulum"], folder)
    (folder / ".secret.json").write_text('{"token": "hf_xxx"}')
    (folder / ".hidden.gif").write_bytes(b"GIF89a")
    (folder / "big.zip").write_bytes(b"PK")
    (folder / "notes.json").write_text("{}")
    (folder / "stages").mkdir()
    (folder / "eval-tau1.json").write_text('{"agent": {"path": "a", "env_id": "Dream-Pendulum-v0"}}')
    outside = tmp_path / "elsewhere.gif"
    outside.write_bytes(b"private")
    inside_link = folder / "dream.gif"
    os.symlink(folder / "eval-tau1.json", inside_link)  # a link inside the folder is fine
    api = FakeApi()
    result = push(folder, "someone/p", api=api)
    assert set(api.calls[1][2]) == {"config.json", "model.safetensors", "README.md", "eval-tau1.json", "dream.gif"}
    listing = capsys.readouterr().out
    assert "model.safetensors" in listing and "kB" in listing and "not uploaded: .secret.json, hidden" in listing
    assert result["skipped"]["notes.json"] == "not a file of a world model"
    os.symlink(outside, folder / "leak.gif")
    with pytest.raises(CheckpointError, match="outside"):
        push(folder, "someone/p", api=FakeApi())
    assert "uploading" not in capsys.readouterr().out  # refused before anything was listed or sent


def test_push_refuses_big_files_and_readme_links_out(tmp_path, model_dirs):
    import os

    from dreamgym.hub import push

    folder = tmp_path / "wm"
    shutil.copytree(model_dirs["pendulum"], folder)
    limit = max(p.stat().st_size for p in folder.iterdir())
    (folder / "eval.json").write_text("{}" + " " * limit)
    with pytest.raises(CheckpointError, match=r"eval.json is .* bytes, over push's limit"):
        push(folder, "someone/p", api=FakeApi(), max_file_bytes=limit, echo=None)
    (folder / "eval.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="eval.json is not valid JSON"):
        push(folder, "someone/p", api=FakeApi(), echo=None)
    (folder / "eval.json").unlink()
    (folder / "README.md").unlink()
    (tmp_path / "notes.md").write_text("# private notes\n")
    os.symlink(tmp_path / "notes.md", folder / "README.md")
    with pytest.raises(CheckpointError, match="symlink"):
        push(folder, "someone/p", api=FakeApi(), echo=None)


def test_push_cmaes_run_and_sb3_folder_file_sets(tmp_path):
    from gymnasium import spaces

    from dreamgym.agents import LinearController
    from dreamgym.hub import push_files

    ctrl = LinearController.for_spaces(spaces.Box(-1, 1, (11,)), spaces.Box(-2, 2, (1,)), env_id="Dream-Pendulum-v0")
    run = tmp_path / "run"
    ctrl.save_pretrained(run / "controller")
    for name in ("cmaes.json", "cmaes_history.jsonl", "eval.json", "other.json", ".x.json"):
        (run / name).write_text("{}")
    files, skipped = push_files(run)
    assert sorted(p.name for p in files) == ["README.md", "cmaes.json", "config.json", "eval.json", "model.safetensors"]
    assert skipped["cmaes_history.jsonl"].startswith("not a file") and skipped[".x.json"] == "hidden"
    sb3 = tmp_path / "sb3"
    sb3.mkdir()
    for name in ("a.zip", "b.zip"):
        (sb3 / name).write_bytes(b"PK")
    with pytest.raises(CheckpointError, match="2 SB3 zips"):
        push_files(sb3)


def test_push_and_pull_hub_errors_are_clear(tmp_path, model_dirs, monkeypatch, capsys):
    from huggingface_hub.errors import OfflineModeIsEnabled

    from dreamgym.cli import main
    from dreamgym.hub import pull, push

    class DownApi(FakeApi):
        def create_repo(self, repo_id, **kwargs):
            raise ConnectionError("Failed to resolve 'huggingface.co'")

    with pytest.raises(dreamgym.errors.HubError, match="Could not push .*huggingface.co.*Check the network"):
        push(model_dirs["pendulum"], "someone/p", api=DownApi(), echo=None)

    class OfflineApi(FakeApi):
        def create_repo(self, repo_id, **kwargs):
            raise OfflineModeIsEnabled("offline")

    with pytest.raises(dreamgym.errors.HubError, match="HF_HUB_OFFLINE"):
        push(model_dirs["pendulum"], "someone/p", api=OfflineApi(), echo=None)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    for argv in (["push", str(model_dirs["pendulum"]), "someone/p"], ["pull", "not a valid id!!"],
                 ["push", str(model_dirs["pendulum"]), "not a valid id!!"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.startswith(f"dreamgym {argv[0]}: error: ") and "Traceback" not in err
    assert "not a Hub repo id" in err
    with pytest.raises(dreamgym.ConfigError, match="not a Hub repo id"):
        pull("not a valid id!!")
