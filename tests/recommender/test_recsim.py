"""The RecSim adapter: documents to tracks, clicks to outcomes, the budget to the session's end;
a small end-to-end run; bad input to ``qriff rec evaluate --env recsim``."""

from __future__ import annotations

import csv
import io
import sqlite3

import numpy as np
import pytest

pytest.importorskip("recsim", reason="needs the recsim extra: pip install 'qriff[recsim]'")

from recommender import rewards as rw  # noqa: E402
from recommender.errors import ConfigError  # noqa: E402
from recommender.recsim_env import (  # noqa: E402
    Context,
    RecSimConfig,
    RecSimWorld,
    episodes_csv,
    myopic_policy,
    planner_policy,
    random_policy,
)


@pytest.fixture(scope="module")
def world():
    return RecSimWorld(RecSimConfig(candidates=5, pool=25, time_budget=30.0, seed=3))


def _budget_trace(world, ep):
    """The budget after each step by RecSim's rule, replayed from the logged steps."""
    b, out = world.config.time_budget, []
    for s in ep.steps:
        if s.clicked:
            b -= s.watch_time
            if world.config.quality_affects_budget:
                b += 0.9 / 3.4 * s.watch_time * world.pool_quality[s.track]
        else:
            b -= 0.5
        out.append(b)
    return np.array(out)


def test_documents_are_stable_tracks_with_cluster_tags(world):
    eps = list(world.episodes(random_policy(0), 3, "logs"))
    rows = list(csv.DictReader(io.StringIO(episodes_csv(world, eps))))
    assert len(rows) == sum(len(e.steps) for e in eps)
    steps = [s for e in eps for s in e.steps]
    for row, s in zip(rows, steps):
        assert row["item"] == f"recsim-{s.track}"
        assert row["tags"] == f"cluster-{world.pool_clusters[s.track]}"
    # the same pool index is the same document in every episode: its cluster never changes
    seen: dict[str, str] = {}
    for row in rows:
        assert seen.setdefault(row["item"], row["tags"]) == row["tags"]
    assert {int(r["item"].split("-")[1]) for r in rows} <= set(range(world.config.pool))


def test_clicks_are_completed_plays_and_skips_after_ingest(world, tmp_path):
    from recommender.ingest import ingest_files

    eps = list(world.episodes(random_policy(1), 4, "logs"))
    path = tmp_path / "logs.csv"
    path.write_text(episodes_csv(world, eps))
    db = tmp_path / "r.db"
    (report,) = ingest_files(db, [path], progress=False)
    assert report.rejected == 0 and report.stored == sum(len(e.steps) for e in eps)
    conn = sqlite3.connect(db)
    for ep in eps:
        got = conn.execute("SELECT t.key, e.outcome FROM events e JOIN users u ON u.id = e.user_id "
                           "JOIN tracks t ON t.id = e.track_id WHERE u.name = ? ORDER BY e.ts", (ep.user,)).fetchall()
        assert got == [(f"i:recsim-{s.track}", rw.COMPLETED if s.clicked else rw.SKIPPED) for s in ep.steps]
    assert {s.clicked for e in eps for s in e.steps} == {True, False}


def test_the_budget_ends_the_session(world):
    for ep in world.episodes(myopic_policy(world), 4, "eval"):
        trace = _budget_trace(world, ep)
        assert (trace[:-1] > 0).all() and trace[-1] <= 1e-9  # the session ends exactly when the budget is spent
        assert ep.watch_time == pytest.approx(sum(s.watch_time for s in ep.steps if s.clicked))


def test_negative_control_gives_no_time_back():
    w = RecSimWorld(RecSimConfig(candidates=5, pool=25, time_budget=30.0, seed=3, quality_affects_budget=False))
    for ep in w.episodes(random_policy(2), 3, "eval"):
        trace = _budget_trace(w, ep)
        assert (trace[:-1] > 0).all() and trace[-1] <= 1e-9
    assert (w.budget_change(np.arange(25)) == -w.pool_length).all()


def test_click_probability_is_recsims_choice_model(world):
    from recsim.choice_model import MultinomialProportionalChoiceModel
    from recsim.environments.interest_evolution import IEvUserState

    rng = np.random.default_rng(0)
    interests = rng.uniform(-1, 1, 20)
    user = IEvUserState(interests, no_click_mass=1.0, min_normalizer=-1.0)
    for doc in world.pool[:10]:
        model = MultinomialProportionalChoiceModel(user.choice_features)
        model.score_documents(user, [doc.create_observation()])
        p = model.scores[0] / (model.scores[0] + model.score_no_click)
        assert world.click_probability(interests, np.array([doc.doc_id()]))[0] == pytest.approx(p)


def test_every_policy_meets_the_same_listeners(world):
    first: dict[str, list[np.ndarray]] = {}

    def spy(name, policy):
        def choose(ctx: Context) -> int:
            if not ctx.history:
                first.setdefault(name, []).append(ctx.interests.copy())
            return policy(ctx)
        return choose

    for name, pol in (("random", random_policy(0)), ("myopic", myopic_policy(world))):
        list(world.episodes(spy(name, pol), 3, "eval"))
    assert all(np.array_equal(a, b) for a, b in zip(first["random"], first["myopic"]))
    logs_first: list[np.ndarray] = []
    list(world.episodes(lambda c: (logs_first.append(c.interests.copy()) if not c.history else None) or 0, 1, "logs"))
    assert not np.array_equal(logs_first[0], first["random"][0])  # training listeners are others


