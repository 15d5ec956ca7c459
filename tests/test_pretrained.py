"""The shipped checkpoints: load offline with no model=, within the size budget, with honest cards."""

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from dreamgym.backends import load_backend

from dreamgym import CheckpointError, WorldModel
from dreamgym.evaluate import agent_info, evaluate_dream
from dreamgym.models.resolve import pretrained_path
from dreamgym.ship import shipped_agent

ROOT = Path(__file__).resolve().parent.parent / "pretrained"


def test_pendulum_ships_and_loads_by_default():
    env = gym.make("Dream-Pendulum-v0")  # no model=: pretrained/pendulum, offline
    obs, info = env.reset(seed=0)
    assert info["model_source"]["pretrained"] == "pendulum"
    assert env.observation_space.contains(obs)
    env.step(env.action_space.sample())
    model = WorldModel.from_pretrained(pretrained_path("pendulum"))
    assert model.config.env_id == "Pendulum-v1" and model.config.summary["fidelity"]["z_nll"] < 0


@pytest.mark.parametrize("folder", sorted(p for p in ROOT.iterdir() if p.is_dir()))
def test_shipped_checkpoints_are_small_and_carry_their_numbers(folder):
    weights = sum(p.stat().st_size for p in folder.rglob("*.safetensors"))
    assert weights <= 15 * 2**20  # the checkpoint budget
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) <= 20 * 2**20  # with card, GIF, evals
    load_backend(folder)  # strict, with the class config.json's backend names
    card = (folder / "README.md").read_text()
    assert "library_name: dreamgym" in card and "model-index" in card
    evals = [json.loads(p.read_text()) for p in folder.glob("eval*.json")]
    for e in evals:  # every number in the card comes from an eval file beside it
        for where in ("dream", "real"):
            if where in e:
                assert f"{e[where]['mean']:.2f} +/- {e[where]['std']:.2f}" in card


SHIPPED = {  # name: (dream id, latent obs size z+h, real env)
    "carracing": ("Dream-CarRacing-v0", 32 + 256, "CarRacing-v3"),
    "doom-takecover": ("Dream-DoomTakeCover-v0", 64 + 512, "VizdoomTakeCover-v1"),
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_a_shipped_dream_loads_by_default_with_its_agent(name):
    dream_id, obs_size, real_id = SHIPPED[name]
    env = gym.make(dream_id)  # no model=: pretrained/<name>, offline
    obs, info = env.reset(seed=0)
    assert info["model_source"]["pretrained"] == name and obs.shape == (obs_size,)
    assert env.unwrapped.model.config.env_id == real_id
    env.step(env.action_space.sample())
    agent = shipped_agent(ROOT / name)  # controller/ (a linear controller) or agent/ (an SB3 agent)
    assert agent is not None
    info = agent_info(agent)
    assert info.env_id == dream_id and info.world_model == name  # resolves to the shipped dream, not a run dir
    returns = evaluate_dream(info, episodes=4, seed=0, max_steps=50)
    assert returns.shape == (4,) and np.isfinite(returns).all()
    card = (ROOT / name / "README.md").read_text()
    assert "dream-vs-real.gif" in card and (ROOT / name / "dream-vs-real.gif").is_file()


def test_a_dream_without_a_shipped_model_says_so(monkeypatch):
    monkeypatch.setattr("dreamgym.models.resolve.PRETRAINED_DIRS", ())
    with pytest.raises(CheckpointError, match="No pretrained world model 'carracing' ships"):
        gym.make("Dream-CarRacing-v0")


@pytest.mark.parametrize("folder", sorted(p for p in ROOT.iterdir() if p.is_dir()))
def test_shipped_results_name_no_path_of_the_machine_that_measured_them(folder):
    for path in [*folder.glob("eval*.json"), *folder.glob("fidelity.json")]:
        result = json.loads(path.read_text())
        agent = result.get("agent", {})
        for value in (agent.get("path", ""), agent.get("world_model", ""), json.dumps(result.get("model_source", {}))):
            assert not str(value).startswith("/") and "/work/" not in str(value) and "/tmp/" not in str(value), path
        if agent.get("path") in ("controller", "agent"):
            assert (folder / agent["path"]).is_dir()  # the agent it names ships beside it


def test_ship_result_writes_paths_relative_to_the_model(tmp_path):
    from dreamgym.evaluate import ship_result

    result = {"agent": {"kind": "controller", "path": "/home/x/runs/r2/cmaes/controller", "world_model": "/home/x/wm"},
              "real": {"mean": 1.0, "std": 0.0, "episodes": 1}}
    out = ship_result(result, tmp_path / "eval.json")
    assert out["agent"] == {"kind": "controller", "path": "cmaes/controller", "world_model": "."}
    assert json.loads((tmp_path / "eval.json").read_text()) == out
    assert ship_result(result, tmp_path / "e2.json", agent="controller")["agent"]["path"] == "controller"
    assert result["agent"]["path"].startswith("/home")  # the caller's dict is not changed


def test_the_shipped_rssm_dream_loads_by_name_with_its_dreamer_controller():
    env = gym.make("Dream-Pendulum-v0", model="pendulum-rssm")  # pretrained/pendulum-rssm, offline
    obs, info = env.reset(seed=0)
    assert type(env.unwrapped.model).__name__ == "RSSMWorldModel" and info["model_source"]["pretrained"] == "pendulum-rssm"
    assert env.observation_space.contains(obs)
    info = agent_info(ROOT / "pendulum-rssm" / "controller")
    assert info.world_model == "pendulum-rssm" and info.env_id == "Dream-Pendulum-v0"
    returns = evaluate_dream(info, episodes=4, seed=0, max_steps=50)
    assert returns.shape == (4,) and np.isfinite(returns).all()
