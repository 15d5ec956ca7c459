"""V: what the world model sees.

``ConvVAE`` is the paper's vision model for 64×64×3 frames; ``StateCoder`` gives state-vector envs
(Pendulum-v1) a latent without a VAE: the normalised state itself (``identity``) or a small MLP
autoencoder (``mlp``). Both expose ``encode(obs) -> (mu, logvar | None)``, ``decode(z) -> obs`` and
``loss(obs) -> (loss, metrics)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from dreamgym.errors import ConfigError


@dataclass
class VisionConfig:
    """Architecture of V.

    :param kind: ``"conv_vae"`` for 64×64×3 frames, ``"identity"`` or ``"mlp"`` for state vectors.
    :param z_dim: latent size (the paper: 32 for CarRacing, 64 for Doom); for ``identity`` the state size.
    :param channels: encoder conv channels; the decoder mirrors them (the paper: 32-64-128-256).
    :param image_size: frames are square, ``image_size`` pixels a side; the paper's net needs 64.
    :param obs_dim: state size for ``identity`` / ``mlp`` (0 for frames).
    :param hidden: MLP width for ``mlp``.
    :param kl_tolerance: free bits per latent dimension, in nats (the paper: 0.5).
    """

    kind: str = "conv_vae"
    z_dim: int = 32
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    image_size: int = 64
    obs_dim: int = 0
    hidden: int = 64
    kl_tolerance: float = 0.5

    def validate(self) -> None:
        if self.kind not in ("conv_vae", "identity", "mlp"):
            raise ConfigError(f"vision.kind must be 'conv_vae', 'identity' or 'mlp', got {self.kind!r}.")
        if self.kind == "conv_vae":
            if self.image_size != 64 or len(self.channels) != 4:
                raise ConfigError(
                    "The paper's conv VAE takes 64x64 frames through 4 conv layers: expected image_size=64 and "
                    f"4 channels, got image_size={self.image_size}, channels={self.channels}."
                )
        elif self.obs_dim <= 0:
            raise ConfigError(f"vision.kind={self.kind!r} needs obs_dim > 0 (the state size), got {self.obs_dim}.")
        if self.kind == "identity" and self.z_dim != self.obs_dim:
            raise ConfigError(f"vision.kind='identity' needs z_dim == obs_dim, got z_dim={self.z_dim}, obs_dim={self.obs_dim}.")
        if self.z_dim <= 0:
            raise ConfigError(f"vision.z_dim must be positive, got {self.z_dim}.")


class ConvVAE(nn.Module):
    """The World Models VAE: 4 convs (k4 s2) -> z; dense -> 4 transposed convs (k5,k5,k6,k6 s2) -> frame."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.config = config
        c1, c2, c3, c4 = config.channels
        self.encoder = nn.Sequential(
            nn.Conv2d(3, c1, 4, 2), nn.ReLU(),  # 64 -> 31
            nn.Conv2d(c1, c2, 4, 2), nn.ReLU(),  # 31 -> 14
            nn.Conv2d(c2, c3, 4, 2), nn.ReLU(),  # 14 -> 6
            nn.Conv2d(c3, c4, 4, 2), nn.ReLU(),  # 6 -> 2
            nn.Flatten(),
        )
        self.fc_mu = nn.Linear(4 * c4, config.z_dim)
        self.fc_logvar = nn.Linear(4 * c4, config.z_dim)
        self.fc_dec = nn.Linear(config.z_dim, 4 * c4)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(4 * c4, c3, 5, 2), nn.ReLU(),  # 1 -> 5
            nn.ConvTranspose2d(c3, c2, 5, 2), nn.ReLU(),  # 5 -> 13
            nn.ConvTranspose2d(c2, c1, 6, 2), nn.ReLU(),  # 13 -> 30
            nn.ConvTranspose2d(c1, 3, 6, 2), nn.Sigmoid(),  # 30 -> 64
        )

    def encode(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 or [0, 1] float frames (b, 64, 64, 3) -> mu, logvar (b, z)."""
        x = frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()
        x = x.permute(0, 3, 1, 2)  # b h w c -> b c h w
        hidden = self.encoder(x)
        return self.fc_mu(hidden), self.fc_logvar(hidden)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (b, z) -> frames (b, 64, 64, 3) float in [0, 1]."""
        x = self.fc_dec(z)[:, :, None, None]  # b e -> b e 1 1
        return self.decoder(x).permute(0, 2, 3, 1)  # b c h w -> b h w c

    def loss(self, frames: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The paper's loss: summed squared error + KL clamped below by the free-bits tolerance."""
        mu, logvar = self.encode(frames)
        std = torch.exp(0.5 * logvar)
        z = mu + std * torch.randn_like(std)
        target = frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()
        recon = self.decode(z)
        rec = (recon - target).pow(2).sum(dim=(1, 2, 3)).mean()
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)
        kl = torch.clamp(kl, min=self.config.kl_tolerance * self.config.z_dim).mean()
        loss = rec + kl
        mse = (recon - target).pow(2).mean()
        return loss, {"loss": loss.item(), "recon_mse": mse.item(), "kl": kl.item()}


class StateCoder(nn.Module):
    """V for state vectors: normalise, then identity or a small MLP autoencoder (no sampling)."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("obs_mean", torch.zeros(config.obs_dim))
        self.register_buffer("obs_std", torch.ones(config.obs_dim))
        if config.kind == "mlp":
            h = config.hidden
            self.enc = nn.Sequential(nn.Linear(config.obs_dim, h), nn.Tanh(), nn.Linear(h, config.z_dim))
            self.dec = nn.Sequential(nn.Linear(config.z_dim, h), nn.Tanh(), nn.Linear(h, config.obs_dim))

    def encode(self, obs: torch.Tensor) -> tuple[torch.Tensor, None]:
        x = (obs.float() - self.obs_mean) / self.obs_std
        return (self.enc(x) if self.config.kind == "mlp" else x), None

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x = self.dec(z) if self.config.kind == "mlp" else z
        return x * self.obs_std + self.obs_mean

    def loss(self, obs: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        x = (obs.float() - self.obs_mean) / self.obs_std
        z, _ = self.encode(obs)
        recon = (self.dec(z) if self.config.kind == "mlp" else z)
        loss = F.mse_loss(recon, x)
        return loss, {"loss": loss.item(), "recon_mse": loss.item()}


def build_vision(config: VisionConfig) -> nn.Module:
    config.validate()
    return ConvVAE(config) if config.kind == "conv_vae" else StateCoder(config)
