"""Human play, driven by scripted key events through pygame's real event loop (SDL_VIDEODRIVER=dummy)."""

from __future__ import annotations

import numpy as np
import pygame
import pytest

from dreamgym import RealTwin
from dreamgym.errors import ConfigError
from dreamgym.viz import play as play_mod
from dreamgym.viz.play import DOOM_LEFT, DOOM_NOOP, DOOM_RIGHT, controls_for, idle, play, press

from ..conftest import has_vizdoom

CAR, PENDULUM, DOOM = "Dream-CarRacing-v0", "Dream-Pendulum-v0", "Dream-DoomTakeCover-v0"


@pytest.fixture
def actions(monkeypatch):
    """(mode, action) of every step play() takes."""
    seen = []
    step = play_mod._Track.step

    def spy(self, action):
        seen.append(("real" if isinstance(self.env, RealTwin) else "dream", np.array(action)))
        step(self, action)

    monkeypatch.setattr(play_mod._Track, "step", spy)
    return seen


def test_keys_raise_tau_switch_to_reality_and_steer(model_dirs, actions):
    script = press("]") + press("]") + press("]") + press("left", hold=2) + press("tab") + press("up", hold=3) + idle(2)
    summary = play(CAR, model=str(model_dirs["carracing"]), fps=0, scale=2, events=script, seed=0)
    assert summary["temperature"] == pytest.approx(1.15, abs=1e-6)  # the tiny model's default is 1.0
    assert summary["switches"] == 1 and summary["mode"] == "real"
    # press(key, hold=h) is h + 1 frames (down ... up), and every frame is one step
    assert summary["steps_dream"] == 9 and summary["steps_real"] == 8 and summary["steps"] == 17
    assert summary["frames"] == len(script) == 17
    assert len(summary["returns"]["dream"]) == 1 and len(summary["returns"]["real"]) == 1
    modes = [m for m, _ in actions]
    assert modes == ["dream"] * 9 + ["real"] * 8
    act = [a for _, a in actions]
    assert all(np.allclose(act[i], [-1, 0, 0]) for i in (6, 7)) and np.allclose(act[8], 0)  # left down at 6, up at 8
    assert all(np.allclose(act[i], [0, 1, 0]) for i in (11, 12, 13)) and np.allclose(act[14], 0)  # gas, in reality


def test_tau_is_lowered_but_never_below_zero(model_dirs):
    summary = play(PENDULUM, model=str(model_dirs["pendulum"]), temperature=0.1, fps=0, scale=2,
                   events=press("[") + press("-") + press("[") + idle(1))
    assert summary["temperature"] == 0.0 and summary["steps_dream"] == 7


def test_switching_back_continues_the_dream_episode_and_r_resets(model_dirs):
    script = idle(3) + press("tab") + press("tab") + idle(2) + press("r") + idle(1)
    summary = play(PENDULUM, model=str(model_dirs["pendulum"]), fps=0, scale=2, events=script)
    assert summary["switches"] == 2 and summary["mode"] == "dream" and summary["resets"] == 1
    assert summary["steps_real"] == 2 and summary["steps_dream"] == 10
    assert len(summary["returns"]["dream"]) == 2  # the episode before r, and the one after


@pytest.mark.parametrize("script", [press("escape") + idle(5), [[("quit", None)]] + idle(5)])
def test_escape_or_closing_the_window_quits(model_dirs, script):
    summary = play(PENDULUM, model=str(model_dirs["pendulum"]), fps=0, scale=2, events=idle(2) + script)
    assert summary["steps"] == 2 and summary["frames"] == 2


def test_without_a_script_max_steps_ends_the_game(model_dirs):
    summary = play(CAR, model=str(model_dirs["carracing"]), fps=0, scale=1, max_steps=4)
    assert summary["steps"] == 4 and summary["switches"] == 0 and summary["returns"]["real"] == []
    assert play(CAR, model=str(model_dirs["carracing"]), fps=0, scale=1, max_steps=0)["steps"] == 0


def test_bad_scripts_and_arguments_raise_config_errors(model_dirs):
    kw = {"model": str(model_dirs["pendulum"]), "fps": 0, "scale": 1}
    with pytest.raises(ConfigError, match="Unknown key name"):
        play(PENDULUM, events=[[("down", "no-such-key")]], **kw)
    with pytest.raises(ConfigError, match="pair"):
        play(PENDULUM, events=[[("press", "tab")]], **kw)
    with pytest.raises(ConfigError, match="scale"):
        play(PENDULUM, model=kw["model"], scale=0)
    with pytest.raises(ConfigError, match="fps"):
        play(PENDULUM, model=kw["model"], fps=-1)
    with pytest.raises(ConfigError, match="hold"):
        press("tab", hold=0)


def test_key_maps():
    car, pendulum, doom = (controls_for(e).action for e in ("CarRacing-v3", "Pendulum-v1", "VizdoomTakeCover-v1"))
    L, R, U, D = pygame.K_LEFT, pygame.K_RIGHT, pygame.K_UP, pygame.K_DOWN
    assert np.allclose(car({L, U}), [-1, 1, 0]) and np.allclose(car({R, D}), [1, 0, 0.8]) and np.allclose(car(set()), 0)
    assert np.allclose(pendulum({L}), [2]) and np.allclose(pendulum({R}), [-2]) and np.allclose(pendulum({L, R}), [0])
    assert (doom({L}), doom({R}), doom(set()), doom({L, R})) == (DOOM_LEFT, DOOM_RIGHT, DOOM_NOOP, DOOM_NOOP)
    with pytest.raises(ConfigError, match="No keyboard controls"):
        controls_for("LunarLander-v3")


@pytest.mark.skipif(not has_vizdoom(), reason="vizdoom is not installed: pip install 'dreamgym[doom]'")
def test_doom_key_map_matches_vizdooms_buttons_and_plays(model_dirs):
    import gymnasium as gym
    import vizdoom
    import vizdoom.gymnasium_wrapper  # registers VizdoomTakeCover-v1

    env = gym.make("VizdoomTakeCover-v1")
    buttons = env.unwrapped.game.get_available_buttons()
    pressed = {i: [b for b, on in zip(buttons, env.unwrapped.button_map[i]) if on] for i in range(3)}
    env.close()
    assert pressed == {DOOM_NOOP: [], DOOM_RIGHT: [vizdoom.Button.MOVE_RIGHT], DOOM_LEFT: [vizdoom.Button.MOVE_LEFT]}
    summary = play(DOOM, model=str(model_dirs["doom"]), fps=0, scale=1, events=press("left") + press("tab") + idle(1))
    assert summary["steps_dream"] == 2 and summary["steps_real"] == 3
