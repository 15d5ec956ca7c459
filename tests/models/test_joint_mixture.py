"""M's joint mixture (``memory.mixture="joint"``): one component for the whole latent."""

import numpy as np
import pytest
import torch

import dreamgym
from dreamgym import ConfigError, DreamEnv
from dreamgym.models.mdnrnn import MDNRNN, MemoryConfig, joint_logits, mixture_nll, sample_mixture

from ..conftest import make_tiny_model


def _mixture(b, z, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, k, z, generator=g).expand(b, k, z)
    mu = torch.randn(1, k, z, generator=g).expand(b, k, z) * 3
    return logits, mu, torch.full((b, k, z), -7.0), g


def test_a_joint_sample_takes_one_component_for_every_dimension():
    logits, mu, log_sigma, g = _mixture(b=4000, z=6, k=3)
    u, eps = torch.rand(4000, 6, generator=g), torch.zeros(4000, 6)
    joint = sample_mixture(joint_logits(logits), mu, log_sigma, torch.ones(4000), u, eps, joint=True)
    per_dim = sample_mixture(logits, mu, log_sigma, torch.ones(4000), u, eps)
    comp = (joint[:, None, :] - mu[:1]).abs().lt(1e-3).all(-1)  # b k: the rows equal to one component's mean
    assert comp.sum(-1).eq(1).all()  # every sample is one component's mean, whole
    # at tau 1 the components come as often as the softmax of the joint logits
    freqs = comp.float().mean(0)
    assert torch.allclose(freqs, torch.softmax(logits[0].mean(-1), -1), atol=0.03)
    # the paper's per-dimension mixture mixes components across dimensions in most samples
    mixed = (per_dim[:, None, :] - mu[:1]).abs().lt(1e-3).all(-1).sum(-1).eq(0).float().mean()
    assert mixed > 0.5


def test_joint_nll_is_the_vectors_mixture_likelihood():
    logits, mu, _, g = _mixture(b=5, z=4, k=3)
    log_sigma = torch.randn(5, 3, 4, generator=g) * 0.3
    x = torch.randn(5, 4, generator=g)
    nll = mixture_nll(joint_logits(logits), mu, log_sigma, x, joint=True)
    assert nll.shape == (5, 4)
    dist = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=logits.mean(-1)),
        torch.distributions.Independent(torch.distributions.Normal(mu, log_sigma.exp()), 1))
    torch.testing.assert_close(nll.sum(-1), -dist.log_prob(x))
    # with one component the joint and per-dimension likelihoods are the same
    one = mixture_nll(logits[:, :1], mu[:, :1], log_sigma[:, :1], x)
    torch.testing.assert_close(mixture_nll(logits[:, :1], mu[:, :1], log_sigma[:, :1], x, joint=True).sum(-1),
                               one.sum(-1))


def test_the_memory_config_checks_the_mixture():
    with pytest.raises(ConfigError, match="memory.mixture must be one of"):
        MemoryConfig(mixture="shared").validate()
    m = MDNRNN(MemoryConfig(hidden_size=8, n_mixtures=3, mixture="joint"), z_dim=4, action_dim=2)
    logits, _, _ = m.mixture(torch.randn(7, 8))
    assert logits.shape == (7, 3, 4) and torch.equal(logits, logits[..., :1].expand_as(logits))


def joint_model(name="carracing", k=1, dropout=0.0):
    model = make_tiny_model(name)
    cfg = model.config
    cfg.memory.mixture, cfg.memory.ensemble, cfg.memory.dropout = "joint", k, dropout
    out = dreamgym.WorldModel(cfg)
    out.load_state_dict({**out.state_dict(), **model.state_dict()})
    return out.eval()


@pytest.mark.parametrize("tau", [0.0, 1.0, 1.3])
def test_joint_dreams_fast_and_batched_paths_agree(tau):
    model = joint_model()
    fast, plain = DreamEnv(model=model, temperature=tau), DreamEnv(model=model, temperature=tau, fast=False)
    assert fast._lean is not None and plain._lean is None
    fast.action_space.seed(0)
    actions = [fast.action_space.sample() for _ in range(80)]
    for env in (fast, plain):
        env.reset(seed=5)
    for a in actions:
        x, y = fast.step(a), plain.step(a)
        np.testing.assert_allclose(x[0], y[0], atol=1e-5)
        assert x[1] == pytest.approx(y[1], abs=1e-5)


@pytest.mark.parametrize("k, dropout", [(1, 0.0), (3, 0.0), (2, 0.3)])
def test_every_members_step_is_one_whole_component(k, dropout):
    model, b = joint_model(k=k, dropout=dropout), 24
    g = torch.Generator().manual_seed(1)
    hd, zd = model.hidden_size, model.z_dim
    z, a = torch.randn(b, zd, generator=g), torch.rand(b, 3, generator=g)
    h, c = torch.randn(k, b, hd, generator=g) * 0.3, torch.randn(k, b, hd, generator=g) * 0.3
    member = torch.arange(b) % k
    mask = (torch.rand(b, hd, generator=g) > dropout).float() / (1 - dropout) if dropout else None
    u, eps = torch.rand(b, zd, generator=g), torch.zeros(b, zd)  # no noise: a sample is a component's mean
    z1, h1 = model.imagine_step_members(z, h, c, a, member, mask, torch.ones(b), u, eps)[:2]
    picked = []
    for i in range(b):
        hm = h1[member[i], i] * (1 if mask is None else mask[i])
        _, mu, _ = model.member(int(member[i]))[0].mixture(hm[None])
        rows = (mu[0] - z1[i]).abs().max(-1).values < 1e-5  # k: components whose whole mean z' is
        assert rows.sum() == 1
        picked.append(int(rows.nonzero()))
    assert len(set(picked)) > 1  # the components differ across the batch: u's first column chooses


def test_train_joint_and_refuse_to_continue_a_per_dim_m(tmp_path):
    from dreamgym.data.collect import CollectConfig, collect
    from dreamgym.train.recipes import RecipeConfig, train_world_model

    collect(CollectConfig("Pendulum-v1", out=str(tmp_path / "d"), episodes=4, max_steps=40, workers=1), progress=False)
    model = train_world_model([tmp_path / "d"], tmp_path / "joint", RecipeConfig.tiny(mixture="joint"))
    assert model.config.memory.mixture == "joint"
    again = dreamgym.WorldModel.from_pretrained(tmp_path / "joint")
    assert again.config.memory.joint and "one mixture over the whole latent" in (tmp_path / "joint" / "README.md").read_text()
    env = DreamEnv(model=str(tmp_path / "joint"), temperature=1.0)
    env.reset(seed=0)
    assert np.isfinite(env.step(np.zeros(1, np.float32))[0]).all()
    train_world_model([tmp_path / "d"], tmp_path / "pd", RecipeConfig.tiny())
    with pytest.raises(ConfigError, match="memory.mixture"):
        train_world_model([tmp_path / "d"], tmp_path / "x", RecipeConfig.tiny(mixture="joint", init_from=str(tmp_path / "pd")))
