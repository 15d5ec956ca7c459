"""Dreamer's imagination actor-critic on tiny dreams: returns, training, saving, resuming."""

import numpy as np
import pytest
import torch

from dreamgym.agents import load_agent
from dreamgym.agents.dreamer import DreamerConfig, DreamerTrainer, lambda_returns
from dreamgym.errors import ConfigError


def test_lambda_returns_by_hand():
    r = torch.tensor([[1.0], [2.0], [3.0]])
    no = torch.zeros(3, 1, dtype=torch.bool)
    v = torch.tensor([[10.0], [20.0], [30.0]])  # values of each step's next state
    # lambda 1: the discounted sum, bootstrapped from the last next state
    assert torch.allclose(lambda_returns(r, no, no, v, 0.5, 1.0)[:, 0], torch.tensor([1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 30,
                                                                                      2 + 0.5 * 3 + 0.25 * 30, 3 + 15.0]))
    # lambda 0: one-step TD targets
    assert torch.allclose(lambda_returns(r, no, no, v, 0.5, 0.0)[:, 0], torch.tensor([6.0, 12.0, 18.0]))
    # a termination at step 1 cuts the bootstrap and the chain; a truncation cuts the chain only
    term = torch.tensor([[False], [True], [False]])
    out = lambda_returns(r, term, term, v, 0.5, 1.0)[:, 0]
    assert torch.allclose(out[1], torch.tensor(2.0)) and torch.allclose(out[0], torch.tensor(1 + 0.5 * 2.0))
    trunc = term.clone()
    out = lambda_returns(r, no, trunc, v, 0.5, 1.0)[:, 0]
    assert torch.allclose(out[1], torch.tensor(2 + 0.5 * 20.0))


def _cfg(model_dirs, name="pendulum", **over):
    ids = {"pendulum": "Dream-Pendulum-v0", "doom": "Dream-DoomTakeCover-v0"}
    base = dict(model=str(model_dirs[name]), num_envs=8, horizon=3, updates=4, chunk=2, checkpoint_every=2,
                hidden=8, layers=1)
    return DreamerConfig(ids[name], **{**base, **over})


def test_trains_saves_and_loads_as_an_agent(model_dirs, tmp_path):
    trainer = DreamerTrainer(_cfg(model_dirs), tmp_path / "run")
    before = [p.clone() for p in trainer.actor.parameters()]
    history = trainer.train(progress=False)
    assert len(history) == 4 and all(np.isfinite(h["critic_loss"]) for h in history)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.actor.parameters()))
    env = trainer.env
    agent = load_agent(tmp_path / "run", env.single_observation_space, env.single_action_space)
    obs = env.observation_space.sample()[:2]
    action, _ = agent.predict(obs)
    assert action.shape == (2, 1) and env.single_action_space.contains(action[0])
    assert agent.config.hidden == [8] and agent.config.summary["algo"] == "dreamer"


def test_discrete_actions(model_dirs, tmp_path):
    trainer = DreamerTrainer(_cfg(model_dirs, "doom", updates=2, checkpoint_every=2), tmp_path / "run")
    trainer.train(progress=False)
    action, _ = load_agent(tmp_path / "run", trainer.env.single_observation_space,
                           trainer.env.single_action_space).predict(trainer.env.observation_space.sample()[:3])
    assert action.shape == (3,) and set(action.tolist()) <= {0, 1, 2}


def test_resumed_run_matches_an_uninterrupted_one(model_dirs, tmp_path):
    whole = DreamerTrainer(_cfg(model_dirs), tmp_path / "a")
    whole.train(progress=False)
    half = DreamerTrainer(_cfg(model_dirs, updates=2), tmp_path / "b")
    half.train(progress=False)
    resumed = DreamerTrainer(_cfg(model_dirs), tmp_path / "b")
    assert resumed.load() and resumed.update == 2
    resumed.train(progress=False)
    for p, q in zip(whole.actor.parameters(), resumed.actor.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(ConfigError, match="horizon"):
        DreamerTrainer(_cfg(model_dirs, horizon=4), tmp_path / "b").load()


def test_bad_settings(model_dirs, tmp_path):
    with pytest.raises(ConfigError, match="multiple of chunk"):
        DreamerTrainer(_cfg(model_dirs, checkpoint_every=3), tmp_path)
    with pytest.raises(ConfigError, match="Dream id"):
        DreamerTrainer(DreamerConfig("Pendulum-v1"), tmp_path)
    with pytest.raises(ConfigError, match="lam"):
        DreamerTrainer(_cfg(model_dirs, lam=1.5), tmp_path)


def test_cli(model_dirs, tmp_path, capsys):
    from dreamgym.cli import main

    args = ["train-agent", "Dream-Pendulum-v0", "--algo", "dreamer", "--model", str(model_dirs["pendulum"]),
            "--out", str(tmp_path / "run"), "--updates", "2", "--horizon", "2", "--num-envs", "4"]
    main(args)
    assert "saved" in capsys.readouterr().out and (tmp_path / "run" / "controller" / "config.json").is_file()
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(args)
    assert "already holds a Dreamer run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(args[:-6] + ["--algo-kwargs", '{"x": 1}'])
    assert "not dreamer" in capsys.readouterr().err


def test_init_starts_the_actor_from_a_saved_controller(model_dirs, tmp_path):
    first = DreamerTrainer(_cfg(model_dirs, updates=2), tmp_path / "a")
    first.train(progress=False)
    second = DreamerTrainer(_cfg(model_dirs, init=str(tmp_path / "a")), tmp_path / "b")
    for p, q in zip(first.actor.policy.parameters(), second.actor.policy.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(ConfigError, match="same sizes"):
        DreamerTrainer(_cfg(model_dirs, hidden=4, init=str(tmp_path / "a")), tmp_path / "c")