def test_known_model_planner_beats_myopic_and_control_removes_it():
    """The test bed can show the effect: with the model known, pricing the budget wins; without
    the mechanism it cannot (the planner at price 0 is myopic)."""
    on = RecSimWorld(RecSimConfig(pool=100, time_budget=60.0, seed=0))
    my = np.mean([e.watch_time for e in on.episodes(myopic_policy(on), 15, "eval")])
    plan = np.mean([e.watch_time for e in on.episodes(planner_policy(on, 1.0), 15, "eval")])
    assert plan > 1.3 * my
    off = RecSimWorld(RecSimConfig(pool=100, time_budget=60.0, seed=0, quality_affects_budget=False))
    my_off = np.mean([e.watch_time for e in off.episodes(myopic_policy(off), 15, "eval")])
    plan_off = np.mean([e.watch_time for e in off.episodes(planner_policy(off, 1.0), 15, "eval")])
    assert plan_off <= 1.05 * my_off


@pytest.mark.parametrize("kwargs, match", [
    ({"candidates": 1}, "--candidates 1"),
    ({"candidates": 30, "pool": 20}, "pool 20"),
    ({"time_budget": 0.0}, "--time-budget 0.0"),
])
def test_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        RecSimConfig(**kwargs)


@pytest.mark.slow
def test_small_recsim_run_has_every_row(tmp_path):
    pytest.importorskip("torch")
    from recommender.recsim_eval import ROWS, RecSimEvalConfig, default_train_config, evaluate_recsim

    cfg = RecSimEvalConfig(world=RecSimConfig(candidates=4, pool=12, time_budget=15.0), logged_episodes=8,
                           episodes=2, seeds=1, online_episodes=2, tune_episodes=1,
                           train=default_train_config(gamma=0.9, epochs=1, candidates=4))
    res = evaluate_recsim(cfg)
    assert tuple(res.returns) == ROWS
    assert all(np.isfinite(v).all() and min(v) >= 0 for v in res.returns.values())
    assert "| dqn, gamma 0 |" in res.table() and res.to_dict()["rows"]["myopic"]["vs_myopic"] == 1.0


@pytest.mark.slow  # subprocesses
@pytest.mark.parametrize("argv, match", [
    (["--env", "gym"], "argument --env: invalid choice: 'gym'"),
    (["--env", "recsim", "--candidates", "1"], "argument --candidates: 1 is out of range"),
    (["--env", "recsim", "--behaviour", "greedy"], "argument --behaviour: invalid choice: 'greedy'"),
    (["--env", "recsim", "--time-budget", "0"], "argument --time-budget"),
    (["--env", "recsim", "--logged-episodes", "x"], "argument --logged-episodes: 'x' is not an integer"),
    (["--env", "recsim", "--candidates", "20", "--pool", "10"], "pool 10 is out of range"),
    (["--candidates", "5"], "--candidates only apply to --env recsim"),
    (["--env", "recsim", "--simulate"], "drop them"),
])
def test_cli_bad_input_is_one_line_exit_2(qriff, argv, match):
    proc = qriff("rec", "evaluate", *argv)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert match in err and len(err.splitlines()) == 1, err


def test_click_calibration_passes_for_recsims_model_and_fails_for_a_wrong_one(world):
    from recommender.recsim_env import calibrate_clicks

    right = calibrate_clicks(world, world.click_probability, random_policy(5), episodes=30)
    assert right.passed, right.summary()

    def wrong(interests, candidates):  # no-click mass 0 instead of 1: clicks over-predicted
        s = interests[world.pool_clusters[candidates]] + 1.0
        return s / (s + 1.0)

    bad = calibrate_clicks(world, wrong, random_policy(5), episodes=30)
    assert not bad.passed and "FAILED" in bad.summary()


def test_ratios_pair_rows_by_seed():
    from recommender.recsim_eval import RecSimResult

    res = RecSimResult({})
    for seed, my, dqn in ((0, 50.0, 60.0), (1, 40.0, 40.0), (2, 45.0, 54.0)):
        res.add("myopic", seed, my)
        res.add("dqn", seed, dqn)
    res.add("dqn, no Q-loss", 1, 20.0)  # a row run on one seed only
    assert res.ratio("dqn") == pytest.approx((np.mean([1.2, 1.0, 1.2]), np.std([1.2, 1.0, 1.2])))
    assert res.ratio("dqn, no Q-loss") == pytest.approx((0.5, 0.0))
    assert res.to_dict()["rows"]["dqn, no Q-loss"]["seeds"] == [1]
    assert "| dqn, no Q-loss | 20.0 ± 0.0 | 0.500x ± 0.000 | 1 |" in res.table()


def test_default_dqn_bootstraps_over_the_offered_candidates_without_the_whole_log_taste():
    from recommender.recsim_eval import RecSimEvalConfig, default_train_config

    cfg = RecSimEvalConfig(world=RecSimConfig(candidates=7, pool=50))
    assert cfg.train.next_candidates == 7 and cfg.train.user_taste is False
    assert default_train_config(candidates=12).next_candidates == 12
