"""Scripted experts: drivers that read the simulator's state, for collecting data only.

A world model learns the dynamics it is shown. Random play rarely shows CarRacing's car at speed in
a curve, so a dream trained on it lets a controller drive fast where reality would skid off the road
(measured in ``pretrained/README.md``). *Dropout's Dream Land* (Wellmer & Kwok, 2021) took 90 % of its
CarRacing data from an expert driver. An expert here reads privileged state (the track and the car),
which the agent never sees: the agent still learns in the dream alone, from frames.

``policy="expert"`` in :class:`dreamgym.data.collect.CollectConfig` (``dreamgym collect ENV --policy
expert --noise 0.2``). Each episode draws its own driving style (target speeds, lookahead) from the
episode's rng, and ``noise`` adds steering noise and lapses: stretches of a random held action after
which the expert must recover, so the data also shows the car leaving the road and coming back.

``pedal_noise`` (``--pedal-noise``) breaks a confound that steering noise leaves in place: the expert's
gas and brake follow from the road ahead, so a world model can predict the car's speed from the frames
alone and ignore the pedals. Its dream then drives on when the agent does nothing (measured in
``pretrained/README.md``). With pedal lapses the expert keeps steering while its pedals are a random
setting (nothing, gas, brake or both) held for 10-40 steps, so the data shows the car coasting to a stop
on the road, and taking a curve at full speed. Half of the episodes begin in a pedal lapse (``PEDAL_START``),
because without it nearly every episode in the data pulls away from the start. Measured (session 13): with
these lapses in a fifth to a quarter of the data, the dreams still pay for standing still (76-220 against -93
in reality, three trainings of M), and PPO agents trained in them did not transfer better.
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np

from dreamgym.errors import ConfigError


class CarRacingPursuit:
    """Pure pursuit along CarRacing's track centre line, braking before curves.

    Without noise it scores about 790 over 1000 steps (3 episodes, seeds 1000-1002, target speeds 60
    and 30). At noise 0.2 it scores 480 ± 165 (200 episodes, ``dreamgym collect CarRacing-v3 --policy
    expert --noise 0.2 --seed 300000``; random actions score about -33).

    The episode's style is drawn once: target speed on straights in [45, 75], in curves in [25, 40],
    lookahead 4-7 track points. ``noise`` is the std of Gaussian steering noise, and also sets how often
    a lapse begins (probability ``noise / 50`` per step; a random gas/steer action held for 10-40 steps).
    ``pedal_noise`` is the probability per step that a pedal lapse begins: random pedals (see the module)
    held for 10-40 steps while the expert steers; with it, an episode begins in one with probability PEDAL_START.
    ``speed`` scales both target speeds (drawn as above, then multiplied; the lookahead is unchanged). The style
    above completes few laps within CarRacing's 1000 steps, so its data never shows one: at speed 1.5 (straights
    67-112, curves 37-60) the noiseless expert scores 880-912 (targets 67/37 and 112/60, seeds 1000-1002), laps
    done in 782-1000 steps, also with its gas capped at 0.3 (120/50: 906).
    ``rest_every`` makes the car stop on the road and rest, on average once every that many steps (probability
    1/rest_every per step while driving; 0: never): it brakes (0.8, until its speed
    is under 1, at most REST_BRAKE steps), then holds one setting for 30-250 steps: no pedals (p 0.6), a light brake
    0.1-0.5 (p 0.2), or gas 0-0.05 under brake 0.3 (p 0.2), the wheel held straight or at a random angle. With it, an
    episode begins in such a rest with probability REST_START. Reality pays -0.1 a step for each; a dream whose data
    never shows a car standing still lets it drive on (session 26: 100 such episodes cut what the dream pays for
    doing nothing from 119 to 24).
    ``pedal_style="cruise"`` makes the pedal lapses steady: a gas drawn from CRUISE_GAS with no brake, held
    CRUISE_STEPS steps while the expert steers, the way agents trained in the dream drive in reality (session 28:
    gas about 0.2, never braking, all wheels off the road 22-64 % of the steps). Such a lapse (``pedal_noise`` 1)
    leaves the road 39-56 % of the steps (seeds 1000-1003), so the data shows what speed without braking costs in
    curves.
    ``drift_every`` makes the expert drive on blind, on average once every that many steps (probability 1/drift_every
    per step; 0: never), and an episode begins so with probability DRIFT_START: it holds one nearly straight action
    (steering within DRIFT_STEER, gas in DRIFT_GAS, no brake) for DRIFT_STEPS steps, so the car leaves the road at the
    next curve and stays on the grass until it steers back, as in reality. Every other expert's data shows the car
    back on the road within 40 steps of leaving it, and a dream trained on it pays for driving straight ahead (gas
    0.2: 106 in the shipped dream, -47 in reality; session 28).
    """

    CURVE_POINTS = 15  # how far ahead to look for a curve (track points)
    CURVE_ANGLE = 0.5  # a heading change above this (rad) within CURVE_POINTS counts as a curve
    LOST_ANGLE = 0.6  # a heading error above this (rad): drive slowly (V_LOST) until back on course
    V_LOST = 12.0  # target speed while off course
    PEDAL_START = 0.5  # with pedal_noise > 0: the chance that an episode begins in a pedal lapse
    PEDAL_STYLES = ("random", "cruise")
    CRUISE_GAS = (0.1, 0.35)  # pedal_style "cruise": the held gas is drawn uniformly from this range, no brake
    CRUISE_STEPS = (50, 300)  # ... and held this many steps (inclusive)
    GAIN = 2.0  # steering per radian of heading error
    REST_START = 0.5  # with rest_every > 0: the chance that an episode begins in a rest
    REST_BRAKE = 60  # a rest's braking phase lasts until the car is nearly still, or this many steps
    DRIFT_START = 0.5  # with drift_every > 0: the chance that an episode begins driving blind
    DRIFT_STEPS = (100, 300)  # a blind drive holds its action this many steps (inclusive) ...
    DRIFT_STEER, DRIFT_GAS = 0.2, (0.05, 0.4)  # ... steering uniform in [-0.2, 0.2], gas in this range, no brake

    def __init__(self, env: gym.Env, rng: np.random.Generator, noise: float = 0.0, pedal_noise: float = 0.0,
                 speed: float = 1.0, rest_every: int = 0, pedal_style: str = "random", drift_every: int = 0) -> None:
        if not isinstance(env.action_space, gym.spaces.Box) or env.action_space.shape != (3,):
            raise ConfigError(f"The CarRacing expert steers, brakes and accelerates: it needs the continuous "
                              f"action space Box(3,), got {env.action_space}. Leave continuous=True (the default).")
        if not 0.0 <= pedal_noise <= 1.0:
            raise ConfigError(f"pedal_noise is a probability per step, in [0, 1]; got {pedal_noise}.")
        if not speed > 0:
            raise ConfigError(f"speed scales the expert's target speeds; it must be > 0, got {speed}.")
        if pedal_style not in self.PEDAL_STYLES:
            raise ConfigError(f"pedal_style must be one of {self.PEDAL_STYLES}, got {pedal_style!r}.")
        self.pedal_style = pedal_style
        if isinstance(rest_every, bool) or not isinstance(rest_every, int) or rest_every < 0:
            raise ConfigError(f"rest_every is the mean number of steps between rests, an int >= 1 (0: never); "
                              f"got {rest_every!r}.")
        self.env, self.rng, self.noise, self.pedal_noise = env, rng, noise, pedal_noise
        self.rest = 1.0 / rest_every if rest_every else 0.0  # the chance per step that a rest begins
        self.v_straight = float(rng.uniform(45.0, 75.0)) * speed
        self.v_curve = float(rng.uniform(25.0, 40.0)) * speed
        self.look = int(rng.integers(4, 8))
        self.lapse_left, self.lapse_action = 0, None
        self.pedal_left, self.pedals = 0, None
        if pedal_noise > 0 and rng.random() < self.PEDAL_START:
            self.pedal_lapse()
        self.rest_mode: str | None = None  # None (driving), "brake" or "rest"
        self.rest_left, self.rest_hold = 0, np.zeros(3, dtype=np.float32)
        if self.rest > 0 and rng.random() < self.REST_START:
            self.begin_rest(braking=False)
        if isinstance(drift_every, bool) or not isinstance(drift_every, int) or drift_every < 0:
            raise ConfigError(f"drift_every is the mean number of steps between blind drives, an int >= 1 (0: never); "
                              f"got {drift_every!r}.")
        self.drift = 1.0 / drift_every if drift_every else 0.0  # the chance per step that a blind drive begins
        self.drift_left, self.drift_action = 0, np.zeros(3, dtype=np.float32)
        if self.drift > 0 and rng.random() < self.DRIFT_START:
            self.begin_drift()
        self.points: np.ndarray | None = None  # the track's centre line (read on the first step)
        self.headings: np.ndarray | None = None

    def steer_gas_brake(self) -> np.ndarray:
        """The noiseless action for the car's current state."""
        u = self.env.unwrapped
        car = u.car
        if self.points is None:  # the track is fixed for the episode, and the expert lives one episode
            self.points = np.asarray([(t[2], t[3]) for t in u.track])
            self.headings = np.asarray([t[1] for t in u.track])
        points, headings = self.points, self.headings
        pos = np.asarray(car.hull.position, dtype=np.float64)
        n = len(points)
        i = int(np.argmin(np.linalg.norm(points - pos, axis=1)))
        to = points[(i + self.look) % n] - pos
        fwd = np.asarray(car.hull.GetWorldVector((0, 1)), dtype=np.float64)
        err = np.arctan2(fwd[0] * to[1] - fwd[1] * to[0], fwd @ to)  # > 0: the target is to the left
        steer = float(np.clip(-self.GAIN * err, -1.0, 1.0))
        turn = np.angle(np.exp(1j * (headings[(i + self.CURVE_POINTS) % n] - headings[i])))
        target = self.v_curve if abs(turn) > self.CURVE_ANGLE else self.v_straight
        if abs(err) > self.LOST_ANGLE:  # off course (after a lapse): slow down so that the car can turn back
            target = self.V_LOST
        speed = float(np.linalg.norm(car.hull.linearVelocity))
        return np.array([steer, 0.6 if speed < target else 0.0, 0.6 if speed > target + 8 else 0.0], dtype=np.float32)

    def pedal_lapse(self) -> None:
        """Random pedals for the next 10-40 steps: gas with p 0.6, brake with p 0.3, each uniform in [0, 1]; or, in
        pedal_style "cruise", a steady gas in CRUISE_GAS and no brake for CRUISE_STEPS steps."""
        if self.pedal_style == "cruise":
            self.pedal_left = int(self.rng.integers(self.CRUISE_STEPS[0], self.CRUISE_STEPS[1] + 1))
            self.pedals = np.array([self.rng.uniform(*self.CRUISE_GAS), 0.0], dtype=np.float32)
            return
        self.pedal_left = int(self.rng.integers(10, 41))
        gas = self.rng.uniform(0, 1) if self.rng.random() < 0.6 else 0.0
        brake = self.rng.uniform(0, 1) if self.rng.random() < 0.3 else 0.0
        self.pedals = np.array([gas, brake], dtype=np.float32)

    def begin_rest(self, braking: bool = True) -> None:
        """Stop (``braking``) and rest, or rest at once (at the start, where the car stands still already)."""
        self.rest_mode = "brake" if braking else "rest"
        self.rest_left = self.REST_BRAKE if braking else int(self.rng.integers(30, 251))
        u = self.rng.random()
        steer = float(self.rng.uniform(-1, 1)) if self.rng.random() < 0.5 else 0.0
        if u < 0.6:
            gas, brake = 0.0, 0.0
        elif u < 0.8:
            gas, brake = 0.0, float(self.rng.uniform(0.1, 0.5))
        else:
            gas, brake = float(self.rng.uniform(0, 0.05)), 0.3
        self.rest_hold = np.array([steer, gas, brake], dtype=np.float32)

    def begin_drift(self) -> None:
        """Drive on blind: one nearly straight action, held DRIFT_STEPS steps whatever the road does."""
        self.drift_left = int(self.rng.integers(self.DRIFT_STEPS[0], self.DRIFT_STEPS[1] + 1))
        self.drift_action = np.array([self.rng.uniform(-self.DRIFT_STEER, self.DRIFT_STEER),
                                      self.rng.uniform(*self.DRIFT_GAS), 0.0], dtype=np.float32)

    def resting(self) -> np.ndarray | None:
        """The action of a rest under way (or begun now), or None while driving."""
        if self.rest_mode is None and self.rest > 0 and self.rng.random() < self.rest:
            self.begin_rest()
        if self.rest_mode == "brake":
            self.rest_left -= 1
            if float(np.linalg.norm(self.env.unwrapped.car.hull.linearVelocity)) < 1.0 or self.rest_left <= 0:
                self.rest_mode, self.rest_left = "rest", int(self.rng.integers(30, 251))
            action = self.steer_gas_brake()
            action[1:] = (0.0, 0.8)
            return action
        if self.rest_mode == "rest":
            self.rest_left -= 1
            if self.rest_left <= 0:
                self.rest_mode = None
            return self.rest_hold.copy()
        return None

    def __call__(self, obs: Any) -> np.ndarray:
        if self.drift > 0:
            if self.drift_left == 0 and self.rng.random() < self.drift:
                self.begin_drift()
            if self.drift_left > 0:
                self.drift_left -= 1
                return self.drift_action.copy()
        if self.rest > 0:
            action = self.resting()
            if action is not None:
                return action
        if self.lapse_left == 0 and self.noise > 0 and self.rng.random() < self.noise / 50:
            self.lapse_left = int(self.rng.integers(10, 41))
            self.lapse_action = np.array([self.rng.uniform(-1, 1), self.rng.uniform(0, 1), 0.0], dtype=np.float32)
        if self.lapse_left > 0:
            self.lapse_left -= 1
            return self.lapse_action.copy()
        action = self.steer_gas_brake()
        action[0] = np.clip(action[0] + self.noise * self.rng.normal(), -1.0, 1.0)
        if self.pedal_left == 0 and self.pedal_noise > 0 and self.rng.random() < self.pedal_noise:
            self.pedal_lapse()
        if self.pedal_left > 0:
            self.pedal_left -= 1
            action[1:] = self.pedals
        return action


