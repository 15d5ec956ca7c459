"""The RSSM's pieces: two-hot, temperature, straight-through gradients, KL free bits, and that it learns."""

import pytest
import torch

from dreamgym.errors import ConfigError
from dreamgym.models.rssm import RSSM, RSSMConfig, TwoHot, symexp, symlog


def _model(kind="state", obs_dim=3, action_dim=2, **over):
    torch.manual_seed(0)
    return RSSM(RSSMConfig.preset("tiny", **over), kind, obs_dim, action_dim)


def test_symlog_symexp_invert():
    x = torch.tensor([-1e4, -3.0, -0.5, 0.0, 0.25, 7.0, 1e5])
    assert torch.allclose(symexp(symlog(x)), x, rtol=1e-5)


def test_twohot_target_reads_back_its_value():
    head = TwoHot(255)
    y = torch.tensor([-300.0, -1.0, 0.0, 0.3, 2.5, 1000.0])
    w = head.target(y)
    assert torch.allclose(w.sum(-1), torch.ones(6)) and ((w > 0).sum(-1) <= 2).all()
    assert torch.allclose(symexp((w * head.points).sum(-1)), y, rtol=1e-4, atol=1e-5)


def test_presets_and_bad_config():
    assert RSSMConfig.preset("paper").stoch == 32 * 32  # DreamerV2/V3: 32 categoricals of 32 classes
    with pytest.raises(ConfigError, match="preset"):
        RSSMConfig.preset("huge")
    with pytest.raises(ConfigError, match="unimix"):
        RSSM(RSSMConfig.preset("tiny", unimix=1.0), "state", 3, 1)
    with pytest.raises(ConfigError, match="deter"):
        RSSM(RSSMConfig.preset("tiny", deter=0), "state", 3, 1)


def test_temperature_zero_takes_the_mode_and_is_deterministic():
    m = _model()
    carry = {"deter": torch.randn(5, 16).tanh(), "stoch": torch.zeros(5, 16)}
    a = torch.randn(5, 2)
    tau0 = torch.zeros(5)
    one, _, _ = m.imagine(carry, a, tau0, torch.rand(5, 4))
    two, _, _ = m.imagine(carry, a, tau0, torch.rand(5, 4))
    assert torch.equal(one["stoch"], two["stoch"])  # the noise does not matter at tau 0
    logits = m.prior(one["deter"]).view(5, 4, 4)
    assert torch.equal(one["stoch"].view(5, 4, 4).argmax(-1), logits.argmax(-1))
    assert torch.equal(one["stoch"].sum(-1), torch.full((5,), 4.0))  # one-hot per categorical


def test_temperature_spreads_the_samples():
    """Higher tau draws classes closer to uniform: the empirical entropy grows with tau."""
    m = _model()
    n = 4000
    carry = {"deter": torch.randn(1, 16).tanh().expand(n, -1), "stoch": torch.zeros(n, 16)}
    gen = torch.Generator().manual_seed(1)

    def entropy(tau):
        out, _, _ = m.imagine(carry, torch.zeros(n, 2), torch.full((n,), tau), torch.rand(n, 4, generator=gen))
        p = out["stoch"].view(n, 4, 4).mean(0)
        return float(-(p * p.clamp(min=1e-9).log()).sum())

    assert entropy(0.3) < entropy(1.0) < entropy(3.0)


def test_same_uniforms_same_sample():
    m = _model()
    carry = m.initial(3)
    u = torch.rand(3, 4)
    one = m.imagine(carry, torch.zeros(3, 2), torch.ones(3), u)
    two = m.imagine(carry, torch.zeros(3, 2), torch.ones(3), u)
    assert torch.equal(one[0]["stoch"], two[0]["stoch"]) and torch.equal(one[1], two[1])


def test_straight_through_gradient_reaches_the_posterior():
    m = _model()
    obs, action = torch.randn(2, 5, 3), torch.randn(2, 4, 2)
    batch = {"obs": obs, "action": action, "reward": torch.randn(2, 4), "terminated": torch.zeros(2, 4),
             "mask": torch.ones(2, 4)}
    loss, metrics = m.loss(batch)
    loss.backward()
    assert m.posterior[-1].weight.grad.abs().sum() > 0 and m.encoder[0].weight.grad.abs().sum() > 0
    assert set(metrics) >= {"loss", "decoder", "reward", "continue", "kl"}


def test_free_bits_floor_the_kl_terms():
    m = _model(free_nats=1e3)  # every KL is below the floor: the KL terms give no gradient
    batch = {"obs": torch.randn(2, 4, 3), "action": torch.randn(2, 3, 2), "reward": torch.zeros(2, 3),
             "terminated": torch.zeros(2, 3), "mask": torch.ones(2, 3)}
    loss, metrics = m.loss(batch)
    loss.backward()
    assert m.prior[-1].weight.grad is None or m.prior[-1].weight.grad.abs().sum() == 0


