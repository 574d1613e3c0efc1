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

WORLD = SimConfig(n_users=150, n_tracks=300, n_artists=40, n_genres=6, sessions=6, session_length=100, seed=1,
                  leave_after_skip=0.2, leave_after_complete=0.04)


@pytest.fixture(scope="module")
def fitted():
    from recommender.simulator import FitConfig, fit_simulator

    world = Simulator(WORLD)
    logs = world.logged_history()
    return world, logs, fit_simulator(logs, FitConfig(session_gap=3600.0, factors=8))


def test_fit_finds_the_worlds_fatigue_and_passes_calibration_on_held_out_users(fitted):
    _, logs, sim = fitted
    c = sim.summary()["coefficients"]
    assert c["fatigue"] < -0.2 and c["repeat"] < 0  # repeating a genre or artist costs completions
    assert c["item"] > 0  # tracks completed often in the logs are completed more often
    assert len(np.intersect1d(sim.train_users, sim.eval_users)) == 0 and len(sim.eval_users) == 30
    cal = sim.calibration
    assert cal["held_out_users"] == 30 and cal["held_out_sessions"] >= 60
    assert cal["skip_passed"] and cal["length_passed"] and cal["passed"], cal
    assert cal["sessions_at_cap"] == 0
    assert sim.relisten  # the synthetic listeners repeat tracks, so repeats are modelled, not forbidden


def test_the_fit_never_reads_held_out_users(fitted):
    """Flip every held-out user's outcomes: the fitted model is the same (their tastes, folded in
    from their history, are all that changes)."""
    from recommender.simulator import FitConfig, fit_simulator

    _, logs, sim = fitted
    flipped = Simulator(WORLD).logged_history()
    ev = np.isin(flipped.user, sim.eval_users)
    flipped.outcome[ev] = np.where(flipped.outcome[ev] == rw.COMPLETED, rw.SKIPPED, rw.COMPLETED)
    other = fit_simulator(flipped, FitConfig(session_gap=3600.0, factors=8))
    assert np.array_equal(other.eval_users, sim.eval_users)
    assert np.allclose(other.coef, sim.coef) and np.allclose(other.item_logit, sim.item_logit)
    assert np.allclose(other.V, sim.V) and np.allclose(other.p_leave, sim.p_leave)
    assert not other.calibration["passed"]  # and the flipped users no longer look like the model


@pytest.mark.parametrize("wrong", ["bias", "taste", "leaving"])
def test_calibration_fails_a_deliberately_wrong_simulator(fitted, wrong):
    import copy

    from recommender.simulator import calibrate

    _, logs, sim = fitted
    bad = copy.copy(sim)
    bad.coef, bad.p_leave = sim.coef.copy(), sim.p_leave.copy()
    if wrong == "bias":  # listeners finish far more than they do
        bad.coef[0] += 1.5
    elif wrong == "taste":  # they like what they dislike
        bad.coef[1] = -sim.coef[1]
    else:  # they leave far sooner
        bad.p_leave = np.clip(sim.p_leave * 3, 0, 1)
    cal = calibrate(bad, logs)
    assert not cal["passed"]
    if wrong == "leaving":  # what fails is what is wrong
        assert cal["skip_passed"] and not cal["length_passed"]
    else:
        assert not cal["skip_passed"]


def test_the_planner_is_a_ceiling_over_greedy_and_random_playlists(fitted):
    _, logs, sim = fitted
    b = logs.bounds
    rng = np.random.default_rng(0)
    for u in sim.eval_users[:5]:
        seen = logs.item[b[u]:b[u + 1]]
        plan = sim.plan(int(u), seen, 20)
        best = sim.expected_completions(int(u), plan, seen)
        static = sim.static_logit(int(u))
        greedy = list(np.argsort(-static[1:])[:20] + 1)  # fresh-session odds, no fatigue
        assert best >= sim.expected_completions(int(u), [int(i) for i in greedy], seen) - 1e-9
        for _ in range(5):
            assert best > sim.expected_completions(int(u), [int(i) for i in rng.choice(300, 20) + 1], seen)


def test_without_relistening_in_the_logs_a_seen_track_is_a_certain_skip(fitted):
    import copy

    _, logs, sim = fitted
    strict = copy.copy(sim)
    strict.relisten = False
    u = int(sim.eval_users[0])
    first = int(logs.item[logs.bounds[u]])
    played, results = strict.play_session(lambda *a: first, u, [first], [rw.COMPLETED], 10,
                                          np.random.default_rng(0))
    assert set(results) == {rw.SKIPPED}


def test_fitted_sessions_reward_variety_and_end_when_the_listener_leaves(fitted):
    world, logs, sim = fitted
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
    import copy

    gone = copy.copy(sim)
    gone.p_leave = np.ones_like(sim.p_leave)  # a listener who always leaves hears one track
    _, one = gone.rollout(spread, logs, 20)
    assert (one == 1).all()


def test_fit_needs_both_outcomes():
    from recommender.simulator import fit_simulator

    logs = Simulator(SMALL).logged_history()
    logs.outcome[:] = rw.COMPLETED
    with pytest.raises(ConfigError, match="completed and skipped"):
        fit_simulator(logs)
