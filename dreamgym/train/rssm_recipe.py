"""Train an ``rssm`` world model from dreamgym datasets with the generic trainer.

The same datasets as the MDN-RNN (``dreamgym collect``), the same :class:`~dreamgym.train.trainer.Trainer`
(progress, validation split, JSON log and TensorBoard, checkpoints and exact resume, torchrun DDP),
one stage: the RSSM and its heads learn together on windows of ``seq_len`` steps.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from dreamgym.data.episodes import Episode, load_dataset
from dreamgym.data.sequences import PaddedWindows
from dreamgym.errors import ConfigError
from dreamgym.models.rssm import RSSMConfig
from dreamgym.models.rssm_world_model import RSSMWorldModel, RSSMWorldModelConfig
from dreamgym.registry import dream_spec_for_env
from dreamgym.train.trainer import TrainConfig, Trainer, distributed
from dreamgym.utils import atomic_write_text


@dataclass
class RSSMRecipe:
    """How to train an RSSM world model.

    :param preset: sizes (``tiny``, ``cpu`` or ``paper``; :class:`~dreamgym.models.rssm.RSSMConfig`).
    :param rssm: overrides of the preset's fields. :param train: optimisation (steps, batch, lr, ...).
    :param seq_len: steps per training window. :param val_fraction: episodes held out for validation.
    :param num_start_states: dream start states stored (real episodes' first posterior states).
    :param default_temperature: the dream's tau when ``gym.make`` gets none.
    :param init_from: an RSSM checkpoint directory of the same env, spaces and sizes to start from (its
        weights loaded strictly; a Dyna round continuing the last one), instead of a random init.
    """

    preset: str = "cpu"
    rssm: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=2000, batch_size=16, lr=6e-4,
                                                                    val_every=250, checkpoint_every=250))
    seq_len: int = 64
    val_fraction: float = 0.1
    num_start_states: int = 256
    default_temperature: float = 1.0
    storage_dtype: str = "float32"
    seed: int = 0
    init_from: str | None = None


class WindowDataset(PaddedWindows):
    """Windows of ``seq_len`` steps of raw observations (uint8 frames or float states) as ``obs`` (L+1, ...),
    with actions, rewards and terminations; short episodes are padded and masked."""

    def __init__(self, episodes: Sequence[Episode], model: RSSMWorldModel, seq_len: int) -> None:
        super().__init__({"obs": ([ep.obs for ep in episodes], 0)}, episodes, model.action_space, seq_len)

def rssm_config(meta: Any, recipe: RSSMRecipe) -> RSSMWorldModelConfig:
    """The world model's config for a dataset: the env's time limit and render rate where it is registered."""
    spec = dream_spec_for_env(meta.env_id)
    frames = meta.obs_kind == "frames"
    return RSSMWorldModelConfig(
        env_id=meta.env_id, action_space=meta.action_space, observation_space=meta.observation_space,
        rssm=RSSMConfig.preset(recipe.preset, **recipe.rssm), obs_kind="frames" if frames else "state",
        obs_dim=0 if frames else int(meta.obs_shape[0]), frame_key=meta.frame_key,
        frame_crop=list(meta.frame_crop) if meta.frame_crop else None,
        max_episode_steps=spec.max_episode_steps if spec else 1000, default_temperature=recipe.default_temperature,
        render_fps=spec.render_fps if spec else 30, num_start_states=recipe.num_start_states,
        storage_dtype=recipe.storage_dtype, env_kwargs=dict(meta.env_kwargs),
    )


# the fields that make the weights' shapes and meaning; loss weights and unimix may change
SAME_TO_CONTINUE = ("env_id", "action_space", "observation_space", "obs_kind", "obs_dim", "frame_key", "frame_crop")
SAME_SIZES = ("deter", "groups", "classes", "hidden", "layers", "depth", "reward_bins")


def init_rssm_from(model: RSSMWorldModel, path: str | Path) -> None:
    """Copy a saved RSSM's weights into ``model`` (read strictly); its env, spaces and sizes must be the same.
    The start states are per dataset: ``model`` keeps its own (they are set again after training)."""
    from dreamgym.backends import backend_of
    from dreamgym.checkpoint import CONFIG_NAME, read_config

    path = Path(path)
    if not (path / CONFIG_NAME).is_file():
        raise ConfigError(f"init_from={str(path)!r} is not a world-model folder (no {CONFIG_NAME}); pass the folder "
                          "of a saved rssm world model, e.g. a Dyna round's world_model/.")
    if (backend := backend_of(read_config(path))) != "rssm":
        raise ConfigError(f"init_from={str(path)!r} is a {backend} world model, not an rssm one; start from an rssm "
                          "checkpoint or from scratch.")
    old = RSSMWorldModel.from_pretrained(path)
    mine, theirs = model.config, old.config
    differ = [k for k in SAME_TO_CONTINUE if getattr(mine, k) != getattr(theirs, k)]
    differ += [f"rssm.{k}" for k in SAME_SIZES if getattr(mine.rssm, k) != getattr(theirs.rssm, k)]
    if differ:
        raise ConfigError(f"init_from={str(path)!r} is an RSSM of other sizes or spaces ({', '.join(differ)} differ) "
                          "than this recipe and data make; start from a matching checkpoint or from scratch.")
    own = model.state_dict()
    state = {k: (own[k] if k.startswith("start_") else v.to(own[k].dtype)) for k, v in old.state_dict().items()}
    model.load_state_dict(state, strict=True)


def _rssm_loss(model: RSSMWorldModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    return model.loss(batch)


def train_rssm(paths: Sequence[str | Path], out: str | Path, recipe: RSSMRecipe | None = None, resume: bool = False,
               device: str = "cpu", progress: bool = True) -> RSSMWorldModel:
    """Train on the datasets ``paths`` into ``out`` (a checkpoint folder; the run's state in ``out/stages``)."""
    recipe = recipe or RSSMRecipe()
    out = Path(out)
    meta, episodes = load_dataset(*paths)
    torch.manual_seed(recipe.seed)
    model = RSSMWorldModel(rssm_config(meta, recipe))
    if recipe.init_from is not None:
        init_rssm_from(model, recipe.init_from)
    order = np.random.default_rng(recipe.seed).permutation(len(episodes))
    n_val = int(round(len(episodes) * recipe.val_fraction)) if len(episodes) > 1 else 0
    val = [episodes[i] for i in order[:n_val]]
    train = [episodes[i] for i in order[n_val:]]
    train_set = WindowDataset(train, model, recipe.seq_len)
    val_set = WindowDataset(val, model, recipe.seq_len) if val else None
    trainer = Trainer(model, _rssm_loss, train_set, val_set, recipe.train, out / "stages" / "rssm", name="rssm",
                      device=device, progress=progress)
    if resume:
        trainer.load()
    metrics = trainer.fit()
    rank, _ = distributed()
    model = model.cpu().eval()
    model.set_start_states(torch.from_numpy(np.stack([ep.obs[0] for ep in episodes])))
    model.config.summary = {"backend": "rssm", "preset": recipe.preset, "episodes": len(episodes),
                            "steps": int(sum(len(ep) for ep in episodes)), "train_steps": recipe.train.steps,
                            **({"init_from": str(recipe.init_from)} if recipe.init_from else {}),
                            **{f"final_{k}": round(float(v), 4) for k, v in metrics.items()}}
    if rank == 0:
        model.save_pretrained(out)
        atomic_write_text(out / "recipe.json", json.dumps(asdict(recipe), indent=2))
    return model
