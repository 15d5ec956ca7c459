"""Hostile SB3 zips and agent.json files are CheckpointErrors, never tracebacks."""

import zipfile

import pytest
from gymnasium import spaces

from dreamgym.agents.sb3_io import algo_of, load_sb3
from dreamgym.errors import CheckpointError

OBS, ACT = spaces.Box(-1, 1, (3,)), spaces.Box(-1, 1, (1,))


@pytest.mark.parametrize("agent_json,match", [(b"[1]", "holds a JSON list"), (b"\xff", "not UTF-8"),
                                               (b'{"algo": 3}', r"\['algo'\] must be a string")])
def test_a_bad_agent_json_is_a_checkpoint_error(tmp_path, agent_json, match):
    (tmp_path / "agent.json").write_bytes(agent_json)
    with pytest.raises(CheckpointError, match=match):
        algo_of(tmp_path / "ppo-x.zip")


@pytest.mark.parametrize("data,match", [(b"\xff\xfe", "not a readable SB3 zip"), (b"[1, 2]", "not a JSON object"),
                                        (b"[" * 100_000 + b"]" * 100_000, "not a readable SB3 zip")])
def test_a_bad_data_entry_is_a_checkpoint_error(tmp_path, data, match):
    with zipfile.ZipFile(tmp_path / "ppo-x.zip", "w") as z:
        z.writestr("data", data)
    with pytest.raises(CheckpointError, match=match):
        load_sb3(tmp_path / "ppo-x.zip", OBS, ACT)
