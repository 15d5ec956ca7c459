"""Dream videos: frames, overlays, side by side with reality, GIF/MP4 files, RecordVideo."""

from __future__ import annotations

import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.error import DependencyNotInstalled
from PIL import Image

from dreamgym.agents import LinearController
from dreamgym.errors import ConfigError
from dreamgym.viz.video import rollout_frames, video_fps, write_video

from ..conftest import has_vizdoom, make_tiny_model

CAR, PENDULUM, DOOM = "Dream-CarRacing-v0", "Dream-Pendulum-v0", "Dream-DoomTakeCover-v0"


def test_dream_frames_are_upscaled_and_one_per_step(model_dirs):
    frames = rollout_frames(CAR, model=str(model_dirs["carracing"]), steps=5, scale=4)
    assert len(frames) == 6  # the start frame, then one per step
    assert {f.shape for f in frames} == {(256, 256, 3)} and frames[0].dtype == np.uint8
    bare = rollout_frames(CAR, model=str(model_dirs["carracing"]), steps=1, scale=1, annotated=False)
    big = rollout_frames(CAR, model=str(model_dirs["carracing"]), steps=1, scale=3, annotated=False)
    assert bare[0].shape == (64, 64, 3)
    assert np.array_equal(big[1], np.repeat(np.repeat(bare[1], 3, axis=0), 3, axis=1))  # nearest-neighbour


def test_state_dreams_show_bars_and_the_same_seed_gives_the_same_video(model_dirs):
    a = rollout_frames(PENDULUM, model=str(model_dirs["pendulum"]), steps=4, scale=2, seed=3)
    b = rollout_frames(PENDULUM, model=str(model_dirs["pendulum"]), steps=4, scale=2, seed=3)
    assert a[0].shape == (256, 256, 3)  # the 128x128 bar chart, doubled
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_overlay_text_changes_only_the_top_left_corner(model_dirs):
    kw = {"model": str(model_dirs["carracing"]), "steps": 3, "seed": 1}
    plain = rollout_frames(CAR, annotated=False, **kw)
    text = rollout_frames(CAR, **kw)
    for p, t in zip(plain, text):
        assert not np.array_equal(p[:40, :100], t[:40, :100])
        assert np.array_equal(p[-60:, -60:], t[-60:, -60:])
    assert not np.array_equal(text[1][:40], text[2][:40])  # the step counter moves on


def test_overlay_shows_the_temperature(model_dirs):
    kw = {"model": str(model_dirs["carracing"]), "steps": 1, "seed": 0}
    low = rollout_frames(CAR, temperature=0.5, **kw)[0]
    high = rollout_frames(CAR, temperature=1.5, **kw)[0]
    assert not np.array_equal(low[:20], high[:20])  # same start frame, different tau text


def test_side_by_side_is_wider_and_shows_reality(model_dirs):
    frames = rollout_frames(CAR, model=str(model_dirs["carracing"]), steps=3, side_by_side=True, annotated=False)
    assert len(frames) == 4
    assert frames[0].shape == (256, 256 + 384, 3)  # CarRacing's 400x600 render scaled to the dream's height
    again = rollout_frames(CAR, model=str(model_dirs["carracing"]), steps=3, side_by_side=True, annotated=False)
    assert all(np.array_equal(a, b) for a, b in zip(frames, again))  # seeded: the same video twice
    dream_only = rollout_frames(CAR, model=str(model_dirs["carracing"]), steps=3, annotated=False)
    # side by side, the dream starts from reality's first frame (V's latent of it), not a stored start
    assert not np.array_equal(frames[0][:, :256], dream_only[0])
    assert (frames[-1][:, 256:258] == 0).all()  # the seam
    assert frames[-1][:, 300:, 1].mean() > frames[-1][:, 300:, 0].mean()  # CarRacing's green grass


def test_reality_ending_first_keeps_its_last_frame(tmp_path):
    make_tiny_model("pendulum", max_episode_steps=3).save_pretrained(tmp_path)  # the real twin stops at 3
    frames = rollout_frames(PENDULUM, model=str(tmp_path), steps=6, side_by_side=True, scale=1, annotated=False)
    assert len(frames) == 7  # the dream goes on: its time limit is the registered 200
    real = [f[:, 128:] for f in frames]
    assert not np.array_equal(real[2], real[3])
    assert all(np.array_equal(real[3], r) for r in real[4:])


def test_the_video_stops_when_the_dream_ends():
    model = make_tiny_model("carracing")
    with torch.no_grad():  # p(done) ~ 1 everywhere: the dream ends at its first step
        last = model.heads.termination if isinstance(model.heads.termination, torch.nn.Linear) \
            else model.heads.termination[-1]
        last.weight.zero_()
        last.bias.fill_(20.0)
    frames = rollout_frames(CAR, model=model, steps=10, side_by_side=True)
    assert len(frames) == 2


