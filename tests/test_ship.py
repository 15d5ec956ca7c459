"""``dreamgym ship``: a run's world model, controller and scores as one pretrained-style folder (issue 15, item 7)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from dreamgym.agents.cmaes import CMAESConfig, CMAESTrainer
from dreamgym.agents.controller import LinearController
from dreamgym.agents.sb3_train import SB3Config, train_sb3
from dreamgym.cli import main
from dreamgym.evaluate import evaluate
from dreamgym.models.world_model import WorldModel
from dreamgym.ship import pipeline_minutes


@pytest.fixture(scope="module")
def run(tmp_path_factory, model_dirs):
    """A tiny run: a world model with training leftovers, a CMA-ES run and its evaluation."""
    root = tmp_path_factory.mktemp("run")
    wm = root / "world_model"
    shutil.copytree(model_dirs["pendulum"], wm)
    (wm / "stages").mkdir()
    (wm / "recipe.json").write_text("{}")
    CMAESTrainer(CMAESConfig("Dream-Pendulum-v0", model=str(wm), population=4, rollouts=1, generations=1,
                             max_steps=5, eval_every=1, eval_rollouts=2), root / "agent", progress=False).train()
    evaluate(root / "agent", episodes=1, workers=1, dream=False, out=root / "agent" / "eval.json")
    return root


def test_ship_writes_a_pretrained_folder_that_loads(run, tmp_path, capsys):
    out = tmp_path / "pendulum"
    main(["ship", str(run / "world_model"), "--out", str(out), "--controller", str(run / "agent"),
          "--eval", str(run / "agent" / "eval.json"), "--name", "pend", "--video-steps", "4",
          "--summary", '{"pipeline": {"rounds": 1}}'])
    assert "shipped" in capsys.readouterr().out
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "README.md", "controller", "eval.json", "dream-vs-real.gif"} <= names
    assert not names & {"stages", "recipe.json"} and not list(tmp_path.glob("*.tmp"))
    result = json.loads((out / "eval.json").read_text())
    assert result["agent"]["path"] == "controller" and result["agent"]["world_model"] == "."
    assert LinearController.from_pretrained(out / "controller").config.world_model == "pend"
    model = WorldModel.from_pretrained(out)
    assert model.config.summary["pipeline"] == {"rounds": 1}
    card = (out / "README.md").read_text()
    assert "dream-vs-real.gif" in card and "model-index" in card

    # shipping again into the same folder updates it in place: the evals it holds stay on the card, eval.json first
    other = json.loads((out / "eval.json").read_text())
    other["real"]["mean"] = 12345.0
    (out / "eval-a.json").write_text(json.dumps(other))  # sorts before eval.json by name
    main(["ship", str(out), "--out", str(out), "--termination", "sample", "--video-steps", "0", "--action-high", "1.5"])
    shipped = WorldModel.from_pretrained(out).config.dream
    assert shipped.termination == "sample" and shipped.action_high == [1.5]  # the dream's and real twin's default now
    with pytest.raises(SystemExit):  # Pendulum's torque is within ±2
        main(["ship", str(out), "--out", str(out), "--video-steps", "0", "--action-high", "3"])
    assert "inside the real env's bounds" in capsys.readouterr().err
    assert WorldModel.from_pretrained(out).config.dream.action_high == [1.5]
    assert (out / "eval.json").is_file() and (out / "controller" / "README.md").is_file()
    card = (out / "README.md").read_text()
    assert "model-index" in card
    assert card.index(f"{result['real']['mean']:.2f} +/-") < card.index("12345.00 +/-")


def test_ship_takes_an_sb3_agent_as_agent_and_drops_the_old_models_controller(run, tmp_path):
    ppo = tmp_path / "ppo"
    train_sb3(SB3Config("Dream-Pendulum-v0", algo="ppo", steps=16, n_envs=2, model=str(run / "world_model"), max_steps=8,
                        algo_kwargs={"n_steps": 8, "batch_size": 16, "n_epochs": 1}), ppo, progress=False)
    evaluate(ppo, episodes=1, workers=1, real=False, out=ppo / "eval.json")
    out = tmp_path / "pendulum"
    main(["ship", str(run / "world_model"), "--out", str(out), "--controller", str(run / "agent"), "--video-steps", "0"])
    assert (out / "controller").is_dir()
    main(["ship", str(out), "--out", str(out), "--controller", str(ppo), "--eval", str(ppo / "eval.json"),
          "--name", "pend", "--video-steps", "3", "--sample-z"])
    assert WorldModel.from_pretrained(out).config.real_sample_z is True  # what the agent's scores were measured with
    assert not (out / "controller").exists()  # the old agent does not stay beside the new one
    assert {p.name for p in (out / "agent").iterdir()} == {"agent.json", "ppo-Dream-Pendulum-v0.zip"}
    meta = json.loads((out / "agent" / "agent.json").read_text())
    assert meta["world_model"] == meta["config"]["model"] == "pend" and meta["algo"] == "ppo"
    assert json.loads((out / "eval.json").read_text())["agent"]["path"] == "agent"
    assert (out / "dream-vs-real.gif").is_file()  # played by the PPO agent
    again = evaluate(out / "agent", episodes=1, workers=1, real=False, model=str(out),
                     out=tmp_path / "again.json")
    assert np.isfinite(again["dream"]["mean"])

    (ppo / "agent.json").unlink()  # a bare zip does not say which dream it acts in
    with pytest.raises(SystemExit):
        main(["ship", str(out), "--out", str(out), "--controller", str(ppo)])
    assert (out / "agent" / "agent.json").is_file()  # the failed ship left the folder as it was


def test_a_failed_ship_leaves_the_folder_that_was_there(run, tmp_path, capsys):
    out = tmp_path / "shipped"
    out.mkdir()
    (out / "mine.txt").write_text("mine")
    with pytest.raises(SystemExit) as e:
        main(["ship", str(run / "world_model"), "--out", str(out),
              "--eval", f"../x.json={run / 'agent' / 'eval.json'}"])
    assert e.value.code == 2 and "eval*.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["ship", str(run / "world_model"), "--out", str(out), "--controller", str(run / "world_model")])
    assert (out / "mine.txt").read_text() == "mine" and not list(tmp_path.glob("*.tmp"))


def test_pipeline_minutes_counts_each_run_once(run):
    once = pipeline_minutes([run / "world_model"], [run / "agent"])
    assert once == pipeline_minutes([run / "world_model"] * 2, [run / "agent", run / "agent"]) >= 0