class TakeCoverDodger:
    """Dodges VizdoomTakeCover's fireballs by reading ViZDoom's object list (positions and velocities).

    Random play, the paper's Doom data, rarely lives long or reaches a wall, so a dream trained on it
    does not know what dodging, or a wall, leads to; its controllers strafe one way and live on in the
    dream while they die in reality (``pretrained/README.md``). This expert shows both.

    Each step it predicts where every incoming fireball crosses the player's line, simulates the player's
    strafe for 60 steps under a few plans (one key held, or one key for 4 or 12 steps then another; Doom's
    strafe: velocity' = 0.90625 velocity + 0.75 key), and takes the first key of the plan whose path
    passes furthest from the fireballs (the near ones weigh three times more), with a small pull towards
    the episode's home (a y drawn per episode anywhere between the walls, so that the data shows the
    walls too) and, by a weight drawn per episode, away from the walls. Without noise it lived to the real
    twin's 2,100-step limit in each of 6 episodes (seeds 100-105; random actions live 228 ± 99 steps).
    Make it before ``env.reset()``: ViZDoom lists the objects from the next episode on.

    ``noise`` sets lapses: with probability ``noise / 10`` per step a random key (including none) is
    held for 1-10 steps, as the paper's random policy does, so the data also shows fireballs hitting and
    the player dying. Measured (12 episodes each, capped at 512 steps, the length of M's training windows):
    noise 1.5 lives 451 ± 96 steps (5 of 12 die), noise 3 lives 322 ± 149 (10 of 12 die). The episode's
    margin (how close a fireball may pass), home and wall weight are drawn from ``rng``.
    """

    FRICTION, THRUST = 0.90625, 0.75  # Doom's strafe, measured: v' = FRICTION v + THRUST key
    Y_MIN, Y_MAX = 16.0, 752.0  # take_cover.wad: the player's y between the walls (measured)
    MIDDLE = 384.0  # the player's y at the start, half the span between the walls
    HORIZON = 60  # steps simulated ahead (a fireball crosses the room in ~50)
    ACTIONS = {0: 0, -1: 1, 1: 2}  # key -> action: 1 is MOVE_RIGHT (y falls), 2 is MOVE_LEFT (y rises)

    def __init__(self, env: gym.Env, rng: np.random.Generator, noise: float = 0.0, pedal_noise: float = 0.0,
                 speed: float = 1.0, rest_every: int = 0, pedal_style: str = "random", drift_every: int = 0) -> None:
        game = getattr(env.unwrapped, "game", None)
        if game is None or not hasattr(game, "set_objects_info_enabled"):
            raise ConfigError(f"The TakeCover expert reads ViZDoom's object list: it needs ViZDoom's "
                              f"VizdoomTakeCover env, got {env.unwrapped!r}.")
        if pedal_noise or pedal_style != "random":
            raise ConfigError("pedal_noise and pedal_style are the CarRacing expert's; the TakeCover expert has no "
                              "pedals. Leave them unset.")
        if speed != 1.0:
            raise ConfigError("speed scales the CarRacing expert's target speeds; the TakeCover expert has none. "
                              "Leave it at 1.")
        if drift_every:
            raise ConfigError("drift_every makes the CarRacing expert drive on blind; the TakeCover expert does not "
                              "drive. Leave it at 0.")
        if rest_every:
            raise ConfigError("rest_every stops the CarRacing expert's car on the road; the TakeCover expert has no "
                              "car. Leave it at 0.")
        if not noise >= 0:
            raise ConfigError(f"noise sets the expert's lapses (probability noise/10 per step); it must be >= 0, got {noise}.")
        game.set_objects_info_enabled(True)  # takes effect on the next state; no restart needed
        self.game, self.rng, self.noise = game, rng, float(noise)
        self.margin = float(rng.uniform(24.0, 40.0))  # |dy| at the crossing that counts as a hit
        self.home = float(rng.uniform(self.Y_MIN, self.Y_MAX))  # where it drifts when nothing comes
        self.wall_weight = float(rng.uniform(0.0, 0.3))  # how much it keeps off the walls
        self.last_y: float | None = None
        self.lapse_left, self.lapse_action = 0, 0
        self.plans = [(k1, n, k2) for k1 in (-1, 0, 1) for n in (4, 12, self.HORIZON) for k2 in (-1, 0, 1)
                      if n < self.HORIZON or k2 == k1]

    def path(self, y: float, v: float, plan: tuple[int, int, int]) -> np.ndarray:
        """The player's y over the next HORIZON steps: ``plan[0]`` held ``plan[1]`` steps, then ``plan[2]``."""
        first, n, then = plan
        ys = np.empty(self.HORIZON)
        for t in range(self.HORIZON):
            v = self.FRICTION * v + self.THRUST * (first if t < n else then)
            y = y + v
            if not self.Y_MIN < y < self.Y_MAX:
                y, v = min(max(y, self.Y_MIN), self.Y_MAX), 0.0
            ys[t] = y
        return ys

    def dodge(self) -> int:
        """The noiseless action for the current state."""
        state = self.game.get_state()
        if state is None:  # the episode is over
            return 0
        if state.objects is None:
            raise ConfigError("ViZDoom lists the objects only from the episode after it is asked to: make the "
                              "TakeCover expert before env.reset(), as dreamgym collect does.")
        player = next((o for o in state.objects if o.name == "DoomPlayer"), None)
        if player is None:
            return 0
        y = float(player.position_y)
        v = 0.0 if self.last_y is None else y - self.last_y
        self.last_y = y
        crossings = []  # (steps until the fireball crosses the player's line, its y there)
        for o in state.objects:
            if o.name != "DoomImpBall" or o.velocity_x > -0.5:
                continue
            t = (o.position_x - player.position_x) / -o.velocity_x
            if -2 <= t < self.HORIZON:
                crossings.append((min(max(int(t), 0), self.HORIZON - 1), o.position_y + o.velocity_y * t))
        best, best_cost = self.plans[0], np.inf
        for plan in self.plans:
            ys = self.path(y, v, plan)
            cost = sum(np.exp(-((ys[t] - yb) / self.margin) ** 2) * (3.0 if t < 15 else 1.0) for t, yb in crossings)
            edge = min(ys[-1] - self.Y_MIN, self.Y_MAX - ys[-1])
            cost += self.wall_weight * np.exp(-edge / 60.0) + 0.02 * abs(ys[-1] - self.home) / self.MIDDLE + 0.01 * abs(plan[0])
            if cost < best_cost:
                best, best_cost = plan, cost
        return self.ACTIONS[best[0]]

    def __call__(self, obs: Any) -> int:
        action = self.dodge()  # every step, so that the player's velocity stays known through a lapse
        if self.lapse_left == 0 and self.noise > 0 and self.rng.random() < self.noise / 10:
            self.lapse_left, self.lapse_action = int(self.rng.integers(1, 11)), int(self.rng.integers(3))
        if self.lapse_left > 0:
            self.lapse_left -= 1
            return self.lapse_action
        return action


