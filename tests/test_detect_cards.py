"""One Hub layer: detect() says what a folder holds, one strict mixin loads both kinds, one card builder."""

import json

import huggingface_hub.constants
import pytest
from gymnasium import spaces

from dreamgym import CheckpointError
from dreamgym.agents import LinearController, load_agent
from dreamgym.cards import GENERATED_LINE, sb3_card
from dreamgym.checkpoint import detect
from dreamgym.evaluate import agent_info
from dreamgym.models.world_model import WorldModel

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _controller(**kwargs) -> LinearController:
    return LinearController.for_spaces(spaces.Box(-1, 1, (11,)), spaces.Box(-2, 2, (1,)), **kwargs)


def test_detect_says_what_a_folder_holds(tmp_path, model_dirs):
    assert detect(model_dirs["pendulum"]) == "world_model"
    lean = tmp_path / "wm"  # a world model whose config.json leaves `vision` at its default (was: "controller")
    lean.mkdir()
    config = json.loads((model_dirs["pendulum"] / "config.json").read_text())
    del config["vision"]
    (lean / "config.json").write_text(json.dumps(config))
    assert detect(lean) == "world_model"
    _controller().save_pretrained(tmp_path / "run" / "controller")
    assert detect(tmp_path / "run" / "controller") == "controller"
    assert detect(tmp_path / "run") == "cmaes_run"
    (tmp_path / "sb3").mkdir()
    (tmp_path / "sb3" / "ppo-x.zip").write_bytes(b"PK")
    assert detect(tmp_path / "sb3") == "sb3" and detect(tmp_path / "sb3" / "ppo-x.zip") == "sb3"
    assert detect(tmp_path / "nothing") is None and detect(tmp_path / "sb3" / "x.bin") is None
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text('{"hidden_size": 8}')
    with pytest.raises(CheckpointError, match="not a dreamgym config.json .*'obs_dim'"):
        detect(tmp_path / "odd")
    (tmp_path / "odd" / "config.json").write_text("[]")
    with pytest.raises(CheckpointError, match="holds a JSON list"):
        detect(tmp_path / "odd")


def test_agents_take_a_cmaes_run_and_refuse_a_world_model(tmp_path, model_dirs):
    _controller(env_id="Dream-Pendulum-v0").save_pretrained(tmp_path / "run" / "controller")
    agent = load_agent(tmp_path / "run", spaces.Box(-1, 1, (11,)), spaces.Box(-2, 2, (1,)))
    assert isinstance(agent, LinearController)
    assert agent_info(tmp_path / "run").path == str(tmp_path / "run" / "controller")
    with pytest.raises(CheckpointError, match="holds a world model, not an agent"):
        load_agent(model_dirs["pendulum"], spaces.Box(-1, 1, (11,)), spaces.Box(-2, 2, (1,)))
    with pytest.raises(CheckpointError, match="holds a world model, not an agent"):
        agent_info(model_dirs["pendulum"])


def test_controller_loads_from_the_hub_cache_like_a_world_model(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    repo = tmp_path / "cache" / "models--someone--ctrl"
    _controller().save_pretrained(repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    loaded = LinearController.from_pretrained("someone/ctrl")
    assert loaded.num_params == 12 and loaded.source == {"repo_id": "someone/ctrl", "revision": "main", "commit": COMMIT}
    with pytest.raises(CheckpointError, match="Controller 'someone/other' .* not in the Hub cache"):
        LinearController.from_pretrained("someone/other")
    assert LinearController.from_pretrained(repo / "snapshots" / COMMIT).source == {
        "path": str((repo / "snapshots" / COMMIT).resolve())}


def test_every_card_starts_with_the_one_generated_line(model_dirs):
    cards = [WorldModel.from_pretrained(model_dirs["pendulum"]).generate_model_card(), _controller().generate_model_card(),
             sb3_card("ppo", {"env_id": "Dream-Pendulum-v0"}, [], [])]
    for card in cards:
        assert str(card).split("---\n\n", 1)[1].startswith(GENERATED_LINE + "\n")