def test_an_agent_acts_on_the_dream_observation(tmp_path, model_dirs):
    dream = gym.make(PENDULUM, model=str(model_dirs["pendulum"]))
    controller = LinearController.for_spaces(dream.observation_space, dream.action_space, env_id=PENDULUM,
                                             world_model=str(model_dirs["pendulum"]))
    with torch.no_grad():
        controller.linear.bias.fill_(5.0)  # full torque, whatever it sees
    controller.save_pretrained(tmp_path / "c")
    frames = rollout_frames(PENDULUM, agent=str(tmp_path / "c"), steps=3, scale=1)  # model from the agent
    assert len(frames) == 4 and frames[0].shape == (128, 128, 3)
    brownian = rollout_frames(PENDULUM, model=str(model_dirs["pendulum"]), steps=3, scale=1)
    assert not all(np.array_equal(a, b) for a, b in zip(frames[1:], brownian[1:]))


def test_bad_policy_and_arguments_raise_config_errors(model_dirs):
    with pytest.raises(ConfigError, match="policy must be one of"):
        rollout_frames(CAR, model=str(model_dirs["carracing"]), policy="greedy")
    with pytest.raises(ConfigError, match="steps"):
        rollout_frames(CAR, model=str(model_dirs["carracing"]), steps=0)
    with pytest.raises(ConfigError, match="scale"):
        rollout_frames(CAR, model=str(model_dirs["carracing"]), scale=0)


def test_random_policy_differs_from_brownian(model_dirs):
    kw = {"model": str(model_dirs["pendulum"]), "steps": 3, "scale": 1, "annotated": False}
    assert not all(np.array_equal(a, b) for a, b in zip(rollout_frames(PENDULUM, policy="random", **kw)[1:],
                                                         rollout_frames(PENDULUM, policy="brownian", **kw)[1:]))


def test_gif_has_every_frame_loops_and_keeps_the_size(tmp_path, model_dirs):
    frames = rollout_frames(CAR, model=str(model_dirs["carracing"]), steps=7, side_by_side=True)
    path = write_video(frames, tmp_path / "sub" / "dream.gif", fps=20)
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    with Image.open(path) as gif:
        assert gif.n_frames == 8
        assert gif.size == (frames[0].shape[1], frames[0].shape[0]) == (640, 256)
        assert gif.info["loop"] == 0 and gif.info["duration"] == 50


def test_mp4_is_written_with_imageio_ffmpeg(tmp_path, model_dirs):
    frames = rollout_frames(CAR, model=str(model_dirs["carracing"]), steps=4, scale=1)
    frames = [f[:, :63] for f in frames]  # an odd width: H.264 needs even sizes, so it is padded
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        with pytest.raises(DependencyNotInstalled, match="pip install imageio imageio-ffmpeg"):
            write_video(frames, tmp_path / "dream.mp4", fps=10)
        return
    path = write_video(frames, tmp_path / "dream.mp4", fps=10)
    assert list(tmp_path.iterdir()) == [path]
    with imageio.get_reader(path, format="FFMPEG") as reader:
        got = [f for f in reader]
    assert len(got) == 5 and got[0].shape == (64, 64, 3)


def test_mp4_without_imageio_ffmpeg_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    with pytest.raises(DependencyNotInstalled, match="pip install imageio imageio-ffmpeg"):
        write_video([np.zeros((8, 8, 3), np.uint8)], tmp_path / "x.mp4", fps=10)
    assert not list(tmp_path.iterdir())


def test_write_video_rejects_other_suffixes_and_bad_input(tmp_path):
    frame = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ConfigError, match=r"\.gif, \.mp4"):
        write_video([frame], tmp_path / "dream.avi", fps=10)
    with pytest.raises(ConfigError, match="at least one frame"):
        write_video([], tmp_path / "dream.gif", fps=10)
    with pytest.raises(ConfigError, match="fps"):
        write_video([frame], tmp_path / "dream.gif", fps=0)
    with pytest.raises(ConfigError, match="one size"):
        write_video([frame, np.zeros((9, 8, 3), np.uint8)], tmp_path / "dream.gif", fps=10)
    assert not list(tmp_path.iterdir())


def test_video_fps_defaults_to_the_dreams_rate_capped_for_gifs():
    assert video_fps(PENDULUM) == 30 and video_fps(CAR) == 50 and video_fps(CAR, 12.5) == 12.5


@pytest.mark.skipif(not has_vizdoom(), reason="vizdoom is not installed: pip install 'dreamgym[doom]'")
def test_doom_side_by_side(model_dirs):
    frames = rollout_frames(DOOM, model=str(model_dirs["doom"]), steps=2, side_by_side=True, scale=2)
    assert len(frames) == 3 and frames[0].shape == (128, 128 + 171, 3)  # ViZDoom renders 320x240


def test_gymnasium_record_video_works_on_a_dream(tmp_path, model_dirs):
    pytest.importorskip("moviepy", reason="gymnasium.wrappers.RecordVideo needs moviepy: pip install moviepy")
    env = gym.make(CAR, model=str(model_dirs["carracing"]), render_mode="rgb_array", max_episode_steps=5)
    env = gym.wrappers.RecordVideo(env, str(tmp_path / "videos"), episode_trigger=lambda episode: True,
                                   disable_logger=True)
    env.reset(seed=0)
    done = False
    while not done:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        done = terminated or truncated
    env.close()
    videos = list((tmp_path / "videos").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 0
    imageio = pytest.importorskip("imageio.v2")
    with imageio.get_reader(videos[0], format="FFMPEG") as reader:
        assert reader.get_meta_data()["fps"] == 50  # the dream's metadata["render_fps"]
        assert len([f for f in reader]) == 6  # the reset frame and 5 steps
