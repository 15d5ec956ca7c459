"""The CLI's flags take their defaults and choices from the config dataclasses (issue 15, item 7)."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest

from dreamgym.agents.cmaes import CMAESConfig
from dreamgym.iterate import IterateConfig, check_settings
from dreamgym.agents.sb3_train import SB3Config
from dreamgym.argtypes import config_from_args, field_argument, field_default
from dreamgym.cli import build_parser, main
from dreamgym.data.collect import CollectConfig


def _sub(name: str) -> argparse.ArgumentParser:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


@pytest.mark.parametrize("command, config", [("collect", CollectConfig), ("train-agent", CMAESConfig),
                                             ("train-agent", SB3Config), ("iterate", IterateConfig)])
def test_flag_defaults_are_the_config_defaults(command, config):
    actions = {a.dest: a for a in _sub(command)._actions}
    checked = 0
    for f in dataclasses.fields(config):
        a = actions.get(f.name)
        if a is None or a.default is None or (command, f.name) in {("train-agent", "algo"), ("iterate", "seed"),
                                                                   ("iterate", "generations")}:
            continue  # train-agent's algo is cmaes; iterate's seed also leaves the preset's; generations: CMA-ES's
        assert a.default == field_default(config, f.name), (command, f.name)
        if "choices" in f.metadata and (command, f.name) != ("train-agent", "obs_type"):
            assert list(a.choices) == list(f.metadata["choices"]), (command, f.name)
        checked += 1
    assert checked >= 4


def test_field_argument_and_config_from_args():
    p = argparse.ArgumentParser()
    field_argument(p, CMAESConfig, "dtype", help="x")
    field_argument(p, CMAESConfig, "population", type=int, help="x")
    args = p.parse_args(["--dtype", "bfloat16"])
    cfg = config_from_args(CMAESConfig, args, seed=3)
    assert (cfg.dtype, cfg.population, cfg.seed, cfg.generations) == ("bfloat16", 64, 3, 300)
    with pytest.raises(SystemExit):
        p.parse_args(["--dtype", "float64"])


def test_iterate_sets_the_cmaes_dtype_and_device(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr("dreamgym.iterate.iterate", lambda cfg, out: seen.setdefault("cfg", cfg) and [])
    main(["iterate", "Pendulum-v1", "--out", str(tmp_path), "--dtype", "bfloat16", "--device", "cpu"])
    cfg = seen["cfg"]
    assert (cfg.cmaes.dtype, cfg.cmaes.device, cfg.device) == ("bfloat16", "cpu", "cpu")


def test_a_run_recorded_before_a_new_setting_existed_continues(tmp_path):
    now = json.loads(json.dumps(dataclasses.asdict(IterateConfig()), default=str))
    del now["device"], now["cmaes"]["dtype"]  # as an older dreamgym recorded it
    (tmp_path / "iterate.json").write_text(json.dumps(now))
    check_settings(IterateConfig(), tmp_path)  # the defaults are what that run was made with
    from dreamgym.errors import ConfigError

    (tmp_path / "iterate.json").write_text(json.dumps(now))
    with pytest.raises(ConfigError, match="cmaes.dtype: 'float32' recorded, 'bfloat16' now"):
        check_settings(IterateConfig(cmaes=CMAESConfig(dtype="bfloat16")), tmp_path)


def test_iterate_schedules_from_the_cli(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr("dreamgym.iterate.iterate", lambda cfg, out: seen.append(cfg) or [])
    main(["iterate", "Pendulum-v1", "--out", str(tmp_path), "--episodes", "120", "60", "--generations", "200", "150",
          "--memory-steps", "5", "--eval-episodes", "7"])
    main(["iterate", "Pendulum-v1", "--out", str(tmp_path), "--vision-steps", "3", "2"])
    a, b = seen
    assert (a.episodes, a.generations, a.cmaes.generations) == ([120, 60], [200, 150], 300)
    assert (a.memory_steps, a.recipe.memory.steps, a.eval_episodes) == (None, 5, 7)  # one value: as before
    assert (b.episodes, b.vision_steps, b.generations) == (100, [3, 2], None)


def test_schedule_values_per_round():
    from dreamgym.iterate import at

    assert [at([120, 60], k) for k in range(4)] == [120, 60, 60, 60] and at(5, 3) == 5
    from dreamgym.errors import ConfigError

    with pytest.raises(ConfigError, match="episodes"):
        IterateConfig(episodes=[]).validate()
