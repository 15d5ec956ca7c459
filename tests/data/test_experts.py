import gymnasium as gym
import numpy as np
import pytest

from dreamgym.cli import main
from dreamgym.data.collect import CollectConfig, HeldPolicy, collect
from dreamgym.data.episodes import read_episode, read_meta, shard_paths
from dreamgym.data.experts import CarRacingPursuit, TakeCoverDodger, make_expert
from dreamgym.errors import ConfigError
from dreamgym.registry import make_real_env
from dreamgym.rollout import BrownianPolicy

from ..conftest import has_vizdoom


def _drive(policy_for, steps, seed=3):
    env = gym.make("CarRacing-v3")
    obs, _ = env.reset(seed=seed)
    policy, total, actions = policy_for(env), 0.0, []
    for _ in range(steps):
        action = policy(obs)
        actions.append(action)
        obs, reward, terminated, truncated, _ = env.step(action)
        total += reward
        if terminated or truncated:
            break
    tiles = env.unwrapped.tile_visited_count
    env.close()
    return total, tiles, np.asarray(actions)


def recorded_policy(out, **options):
    """The policy that dataset.json records for one short episode of the CarRacing expert with ``options``."""
    config = CollectConfig("CarRacing-v3", out=str(out), episodes=1, max_steps=20, workers=1, policy="expert", **options)
    collect(config, progress=False)
    return read_meta(out).policy


def test_the_carracing_expert_drives_the_track():
    """Without noise it follows the track: over 250 steps (5 s of simulated time) it visits far more
    tiles than a brownian driver and its return is positive where the brownian one's is not."""
    rng = np.random.default_rng(0)
    ret, tiles, actions = _drive(lambda env: make_expert("CarRacing-v3", env, rng, 0.0), 250)
    b_ret, b_tiles, _ = _drive(lambda env: BrownianPolicy(env.action_space, np.random.default_rng(0)), 250)
    assert tiles >= 40 and tiles > 3 * max(b_tiles, 1), (tiles, b_tiles)
    assert ret > 100 and ret > b_ret + 100, (ret, b_ret)
    space = gym.make("CarRacing-v3").action_space
    assert all(space.contains(a) for a in actions)


def test_expert_noise_adds_lapses_and_the_style_is_drawn_per_episode():
    env = gym.make("CarRacing-v3")
    env.reset(seed=0)
    styles = {(e.v_straight, e.v_curve, e.look) for e in (CarRacingPursuit(env, np.random.default_rng(s)) for s in range(4))}
    assert len(styles) == 4
    noisy = CarRacingPursuit(env, np.random.default_rng(1), noise=1.0)  # a lapse begins with p 0.02 per step
    actions, in_lapse = [], []
    for _ in range(400):
        actions.append(noisy(None))
        in_lapse.append(noisy.lapse_left > 0 or np.array_equal(actions[-1], noisy.lapse_action))
    actions, in_lapse = np.asarray(actions), np.asarray(in_lapse)
    assert 10 <= in_lapse.sum() < 400, "no lapse (a random action held 10-40 steps) in 400 steps at noise 1"
    lapse = actions[in_lapse]
    assert (lapse[:, 2] == 0).all() and len(np.unique(lapse, axis=0)) < len(lapse) / 9  # held, no brake
    quiet = CarRacingPursuit(env, np.random.default_rng(1), noise=0.0)
    quiet_actions = np.asarray([quiet(None) for _ in range(400)])
    assert quiet.lapse_left == 0 and (quiet_actions == quiet.steer_gas_brake()).all()  # the car did not move
    env.close()


def test_collect_with_the_expert_is_deterministic_and_recorded(tmp_path):
    def run(out):
        return collect(CollectConfig("CarRacing-v3", out=str(out), episodes=2, max_steps=40, workers=1,
                                     policy="expert", noise=0.3, seed=5), progress=False)

    run(tmp_path / "a"), run(tmp_path / "b")
    assert read_meta(tmp_path / "a").policy["name"] == "expert"
    a, b = (read_episode(p) for p in (shard_paths(tmp_path / "a")[1], shard_paths(tmp_path / "b")[1]))
    assert np.array_equal(a.actions, b.actions) and np.array_equal(a.obs, b.obs)
    assert a.actions[:, 1].max() > 0.5  # it steps on the gas


