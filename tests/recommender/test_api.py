"""The Python API over a trained model: both candidate models, a catalog that grows after
training, cold starts, and input checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recommender.errors import ConfigError

torch = pytest.importorskip("torch")

from recommender.api import Recommender  # noqa: E402
from recommender.candidates import CandidateConfig  # noqa: E402
from recommender.ingest import ingest_files  # noqa: E402
from recommender.model import NetConfig  # noqa: E402
from recommender.train import TrainConfig, train_database  # noqa: E402

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "rec"


@pytest.fixture(scope="module", params=["als", "bpr"])
def db(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param) / "api.db"
    ingest_files(path, sorted(FIX.iterdir()), progress=False)
    art = train_database(path, config=TrainConfig(net=NetConfig(dim=8, max_history=5), epochs=2, batch_size=8),
                         cand_config=CandidateConfig(kind=request.param, factors=4, iterations=3), progress=False)
    assert art.info["events"] == 27 and art.candidate_config["kind"] == request.param
    return path


def test_next_and_playlist(db):
    with Recommender(db) as rec:
        r = rec.next("eli", n=4)
        assert not r.cold_start and len(r.tracks) == 4
        assert all(t.score is not None for t in r.tracks)
        p = rec.playlist("eli", steps=5)
        assert len({t.id for t in p.tracks}) == 5
        cold = rec.next(None, n=3, history=["trk-001", "trk-003"])
        assert cold.cold_start and cold.source == "history"


def test_catalog_grows_without_retraining(db, tmp_path):
    new = tmp_path / "new.csv"
    new.write_text("user,item,timestamp,title,artist,tags\n"
                   "zoe,trk-900,2024-02-01T10:00:00Z,Blue Train,John Coltrane,jazz|hard bop\n")
    ingest_files(db, [new], progress=False)
    with Recommender(db) as rec:
        found = rec.search("blue", user="dana", n=5)
        assert "Blue Train" in {t.title for t in found.tracks}  # newer than the model, still ranked by Q
        r = rec.next(None, n=3, history=["trk-900"])  # a history made only of the new track
        assert r.source == "history" and r.tracks
        z = rec.next("zoe", n=2)  # a user newer than the model: folded in from the stored history
        assert len(z.tracks) == 2


@pytest.mark.parametrize("call,match", [
    (lambda r: r.next("dana", n=0), "n 0 is out of range"),
    (lambda r: r.next("dana", n=5000), "n 5000 is out of range"),
    (lambda r: r.playlist("dana", steps=0), "steps 0 is out of range"),
    (lambda r: r.search("x", n=-1), "n -1 is out of range"),
])
def test_bad_arguments(db, call, match):
    with Recommender(db) as rec, pytest.raises(ConfigError, match=match):
        call(rec)


def test_empty_history_is_said(db):
    with Recommender(db) as rec:
        r = rec.next("nobody", history=[])
    assert r.source == "popularity" and "the history given is empty" in r.warnings
    assert np.all(np.diff([t.score for t in r.tracks]) <= 0)


def reference_next(rec: Recommender, user: str, n: int) -> list[int]:
    """``next`` for a known user computed the plain way, as it was before the serving path was
    tuned: the history by its own query, ids by binary search, the ALS top candidates by sorting
    every track's score, Q and supervised scores of each candidate, a stable sort."""
    uid = rec.conn.execute("SELECT id FROM users WHERE name = ?", (user,)).fetchone()[0]
    rows = rec.conn.execute("SELECT track_id, outcome FROM events WHERE user_id = ? ORDER BY ts DESC, id DESC "
                            "LIMIT ?", (uid, rec.scorer.L)).fetchall()[::-1]
    items, outs = [r[0] for r in rows], [r[1] for r in rows]
    dense = np.searchsorted(rec.track_ids, items)
    assert np.array_equal(rec.track_ids[dense], items)  # every track of the fixture is in the model
    u = rec.users[user]
    als = rec.art.user_factors[u] @ rec.art.item_factors.T
    als[0] = als[dense] = -np.inf
    cand = np.argsort(-als, kind="stable")[:min(rec.n_candidates, int(np.isfinite(als).sum()))]
    uvec = rec._user_vecs[u] if rec._user_vecs is not None else None
    h = rec.scorer.state(rec.scorer.item_vectors[dense], np.asarray(outs), uvec)
    scores, _ = rec.scorer.scores(h, cand)
    order = np.argsort(-scores, kind="stable")[:n]
    return [int(rec.track_ids[c]) for c in cand[order]]


@pytest.mark.parametrize("candidates", [3, 300])  # the ALS cut decides, or every unheard track competes
def test_next_ranks_as_the_plain_computation_does(db, candidates):
    with Recommender(db, candidates=candidates) as rec:
        users = [u for u in rec.users if rec.next(u, n=1).source == "model"]
        assert len(users) >= 3
        for user in users:
            got = [t.id for t in rec.next(user, n=5).tracks]
            assert got == reference_next(rec, user, 5), user


def test_candidate_scores_match_the_scorer_and_weigh_skips_out(db):
    from recommender import rewards as rw
    from recommender.catalog import resolve_tracks

    with Recommender(db) as rec:
        ids, _ = resolve_tracks(rec.conn, ["trk-001", "trk-002", "trk-003", "trk-004"])
        hist, cands = ids[:2], ids[2:]
        q = rec.candidate_scores(hist, [rw.COMPLETED, rw.SKIPPED], cands)
        h = rec.scorer.state(rec._vectors(hist), np.array([rw.COMPLETED, rw.SKIPPED]),
                             rec._user_vector(None, hist[:1]))  # the skip adds nothing to the taste fold-in
        _, want = rec.scorer.scores(h, rec._dense(cands))
        assert np.allclose(q, want, atol=1e-5)
        rank = rec.candidate_scores(hist, [rw.COMPLETED, rw.SKIPPED], cands, head="rank")
        assert rank.shape == (2,) and np.isfinite(rank).all()
        with pytest.raises(ConfigError, match="2 tracks but 1 outcomes"):
            rec.candidate_scores(hist, [rw.COMPLETED], cands)
        with pytest.raises(ConfigError, match="head 'v'"):
            rec.candidate_scores(hist, [rw.COMPLETED, rw.SKIPPED], cands, head="v")
