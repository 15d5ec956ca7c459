"""Frames from a real env's observation to the 64×64×3 uint8 images V sees."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dreamgym.errors import ConfigError

FRAME_SIZE = 64  # the side of every stored and modelled frame (the paper's 64×64)


def crop_is_valid(crop: Sequence[int] | None) -> bool:
    """None, or ``[top, bottom, left, right]`` with 0 <= top < bottom and 0 <= left < right."""
    return crop is None or (len(crop) == 4 and 0 <= crop[0] < crop[1] and 0 <= crop[2] < crop[3])


def extract_frames(obs: Any, frame_key: str | None) -> np.ndarray:
    """The image part of an observation (a dict key for ViZDoom's {'screen': ...})."""
    if frame_key is not None:
        if not isinstance(obs, dict) or frame_key not in obs:
            keys = list(obs) if isinstance(obs, dict) else type(obs).__name__
            raise ConfigError(f"Expected an observation dict with key {frame_key!r}, got {keys}.")
        obs = obs[frame_key]
    return np.asarray(obs)


def preprocess_frames(
    frames: np.ndarray | torch.Tensor, crop: Sequence[int] | None, size: int = 64
) -> torch.Tensor:
    """(b, H, W, 3) uint8 -> (b, size, size, 3) uint8: crop [top, bottom, left, right], then resize.

    Resizing is antialiased bilinear in torch, so a whole batch costs one call.
    """
    x = torch.as_tensor(np.asarray(frames))
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ConfigError(f"Expected RGB frames of shape (batch, height, width, 3), got shape {tuple(x.shape)}.")
    if crop is not None:
        top, bottom, left, right = crop
        x = x[:, top:bottom, left:right]
    if x.shape[1] == size and x.shape[2] == size:
        return x.to(torch.uint8).contiguous()
    y = x.permute(0, 3, 1, 2).float()  # b h w c -> b c h w
    y = F.interpolate(y, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()  # b c h w -> b h w c