def test_expert_for_an_env_without_one_is_refused(tmp_path, capsys):
    with pytest.raises(ConfigError, match="scripted expert.*CarRacing.*Pendulum-v1"):
        CollectConfig("Pendulum-v1", out=str(tmp_path / "d"), policy="expert").validate()
    with pytest.raises(SystemExit) as exit_info:
        main(["collect", "Pendulum-v1", "--out", str(tmp_path / "d"), "--policy", "expert"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "dreamgym collect: error: policy='expert'" in err and "Pendulum-v1" in err
    assert not (tmp_path / "d").exists()
    discrete = gym.make("CarRacing-v3", continuous=False)
    with pytest.raises(ConfigError, match=r"continuous action space Box\(3,\), got Discrete\(5\)"):
        CarRacingPursuit(discrete, np.random.default_rng(0))


@pytest.mark.parametrize("lapse", [[1.0, 1.0, 0.0], [-0.6, 0.8, 0.0]])
def test_the_expert_finds_the_track_again_after_a_lapse(lapse):
    """A lapse throws the car off course; the expert slows down, turns back and visits tiles again
    (before it slowed down when off course, it could circle on the grass for the rest of the episode)."""
    env = gym.make("CarRacing-v3")
    obs, _ = env.reset(seed=300001)
    expert = CarRacingPursuit(env, np.random.default_rng(0))
    for t in range(60 + 40 + 300):
        action = np.asarray(lapse, dtype=np.float32) if 60 <= t < 100 else expert(obs)
        obs, *_ = env.step(action)
        if t == 99:
            after_lapse = env.unwrapped.tile_visited_count
    regained = env.unwrapped.tile_visited_count - after_lapse
    env.close()
    assert regained >= 25, f"{regained} new tiles in the 300 steps after a lapse"


def test_pedal_noise_makes_the_pedals_random_while_the_expert_steers(tmp_path):
    """Pedal lapses: gas and brake held at a random setting for 10-40 steps (so speed no longer follows from the
    road ahead), while the steering is still the expert's; recorded in dataset.json, refused for other policies."""
    env = gym.make("CarRacing-v3")
    env.reset(seed=0)
    expert = CarRacingPursuit(env, np.random.default_rng(2), pedal_noise=0.2)
    pedals, steer_ok = [], []
    for _ in range(300):
        action = expert(None)
        pedals.append(tuple(action[1:]))
        steer_ok.append(action[0] == expert.steer_gas_brake()[0])
        env.step(action)
    pedals = np.asarray(pedals)
    assert all(steer_ok)  # no steering noise at noise 0: the expert steers through its pedal lapses
    expert_pedals = {0.0, 0.6}  # the expert alone only ever sets 0 or 0.6
    odd = ~np.isin(pedals, list(expert_pedals)).all(axis=1)
    assert odd.sum() >= 30, odd.sum()
    runs = np.diff(np.flatnonzero(np.r_[True, (pedals[1:] != pedals[:-1]).any(axis=1), True]))
    assert runs.max() >= 10  # held, not redrawn each step
    env.reset(seed=0)
    starts = [CarRacingPursuit(env, np.random.default_rng(s), pedal_noise=0.01).pedal_left > 0 for s in range(60)]
    assert 15 <= sum(starts) <= 45  # half the episodes begin in a pedal lapse (without one, every car pulls away)
    assert not any(CarRacingPursuit(env, np.random.default_rng(s)).pedal_left for s in range(20))
    with pytest.raises(ConfigError, match=r"probability per step, in \[0, 1\]; got 1.5"):
        CarRacingPursuit(env, np.random.default_rng(0), pedal_noise=1.5)
    env.close()
    with pytest.raises(ConfigError, match="pedal_noise.*needs policy='expert'.*brownian"):
        CollectConfig("CarRacing-v3", out=str(tmp_path / "b"), policy="brownian", pedal_noise=0.1).validate()
    e_policy = recorded_policy(tmp_path / "e", pedal_noise=0.05)
    assert e_policy["pedal_noise"] == 0.05 and e_policy["pedal_start"] == 0.5
    f_policy = recorded_policy(tmp_path / "f")
    assert "pedal_noise" not in f_policy  # datasets from before the option still resume



def test_expert_speed_scales_the_target_speeds_and_covers_more_track(tmp_path):
    """speed multiplies the episode's drawn target speeds (same draws, so the style is otherwise the same): the fast
    expert covers more of the track in the same steps. Recorded in dataset.json only when set; refused elsewhere."""
    env = gym.make("CarRacing-v3")
    env.reset(seed=0)
    slow, fast = (CarRacingPursuit(env, np.random.default_rng(5), speed=k) for k in (1.0, 1.5))
    assert (fast.v_straight, fast.v_curve, fast.look) == pytest.approx((1.5 * slow.v_straight, 1.5 * slow.v_curve, slow.look))
    env.close()
    _, slow_tiles, _ = _drive(lambda env: make_expert("CarRacing-v3", env, np.random.default_rng(5), 0.0), 300)
    _, fast_tiles, _ = _drive(lambda env: make_expert("CarRacing-v3", env, np.random.default_rng(5), 0.0, speed=1.5), 300)
    assert fast_tiles > 1.15 * slow_tiles, (fast_tiles, slow_tiles)
    e_policy = recorded_policy(tmp_path / "e", expert_speed=1.5)
    assert e_policy["expert_speed"] == 1.5
    f_policy = recorded_policy(tmp_path / "f")
    assert "expert_speed" not in f_policy  # datasets from before the option still resume
    with pytest.raises(ConfigError, match="expert_speed.*needs policy='expert' on CarRacing.*brownian"):
        CollectConfig("CarRacing-v3", out=str(tmp_path / "b"), policy="brownian", expert_speed=1.5).validate()
    with pytest.raises(ConfigError, match="expert_speed.*needs policy='expert' on CarRacing"):
        CollectConfig("VizdoomTakeCover-v1", out=str(tmp_path / "d"), policy="expert", expert_speed=1.5).validate()
    with pytest.raises(ConfigError, match="must be > 0, got 0"):
        CollectConfig("CarRacing-v3", out=str(tmp_path / "z"), policy="expert", expert_speed=0.0).validate()

def test_expert_rest_stops_the_car_on_the_road_and_holds_it_still(tmp_path):
    """rest_every: the expert brakes to a stop and rests (its car nearly still, reality paying -0.1 a step), then drives
    on; without it the same draws drive as before. Recorded in dataset.json only when set; refused elsewhere."""
    def speeds(rest_every, seed, steps=400):
        env = gym.make("CarRacing-v3")
        obs, _ = env.reset(seed=seed)
        expert = CarRacingPursuit(env, np.random.default_rng(seed), speed=1.5, rest_every=rest_every)
        out = []
        for _ in range(steps):
            obs, reward, *_ = env.step(expert(obs))
            out.append((float(np.linalg.norm(env.unwrapped.car.hull.linearVelocity)), expert.rest_mode, reward))
        env.close()
        return out

    # rest_every=1: a rest begins at once after every one that ends, so the car mostly stands
    rested = speeds(1, seed=2)
    still = [(v, r) for v, mode, r in rested[60:] if mode == "rest"]
    assert len(still) > 150 and np.median([v for v, _ in still]) < 2.0, still[:5]
    assert np.mean([r for _, r in still]) < 0.0  # standing still costs, as reality pays it
    driving = speeds(0, seed=2)
    assert all(mode is None for _, mode, _ in driving) and np.median([v for v, _, _ in driving[60:]]) > 20.0
    env = gym.make("CarRacing-v3")
    with pytest.raises(ConfigError, match="rest_every is the mean number of steps between rests"):
        CarRacingPursuit(env, np.random.default_rng(0), rest_every=-3)
    env.close()
    e_policy = recorded_policy(tmp_path / "e", expert_rest_every=300)
    assert e_policy["expert_rest_every"] == 300
    assert e_policy["rest_start"] == CarRacingPursuit.REST_START
    f_policy = recorded_policy(tmp_path / "f")
    assert "expert_rest_every" not in f_policy  # datasets from before the option still resume
    with pytest.raises(ConfigError, match="expert_rest_every.*needs policy='expert'.*brownian"):
        CollectConfig("CarRacing-v3", out=str(tmp_path / "b"), policy="brownian", expert_rest_every=300).validate()
    with pytest.raises(ConfigError, match="expert_rest_every.*needs policy='expert'"):
        CollectConfig("VizdoomTakeCover-v1", out=str(tmp_path / "d"), policy="expert", expert_rest_every=300).validate()
    for bad in (2.5, -1, True):  # refused where the config is checked, before any worker starts
        with pytest.raises(ConfigError, match=r"expert_rest_every is the mean number of steps.*an int >= 0"):
            CollectConfig("CarRacing-v3", out=str(tmp_path / "x"), policy="expert", expert_rest_every=bad).validate()



def test_cruise_pedal_lapses_hold_a_steady_gas_without_braking_while_the_expert_steers(tmp_path):
    """pedal_style="cruise": each pedal lapse holds one gas in CRUISE_GAS and no brake for CRUISE_STEPS steps while the
    expert steers (how dream-trained agents drive in reality); recorded in dataset.json; refused without pedal_noise,
    with an unknown style and for TakeCover."""
    env = gym.make("CarRacing-v3")
    obs, _ = env.reset(seed=3)
    expert = CarRacingPursuit(env, np.random.default_rng(3), pedal_noise=1.0, pedal_style="cruise")
    actions = []
    for _ in range(320):
        action = expert(obs)
        actions.append(action)
        obs, *_ = env.step(action)
    env.close()
    a = np.asarray(actions)
    low, high = CarRacingPursuit.CRUISE_GAS
    assert (a[:, 2] == 0).all() and (a[:, 1] >= low).all() and (a[:, 1] <= high).all()
    changes = np.flatnonzero(np.diff(a[:, 1]) != 0) + 1  # a new lapse begins where the held gas changes
    runs = np.diff(np.concatenate([[0], changes, [len(a)]]))[:-1]  # complete lapses (the last may be cut off)
    shortest, longest = CarRacingPursuit.CRUISE_STEPS
    assert len(runs) >= 1 and all(shortest <= n <= longest for n in runs), runs
    assert a[:, 0].std() > 0.05  # it steers all along
    c_policy = recorded_policy(tmp_path / "c", pedal_noise=0.01, pedal_style="cruise")
    assert c_policy["pedal_style"] == "cruise" and c_policy["cruise_gas"] == [low, high]
    r_policy = recorded_policy(tmp_path / "r", pedal_noise=0.01)
    assert "pedal_style" not in r_policy  # datasets from before the option still resume
    with pytest.raises(ConfigError, match="pedal_style='cruise'.*pedal_noise=0 turns them off"):
        CollectConfig("CarRacing-v3", out=str(tmp_path / "x"), policy="expert", pedal_style="cruise").validate()
    with pytest.raises(ConfigError, match="pedal_style must be one of"):
        CollectConfig("CarRacing-v3", out=str(tmp_path / "x"), policy="expert", pedal_noise=0.1,
                      pedal_style="fast").validate()
    with pytest.raises(ConfigError, match="pedal_noise drives the CarRacing expert"):
        CollectConfig("VizdoomTakeCover-v1", out=str(tmp_path / "x"), policy="expert", pedal_noise=0.1,
                      pedal_style="cruise").validate()


def test_expert_drift_drives_on_blind_and_the_car_stays_off_the_road(tmp_path):
    """drift_every: the expert holds one nearly straight action (no brake) for DRIFT_STEPS steps, so the car leaves
    the road and stays on the grass; without it the same draws drive as before. Recorded in dataset.json; refused
    elsewhere."""
    def drive(drift_every, seed=1, steps=300):
        env = gym.make("CarRacing-v3")
        obs, _ = env.reset(seed=seed)
        expert = CarRacingPursuit(env, np.random.default_rng(seed), drift_every=drift_every)
        actions, off = [], []
        for _ in range(steps):
            action = expert(obs)
            actions.append(action)
            obs, *_ = env.step(action)
            off.append(all(len(w.tiles) == 0 for w in env.unwrapped.car.wheels))  # all four wheels on the grass
        env.close()
        return np.asarray(actions), np.asarray(off)

    a, off = drive(1)  # drift_every=1: a blind drive begins whenever none is under way
    first = int(np.flatnonzero((a != a[0]).any(axis=1))[0]) if (a != a[0]).any() else len(a)
    assert first >= CarRacingPursuit.DRIFT_STEPS[0] - 1, first  # the first drive holds its action throughout
    assert (np.abs(a[:, 0]) <= CarRacingPursuit.DRIFT_STEER).all() and (a[:, 2] == 0).all()
    left = int(np.argmax(off)) if off.any() else None
    assert left is not None and off[left:].mean() > 0.6, (left, off.mean())  # once off the road it mostly stays off
    assert drive(0)[1].mean() < 0.05  # the same draws without drives: the expert keeps to the road
    env = gym.make("CarRacing-v3")
    with pytest.raises(ConfigError, match="drift_every is the mean number of steps between blind drives"):
        CarRacingPursuit(env, np.random.default_rng(0), drift_every=2.5)
    env.close()
    d_policy = recorded_policy(tmp_path / "d", expert_drift_every=250)
    assert d_policy["expert_drift_every"] == 250 and d_policy["drift_start"] == CarRacingPursuit.DRIFT_START
    p_policy = recorded_policy(tmp_path / "p")
    assert "expert_drift_every" not in p_policy  # datasets from before the option still resume
    with pytest.raises(ConfigError, match="expert_drift_every.*needs policy='expert'.*brownian"):
        CollectConfig("CarRacing-v3", out=str(tmp_path / "b"), policy="brownian", expert_drift_every=250).validate()
    with pytest.raises(ConfigError, match="expert_drift_every.*needs policy='expert'"):
        CollectConfig("VizdoomTakeCover-v1", out=str(tmp_path / "v"), policy="expert",
                      expert_drift_every=250).validate()
    for bad in (2.5, -1, True):
        with pytest.raises(ConfigError, match=r"expert_drift_every is the mean number of steps.*an int >= 0"):
            CollectConfig("CarRacing-v3", out=str(tmp_path / "x"), policy="expert", expert_drift_every=bad).validate()

def _doom_steps(policy_for, seed, limit):
    env = make_real_env("VizdoomTakeCover-v1")
    policy, actions = policy_for(env), []  # made before reset, as collect does: ViZDoom lists objects from then on
    obs, _ = env.reset(seed=seed)
    for _ in range(limit):
        action = policy(obs)
        actions.append(action)
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    env.close()
    return np.asarray(actions)


@pytest.mark.skipif(not has_vizdoom(), reason="vizdoom is not installed: pip install 'dreamgym[doom]'")
def test_the_takecover_expert_dodges_and_its_noise_adds_held_lapses():
    """Without noise it outlives random play by far: 600 steps in each of two episodes, where held random
    actions die within 228 ± 99 steps. With noise its lapses are random keys held, and it dies sooner."""
    for seed in (0, 1):
        quiet = _doom_steps(lambda env: make_expert("VizdoomTakeCover-v1", env, np.random.default_rng(seed), 0.0), seed, 600)
        assert len(quiet) == 600, f"the expert died after {len(quiet)} steps (seed {seed})"
        assert set(np.unique(quiet)) <= {0, 1, 2} and len(np.unique(quiet)) == 3  # it moves both ways
    held = [len(_doom_steps(lambda env: HeldPolicy(env.action_space, np.random.default_rng(s)), s, 600)) for s in (0, 1)]
    assert max(held) < 600, held
    rng = np.random.default_rng(3)
    env = gym.make("VizdoomTakeCover-v1")
    noisy, lapsed = TakeCoverDodger(env, rng, noise=2.0), 0
    env.reset(seed=3)
    for _ in range(100):
        noisy(None)
        lapsed += noisy.lapse_left > 0
    env.close()
    assert 5 <= lapsed < 100  # a lapse begins with p 0.2 per step and lasts 1-10 steps


def test_the_takecover_expert_refuses_pedal_noise(tmp_path):
    with pytest.raises(ConfigError, match="no pedals"):
        CollectConfig("VizdoomTakeCover-v1", out=str(tmp_path / "d"), policy="expert", pedal_noise=0.1).validate()
    with pytest.raises(ConfigError, match="noise must be >= 0"):
        CollectConfig("VizdoomTakeCover-v1", out=str(tmp_path / "d"), policy="expert", noise=-1).validate()


@pytest.mark.skipif(not has_vizdoom(), reason="vizdoom is not installed: pip install 'dreamgym[doom]'")
def test_a_takecover_expert_made_mid_episode_says_so():
    env = gym.make("VizdoomTakeCover-v1")
    env.reset(seed=0)
    late = TakeCoverDodger(env, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="before env.reset"):
        late(None)
    env.close()