def test_learns_a_linear_system_and_its_reward():
    """120 steps on x' = 0.9 x + a, r = -x0^2: the imagined reward tracks the real one."""
    torch.manual_seed(0)
    m = RSSM(RSSMConfig.preset("tiny", deter=32, hidden=32, groups=8, classes=8), "state", 2, 1)
    opt = torch.optim.Adam(m.parameters(), 3e-3)

    def batch(n=16, steps=6):
        x = torch.randn(n, 2)
        obs, acts, rews = [x], [], []
        for _ in range(steps):
            a = torch.rand(n, 1) * 2 - 1
            rews.append(-(x[:, 0] ** 2))
            x = 0.9 * x + torch.cat([a, -a], -1) * 0.5
            obs.append(x)
            acts.append(a)
        return {"obs": torch.stack(obs, 1), "action": torch.stack(acts, 1), "reward": torch.stack(rews, 1),
                "terminated": torch.zeros(n, steps), "mask": torch.ones(n, steps)}

    first = None
    for _ in range(120):
        loss, metrics = m.loss(batch())
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first or metrics
    assert metrics["decoder"] < 0.3 * first["decoder"] and metrics["reward"] < 0.5 * first["reward"]


def test_frames_loss_and_decoder_shapes():
    """64×64×3 uint8 frames go through the conv encoder, the loss and the decoder (the loss once crashed
    reshaping the channels-last decoder output), and a few steps lower the reconstruction error."""
    m = _model(kind="frames", obs_dim=0, action_dim=3)
    gen = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (2, 5, 64, 64, 3), dtype=torch.uint8, generator=gen)
    frames[..., 0] = 200  # a learnable constant channel
    batch = {"obs": frames, "action": torch.randn(2, 4, 3, generator=gen), "reward": torch.ones(2, 4),
             "terminated": torch.zeros(2, 4), "mask": torch.ones(2, 4)}
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    first = None
    for _ in range(15):
        loss, metrics = m.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first or metrics
    assert torch.isfinite(loss) and metrics["decoder"] < first["decoder"]
    carry = m.initial(2)
    assert m.decode(carry).shape == (2, 64, 64, 3)


@pytest.mark.parametrize("heads_input", ["posterior", "prior"])
def test_heads_input_prior_does_not_read_the_next_observation(heads_input):
    """heads_input='prior': the continue head learns p(done) from the GRU state and a prior sample, as a dream
    asks it, so the terminal observation (ViZDoom's black frame) cannot give the death away."""
    m = _model(heads_input=heads_input)
    obs = torch.randn(2, 4, 3)
    batch = {"obs": obs, "action": torch.randn(2, 3, 2), "reward": torch.zeros(2, 3),
             "terminated": torch.tensor([[0.0, 0.0, 1.0]] * 2), "mask": torch.ones(2, 3)}
    losses = []
    for last in (0.0, 50.0):  # only the terminal observation differs
        obs[:, -1] = last
        torch.manual_seed(1)
        losses.append(m.loss(batch)[1]["continue"])
    assert (losses[0] == losses[1]) == (heads_input == "prior")


def test_heads_input_is_checked():
    with pytest.raises(ConfigError, match="heads_input"):
        RSSMConfig.preset("tiny", heads_input="next").validate()


def test_continue_pos_weight_scales_terminal_steps_and_calibrates_the_dream():
    """Terminal steps weigh ``continue_pos_weight`` in the continue loss; the world model reports it as its
    termination_pos_weight, which sampled dream termination divides back out."""
    from dreamgym.models.rssm_world_model import RSSMWorldModel, RSSMWorldModelConfig

    batch = {"obs": torch.randn(2, 4, 3), "action": torch.randn(2, 3, 2), "reward": torch.zeros(2, 3),
             "terminated": torch.ones(2, 3), "mask": torch.ones(2, 3)}
    losses = []
    for w in (1.0, 5.0):
        m = _model(continue_pos_weight=w)
        torch.manual_seed(1)
        losses.append(m.loss(batch)[1]["continue"])
    assert losses[1] == pytest.approx(5.0 * losses[0], rel=1e-5)
    with pytest.raises(ConfigError, match="continue_pos_weight"):
        RSSMConfig.preset("tiny", continue_pos_weight=0.5).validate()
    space = {"type": "Box", "low": -1.0, "high": 1.0, "shape": [2], "dtype": "float32"}
    cfg = RSSMWorldModelConfig(env_id="Pendulum-v1", action_space=space, observation_space=space, obs_dim=2,
                               rssm=RSSMConfig.preset("tiny", continue_pos_weight=100.0))
    model = RSSMWorldModel(cfg)
    assert model.termination_pos_weight == 100.0 and "×100" in "\n".join(model.architecture_lines())
