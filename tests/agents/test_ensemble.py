"""Agent ensembles: agents trained apart acting as one (the mean of their actions), on disk without pickle."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from gymnasium import spaces

from dreamgym.agents import load_agent, locate_agent
from dreamgym.agents.cmaes import CMAESConfig, CMAESTrainer
from dreamgym.agents.ensemble import AgentEnsemble, read_ensemble, write_ensemble
from dreamgym.agents.sb3_train import SB3Config, train_sb3
from dreamgym.cli import main
from dreamgym.envs.dream_vector import DreamVectorEnv
from dreamgym.errors import CheckpointError, ConfigError
from dreamgym.evaluate import evaluate


class _Fixed:
    def __init__(self, action):
        self.action = np.asarray(action)

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        return np.broadcast_to(self.action, (len(obs), *self.action.shape)).copy(), None


def test_the_ensemble_acts_by_the_mean_inside_the_box_and_by_vote_when_discrete():
    box = spaces.Box(-1.0, 1.0, (2,), np.float32)
    ens = AgentEnsemble([_Fixed([0.2, 1.0]), _Fixed([0.6, 1.0]), _Fixed([1.0, -0.5])], box)
    action, _ = ens.predict(np.zeros((4, 3), np.float32))
    assert action.shape == (4, 2) and action.dtype == np.float32
    np.testing.assert_allclose(action[0], [0.6, 0.5], rtol=1e-6)
    disc = spaces.Discrete(3, start=-1)
    vote, _ = AgentEnsemble([_Fixed(1), _Fixed(-1), _Fixed(1)], disc).predict(np.zeros((2, 3)))
    assert vote.tolist() == [1, 1]
    tie, _ = AgentEnsemble([_Fixed(1), _Fixed(0)], disc).predict(np.zeros((1, 3)))
    assert tie.tolist() == [0]  # ties go to the lowest action
    with pytest.raises(ConfigError, match="at least one"):
        AgentEnsemble([], box)


@pytest.fixture(scope="module")
def agents(tmp_path_factory, model_dirs):
    """Two tiny PPO runs and a CMA-ES run in the same Pendulum dream."""
    root = tmp_path_factory.mktemp("ens")
    wm = str(model_dirs["pendulum"])
    for seed in (0, 1):
        train_sb3(SB3Config("Dream-Pendulum-v0", algo="ppo", steps=16, n_envs=2, model=wm, max_steps=8, seed=seed,
                            algo_kwargs={"n_steps": 8, "batch_size": 16, "n_epochs": 1}), root / f"ppo{seed}",
                  progress=False)
    CMAESTrainer(CMAESConfig("Dream-Pendulum-v0", model=wm, population=4, rollouts=1, generations=1, max_steps=5),
                 root / "cmaes", progress=False).train()
    return root


def test_an_ensemble_folder_loads_like_one_agent_and_acts_by_its_members_mean(agents, model_dirs, tmp_path):
    runs = [agents / "ppo0", agents / "ppo1", agents / "cmaes"]
    out = write_ensemble(runs, tmp_path / "ens")
    meta = read_ensemble(out)
    assert meta["members"] == ["member-0", "member-1", "member-2"] and meta["env_id"] == "Dream-Pendulum-v0"
    assert meta["sources"] == ["ppo0", "ppo1", "cmaes"]  # run names, not this machine's paths
    assert locate_agent(out) == ("ensemble", out)
    (tmp_path / "plain").mkdir()  # the folder's permissions are a plain mkdir's, not a temp folder's 0700
    assert out.stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777
    env = DreamVectorEnv(num_envs=3, model=str(model_dirs["pendulum"]), dream_id="Dream-Pendulum-v0")
    obs, _ = env.reset(seed=0)
    ens = load_agent(out, env.single_observation_space, env.single_action_space)
    each = [load_agent(r, env.single_observation_space, env.single_action_space) for r in runs]
    expected = np.mean([a.predict(obs, deterministic=True)[0] for a in each], axis=0)
    np.testing.assert_allclose(ens.predict(obs)[0], np.clip(expected, -2.0, 2.0), rtol=1e-5)
    result = evaluate(out, episodes=2, workers=1, real=False, out=tmp_path / "eval.json")
    assert np.isfinite(result["dream"]["mean"]) and result["agent"]["kind"] == "ensemble"


def test_the_cli_writes_an_ensemble_and_refuses_agents_of_different_dreams(agents, model_dirs, tmp_path, capsys):
    main(["ensemble", str(agents / "ppo0"), str(agents / "ppo1"), "--out", str(tmp_path / "ens")])
    assert "ensemble of 2 agents" in capsys.readouterr().out
    other = tmp_path / "other"
    shutil.copytree(agents / "ppo1", other)
    meta = json.loads((other / "agent.json").read_text())
    (other / "agent.json").write_text(json.dumps({**meta, "world_model": "elsewhere"}))
    with pytest.raises(SystemExit) as e:
        main(["ensemble", str(agents / "ppo0"), str(other), "--out", str(tmp_path / "bad")])
    assert e.value.code == 2 and "share their world_model" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad.*"))  # nothing half-written
    with pytest.raises(ConfigError, match="ensemble already"):
        write_ensemble([tmp_path / "ens"], tmp_path / "nested")


@pytest.mark.parametrize("members, match", [
    (["../ppo0"], "member-0"),
    (["member-0", "member-0"], "distinct"),
    ([], "list of 1"),
    ("member-0", "list of 1"),
    (["member-7"], "not a folder"),
])
def test_a_hostile_ensemble_json_is_refused_before_anything_loads(agents, tmp_path, members, match):
    out = write_ensemble([agents / "ppo0"], tmp_path / "ens")
    meta = json.loads((out / "ensemble.json").read_text())
    (out / "ensemble.json").write_text(json.dumps({**meta, "members": members}))
    with pytest.raises(CheckpointError, match=match):
        load_agent(out, spaces.Box(-1, 1, (4,)), spaces.Box(-2, 2, (1,)))


def test_an_ensemble_json_from_a_newer_dreamgym_or_missing_fields_is_refused(agents, tmp_path):
    out = write_ensemble([agents / "ppo0"], tmp_path / "ens")
    meta = json.loads((out / "ensemble.json").read_text())
    (out / "ensemble.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format_version 99"):
        read_ensemble(out)
    (out / "ensemble.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "world_model"}))
    with pytest.raises(CheckpointError, match="world_model"):
        read_ensemble(out)
    (out / "ensemble.json").write_text(json.dumps({**meta, "combine": "median"}))
    with pytest.raises(CheckpointError, match="combine"):
        read_ensemble(out)


def test_writing_an_ensemble_again_replaces_the_old_one_whole(agents, tmp_path):
    out = write_ensemble([agents / "ppo0", agents / "ppo1"], tmp_path / "ens")
    write_ensemble([agents / "ppo1"], out)
    assert read_ensemble(out)["sources"] == ["ppo1"] and not (out / "member-1").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ens"]  # no temporary or old folder left


def test_ship_takes_an_ensemble_as_its_agent(agents, model_dirs, tmp_path):
    ens = write_ensemble([agents / "ppo0", agents / "ppo1"], tmp_path / "ens")
    out = tmp_path / "pend"
    main(["ship", str(model_dirs["pendulum"]), "--out", str(out), "--controller", str(ens), "--name", "pend",
          "--video-steps", "3"])
    meta = read_ensemble(out / "agent")
    assert meta["world_model"] == "pend" and len(meta["members"]) == 2
    for m in meta["members"]:
        assert json.loads((out / "agent" / m / "agent.json").read_text())["world_model"] == "pend"
    assert (out / "dream-vs-real.gif").is_file()  # played by the ensemble
    again = evaluate(out / "agent", episodes=1, workers=1, real=False, model=str(out),
                     out=tmp_path / "again.json")
    assert np.isfinite(again["dream"]["mean"])


def test_push_refuses_an_ensemble_and_names_its_members(agents, tmp_path):
    from dreamgym.hub import push_files

    out = write_ensemble([agents / "ppo0"], tmp_path / "ens")
    with pytest.raises(CheckpointError, match="member-0"):
        push_files(out)
