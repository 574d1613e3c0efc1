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
