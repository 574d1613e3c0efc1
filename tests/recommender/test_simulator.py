"""The session simulator: seeded, fatigue lowers completion, and diverse playlists beat repetitive ones."""

from __future__ import annotations

import numpy as np
import pytest

from recommender import rewards as rw
from recommender.errors import ConfigError
from recommender.simulator import SimConfig, Simulator

SMALL = SimConfig(n_users=20, n_tracks=200, n_artists=30, n_genres=6, sessions=3, session_length=10)


def test_world_and_logs_are_seeded():
    a, b = Simulator(SMALL), Simulator(SMALL)
    assert np.array_equal(a.track_artist, b.track_artist) and np.allclose(a.taste, b.taste)
    la, lb = a.logged_history(), b.logged_history()
    assert np.array_equal(la.item, lb.item) and np.array_equal(la.outcome, lb.outcome)
    assert len(la) == 20 * 3 * 10 and set(np.unique(la.outcome)) <= {rw.COMPLETED, rw.SKIPPED}
    assert la.item_features.shape[0] == 201


@pytest.mark.parametrize("what", ["artist", "genre", "repeat"])
def test_fatigue_lowers_completion(what):
    sim = Simulator(SMALL)
    sess = sim.session(0, np.random.default_rng(0))
    track = 1
    if what == "artist":
        other = int(np.flatnonzero(sim.track_artist == sim.track_artist[track])[-1])
    elif what == "genre":
        other = int(np.flatnonzero((sim.track_genre == sim.track_genre[track])
                                   & (sim.track_artist != sim.track_artist[track]))[0])
    else:
        other = track
    before = sess.p_complete(other)
    for _ in range(3):
        sess.play(track)
    assert sess.p_complete(other) < before
    assert np.isclose(sess.p_complete_all()[other], sess.p_complete(other))


def test_spreading_over_artists_beats_repeating_one():
    sim = Simulator(SMALL)
    logs = sim.logged_history()
    fav = np.argmax(sim.static, axis=1)

    def same_artist(u, items, outs, played):
        pool = np.flatnonzero(sim.track_artist == sim.track_artist[fav[u]])
        left = [t for t in pool if t not in played]
        return int(left[0]) if left else int(fav[u])

    def spread(u, items, outs, played):
        recent = {sim.track_artist[t] for t in played[-4:]}
        s = sim.static[u].copy()
        s[played] = -np.inf
        s[np.isin(sim.track_artist, list(recent))] -= 10
        return int(np.argmax(s))

    a = sim.rollout(same_artist, logs, 20).mean()
    b = sim.rollout(spread, logs, 20).mean()
    assert b > a + 2


def test_bad_config_and_bad_policy():
    with pytest.raises(ConfigError, match="fatigue_decay"):
        SimConfig(fatigue_decay=1.0)
    sim = Simulator(SMALL)
    with pytest.raises(ConfigError, match="policy picked track 0"):
        sim.rollout(lambda *a: 0, sim.logged_history(), 2)


# ---------------------------------------------------------------- the simulator fit from logs

WORLD = SimConfig(n_users=60, n_tracks=300, n_artists=40, n_genres=6, sessions=6, session_length=15, seed=1)


def _fitted():
    from recommender.simulator import FitConfig, fit_simulator

    world = Simulator(WORLD)
    logs = world.logged_history()
    return world, logs, fit_simulator(logs, FitConfig(session_gap=3600.0, factors=8))


def test_fit_finds_the_worlds_fatigue_and_is_calibrated_on_held_out_sessions():
    _, logs, sim = _fitted()
    c = sim.summary()["coefficients"]
    assert c["fatigue"] < -0.2 and c["repeat"] < 0  # repeating a genre or artist costs completions
    assert c["item"] > 0  # tracks completed often in the logs are completed more often
    cal = sim.calibration
    assert cal["held_out_sessions"] >= 30
    assert abs(cal["skip_rate_sim"] - cal["skip_rate_real"]) < 0.05
    # every logged session is 15 tracks and the logs' end is the only leaving they show
    assert cal["session_length_real"] == 15


def test_fitted_sessions_reward_variety_and_end_when_the_listener_leaves():
    world, logs, sim = _fitted()
    static = np.stack([sim.static_logit(u) for u in range(WORLD.n_users)])

    def same_artist(u, items, outs, played):
        fav = int(np.argmax(static[u]))
        pool = [t for t in np.flatnonzero(world.track_artist == world.track_artist[fav]) if t not in played]
        return int(pool[0]) if pool else fav

    def spread(u, items, outs, played):
        s = static[u].copy()
        s[played] = -np.inf
        for t in played[-4:]:
            s[world.track_artist == world.track_artist[t]] -= 10
            s[world.track_genre == world.track_genre[t]] -= 10
        return int(np.argmax(s))

    a, la = sim.rollout(same_artist, logs, 20)
    b, lb = sim.rollout(spread, logs, 20)
    assert b.mean() > a.mean() + 1
    assert (la <= 20).all() and (b <= lb).all()
    sim.p_leave = np.ones_like(sim.p_leave)  # a listener who always leaves hears one track
    _, one = sim.rollout(spread, logs, 20)
    assert (one == 1).all()


def test_fit_needs_both_outcomes():
    from recommender.simulator import fit_simulator

    logs = Simulator(SMALL).logged_history()
    logs.outcome[:] = rw.COMPLETED
    with pytest.raises(ConfigError, match="completed and skipped"):
        fit_simulator(logs)
