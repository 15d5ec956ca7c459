import torch

from dreamgym import rng


def test_streams_do_not_depend_on_the_batch():
    keys = torch.tensor([11, 22, 33], dtype=torch.int64)
    steps = torch.tensor([0, 5, 7], dtype=torch.int64)
    full = rng.normal(keys, steps, 1, 6)
    assert torch.equal(full[1:2], rng.normal(keys[1:2], steps[1:2], 1, 6))
    assert not torch.equal(rng.uniform(keys, steps, 0, 6), rng.uniform(keys, steps + 1, 0, 6))


def test_distributions():
    keys = torch.arange(50_000, dtype=torch.int64) * 7919
    steps = torch.zeros_like(keys)
    u = rng.uniform(keys, steps, 0, 4)
    assert 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean().item() - 0.5) < 0.01 and abs(u.var().item() - 1 / 12) < 0.005
    n = rng.normal(keys, steps, 1, 4)
    assert torch.isfinite(n).all()
    assert abs(n.mean().item()) < 0.02 and abs(n.std().item() - 1.0) < 0.02
    # streams are uncorrelated
    assert abs(torch.corrcoef(torch.stack([n[:, 0], n[:, 1]]))[0, 1].item()) < 0.02


def test_step_noise_from_one_hash():
    keys = torch.arange(50_000, dtype=torch.int64) * 7919
    u, eps = rng.uniform_and_normal(keys, torch.zeros_like(keys), 4)
    assert u.shape == eps.shape == (50_000, 4) and 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean().item() - 0.5) < 0.01 and abs(eps.mean().item()) < 0.02 and abs(eps.std().item() - 1) < 0.02
    assert abs(torch.corrcoef(torch.stack([u[:, 0], eps[:, 0]]))[0, 1].item()) < 0.02  # u and eps independent
    assert torch.isfinite(eps).all()
