"""Turning dream states into pictures, and a pygame window for ``render_mode="human"``."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping

import numpy as np

BAR_IMAGE_SIZE = 128


def state_bars(x: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """A state vector as a (128, 128, 3) uint8 bar chart, each bar scaled to its [low, high]."""
    img = np.full((BAR_IMAGE_SIZE, BAR_IMAGE_SIZE, 3), 255, dtype=np.uint8)
    n = len(x)
    width = BAR_IMAGE_SIZE // max(n, 1)
    mid = BAR_IMAGE_SIZE // 2
    span = np.where(np.isfinite(high - low) & (high > low), high - low, 2.0)
    center = np.where(np.isfinite(high + low), (high + low) / 2, 0.0)
    frac = np.clip((x - center) / span, -0.5, 0.5)  # in [-0.5, 0.5]
    for i, f in enumerate(frac):
        top, bottom = sorted((mid, int(mid - f * (BAR_IMAGE_SIZE - 8))))
        img[top : bottom + 1, i * width + 2 : (i + 1) * width - 2] = (40, 90, 200)
    img[mid, :] = 0
    return img


_PENDULUM: dict[str, object] = {}


def pendulum_frame(x: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """A dreamed Pendulum-v1 state (cos, sin, angular velocity) drawn by Pendulum-v1's own renderer."""
    import gymnasium as gym

    env = _PENDULUM.get("env")
    if env is None:
        env = _PENDULUM["env"] = gym.make("Pendulum-v1", render_mode="rgb_array").unwrapped
        env.reset(seed=0)
    from PIL import Image

    env.state = np.array([np.arctan2(x[1], x[0]), x[2]])
    env.last_u = None
    frame = Image.fromarray(env.render()).resize((BAR_IMAGE_SIZE, BAR_IMAGE_SIZE), Image.BILINEAR)
    return np.asarray(frame)  # the size every state-vector dream renders at


def state_renderer(env_id: str) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """How a dream of ``env_id`` draws its state vectors: the registered ``DreamSpec.renderer``, else bars."""
    from dreamgym.registry import dream_spec_for_env

    spec = dream_spec_for_env(env_id)
    if spec is None or spec.renderer is None:
        return state_bars
    module, name = spec.renderer.split(":")
    return getattr(importlib.import_module(module), name)


class _StateRenderers(Mapping):
    """Real env id -> its registered state renderer (:func:`state_renderer`), read from the registry."""

    def _table(self) -> dict[str, Callable[..., np.ndarray]]:
        from dreamgym.registry import DREAMS

        return {s.env_id: state_renderer(s.env_id) for s in DREAMS.values() if s.renderer is not None}

    def __getitem__(self, env_id: str) -> Callable[..., np.ndarray]:
        draw = state_renderer(env_id)
        if draw is state_bars:
            raise KeyError(env_id)
        return draw

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


STATE_RENDERERS: Mapping[str, Callable[..., np.ndarray]] = _StateRenderers()


class Viewer:
    """A pygame window that shows RGB frames, scaled up."""

    def __init__(self, caption: str, scale: int = 8, fps: int = 50) -> None:
        try:
            import pygame
        except ImportError as e:  # pragma: no cover - gymnasium[box2d] brings pygame
            from gymnasium.error import DependencyNotInstalled

            raise DependencyNotInstalled('render_mode="human" needs pygame: pip install pygame') from e
        self._pg = pygame
        self.caption, self.scale, self.fps = caption, scale, fps
        self.window = None
        self.clock = pygame.time.Clock()

    def show(self, frame: np.ndarray) -> None:
        pg = self._pg
        h, w = frame.shape[:2]
        size = (w * self.scale, h * self.scale)
        if self.window is None:
            pg.init()
            pg.display.init()
            pg.display.set_caption(self.caption)
            self.window = pg.display.set_mode(size)
        surface = pg.surfarray.make_surface(np.ascontiguousarray(frame.swapaxes(0, 1)))
        self.window.blit(pg.transform.scale(surface, size), (0, 0))
        pg.event.pump()
        pg.display.flip()
        self.clock.tick(self.fps)

    def close(self) -> None:
        if self.window is not None:
            self._pg.display.quit()
            self.window = None
