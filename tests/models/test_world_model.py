import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from dreamgym.errors import CheckpointError
from dreamgym.models.world_model import FORMAT_VERSION, WorldModel, WorldModelConfig
from dreamgym.testing import tiny_world_model_config, world_model_config

from ..conftest import make_tiny_model


def _outputs(model: WorldModel):
    torch.manual_seed(1)
    b = 3
    z, h, c = model.initial_state(torch.tensor([0, 1, 2]))
    a = torch.rand(b, model.action_dim)
    u, eps = torch.rand(b, model.z_dim), torch.randn(b, model.z_dim)
    return model.imagine_step(z, h, c, a, torch.ones(b), u, eps)


@pytest.mark.parametrize("name", ["carracing", "pendulum", "doom"])
def test_save_load_gives_identical_outputs(tmp_path, name):
    model = make_tiny_model(name)
    model.save_pretrained(tmp_path)
    loaded = WorldModel.from_pretrained(tmp_path)
    for a, b in zip(_outputs(model), _outputs(loaded)):
        assert torch.equal(a, b)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["format_version"] == FORMAT_VERSION and config["env_id"] == model.config.env_id
    assert list(config) == sorted(config)  # sorted keys
    card = (tmp_path / "README.md").read_text()
    assert "library_name: dreamgym" in card and model.config.env_id in card


def test_fp16_storage_halves_the_file_and_loads_as_fp32(tmp_path):
    model = make_tiny_model("carracing", storage_dtype="float16")
    model.save_pretrained(tmp_path / "half")
    make_tiny_model("carracing").save_pretrained(tmp_path / "full")
    half, full = (tmp_path / "half/model.safetensors").stat().st_size, (tmp_path / "full/model.safetensors").stat().st_size
    assert half < 0.6 * full
    loaded = WorldModel.from_pretrained(tmp_path / "half")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    for a, b in zip(_outputs(model), _outputs(loaded)):
        assert torch.allclose(a, b, atol=5e-2)


def test_paper_sizes():
    cr = WorldModel(world_model_config("CarRacing-v3"))
    assert cr.z_dim == 32 and cr.hidden_size == 256 and cr.config.memory.n_mixtures == 5
    doom = world_model_config("VizdoomTakeCover-v1")
    assert doom.vision.z_dim == 64 and doom.memory.hidden_size == 512
    assert doom.heads.reward is False and doom.heads.constant_reward == 1.0 and doom.max_episode_steps == 2100


def _edit_weights(path, fn):
    state = load_file(str(path / "model.safetensors"))
    fn(state)
    save_file(state, str(path / "model.safetensors"))


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda s: s.pop("memory.mdn.bias"), r"missing tensors \['memory.mdn.bias'\]"),
        (lambda s: s.__setitem__("extra.weight", torch.zeros(2)), r"unexpected tensors \['extra.weight'\]"),
        (lambda s: s.__setitem__("memory.mdn.bias", torch.zeros(5)), "'memory.mdn.bias' .* shape \\(5,\\)"),
        (lambda s: s["heads.reward.weight"].fill_(float("nan")), "'heads.reward.weight' .* NaN or inf"),
    ],
)
def test_strict_loading_names_the_tensor(tmp_path, edit, match):
    make_tiny_model("carracing").save_pretrained(tmp_path)
    _edit_weights(tmp_path, edit)
    with pytest.raises(CheckpointError, match=match):
        WorldModel.from_pretrained(tmp_path)


def _edit_config(path, fn):
    config = json.loads((path / "config.json").read_text())
    fn(config)
    (path / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda c: c.__setitem__("surprise", 1), r"Unknown field\(s\) \['surprise'\]"),
        (lambda c: c["memory"].__setitem__("layers", 2), r"Unknown field\(s\) \['layers'\] in .*config.json\['memory'\]"),
        (lambda c: c.__setitem__("format_version", FORMAT_VERSION + 1), "Upgrade dreamgym"),
        (lambda c: c.pop("format_version"), "format_version"),
        (lambda c: c["memory"].__setitem__("hidden_size", 16), "shape"),
    ],
)
def test_strict_config(tmp_path, edit, match):
    make_tiny_model("carracing").save_pretrained(tmp_path)
    _edit_config(tmp_path, edit)
    with pytest.raises(CheckpointError, match=match):
        WorldModel.from_pretrained(tmp_path)


def test_missing_and_corrupt_files(tmp_path):
    make_tiny_model("pendulum").save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        WorldModel.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        WorldModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        WorldModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json is missing"):
        WorldModel.from_pretrained(tmp_path)


def test_failed_save_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    make_tiny_model("pendulum", seed=0).save_pretrained(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("dreamgym.checkpoint.save_file", disk_full)
    with pytest.raises(OSError, match="No space"):
        make_tiny_model("pendulum", seed=1).save_pretrained(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing lost, no temp files


def test_config_dataclass_round_trip():
    config = tiny_world_model_config("CarRacing-v3")
    assert WorldModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_encode_real_frames_crops_and_resizes():
    model = make_tiny_model("carracing")
    frames = np.zeros((2, 96, 96, 3), np.uint8)
    frames[:, 84:] = 255  # the dashboard is cropped away
    prepared = model.prepare(frames)
    assert prepared.shape == (2, 64, 64, 3) and prepared.dtype == torch.uint8 and prepared.max() == 0
    assert model.encode(frames).shape == (2, 4)


def test_memory_loss_with_detached_heads_keeps_the_heads_gradient_out_of_m():
    torch.manual_seed(0)
    model = WorldModel(tiny_world_model_config("VizdoomTakeCover-v1"))
    b, t, zd = 3, 6, model.config.vision.z_dim
    batch = {"z": torch.randn(b, t + 1, zd), "action": torch.nn.functional.one_hot(torch.randint(3, (b, t)), 3).float(),
             "reward": torch.ones(b, t), "terminated": (torch.rand(b, t) < 0.3).float(), "mask": torch.ones(b, t)}

    def grads(detach: bool) -> tuple[float, dict[str, torch.Tensor]]:
        model.zero_grad()
        loss, _ = model.memory_loss(batch, detach_heads=detach)
        loss.backward()
        return loss.item(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    (joint, g_joint), (detached, g_det) = grads(False), grads(True)
    assert joint == pytest.approx(detached)  # the same loss, only its gradient's path differs
    head = "heads.termination.weight"
    torch.testing.assert_close(g_joint[head], g_det[head])
    lstm = "memory.lstm.weight_hh_l0"
    assert not torch.allclose(g_joint[lstm], g_det[lstm])
    # detached, the deaths' labels do not reach M: other labels, the same gradient for the LSTM
    model.zero_grad()
    loss, _ = model.memory_loss({**batch, "terminated": 1 - batch["terminated"]}, detach_heads=True)
    other = torch.autograd.grad(loss, model.memory.lstm.weight_hh_l0)[0]
    torch.testing.assert_close(other, g_det[lstm])
