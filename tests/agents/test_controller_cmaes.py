import json

import numpy as np
import pytest
import torch
from gymnasium import spaces

from dreamgym.agents import LinearController, load_agent
from dreamgym.agents.cmaes import CMAESConfig, CMAESTrainer
from dreamgym.errors import CheckpointError, ConfigError

from ..conftest import make_tiny_model


def test_paper_controller_size_and_squash():
    box = spaces.Box(np.array([-1, 0, 0], np.float32), np.ones(3, np.float32))
    c = LinearController.for_spaces(spaces.Box(-np.inf, np.inf, (32 + 256,)), box)
    assert c.num_params == 867
    c.set_flat(np.random.default_rng(0).normal(size=867) * 10)
    actions, _ = c.predict(np.random.default_rng(1).normal(size=(50, 288)).astype(np.float32))
    assert actions.shape == (50, 3) and all(box.contains(a) for a in actions)
    d = LinearController.for_spaces(spaces.Box(-1, 1, (5,)), spaces.Discrete(3))
    assert d.num_params == 18 and d.predict(np.zeros(5, np.float32))[0] in (0, 1, 2)


def test_controller_save_load_round_trip(tmp_path):
    c = LinearController.for_spaces(spaces.Box(-1, 1, (12,)), spaces.Box(-2, 2, (1,)), env_id="Dream-Pendulum-v0")
    c.set_flat(np.arange(c.num_params, dtype=np.float64) / 100)
    c.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "model.safetensors", "README.md"}
    loaded = LinearController.from_pretrained(tmp_path)
    np.testing.assert_array_equal(loaded.get_flat(), c.get_flat())
    obs = np.ones(12, np.float32)
    np.testing.assert_array_equal(loaded.predict(obs)[0], c.predict(obs)[0])
    assert "library_name: dreamgym" in (tmp_path / "README.md").read_text()


def test_batched_population_equals_one_by_one():
    c = LinearController.for_spaces(spaces.Box(-1, 1, (7,)), spaces.Box(-2, 2, (2,)))
    params = torch.randn(5, c.num_params)
    obs = torch.randn(5, 3, 7)
    batched = c.act_batched(params, obs)
    for p in range(5):
        c.set_flat(params[p].numpy())
        assert torch.allclose(batched[p], c(obs[p]), atol=1e-6)


def test_agent_space_mismatch_and_missing_files(tmp_path):
    c = LinearController.for_spaces(spaces.Box(-1, 1, (12,)), spaces.Box(-2, 2, (1,)))
    c.save_pretrained(tmp_path / "c")
    with pytest.raises(ConfigError, match="observations of size 12 .* this env has observation space"):
        load_agent(tmp_path / "c", spaces.Box(-1, 1, (10,)), spaces.Box(-2, 2, (1,)))
    with pytest.raises(CheckpointError, match="No agent at"):
        load_agent(tmp_path / "nothing.bin", spaces.Box(-1, 1, (10,)), spaces.Box(-2, 2, (1,)))
    (tmp_path / "c" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_agent(tmp_path / "c", spaces.Box(-1, 1, (12,)), spaces.Box(-2, 2, (1,)))




def test_cmaes_improves_fitness_in_a_tiny_dream(tmp_path):
    model = make_tiny_model("pendulum")
    cfg = CMAESConfig("Dream-Pendulum-v0", population=8, rollouts=2, generations=12, max_steps=20, eval_every=6,
                      eval_rollouts=16, sigma0=1.0, seed=0)
    trainer = CMAESTrainer(cfg, tmp_path / "run", model=model, progress=False)
    controller = trainer.train()
    means = [row["mean"] for row in trainer.history]
    assert np.mean(means[-3:]) > np.mean(means[:3])
    assert (tmp_path / "run" / "controller" / "config.json").is_file()
    assert trainer.history[5]["eval_mean"] is not None and trainer.history[0]["dream_steps_per_s"] > 0
    assert controller.num_params == (3 + 8 + 1) * 1


def test_cmaes_resume_replays_exactly(tmp_path):
    model = make_tiny_model("pendulum")
    cfg = CMAESConfig("Dream-Pendulum-v0", population=6, rollouts=2, generations=6, max_steps=10, eval_every=3,
                      eval_rollouts=8, seed=1)
    full = CMAESTrainer(cfg, tmp_path / "full", model=model, progress=False)
    full.train()
    half = CMAESTrainer(CMAESConfig(**{**cfg.__dict__, "generations": 3}), tmp_path / "cut", model=model, progress=False)
    half.train()
    resumed = CMAESTrainer(cfg, tmp_path / "cut", model=model, progress=False)
    assert resumed.load() and resumed.generation == 3
    resumed.train()
    a = [r["fitness"] for r in full.history]
    b = [json.loads(line)["fitness"] for line in (tmp_path / "cut" / "cmaes_history.jsonl").read_text().splitlines()]
    assert a == b


def test_cmaes_config_errors():
    with pytest.raises(ConfigError, match="Dream id"):
        CMAESConfig("Pendulum-v1").validate()
    with pytest.raises(ConfigError, match="population must be >= 4"):
        CMAESConfig("Dream-Pendulum-v0", population=2).validate()
    with pytest.raises(ValueError, match="temperature"):
        CMAESConfig("Dream-Pendulum-v0", temperature=-1).validate()


def test_cmaes_init_starts_the_search_from_a_controller(tmp_path):
    model = make_tiny_model("pendulum")
    cfg = CMAESConfig("Dream-Pendulum-v0", population=8, rollouts=2, generations=6, max_steps=20, eval_every=3,
                      eval_rollouts=8, sigma0=1.0, seed=0)
    first = CMAESTrainer(cfg, tmp_path / "a", model=model, progress=False)
    first.train()
    start = LinearController.from_pretrained(tmp_path / "a" / "controller").get_flat()
    cont = CMAESTrainer(CMAESConfig(**{**cfg.__dict__, "init": str(tmp_path / "a" / "controller"), "sigma0": 1e-6}),
                        tmp_path / "b", model=model, progress=False)
    assert np.allclose(cont.es.mean, start)
    assert np.abs(np.asarray(cont.es.ask()) - start).max() < 1e-3  # candidates are drawn around it
    with pytest.raises(ConfigError, match="same dream"):
        CMAESTrainer(CMAESConfig("Dream-CarRacing-v0", init=str(tmp_path / "a" / "controller")), tmp_path / "c",
                     model=make_tiny_model("carracing"), progress=False)


@pytest.mark.parametrize("field, value", [("seed", 2), ("sigma0", 0.5), ("temperature", 1.3), ("max_steps", 11),
                                          ("population", 8), ("rollouts", 3), ("model", "other/model")])
def test_cmaes_resume_refuses_changed_settings(tmp_path, field, value):
    model = make_tiny_model("pendulum")
    cfg = CMAESConfig("Dream-Pendulum-v0", population=6, rollouts=2, generations=1, max_steps=10, eval_every=1,
                      eval_rollouts=2, seed=1)
    CMAESTrainer(cfg, tmp_path, model=model, progress=False).train()
    (tmp_path / "cmaes.json").unlink()  # as if interrupted: the settings recorded at the start count
    changed = CMAESTrainer(CMAESConfig(**{**cfg.__dict__, field: value}), tmp_path, model=model, progress=False)
    with pytest.raises(ConfigError, match=f"{field}: {getattr(cfg, field)!r} recorded, {value!r} now"):
        changed.load()
    longer = CMAESTrainer(CMAESConfig(**{**cfg.__dict__, "generations": 2}), tmp_path, model=model, progress=False)
    assert longer.load() and longer.generation == 1  # more generations: allowed
