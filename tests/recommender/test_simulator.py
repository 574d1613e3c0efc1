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
