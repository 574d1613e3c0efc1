"""Search: FTS5 bm25 with any text made safe, and re-ranking by the listener's Q-values."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recommender.api import Recommender
from recommender.ingest import ingest_files
from recommender.schema import connect
from recommender.search import bm25_candidates, match_expression, terms

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "rec"


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("search") / "s.db"
    ingest_files(path, sorted(FIX.iterdir()), progress=False)
    return path


@pytest.fixture(scope="module")
def conn(db):
    c = connect(db)
    yield c
    c.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=60) | st.sampled_from(['"', '""', "*", "NEAR(", "AND", "OR NOT", "title:", "^x", "-x",
                                               "a\x00b", "'; DROP TABLE tracks; --", "((", "\\", "🎷 jazz"]))
def test_any_text_is_safe(conn, text):
    ids, rel = bm25_candidates(conn, text, 20)
    assert ids.shape == rel.shape and len(ids) <= 20


@pytest.mark.parametrize("query,expected", [
    ("jobim", ["Wave"]),
    ("JOBIM", ["Wave"]),
    ("antonio", ["Wave"]),  # diacritics folded: Antônio
    ("aguas de marco", ["Águas de Março"]),
    ("坂本龍一", None),  # unicode tokens work (CJK is one token per run)
    ("kind of blue", ["Blue in Green", "So What"]),
    ("desaf", ["Desafinado"]),  # the last word is a prefix
])
def test_finds_tracks(conn, query, expected):
    ids, _ = bm25_candidates(conn, query, 10)
    titles = [conn.execute("SELECT title FROM tracks WHERE id = ?", (int(i),)).fetchone()[0] for i in ids]
    if expected is None:
        assert len(titles) == 4
    else:
        assert sorted(titles[:len(expected)]) == sorted(expected)


def test_match_expression_quotes_every_word():
    assert terms('a "b" c*') == ["a", "b", "c"]
    assert match_expression(["a", 'q"x']) == '"a" "q""x"*'
    assert match_expression(["a", "b"], any_word=True) == '"a" OR "b"*'


def test_all_words_first_then_any_word(conn):
    ids, _ = bm25_candidates(conn, "miles naima", 10)
    titles = [conn.execute("SELECT title FROM tracks WHERE id = ?", (int(i),)).fetchone()[0] for i in ids]
    assert set(titles) == {"Blue in Green", "So What", "Naima"}


def test_empty_query_returns_nothing_with_a_note(db):
    with Recommender(db, require_model=False) as rec:
        r = rec.search("   ")
    assert r.tracks == [] and r.warnings == ["empty query: nothing to search for"]


def test_search_without_model_is_text_only(db):
    with Recommender(db, require_model=False) as rec:
        r = rec.search("jazz", user="dana", n=3)
    assert len(r.tracks) == 3 and r.source == "search"
    scores = [t.score for t in r.tracks]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("query,expected", [
    ("jobmi", "Wave"),  # a transposition
    ("desafnado", "Desafinado"),  # a letter left out
    ("aguas de mraco", "Águas de Março"),
    ("desfa", "Desafinado"),  # a typo in the word being typed (a prefix)
])
def test_typos_are_corrected_from_the_index_vocabulary(conn, query, expected):
    from recommender.catalog import tracks_by_id

    ids, _ = bm25_candidates(conn, query, 5)
    assert ids.size, query
    assert tracks_by_id(conn, [int(ids[0])])[int(ids[0])].title == expected


def test_spelling_leaves_known_words_and_short_words_alone(conn):
    from recommender.search import correct, edit_distance

    assert correct(conn, "jobim") == "jobim" and correct(conn, "zz") == "zz"
    assert correct(conn, "qqqqqqqq") == "qqqqqqqq"  # nothing close: unchanged (and nothing found)
    assert edit_distance("jobim", "jobmi") == 1 and edit_distance("abc", "xyz") == 3
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("a", "abcdef", cap=2) == 3
