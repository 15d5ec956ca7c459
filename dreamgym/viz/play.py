"""Play a dream yourself: keyboard control in a pygame window, tau on a key, Tab to compare with reality.

Keys (held keys act every frame; with none held the neutral action is played):

- CarRacing-v3, ``Box([-1, 0, 0], 1, (3,))`` = [steer, gas, brake]: ←/→ steer -1/+1, ↑ gas 1, ↓ brake 0.8
  (gymnasium's own CarRacing keyboard values).
- VizdoomTakeCover-v1, ``Discrete(3)``: ← move left, → move right, neither (or both) stand still. ViZDoom's
  gymnasium wrapper (``vizdoom/gymnasium_wrapper/base_gymnasium_env.py``, ``__get_binary_action_space``)
  builds its Discrete actions as ``itertools.product((0, 1), repeat=n_buttons)`` filtered to at most one
  pressed button, over take_cover.cfg's buttons ``{MOVE_LEFT, MOVE_RIGHT}``: index 0 = (0, 0) no-op,
  1 = (0, 1) MOVE_RIGHT, 2 = (1, 0) MOVE_LEFT.
- Pendulum-v1, ``Box(-2, 2, (1,))`` torque: ← +2 (counter-clockwise on screen), → -2 (clockwise).
- ``]`` / ``+`` / ``=`` raise tau by 0.05, ``[`` / ``-`` lower it (never below 0); ``Tab`` switches between
  the dream and the real env (each keeps its own episode); ``r`` resets the env on screen; ``Esc`` or
  closing the window quits.

Built on pygame directly rather than ``gymnasium.utils.play``, which has no place for the tau keys, the
overlay or the switch to reality.

>>> play("Dream-CarRacing-v0", model="runs/carracing")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.error import DependencyNotInstalled

from dreamgym.errors import ConfigError
from dreamgym.models.world_model import WorldModel
from dreamgym.registry import DREAMS, dream_spec_for_env

TAU_STEP = 0.05
_DOOM = DREAMS["Dream-DoomTakeCover-v0"]  # ViZDoom's Discrete(3) over {MOVE_LEFT, MOVE_RIGHT}: see above
DOOM_NOOP, DOOM_RIGHT, DOOM_LEFT = _DOOM.play_noop, _DOOM.play_keys["right"], _DOOM.play_keys["left"]
EVENT_KINDS = ("down", "up", "quit")

ScriptedEvent = tuple[str, "str | int | None"]  # ("down" | "up", key name or pygame key code), ("quit", None)


def _pygame() -> Any:
    try:
        import pygame
    except ImportError as e:  # pragma: no cover - gymnasium[box2d] brings pygame
        raise DependencyNotInstalled("Playing a dream needs pygame: pip install pygame") from e
    return pygame


@dataclass(frozen=True)
class Controls:
    """How held keys become an action for one real env.

    :param action: held pygame key codes -> an action of the env's action space.
    :param help: a one-line key summary for the on-screen help.
    """

    action: Callable[[set[int]], Any]
    help: str


def controls_for(env_id: str) -> Controls:
    """The keyboard controls of a real env id, from its ``DreamSpec.play_keys`` (``CarRacing-v3``,
    ``VizdoomTakeCover-v1``, ``Pendulum-v1``).

    :param env_id: the real env a dream was learned from (``model.config.env_id``).
    """
    spec = dream_spec_for_env(env_id)
    if spec is None or not spec.play_keys:
        playable = sorted(s.env_id for s in DREAMS.values() if s.play_keys)
        raise ConfigError(f"No keyboard controls for {env_id!r}: expected a dream of one of {playable}.")
    pg = _pygame()
    keys = {_key_code(pg, name): value for name, value in spec.play_keys.items()}
    if spec.action_space["type"] == "Discrete":
        def discrete(held: set[int]) -> int:
            pressed = [keys[k] for k in keys if k in held]
            return pressed[0] if len(pressed) == 1 else spec.play_noop

        return Controls(discrete, spec.play_help)
    zero = np.zeros(len(next(iter(keys.values()))), dtype=np.float32)

    def box(held: set[int]) -> np.ndarray:  # each held key adds its vector
        return sum((np.asarray(keys[k], dtype=np.float32) for k in keys if k in held), zero.copy())

    return Controls(box, spec.play_help)


def _key_code(pg: Any, name: str) -> int:
    """A pygame key code by name (``"left"``, ``"a"``), without ``pygame.init()`` (which key.key_code wants)."""
    code = getattr(pg, f"K_{name}", None) or getattr(pg, f"K_{name.upper()}", None)
    if code is None:
        raise ConfigError(f"Unknown key name {name!r} in DreamSpec.play_keys: use pygame key names such as 'left', 'a'.")
    return int(code)


def press(key: str | int, hold: int = 1) -> list[list[ScriptedEvent]]:
    """A scripted key press for :func:`play`'s ``events``: down now, up ``hold`` frames later.

    :param key: a pygame key name (``"tab"``, ``"]"``, ``"left"``) or a pygame key code.
    :param hold: frames the key stays down (the action it drives is played on each of them).
    """
    if hold < 1:
        raise ConfigError(f"hold must be >= 1 frame, got {hold}.")
    return [[("down", key)], *[[] for _ in range(hold - 1)], [("up", key)]]


def idle(frames: int) -> list[list[ScriptedEvent]]:
    """``frames`` frames without scripted events (the game keeps running).

    :param frames: how many.
    """
    return [[] for _ in range(frames)]


def _post(pg: Any, frame_events: Sequence[ScriptedEvent]) -> None:
    for event in frame_events:
        if not (isinstance(event, (tuple, list)) and len(event) == 2 and event[0] in EVENT_KINDS):
            raise ConfigError(f"A scripted event must be a pair (kind, key) with kind one of {EVENT_KINDS}, "
                              f"e.g. ('down', 'tab'); got {event!r}.")
        kind, key = event
        if kind == "quit":
            pg.event.post(pg.event.Event(pg.QUIT))
            continue
        code = key
        if isinstance(key, str):
            try:
                code = pg.key.key_code(key)
            except ValueError as e:
                raise ConfigError(f"Unknown key name {key!r} in a scripted event: use pygame key names "
                                  "such as 'left', 'tab', ']', 'escape', or pygame key codes.") from e
        pg.event.post(pg.event.Event(pg.KEYDOWN if kind == "down" else pg.KEYUP, key=int(code), mod=0,
                                     unicode="", scancode=0))


@dataclass
class _Track:
    """One env on the screen: the dream or reality, each with its own running episode."""

    env: gym.Env
    needs_reset: bool = True
    steps: int = 0
    episode_steps: int = 0
    episode_return: float = 0.0
    last_reward: float = 0.0
    done_prob: float | None = None
    returns: list[float] = field(default_factory=list)

    def reset(self, seed: int | None) -> None:
        self.env.reset(seed=seed)
        self.needs_reset, self.episode_steps, self.episode_return, self.last_reward = False, 0, 0.0, 0.0
        self.done_prob = None
        self.returns.append(0.0)

    def step(self, action: Any) -> None:
        _, reward, terminated, truncated, info = self.env.step(action)
        self.steps, self.episode_steps = self.steps + 1, self.episode_steps + 1
        self.last_reward = float(reward)
        self.episode_return += float(reward)
        self.returns[-1] = self.episode_return
        self.done_prob = info.get("done_prob")
        self.needs_reset = bool(terminated or truncated)


def play(
    dream_id: str,
    *,
    model: str | WorldModel | None = None,
    temperature: float | None = None,
    fps: float | None = None,
    scale: int = 8,
    max_steps: int | None = None,
    events: Iterable[Sequence[ScriptedEvent]] | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """Drive a dream (and, after ``Tab``, the real env) with the keyboard; see the module docstring for keys.

    :param dream_id: a registered Dream id.
    :param model: world model (WorldModel, checkpoint directory, pretrained name or Hub id); default: the shipped one.
    :param temperature: the starting tau (None: the model's default).
    :param fps: frames (= env steps) per second; None: the dream's render_fps; 0: as fast as possible.
    :param scale: the window is a 64×64 frame enlarged ``scale`` times (plus a status bar).
    :param max_steps: stop after this many env steps in all (None: play until Esc or the window closes).
    :param events: for tests and demos, per-frame lists of scripted key events, posted with
        ``pygame.event.post`` at the start of each frame so they pass through the real event loop:
        ``("down", key)``, ``("up", key)`` (a pygame key name like ``"tab"``, ``"]"``, ``"left"``, or a key
        code) and ``("quit", None)``. Play stops when the script runs out. :func:`press` and :func:`idle`
        build scripts: ``press("]") + press("tab") + idle(5)``.
    :param seed: seeds each env's first reset (later resets continue its generator).
    :return: ``{"steps", "steps_dream", "steps_real", "temperature", "switches", "resets", "mode", "frames",
        "returns": {"dream": [...], "real": [...]}}``; returns hold every episode begun in that mode, the
        last one possibly unfinished.
    """
    _check_play_args(scale, fps, max_steps)
    pg = _pygame()
    kwargs: dict[str, Any] = {} if model is None else {"model": model}
    dream = gym.make(dream_id, temperature=temperature, render_mode="rgb_array", **kwargs)
    session = _Session(dream_id, dream, {"dream": _Track(dream)}, {"dream": seed, "real": seed})
    fps = dream.metadata.get("render_fps", 30) if fps is None else fps
    script = iter(events) if events is not None else None
    view = 64 * scale
    try:
        controls = controls_for(session.model.config.env_id)
        window, font = _open_window(pg, dream_id, view)
        clock = pg.time.Clock()
        while max_steps is None or sum(t.steps for t in session.tracks.values()) < max_steps:
            if script is not None:
                frame_events = next(script, None)
                if frame_events is None:
                    break
                _post(pg, frame_events)
            if not all([session.handle(pg, event) for event in pg.event.get()]):
                break
            track = session.advance(controls.action(session.held))
            _draw(pg, window, font, track, session.mode, dream.unwrapped.temperature, controls.help, view)
            clock.tick(fps)
    finally:
        pg.display.quit()
        for t in session.tracks.values():
            t.env.close()
    return session.result()


def _open_window(pg: Any, dream_id: str, view: int) -> tuple[Any, Any]:
    """The window (a ``view`` px square frame above a two-line status bar) and the status bar's font."""
    font_size = int(np.clip(view // 24, 12, 22))
    pg.display.init()  # not pg.init(): the mixer would look for a sound card
    pg.font.init()
    pg.display.set_caption(f"dreamgym: {dream_id}")
    return pg.display.set_mode((view, view + 2 * font_size + 20)), pg.font.Font(None, font_size)


def _check_play_args(scale: int, fps: float | None, max_steps: int | None) -> None:
    if not (isinstance(scale, (int, np.integer)) and scale >= 1):
        raise ConfigError(f"scale must be an integer >= 1, got {scale!r}.")
    if fps is not None and not (np.isfinite(fps) and fps >= 0):
        raise ConfigError(f"fps must be >= 0 (0: unthrottled) or None, got {fps!r}.")
    if max_steps is not None and max_steps < 0:
        raise ConfigError(f"max_steps must be >= 0 or None, got {max_steps}.")


@dataclass
class _Session:
    """A play session's state: the envs on screen, which one shows, the keys held and the counts so far."""

    dream_id: str
    dream: gym.Env
    tracks: dict[str, _Track]
    seeds: dict[str, int | None]
    mode: str = "dream"
    held: set[int] = field(default_factory=set)
    summary: dict[str, int] = field(default_factory=lambda: {"switches": 0, "resets": 0, "frames": 0})

    @property
    def model(self) -> WorldModel:
        return self.dream.unwrapped.model

    def handle(self, pg: Any, event: Any) -> bool:
        """Apply one pygame event; False when play should stop (Esc, or the window closed)."""
        if event.type == pg.QUIT:
            return False
        if event.type == pg.KEYUP:
            self.held.discard(event.key)
        elif event.type == pg.WINDOWFOCUSLOST:
            self.held.clear()  # a key released in another window would otherwise stay down
        elif event.type == pg.KEYDOWN:
            self.held.add(event.key)
            return self._key(pg, event.key)
        return True

    def _key(self, pg: Any, key: int) -> bool:
        dream = self.dream.unwrapped
        if key == pg.K_ESCAPE:
            return False
        if key == pg.K_TAB:
            self.mode = "real" if self.mode == "dream" else "dream"
            self.summary["switches"] += 1
            if self.mode not in self.tracks:
                from dreamgym.envs.real import make_real

                self.tracks["real"] = _Track(make_real(self.dream_id, model=self.model, render_mode="rgb_array"))
        elif key == pg.K_r:
            self.tracks[self.mode].needs_reset = True
            self.summary["resets"] += 1
        elif key in (pg.K_RIGHTBRACKET, pg.K_PLUS, pg.K_EQUALS, pg.K_KP_PLUS):
            dream.temperature = round(dream.temperature + TAU_STEP, 6)
        elif key in (pg.K_LEFTBRACKET, pg.K_MINUS, pg.K_KP_MINUS):
            dream.temperature = max(0.0, round(dream.temperature - TAU_STEP, 6))
        return True

    def advance(self, action: Any) -> _Track:
        """One step of the env on screen (reset first when its episode ended); returns its track."""
        track = self.tracks[self.mode]
        if track.needs_reset:
            track.reset(self.seeds[self.mode])
            self.seeds[self.mode] = None  # later resets continue the env's generator
        track.step(action)
        self.summary["frames"] += 1
        return track

    def result(self) -> dict[str, Any]:
        steps = {m: (self.tracks[m].steps if m in self.tracks else 0) for m in ("dream", "real")}
        return {
            "steps": steps["dream"] + steps["real"],
            "steps_dream": steps["dream"],
            "steps_real": steps["real"],
            "temperature": round(float(self.dream.unwrapped.temperature), 6),
            "mode": self.mode,
            "returns": {m: (list(self.tracks[m].returns) if m in self.tracks else []) for m in ("dream", "real")},
            **self.summary,
        }


def _draw(pg: Any, window: Any, font: Any, track: _Track, mode: str, tau: float, help_line: str, view: int) -> None:
    window.fill((0, 0, 0))
    frame = np.ascontiguousarray(track.env.render())
    h, w = frame.shape[:2]
    surface = pg.surfarray.make_surface(np.ascontiguousarray(frame.swapaxes(0, 1)))
    k = view / max(h, w)
    size = (max(1, round(w * k)), max(1, round(h * k)))
    # the dream's 64x64 pixels stay crisp; the real env's large frame is smoothly shrunk
    scaled = pg.transform.scale(surface, size) if mode == "dream" else pg.transform.smoothscale(surface, size)
    window.blit(scaled, ((view - size[0]) // 2, (view - size[1]) // 2))
    p_done = "" if track.done_prob is None else f"   p(done) {track.done_prob:.2f}"
    lines = [
        (f"{mode.upper()}   τ {tau:.2f}{'' if mode == 'dream' else ' (dream)'}   step {track.episode_steps}   "
         f"reward {track.last_reward:+.2f}   return {track.episode_return:+.1f}{p_done}"),
        f"{help_line}   [ ] τ   Tab dream/real   r reset   Esc quit",
    ]
    for i, line in enumerate(lines):
        window.blit(font.render(line, True, (255, 255, 255)), (6, view + 8 + (font.get_linesize() + 2) * i))
    pg.display.flip()


__all__ = ["DOOM_LEFT", "DOOM_NOOP", "DOOM_RIGHT", "Controls", "controls_for", "idle", "play", "press"]
