"""Ingest of real export layouts into SQLite: accounting, idempotence, formats, locks, migrations."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from recommender import rewards
from recommender.errors import DatabaseError, IngestError
from recommender.ingest import DUPLICATE, detect_format, ingest_files
from recommender.schema import MIGRATIONS, SCHEMA_VERSION, connect, stats

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "rec"

# file, format, rows in, stored, {reason prefix: [line numbers]}
CASES = [
    ("Streaming_History_Audio_2023.json", "spotify", 9, 6,
     {"not a music track": [71], "bad timestamp": [117], "bad ms_played": [163]}),
    ("listenbrainz_listens.jsonl", "listenbrainz", 9, 6,
     {"bad timestamp": [5], "missing track_name": [6], "malformed JSON": [7]}),
    ("lastfm_1k_sample.tsv", "lastfm", 9, 7, {"bad timestamp": [8], "expected 6 tab-separated": [9]}),
    ("generic_events.csv", "csv", 13, 8,
     {"bad ms_played": [8], "bad skipped": [9], "empty item": [10], "expected 10 columns": [12],
      "bad timestamp": [13]}),
]


@pytest.mark.parametrize("name,fmt,rows,stored,reasons", CASES)
def test_every_row_is_stored_or_rejected_with_reason_and_line(tmp_path, name, fmt, rows, stored, reasons):
    (rep,) = ingest_files(tmp_path / "db.sqlite", [FIX / name], progress=False)
    assert rep.format == fmt
    assert (rep.rows_in, rep.stored) == (rows, stored)
    assert rep.rows_in == rep.stored + rep.rejected
    got = {r: rep.lines[r] for r in rep.reasons}
    for prefix, lines in reasons.items():
        match = [r for r in got if r.startswith(prefix)]
        assert match, f"no rejection starting {prefix!r} in {list(got)}"
        assert got[match[0]] == lines
    assert sum(rep.reasons.values()) == rep.rejected
    conn = connect(tmp_path / "db.sqlite")
    assert stats(conn)["events"] == stored
    assert conn.execute("SELECT count(*) FROM rejections").fetchone()[0] == rep.rejected


@pytest.mark.parametrize("name,fmt", [(c[0], c[1]) for c in CASES])
def test_format_is_detected(name, fmt):
    assert detect_format(FIX / name) == fmt


def test_reingest_adds_nothing_and_names_duplicate_lines(tmp_path):
    db = tmp_path / "r.db"
    files = sorted(FIX.iterdir())
    first = ingest_files(db, files, progress=False)
    before = stats(connect(db))
    second = ingest_files(db, files, progress=False)
    after = stats(connect(db))
    assert before["events"] == after["events"] == sum(r.stored for r in first)
    assert before["tracks"] == after["tracks"] and before["users"] == after["users"]
    for a, b in zip(first, second):
        assert b.stored == 0 and b.rows_in == a.rows_in == b.rejected
        assert b.reasons[DUPLICATE] == a.stored
    csv2 = next(r for r in second if r.format == "csv")
    assert csv2.lines[DUPLICATE][:3] == [2, 3, 4]


def test_same_song_from_two_services_is_one_track(tmp_path):
    a = tmp_path / "a.tsv"
    b = tmp_path / "b.jsonl"
    a.write_text("u1\t2009-05-04T23:08:57Z\t\tBjörk\t\tJóga\n", encoding="utf-8")
    b.write_text(json.dumps({"listened_at": 1677658266, "user_name": "u2",
                             "track_metadata": {"artist_name": "BJÖRK ", "track_name": "jóga"}}) + "\n")
    ingest_files(tmp_path / "db", [a, b], progress=False)
    conn = connect(tmp_path / "db")
    assert stats(conn) == {"users": 2, "tracks": 1, "events": 2, "sources": 2}


def test_outcomes_and_metadata_are_stored(tmp_path):
    ingest_files(tmp_path / "db", [FIX / "Streaming_History_Audio_2023.json", FIX / "generic_events.csv"],
                 progress=False)
    conn = connect(tmp_path / "db")
    rows = dict(conn.execute("SELECT t.title || '/' || u.name, e.outcome FROM events e JOIN tracks t ON t.id = "
                             "e.track_id JOIN users u ON u.id = e.user_id"))
    assert rows["Garota de Ipanema/ana.listens"] == rewards.SKIPPED  # skipped: true
    assert rows["Chega de Saudade/ana.listens"] == rewards.COMPLETED  # trackdone
    assert rows["So What/dana"] == rewards.SKIPPED  # 40 s of 330 s
    assert rows["Take Five/dana"] == rewards.SKIPPED  # skipped flag
    assert rows["Naima/dana"] == rewards.COMPLETED
    tags = conn.execute("SELECT tags FROM tracks WHERE title = 'Take Five'").fetchone()[0]
    assert tags == "jazz, cool jazz"
    title = conn.execute("SELECT title, artist FROM tracks WHERE key = 'i:trk-010'").fetchone()
    assert title == ('Café "Quoted" Title', "Ménage à Trois")


@pytest.mark.parametrize("skipped,reason,ms,duration,scrobble,expected", [
    (True, None, None, None, False, rewards.SKIPPED),
    (False, "fwdbtn", 10, None, False, rewards.COMPLETED),  # the explicit flag wins
    (None, "trackdone", 1000, None, False, rewards.COMPLETED),
    (None, "fwdbtn", 200_000, None, False, rewards.SKIPPED),
    (None, None, 170_000, 200_000, False, rewards.COMPLETED),  # 85% >= 80%
    (None, None, 150_000, 200_000, False, rewards.SKIPPED),
    (None, None, 29_000, None, False, rewards.SKIPPED),  # under 30 s without a duration
    (None, None, 31_000, None, False, rewards.COMPLETED),
    (None, None, None, None, True, rewards.COMPLETED),  # a scrobble
    (None, None, None, None, False, rewards.UNKNOWN),
])
def test_outcome_rules(skipped, reason, ms, duration, scrobble, expected):
    assert rewards.classify(skipped, reason, ms, duration, scrobble=scrobble) == expected


def test_reward_config_maps_outcomes_and_rejects_bad_values():
    cfg = rewards.RewardConfig(completed=1.0, skipped=-0.5, unknown=0.25)
    out = cfg.rewards([rewards.COMPLETED, rewards.SKIPPED, rewards.UNKNOWN])
    assert out.tolist() == [1.0, -0.5, 0.25]
    with pytest.raises(rewards.ConfigError, match="skipped=nan"):
        rewards.RewardConfig(skipped=float("nan"))


def test_unknown_format_names_the_formats(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello\nworld\n")
    with pytest.raises(IngestError, match="unknown format.*spotify, listenbrainz, lastfm, csv"):
        ingest_files(tmp_path / "db", [p], progress=False)


def test_missing_file_and_non_utf8(tmp_path):
    with pytest.raises(IngestError, match="no such file"):
        ingest_files(tmp_path / "db", [tmp_path / "nope.csv"], progress=False)
    p = tmp_path / "latin1.csv"
    p.write_bytes("user,item,timestamp,title\nu,1,1700000000,Caf\xe9\n".encode("latin-1"))
    with pytest.raises(IngestError, match="not UTF-8"):
        ingest_files(tmp_path / "db", [p], progress=False)


def test_locked_database_waits_then_errors_clearly(tmp_path):
    db = tmp_path / "locked.db"
    connect(db).close()
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        with pytest.raises(DatabaseError, match=r"locked by another process \(waited 0.2 s\)"):
            ingest_files(db, [FIX / "generic_events.csv"], progress=False, lock_timeout=0.2)
    finally:
        other.execute("ROLLBACK")
        other.close()
    (rep,) = ingest_files(db, [FIX / "generic_events.csv"], progress=False)
    assert rep.stored == 8


def test_old_schema_is_migrated_and_newer_refused(tmp_path):
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript(MIGRATIONS[0][2])
    conn.execute("INSERT INTO users (name) VALUES ('kept')")
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    new = connect(db)
    assert new.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert new.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert new.execute("SELECT name FROM users").fetchall() == [("kept",)]
    new.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    new.close()
    with pytest.raises(DatabaseError, match="newer than this qriff"):
        connect(db)


def test_large_file_progress_accounting(tmp_path):
    p = tmp_path / "big.csv"
    lines = ["user,item,timestamp,skipped"]
    for i in range(30_000):
        lines.append(f"u{i % 50},t{i % 700},{1_600_000_000 + i},{'true' if i % 7 == 0 else ''}")
    lines.insert(500, "u1,t1,not-a-time,")
    p.write_text("\n".join(lines) + "\n")
    (rep,) = ingest_files(tmp_path / "db", [p], progress=False)
    assert rep.rows_in == 30_001 and rep.stored == 30_000 and rep.lines[next(iter(rep.reasons))] == [501]


def _stored(db, track_columns="t.title, t.artist, t.album"):
    """Every stored event as (user, track key, ``track_columns``..., ts, ms_played, outcome), in time order."""
    conn = sqlite3.connect(db)
    rows = conn.execute(f"SELECT u.name, t.key, {track_columns}, e.ts, e.ms_played, e.outcome FROM events e "
                        "JOIN users u ON u.id = e.user_id JOIN tracks t ON t.id = e.track_id "
                        "ORDER BY e.ts, t.key").fetchall()
    conn.close()
    return rows


def test_column_wise_csv_chunks_store_what_the_row_by_row_path_stores(tmp_path, monkeypatch):
    """The fast path (a clean chunk converted column by column) and the row-by-row path agree on
    every stored value and outcome."""
    from recommender.ingest import csvfile

    rng = np.random.default_rng(0)
    lines = ["user,item,timestamp,ms_played,duration_ms,skipped,title,artist,album,tags"]
    for k in range(500):
        ms = "" if k % 7 == 0 else str(int(rng.integers(0, 300_000)))
        dur = "" if k % 5 == 0 else ("0" if k % 11 == 0 else str(int(rng.integers(60_000, 300_000))))
        skipped = ["", "true", "false", "1", "no"][k % 5] if k % 3 == 0 else ""
        ts = 1_600_000_000 + k * 10 if k % 4 else (1_600_000_000 + k * 10) * 1000  # seconds and milliseconds
        lines.append(f"u{k % 9}, t{k % 37} ,{ts},{ms},{dur},{skipped},Song {k % 37},Band {k % 5},,rock|pop;jazz")
    path = tmp_path / "plays.csv"
    path.write_text("\n".join(lines) + "\n")

    real, batches = csvfile._columns, []
    monkeypatch.setattr(csvfile, "_columns", lambda *a, **k: batches.append(real(*a, **k)) or batches[-1])
    (fast,) = ingest_files(tmp_path / "fast.db", [path], progress=False)
    assert batches and all(b is not None for b in batches)  # the chunk did go column-wise
    monkeypatch.setattr(csvfile, "_columns", lambda *a, **k: None)
    (slow,) = ingest_files(tmp_path / "slow.db", [path], progress=False)
    assert fast.rows_in == slow.rows_in == 500 and fast.stored == slow.stored == 500
    cols = "t.title, t.artist, t.tags, t.duration_ms"
    a, b = _stored(tmp_path / "fast.db", cols), _stored(tmp_path / "slow.db", cols)
    assert a == b and len({r[-1] for r in a}) == 2  # both outcomes occur


def test_csv_line_numbers_count_line_breaks_inside_quoted_fields(tmp_path):
    p = tmp_path / "multi.csv"
    p.write_text('user,item,timestamp,title\nana,a,1600000000,"Two\nLines"\nana,b,not-a-time,B\n'
                 'ana,c,1600000001,"Three\r\nline\nsong"\nana,,1600000002,D\n')
    (rep,) = ingest_files(tmp_path / "db", [p], progress=False)
    assert (rep.rows_in, rep.stored, rep.rejected) == (4, 2, 2)
    lines = {reason.split(" ")[0]: v for reason, v in rep.lines.items()}
    assert lines == {"bad": [4], "empty": [8]}


def test_spotify_column_path_stores_what_the_row_path_stores(tmp_path, monkeypatch):
    """A whole file decoded at once and converted column by column agrees with the object-at-a-time
    path on every stored value, rejection reason and line number."""
    from recommender.ingest import spotify

    rng = np.random.default_rng(0)
    plays = []
    for k in range(300):
        plays.append({"ts": f"2023-03-{1 + k % 28:02d}T{k % 24:02d}:{k % 60:02d}:07Z", "platform": "Linux",
                      "ms_played": int(rng.integers(0, 300_000)), "master_metadata_track_name": f"Song {k % 41}",
                      "master_metadata_album_artist_name": ["Elis Regina", "Tom Jobim", "Nara Leão"][k % 3],
                      "master_metadata_album_album_name": None if k % 7 == 0 else f"Album {k % 5}",
                      "reason_end": ["trackdone", "fwdbtn", None, "endplay"][k % 4],
                      "skipped": [None, True, False][k % 3], "spotify_episode_uri": None,
                      **({"username": f"user{k % 4}"} if k % 2 else {})})
    path = tmp_path / "Streaming_History_Audio_2023.json"
    path.write_text("[\n" + ",\n".join("  " + json.dumps(p, indent=None) for p in plays) + "\n]\n")
    for name, plain in (("chunks", path), ("with-rejections", None)):
        if plain is None:  # a podcast and a bad time in the middle: that chunk goes row by row
            plays[100] = {**plays[100], "master_metadata_track_name": None, "spotify_episode_uri": "spotify:e:1"}
            plays[200] = {**plays[200], "ts": "yesterday"}
            path = tmp_path / "rejects.json"
            path.write_text("[\n" + ",\n".join("  " + json.dumps(p) for p in plays) + "\n]\n")
        batches: list = []

        def spy(*a, batches=batches, real=spotify._columns, **k):
            batches.append(real(*a, **k))
            return batches[-1]

        monkeypatch.setattr(spotify, "_columns", spy)
        (fast,) = ingest_files(tmp_path / f"fast-{name}.db", [path], progress=False)
        assert any(b is not None for b in batches) == (plain is not None)
        monkeypatch.setattr(spotify, "_whole", lambda text: (None, []))  # the object-at-a-time reader
        (slow,) = ingest_files(tmp_path / f"slow-{name}.db", [path], progress=False)
        monkeypatch.undo()
        assert (fast.rows_in, fast.stored, fast.lines) == (slow.rows_in, slow.stored, slow.lines)
        assert _stored(tmp_path / f"fast-{name}.db") == _stored(tmp_path / f"slow-{name}.db")
    assert {r.split(" ")[0]: v for r, v in fast.lines.items()} == {"not": [102], "bad": [202]}


def test_spotify_brace_inside_a_string_keeps_line_numbers(tmp_path):
    path = tmp_path / "braces.json"
    path.write_text('[\n  {"ts": "2023-03-01T08:02:11Z", "ms_played": 1000, "master_metadata_track_name": "{Untitled}",'
                    ' "master_metadata_album_artist_name": "Sigur Rós"},\n'
                    '  {"ts": "2023-03-01T08:06:02Z", "ms_played": -5, "master_metadata_track_name": "Hoppípolla",'
                    ' "master_metadata_album_artist_name": "Sigur Rós"}\n]\n')
    (rep,) = ingest_files(tmp_path / "db", [path], progress=False)
    assert (rep.rows_in, rep.stored) == (2, 1) and list(rep.lines.values()) == [[3]]
