import torch

from dreamgym import rng


def test_streams_do_not_depend_on_the_batch():
    keys = torch.tensor([11, 22, 33], dtype=torch.int64)
    steps = torch.tensor([0, 5, 7], dtype=torch.int64)
    u, eps = rng.uniform_and_normal(keys, steps, 6)
    u1, eps1 = rng.uniform_and_normal(keys[1:2], steps[1:2], 6)
    assert torch.equal(u[1:2], u1) and torch.equal(eps[1:2], eps1)
    assert not torch.equal(u, rng.uniform_and_normal(keys, steps + 1, 6)[0])


def test_step_noise_from_one_hash():
    keys = torch.arange(50_000, dtype=torch.int64) * 7919
    u, eps = rng.uniform_and_normal(keys, torch.zeros_like(keys), 4)
    assert u.shape == eps.shape == (50_000, 4) and 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean().item() - 0.5) < 0.01 and abs(eps.mean().item()) < 0.02 and abs(eps.std().item() - 1) < 0.02
    assert abs(torch.corrcoef(torch.stack([u[:, 0], eps[:, 0]]))[0, 1].item()) < 0.02  # u and eps independent
    assert torch.isfinite(eps).all()
