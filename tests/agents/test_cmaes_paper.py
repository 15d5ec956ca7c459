"""CMA-ES as the paper ran it: the mean re-scored, seeds shared in pairs, z‖c‖h inputs, the Doom
controller (no bias, tanh thresholded at ±1/3); and world models trained as ensembles / with dropout."""

import json

import numpy as np
import pytest
import torch
from gymnasium import spaces

from dreamgym import WorldModel
from dreamgym.agents import LinearController
from dreamgym.agents.cmaes import CMAESConfig, CMAESTrainer
from dreamgym.data.collect import CollectConfig, collect
from dreamgym.envs.dream_vector import DreamVectorEnv
from dreamgym.errors import ConfigError
from dreamgym.train.recipes import RecipeConfig, train_world_model

from ..conftest import make_tiny_model


def test_threshold_controller_without_bias_is_the_papers_doom_controller(tmp_path):
    c = LinearController.for_spaces(spaces.Box(-1, 1, (1088,)), spaces.Discrete(3), bias=False, discrete="threshold")
    assert c.num_params == 1088  # 64 + 512 + 512 inputs, one output, no bias
    flat = np.zeros(1088)
    flat[0] = 1.0
    c.set_flat(flat)
    obs = np.zeros((3, 1088), np.float32)
    obs[:, 0] = [-2.0, 0.0, 2.0]  # tanh: -0.96, 0, 0.96
    assert c.predict(obs)[0].tolist() == [1, 0, 2]
    c.save_pretrained(tmp_path)
    loaded = LinearController.from_pretrained(tmp_path)
    assert loaded.predict(obs)[0].tolist() == [1, 0, 2] and loaded.num_params == 1088
    params = torch.as_tensor(np.stack([flat, -flat]), dtype=torch.float32)
    acts = c.act_batched(params, torch.as_tensor(obs)[None].expand(2, -1, -1))
    assert acts.tolist() == [[1, 0, 2], [2, 0, 1]]
    with pytest.raises(ConfigError, match="threshold"):
        LinearController.for_spaces(spaces.Box(-1, 1, (4,)), spaces.Box(-1, 1, (2,)), discrete="threshold")


def test_cmaes_scores_the_mean_with_zch_inputs_and_pairs_share_seeds(tmp_path):
    model = make_tiny_model("doom")
    cfg = CMAESConfig("Dream-DoomTakeCover-v0", population=6, rollouts=2, generations=2, max_steps=8, eval_every=1,
                      eval_rollouts=4, seed=0, obs_type="zch", bias=False, discrete="threshold",
                      seed_sharing="pairs", temperature_range=[1.0, 1.3])
    trainer = CMAESTrainer(cfg, tmp_path / "run", model=model, progress=False)
    grid = trainer._generation_seeds()
    assert grid.shape == (6, 2) and (grid[0] == grid[1]).all() and (grid[2] == grid[3]).all()
    assert not (grid[0] == grid[2]).all()
    mean_before = trainer.es.mean.copy()
    evaluated = []
    trainer.evaluate = lambda flat, rollouts, generation: (evaluated.append(np.array(flat)) or (1.0 * len(evaluated), 0.0))
    controller = trainer.train()
    assert controller.num_params == 4 + 8 + 8 and controller.config.obs_type == "zch"
    np.testing.assert_allclose(evaluated[1], trainer.es.mean)  # the mean after generation 2 was scored
    assert not np.allclose(evaluated[0], mean_before)
    np.testing.assert_allclose(controller.get_flat(), evaluated[1], atol=1e-6)  # the best-scored mean is kept
    summary = json.loads((tmp_path / "run" / "controller" / "config.json").read_text())["summary"]
    assert summary["scored"] == "CMA-ES mean" and "uniform" in summary["temperature"]


