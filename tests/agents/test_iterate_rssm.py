"""``dreamgym iterate --backend rssm --algo dreamer``: Dreamer's outer loop, and continuing an RSSM."""

from __future__ import annotations

import json

import pytest
import torch

from dreamgym.errors import ConfigError
from dreamgym.models.rssm import RSSMConfig
from dreamgym.models.rssm_world_model import RSSMWorldModel, RSSMWorldModelConfig
from dreamgym.train.rssm_recipe import init_rssm_from

PENDULUM_ACTIONS = {"type": "Box", "low": -2.0, "high": 2.0, "shape": [1], "dtype": "float32"}
PENDULUM_STATES = {"type": "Box", "low": [-1.0, -1.0, -8.0], "high": [1.0, 1.0, 8.0], "shape": [3], "dtype": "float32"}


def _rssm(seed: int, starts: int = 4, **sizes) -> RSSMWorldModel:
    torch.manual_seed(seed)
    return RSSMWorldModel(RSSMWorldModelConfig(
        env_id="Pendulum-v1", action_space=PENDULUM_ACTIONS, observation_space=PENDULUM_STATES,
        rssm=RSSMConfig.preset("tiny", **sizes), obs_dim=3, max_episode_steps=200, num_start_states=starts))


def test_init_from_copies_every_weight_but_the_start_states(tmp_path):
    old = _rssm(0)
    with torch.no_grad():
        old.start_deter.fill_(0.5)
    old.save_pretrained(tmp_path / "old")
    new = _rssm(1, starts=6, unimix=0.05)  # other start states and loss weights: may differ
    init_rssm_from(new, tmp_path / "old")
    for (name, a), b in zip(old.state_dict().items(), new.state_dict().values()):
        if name.startswith("start_"):
            assert a.shape != b.shape or not torch.equal(a, b), name
        else:
            assert torch.equal(a, b), name


def test_init_from_refuses_other_sizes_backends_and_non_folders(tmp_path, model_dirs):
    _rssm(0).save_pretrained(tmp_path / "old")
    with pytest.raises(ConfigError, match=r"rssm.deter differ"):
        init_rssm_from(_rssm(1, deter=8), tmp_path / "old")
    with pytest.raises(ConfigError, match="is a mdnrnn world model, not an rssm one"):
        init_rssm_from(_rssm(1), model_dirs["pendulum"])
    with pytest.raises(ConfigError, match="not a world-model folder"):
        init_rssm_from(_rssm(1), tmp_path / "nowhere")
