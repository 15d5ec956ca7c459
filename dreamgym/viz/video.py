"""Dream videos: one episode of a dream as frames, alone or beside the real env playing the same actions.

>>> frames = rollout_frames("Dream-CarRacing-v0", model="runs/carracing", side_by_side=True)  # doctest: +SKIP
>>> write_video(frames, "dream.gif", fps=30)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.error import DependencyNotInstalled

from dreamgym.errors import ConfigError
from dreamgym.models.world_model import WorldModel
from dreamgym.rollout import BASELINES, acting, baseline_policy, check_baseline, play
from dreamgym.utils import atomic_write

POLICIES = BASELINES
VIDEO_SUFFIXES = (".gif", ".mp4")
MP4_PIP = "pip install imageio imageio-ffmpeg"


def _pil() -> Any:
    try:
        import PIL.Image
    except ImportError as e:
        raise DependencyNotInstalled("Dream videos need Pillow: pip install pillow") from e
    return PIL.Image


def upscale(frame: np.ndarray, scale: int) -> np.ndarray:
    """``frame`` (H, W, 3) enlarged ``scale`` times with nearest-neighbour (crisp pixels, no blur).

    :param frame: uint8 RGB frame.
    :param scale: integer factor >= 1.
    """
    if scale == 1:
        return np.ascontiguousarray(frame)
    image = _pil().fromarray(np.ascontiguousarray(frame))
    return np.asarray(image.resize((image.width * scale, image.height * scale), _pil().Resampling.NEAREST))


def fit_height(frame: np.ndarray, height: int) -> np.ndarray:
    """``frame`` resized (Pillow, bilinear) to ``height`` pixels, keeping its aspect ratio.

    :param frame: uint8 RGB frame.
    :param height: the target height in pixels.
    """
    if frame.shape[0] == height:
        return np.ascontiguousarray(frame)
    width = max(1, round(frame.shape[1] * height / frame.shape[0]))
    image = _pil().fromarray(np.ascontiguousarray(frame))
    return np.asarray(image.resize((width, height), _pil().Resampling.BILINEAR))


def annotate(frame: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """``frame`` with ``lines`` of text drawn top-left over a translucent dark box (PIL default font).

    :param frame: uint8 RGB frame (not modified).
    :param lines: the text, one string per line.
    """
    Image = _pil()
    from PIL import ImageDraw, ImageFont

    base = Image.fromarray(np.ascontiguousarray(frame)).convert("RGBA")
    size = max(10, base.height // 22)
    try:
        font: Any = ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 or no FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    text = "\n".join(lines)
    _, _, right, bottom = draw.multiline_textbbox((3, 2), text, font=font, spacing=2)
    draw.rectangle((0, 0, min(right + 3, base.width - 1), min(bottom + 3, base.height - 1)), fill=(0, 0, 0, 150))
    draw.multiline_text((3, 2), text, font=font, fill=(255, 255, 255, 255), spacing=2)
    return np.asarray(Image.alpha_composite(base, overlay).convert("RGB"))


def rollout_frames(
    dream_id: str,
    *,
    model: str | WorldModel | None = None,
    agent: str | None = None,
    policy: str = "brownian",
    temperature: float | None = None,
    steps: int = 300,
    seed: int = 0,
    side_by_side: bool = False,
    scale: int = 4,
    annotated: bool = True,
) -> list[np.ndarray]:
    """Play one dream episode and return its frames (the start frame, then one per step).

    Actions come from ``agent`` if given, else from ``policy``; they are chosen on the DREAM's
    observation. With ``side_by_side`` the same actions are played in the real env
    (``dreamgym.make_real``) and its own render is shown to the right of the dream, scaled to the same
    height; if reality ends first its last frame stays, and the video stops when the dream ends.

    :param dream_id: a registered Dream id, e.g. ``"Dream-CarRacing-v0"``.
    :param model: world model (WorldModel, checkpoint directory, pretrained name or Hub id); default:
        the agent's world model, else the shipped one.
    :param agent: a controller directory, CMA-ES run directory or SB3 zip (or ``"random"``).
    :param policy: without an agent: ``"brownian"`` (smoothly drifting actions) or ``"random"``.
    :param temperature: the dream's tau (None: the model's default).
    :param steps: at most this many steps (the episode may end sooner).
    :param seed: seeds the dream, the real env and the policy.
    :param side_by_side: also play the actions in the real env and show it beside the dream.
    :param scale: the dream frame (64×64, or 128×128 bars for state dreams) is enlarged this many times.
    :param annotated: draw step, reward, p(done) and tau on the frames (off: the bare pictures).
    :return: uint8 RGB frames, all of one size: dream ``(H*scale, W*scale, 3)``, wider with ``side_by_side``.
    """
    from dreamgym.envs.real import make_real

    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}.")
    if not (isinstance(scale, (int, np.integer)) and scale >= 1):
        raise ConfigError(f"scale must be an integer >= 1, got {scale!r}.")
    info = None
    if agent is not None:
        from dreamgym.evaluate import agent_info

        info = agent_info(agent, dream_id, model if isinstance(model, (str, Path)) else None)
        model = info.world_model if model is None else model
    else:
        check_baseline(policy)  # before loading a model
    obs_type = "latent" if info is None else info.obs_type
    kwargs: dict[str, Any] = {} if model is None else {"model": model}
    if info is not None:
        from dreamgym.evaluate import action_bounds

        kwargs.update(action_bounds(info))  # the Box the agent was trained in
    dream = gym.make(dream_id, temperature=temperature, obs_type=obs_type, render_mode="rgb_array", **kwargs)
    real = None
    try:
        act = _actor(info, policy, dream, seed)
        if side_by_side:
            real = make_real(dream, render_mode="rgb_array")  # the dream's model, obs_type and action bounds
        return _play(dream, real, act, steps, seed, scale, annotated)
    finally:
        dream.close()
        if real is not None:
            real.close()


def _actor(info: Any, policy: str, dream: gym.Env, seed: int) -> Callable[[Any], Any]:
    """obs -> action: the agent ``info`` describes, else the baseline ``policy``."""
    if info is None:
        return baseline_policy(policy, dream.action_space, np.random.default_rng(seed))
    from dreamgym.evaluate import load

    return acting(load(info, dream.observation_space, dream.action_space, seed))


def _play(dream: gym.Env, real: gym.Env | None, act: Callable[[Any], Any], steps: int, seed: int, scale: int,
          annotated: bool) -> list[np.ndarray]:
    real_frame = None
    if real is not None:  # start the dream where reality starts, so the two panels can be compared
        real.reset(seed=seed)
        real_frame = real.render()
        obs, _ = dream.reset(seed=seed, options={"start_latent": real.latent()})
    else:
        obs, _ = dream.reset(seed=seed)
    step, reward, ret, done_prob = 0, 0.0, 0.0, 0.0
    real_reward, real_ret, real_done = 0.0, 0.0, False

    def draw() -> np.ndarray:
        frame = upscale(dream.render(), scale)
        if annotated:
            tau = dream.unwrapped.temperature
            frame = annotate(frame, [f"dream  t={step}  tau={tau:.2f}", f"r={reward:+.2f}  R={ret:+.1f}",
                                     f"p(done)={done_prob:.2f}"])
        if real is None:
            return frame
        right = fit_height(real_frame, frame.shape[0])
        if annotated:
            right = annotate(right, [f"real  t={step}" + ("  (ended)" if real_done else ""),
                                     f"r={real_reward:+.2f}  R={real_ret:+.1f}"])
        right = right.copy()
        right[:, :2] = 0  # a dark seam, so two light panels do not run into each other
        return np.concatenate([frame, right], axis=1)

    frames = [draw()]
    for played in play(dream, act, obs, max_steps=steps):
        reward = float(played.reward)
        step, ret, done_prob = step + 1, ret + reward, float(played.info.get("done_prob", 0.0))
        if real is not None and not real_done:
            _, real_reward, real_term, real_trunc, _ = real.step(played.action)
            real_ret += float(real_reward)
            real_done = bool(real_term or real_trunc)
            real_frame = real.render()
        frames.append(draw())
    return frames


def write_video(frames: Sequence[np.ndarray], path: str | Path, fps: float) -> Path:
    """Write ``frames`` as a ``.gif`` (Pillow, looping forever) or ``.mp4`` (imageio's ffmpeg plugin).

    The file appears atomically: written under a temporary name, then renamed onto ``path``.

    :param frames: uint8 RGB frames of one size (what :func:`rollout_frames` returns).
    :param path: the output file; its suffix picks the format.
    :param fps: frames per second (> 0).
    :return: ``path`` as a Path.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ConfigError(f"Cannot write a video to {str(path)!r}: expected a file ending in one of "
                          f"{', '.join(VIDEO_SUFFIXES)}, got suffix {path.suffix or '(none)'!r}.")
    if len(frames) == 0:
        raise ConfigError("No frames to write: expected at least one frame, got an empty sequence.")
    if not (np.isfinite(fps) and fps > 0):
        raise ConfigError(f"fps must be a positive number, got {fps!r}.")
    shapes = {np.shape(f) for f in frames}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3 or next(iter(shapes))[2] != 3:
        raise ConfigError(f"Frames must all be (H, W, 3) arrays of one size, got shapes {sorted(shapes)[:4]}.")
    if suffix == ".gif":
        Image = _pil()
        images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]

        def write(tmp: Path) -> None:
            images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], loop=0,
                           duration=1000 / fps)

        atomic_write(path, write)
        return path
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (imageio's ffmpeg plugin needs it)
    except ImportError as e:
        raise DependencyNotInstalled(f"Writing .mp4 needs imageio with its ffmpeg plugin: {MP4_PIP}  "
                                     "(or write a .gif, which needs only Pillow)") from e

    def write_mp4(tmp: Path) -> None:
        # imageio picks the plugin by suffix, and atomic_write's temporary name ends in .tmp
        staged = tmp.with_name(tmp.name + ".mp4")
        try:
            # H.264 in yuv420p needs even sizes: pad an odd row/column ourselves rather than let imageio resize
            with imageio.get_writer(staged, format="FFMPEG", mode="I", fps=fps, codec="libx264", macro_block_size=2,
                                    ffmpeg_log_level="error") as writer:
                for f in frames:
                    f = np.asarray(f, dtype=np.uint8)
                    writer.append_data(np.pad(f, ((0, f.shape[0] % 2), (0, f.shape[1] % 2), (0, 0)), mode="edge"))
            os.replace(staged, tmp)
        finally:
            staged.unlink(missing_ok=True)

    atomic_write(path, write_mp4)
    return path


def video_fps(dream_id: str, fps: float | None = None) -> float:
    """``fps`` if given, else the dream's frame rate capped at 50 (GIF viewers slow faster GIFs down).

    :param dream_id: a registered Dream id.
    :param fps: an explicit frame rate, returned as is.
    """
    if fps is not None:
        return fps
    from dreamgym.registry import dream_spec

    return float(min(dream_spec(dream_id).render_fps, 50))


__all__ = ["POLICIES", "VIDEO_SUFFIXES", "annotate", "fit_height", "rollout_frames", "upscale", "video_fps",
           "write_video"]