def test_cmaes_in_an_ensemble_dream_with_pessimism(tmp_path):
    model = make_tiny_model("pendulum")
    cfg = model.config
    cfg.memory.ensemble = 2
    ens = WorldModel(cfg)
    ens.load_state_dict({**ens.state_dict(), **model.state_dict()})
    run = CMAESTrainer(CMAESConfig("Dream-Pendulum-v0", population=4, rollouts=2, generations=1, max_steps=5,
                                   eval_rollouts=4, disagreement_penalty=1.0, halt_threshold=5.0), tmp_path, model=ens,
                       progress=False)
    assert run.env._batch.options.disagreement_penalty == 1.0
    run.train()


def test_train_an_ensemble_with_dropout_and_continue_a_single_model_as_one(tmp_path):
    collect(CollectConfig("Pendulum-v1", out=str(tmp_path / "d"), episodes=6, max_steps=30, workers=1), progress=False)
    model = train_world_model(tmp_path / "d", tmp_path / "ens", RecipeConfig.tiny(ensemble=3, dropout=0.2),
                              progress=False)
    assert model.num_members == 3
    w = [model.member(j)[0].mdn.weight for j in range(3)]
    assert not torch.allclose(w[0], w[1]) and not torch.allclose(w[1], w[2])
    loaded = WorldModel.from_pretrained(tmp_path / "ens")
    assert loaded.num_members == 3 and loaded.config.memory.dropout == 0.2
    env = DreamVectorEnv(num_envs=4, model=str(tmp_path / "ens"))
    env.reset(seed=0)
    *_, info = env.step(np.zeros((4, 1), np.float32))
    assert np.isfinite(info["disagreement"]).all() and (info["disagreement"] > 0).any()
    single = train_world_model(tmp_path / "d", tmp_path / "one", RecipeConfig.tiny(), progress=False)
    grown = train_world_model(tmp_path / "d", tmp_path / "grown",
                              RecipeConfig.tiny(ensemble=2, init_from=str(tmp_path / "one"), train_vision=False,
                                                memory=RecipeConfig.tiny().memory.__class__(steps=1, batch_size=8)),
                              progress=False)
    assert grown.num_members == 2
    assert torch.allclose(grown.member(1)[0].lstm.weight_hh_l0, single.memory.lstm.weight_hh_l0, atol=0.05)


@pytest.mark.parametrize("name, obs_type", [("doom", "zch"), ("carracing", "latent")])
def test_rollouts_that_drop_finished_dreams_score_as_full_batch_stepping(name, obs_type):
    from dreamgym.agents.cmaes import rollout_returns

    model = make_tiny_model(name)
    with torch.no_grad():
        model.heads.termination.bias.fill_(-0.05 if name == "doom" else 0.0)  # p(done) near 0.5: dreams end at many steps
    env = DreamVectorEnv(num_envs=4 * 3, model=model, obs_type=obs_type, max_episode_steps=25)
    obs_dim = env.single_observation_space.shape[0]
    controller = LinearController.for_spaces(env.single_observation_space, env.single_action_space)
    params = torch.randn(4, controller.num_params)
    seeds = [11, 12, 13]
    fast = rollout_returns(env, controller, params, 3, seeds, 25)
    # reference: every dream stepped to the end by the vector env, later rewards ignored
    obs, _ = env.reset(seed=[s for _ in range(4) for s in seeds])
    total, alive = np.zeros(12), np.ones(12, dtype=bool)
    for _ in range(25):
        actions = controller.act_batched(params, torch.as_tensor(obs).view(4, 3, obs_dim)).reshape(12, -1)
        obs, reward, terminated, truncated, _ = env.step(actions.numpy().reshape(env.action_space.shape))
        total += reward * alive
        alive &= ~(terminated | truncated)
    np.testing.assert_allclose(fast, total.reshape(4, 3), rtol=1e-5, atol=1e-4)
    lengths_differ = len({round(x, 6) for x in total}) > 3
    assert lengths_differ
    rows = controller.act_rows(params.repeat_interleave(3, 0), torch.as_tensor(obs))
    np.testing.assert_array_equal(rows.numpy(), controller.act_batched(params, torch.as_tensor(obs).view(4, 3, -1))
                                  .reshape(rows.shape).numpy())