EXPERTS: dict[str, Callable[[gym.Env, np.random.Generator, float, float, float, int, str, int],
                             Callable[[Any], Any]]] = {
    "CarRacing": CarRacingPursuit,
    "VizdoomTakeCover": TakeCoverDodger,
}


def expert_name(env_id: str) -> str:
    """The env's name without namespace and version (``"CarRacing-v3"`` -> ``"CarRacing"``)."""
    return env_id.split("/")[-1].rsplit("-v", 1)[0]


def check_expert(env_id: str) -> None:
    """A ConfigError unless dreamgym has a scripted expert for ``env_id``."""
    if expert_name(env_id) not in EXPERTS:
        raise ConfigError(f"policy='expert' needs a scripted expert for the env; there is one for "
                          f"{sorted(EXPERTS)}, not for {env_id!r}. Use policy 'brownian', 'held' or 'agent' instead.")


def make_expert(env_id: str, env: gym.Env, rng: np.random.Generator, noise: float,
                pedal_noise: float = 0.0, speed: float = 1.0, rest_every: int = 0,
                pedal_style: str = "random", drift_every: int = 0) -> Callable[[Any], Any]:
    """The scripted expert for ``env_id``, driving ``env`` (one per episode: it draws its style from ``rng``)."""
    check_expert(env_id)
    return EXPERTS[expert_name(env_id)](env, rng, noise, pedal_noise, speed, rest_every, pedal_style, drift_every)
