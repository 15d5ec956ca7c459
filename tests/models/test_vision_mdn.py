import math

import pytest
import torch

from dreamgym.errors import ConfigError
from dreamgym.models.mdnrnn import MDNRNN, MemoryConfig, mixture_nll, sample_mixture
from dreamgym.models.vision import ConvVAE, StateCoder, VisionConfig, build_vision


def test_paper_vae_shapes_and_loss():
    vae = ConvVAE(VisionConfig(z_dim=32))
    frames = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    mu, logvar = vae.encode(frames)
    assert mu.shape == logvar.shape == (2, 32)
    out = vae.decode(mu)
    assert out.shape == (2, 64, 64, 3) and 0 <= out.min() and out.max() <= 1
    loss, metrics = vae.loss(frames)
    assert torch.isfinite(loss) and {"recon_mse", "kl"} <= set(metrics)
    # the paper's channel sizes: conv 32-64-128-256, decoder 128-64-32-3
    convs = [m.out_channels for m in vae.encoder if isinstance(m, torch.nn.Conv2d)]
    assert convs == [32, 64, 128, 256]


def test_state_coder_identity_round_trip():
    coder = StateCoder(VisionConfig(kind="identity", z_dim=3, obs_dim=3))
    coder.obs_std.fill_(2.0)
    x = torch.randn(5, 3)
    z, _ = coder.encode(x)
    assert torch.allclose(z, x / 2) and torch.allclose(coder.decode(z), x)


@pytest.mark.parametrize(
    "kwargs,match",
    [({"kind": "vqvae"}, "vision.kind"), ({"image_size": 32}, "64x64"), ({"kind": "mlp"}, "obs_dim"),
     ({"kind": "identity", "obs_dim": 3, "z_dim": 2}, "z_dim == obs_dim")],
)
def test_vision_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        build_vision(VisionConfig(**kwargs))


def _mixture(b=4096, z=3, k=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, k, z, generator=g).expand(b, k, z)
    mu = torch.randn(1, k, z, generator=g).expand(b, k, z) * 2
    log_sigma = torch.full((b, k, z), math.log(0.3))
    return logits, mu, log_sigma, g


def test_temperature_zero_is_the_most_likely_mean():
    logits, mu, log_sigma, g = _mixture()
    b, _, z = logits.shape
    out = sample_mixture(logits, mu, log_sigma, torch.zeros(b), torch.rand(b, z, generator=g), torch.randn(b, z, generator=g))
    expected = mu.gather(1, logits.argmax(1, keepdim=True))[:, 0]
    assert torch.equal(out, expected)
    # a batch mixing tau = 0 and tau > 0: the zero-tau rows still take the mode
    tau = torch.tensor([0.0, 1.0]).repeat(b // 2)
    mixed = sample_mixture(logits, mu, log_sigma, tau, torch.rand(b, z, generator=g), torch.randn(b, z, generator=g))
    assert torch.equal(mixed[0::2], expected[0::2]) and not torch.equal(mixed[1::2], expected[1::2])


def test_a_tiny_temperature_takes_the_mode_without_nan():
    # 1e-40 is a valid tau (a float32 subnormal); dividing the logits by it overflowed them to inf, and inf - inf
    # made the draw NaN-driven
    logits, mu, log_sigma, g = _mixture()
    b, _, z = logits.shape
    out = sample_mixture(logits, mu, log_sigma.fill_(-7.0), torch.full((b,), 1e-40), torch.rand(b, z, generator=g),
                         torch.zeros(b, z))
    assert torch.equal(out, mu.gather(1, logits.argmax(1, keepdim=True))[:, 0])


def test_spread_grows_with_temperature():
    logits, mu, log_sigma, g = _mixture()
    b, _, z = logits.shape
    u, eps = torch.rand(b, z, generator=g), torch.randn(b, z, generator=g)
    spreads = [sample_mixture(logits, mu, log_sigma, torch.full((b,), tau), u, eps).std(0).mean().item()
               for tau in (0.1, 0.5, 1.0, 1.5)]
    assert spreads == sorted(spreads) and spreads[-1] > 2 * spreads[0]


def test_temperature_one_matches_the_mixture():
    # at tau = 1 the component frequencies are the softmax of the logits
    logits, mu, log_sigma, g = _mixture(b=20000, z=1, k=3)
    u = torch.rand(20000, 1, generator=g)
    out = sample_mixture(logits, mu, log_sigma.fill_(-7.0), torch.ones(20000), u, torch.zeros(20000, 1))
    freqs = torch.stack([(out[:, 0] == mu[0, j, 0]).float().mean() for j in range(3)])
    assert torch.allclose(freqs, torch.softmax(logits[0, :, 0], -1), atol=0.015)


def test_nll_is_lowest_at_the_mean():
    logits, mu, log_sigma, _ = _mixture(b=1, z=1, k=1)
    at_mean = mixture_nll(logits, mu, log_sigma, mu[:, 0])
    off = mixture_nll(logits, mu, log_sigma, mu[:, 0] + 1.0)
    assert at_mean < off


def test_step_matches_the_sequence_pass():
    m = MDNRNN(MemoryConfig(hidden_size=8, n_mixtures=2), z_dim=4, action_dim=3)
    z, a = torch.randn(2, 5, 4), torch.randn(2, 5, 3)
    out, (h_T, c_T) = m.sequence(z, a)
    h = c = torch.zeros(2, 8)
    for t in range(5):
        h, c = m.step(z[:, t], a[:, t], h, c)
        assert torch.allclose(h, out[:, t], atol=1e-6)
    assert torch.allclose(h, h_T, atol=1e-6) and torch.allclose(c, c_T, atol=1e-6)
