"""``qriff rec serve``: every endpoint's good and bad input over real HTTP (uvicorn on loopback), events
stored at once and seen by the next /next, nothing stored from a rejected event, 503 on a locked or full
database, and no event lost under concurrent posting."""

from __future__ import annotations

import http.client
import re
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("torch")

from recommender.artifact import default_model_path  # noqa: E402
from recommender.service import ROUTES, LocalService  # noqa: E402
from tests.recommender.http_server import Client, running  # noqa: E402
from tests.recommender.tiny import tiny_trained_db  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return tiny_trained_db(tmp_path_factory.mktemp("svc"))


@pytest.fixture
def db(trained, tmp_path):
    """A fresh copy of the trained database and its model for each test (events change it)."""
    path = tmp_path / "music.db"
    src = sqlite3.connect(trained)
    dst = sqlite3.connect(path)
    src.backup(dst)
    src.close()
    dst.close()
    shutil.copy(default_model_path(trained), default_model_path(path))
    return path


@pytest.fixture
def server(db):
    svc = LocalService(db, lock_timeout=0.2, max_body=4096)
    with running(svc.app) as port:
        client = Client(port)
        yield svc, client, port
        client.close()
    svc.close()


def events_in(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]


@pytest.mark.parametrize("path,check", [
    ("/next?user=dana&n=3", lambda b: len(b["tracks"]) == 3 and b["source"] == "model" and not b["cold_start"]),
    ("/next", lambda b: b["source"] == "popularity" and b["cold_start"] and len(b["tracks"]) == 10),
    ("/next?history=trk-001&history=Radiohead%20-%20Kid%20A&n=2",
     lambda b: b["source"] == "history" and len(b["tracks"]) == 2),
    ("/playlist?user=eli&steps=4", lambda b: len({t["id"] for t in b["tracks"]}) == 4),
    ("/search?q=blue&user=dana", lambda b: b["tracks"][0]["title"] == "Blue in Green"),
    ("/search?q=%22NEAR(%20*", lambda b: b["source"] == "search"),  # FTS syntax is searched as words
    ("/health", lambda b: b["status"] == "ok" and b["events"]["rows_in"] == 0),
])
def test_good_reads(server, path, check):
    _, client, _ = server
    status, headers, body = client.call("GET", path)
    assert status == 200 and headers["content-type"] == "application/json", body
    assert check(body), body


@pytest.mark.parametrize("path,status,message", [
    ("/next?user=nobody", 404, "user 'nobody' is not in the database"),
    ("/next?n=abc", 400, "n 'abc' is not an integer (allowed: 1-1000)"),
    ("/next?n=0", 400, "n 0 is out of range (allowed: 1-1000)"),
    ("/next?n=1001", 400, "n 1001 is out of range (allowed: 1-1000)"),
    ("/next?history=no-such-track", 404, "track 'no-such-track' is not in the catalog"),
    ("/playlist?user=dana&steps=-1", 400, "steps -1 is out of range (allowed: 1-500)"),
    ("/playlist?steps=2.5", 400, "steps '2.5' is not an integer (allowed: 1-500)"),
    ("/playlist?user=ghost", 404, "user 'ghost' is not in the database"),
    ("/search", 400, "q is missing"),
    ("/search?q=x&user=ghost", 404, "user 'ghost' is not in the database"),
    ("/search?q=x&n=x", 400, "n 'x' is not an integer"),
    ("/nowhere", 404, "GET /nowhere is not an endpoint (allowed: GET /next"),
])
def test_bad_reads(server, path, status, message):
    _, client, _ = server
    got, _, body = client.call("GET", path)
    assert got == status and list(body) == ["error"] and message in body["error"], body
    assert "\n" not in body["error"]


def test_event_is_seen_by_the_next_next(server, db):
    svc, client, _ = server
    _, _, before = client.call("GET", "/next?user=dana&n=3")
    top = before["tracks"][0]
    status, _, body = client.call("POST", "/events", {"user": "dana", "item": top["id"], "timestamp": 1_800_000_000,
                                                       "ms_played": 200_000, "duration_ms": 210_000})
    assert status == 201 and body["stored"] == 1
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT u.name, e.track_id, e.outcome FROM events e JOIN users u ON u.id = e.user_id "
                           "WHERE e.id = ?", (body["ids"][0],)).fetchone()
    assert row == ("dana", top["id"], 1)  # completed: 200 of 210 s played
    _, _, after = client.call("GET", "/next?user=dana&n=3")
    assert top["id"] not in [t["id"] for t in after["tracks"]]  # just heard: no longer offered
    assert after["tracks"] != before["tracks"]


def test_a_new_listener_starts_with_their_first_play(server):
    _, client, _ = server
    assert client.call("GET", "/next?user=newbie")[0] == 404
    status, _, _ = client.call("POST", "/events", {"user": "newbie", "artist": "Radiohead", "title": "Kid A",
                                                   "skipped": True})
    assert status == 201
    status, _, body = client.call("GET", "/next?user=newbie&n=2")
    assert status == 200 and body["source"] == "model" and len(body["tracks"]) == 2


@pytest.mark.parametrize("body,raw,status,message", [
    (None, b"{not json", 400, "the body is not JSON (Expecting property name"),
    (None, b'"\xc3\x28"', 400, "the body is not JSON (not UTF-8)"),
    (None, b"x" * 5000, 413, "the body is 5000 bytes, over the limit (allowed: at most 4096 bytes)"),
    ([], None, 400, "the body is an empty list"),
    ("play", None, 400, "an event must be a JSON object, not str"),
    ({"user": "dana"}, None, 400, "item None is not a track reference"),
    ({"item": "trk-001"}, None, 400, "user None is not a listener name"),
    ({"user": "dana", "item": "trk-001", "skiped": True}, None, 400, "unknown field 'skiped' (allowed: user, item"),
    ({"user": "dana", "item": "no-such"}, None, 404, "track 'no-such' is not in the catalog"),
    ({"user": "dana", "item": "trk-001", "timestamp": "yesterday"}, None, 400, "bad timestamp 'yesterday'"),
    ({"user": "dana", "item": "trk-001", "timestamp": 1e30}, None, 400, "bad timestamp"),
    ({"user": "dana", "item": "trk-001", "ms_played": -5}, None, 400, "ms_played -5 is out of range"),
    ({"user": "dana", "item": "trk-001", "ms_played": "10"}, None, 400, "ms_played '10' is not an integer"),
    ({"user": "dana", "item": "trk-001", "skipped": "yes"}, None, 400, "skipped 'yes' is not a boolean"),
    ([{"user": "dana", "item": "trk-001"}, {"user": "dana", "item": "no-such"}], None, 404,
     "event 1: track 'no-such' is not in the catalog"),
])
def test_bad_events_store_nothing(server, db, body, raw, status, message):
    svc, client, _ = server
    before = events_in(db)
    got, _, reply = client.call("POST", "/events", body, raw=raw)
    assert got == status and list(reply) == ["error"] and message in reply["error"], reply
    assert "\n" not in reply["error"]
    assert events_in(db) == before  # a list with one bad event stores none of it


def test_streamed_body_over_the_limit(server):
    _, client, port = server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("POST", "/events")
    conn.putheader("Transfer-Encoding", "chunked")  # no Content-Length to refuse it by
    conn.endheaders()
    for _ in range(3):
        conn.send(b"800\r\n" + b" " * 0x800 + b"\r\n")
    conn.send(b"0\r\n\r\n")
    resp = conn.getresponse()
    assert resp.status == 413 and b"over 4096 bytes" in resp.read()
    conn.close()


def test_duplicate_is_rejected_and_counted(server, db):
    svc, client, _ = server
    ev = {"user": "eli", "item": "trk-002", "timestamp": "2025-03-01T12:00:00Z", "skipped": False}
    assert client.call("POST", "/events", ev)[0] == 201
    status, _, body = client.call("POST", "/events", ev)
    assert status == 409 and "duplicate" in body["error"]
    counts = client.call("GET", "/health")[2]["events"]
    assert counts["rows_in"] == 2 == counts["stored"] + counts["rejected"] and counts["reasons"] == {"duplicate": 1}
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT rows_in, stored, rejected FROM sources WHERE format = 'events'").fetchone() \
            == (1, 1, 0)  # the rejection is written with the next stored event


def test_locked_database_gets_503_then_stores(server, db):
    svc, client, _ = server
    ingest = sqlite3.connect(db, timeout=0, isolation_level=None)
    ingest.execute("BEGIN IMMEDIATE")  # what a running 'qriff rec ingest' holds
    ev = {"user": "dana", "item": "trk-003", "timestamp": 1_800_000_100}
    status, headers, body = client.call("POST", "/events", ev)
    assert status == 503 and headers["retry-after"] == "1" and "is locked by another process" in body["error"]
    assert client.call("GET", "/next?user=dana")[0] == 200  # reads go on while the writer waits (WAL)
    ingest.execute("ROLLBACK")
    ingest.close()
    assert client.call("POST", "/events", ev)[0] == 201  # the client's retry stores it, once
    assert client.call("GET", "/health")[2]["events"]["rows_in"] == 1


def test_full_database_gets_503_and_keeps_nothing_half(server, db):
    svc, client, _ = server
    pages = svc.writer.conn.execute("PRAGMA page_count").fetchone()[0]
    svc.writer.conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full: the file cannot grow
    for k in range(100):  # fill the free space of the last pages until a batch does not fit
        batch = [{"user": f"new{k:03d}{i:02d}-" + "x" * 120, "item": 6, "timestamp": 1_800_000_000 + i}
                 for i in range(18)]
        before = events_in(db)
        status, headers, body = client.call("POST", "/events", batch)
        if status != 201:
            break
    assert status == 503 and headers["retry-after"] == "30" and "is full" in body["error"], body
    assert events_in(db) == before  # none of the batch
    svc.writer.conn.execute("PRAGMA max_page_count = 1073741823")  # space freed
    assert client.call("POST", "/events", batch)[0] == 201
    assert events_in(db) == before + 18


def test_openapi_lists_every_route(server):
    _, client, _ = server
    status, _, spec = client.call("GET", "/openapi.json")
    assert status == 200
    assert {(m.lower(), p) for m, p, _ in ROUTES} == {(m, p) for p, ops in spec["paths"].items() for m in ops}
    assert "Event" in spec["components"]["schemas"]
    conn = http.client.HTTPConnection("127.0.0.1", server[2], timeout=30)
    conn.request("GET", "/docs")
    page = conn.getresponse()
    assert page.status == 200 and b"/openapi.json" in page.read()
    conn.close()


def test_concurrent_events_are_all_stored(server, db):
    """8 clients post 60 events each, a tenth of them duplicates and a tenth unknown tracks: every event is
    answered, rows in = stored + rejected, and the database holds exactly the stored ones."""
    svc, _, port = server
    before = events_in(db)
    results: list[tuple[int, int]] = []
    lock = threading.Lock()

    def client_run(k: int) -> None:
        c = Client(port)
        for i in range(60):
            item: str | int = "no-such" if i % 10 == 3 else (i % 20) + 1  # catalog ids 1-20
            ts = 1_900_000_000 + k * 1000 + (i - 1 if i % 10 == 7 else i)  # i%10==7 repeats the event before
            if i % 10 == 7:
                item = ((i - 1) % 20) + 1
            status, _, _ = c.call("POST", "/events", {"user": f"load{k}", "item": item, "timestamp": ts})
            with lock:
                results.append((k, status))
        c.close()

    threads = [threading.Thread(target=client_run, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    statuses = [s for _, s in results]
    assert len(statuses) == 480 and set(statuses) <= {201, 404, 409}
    stored = statuses.count(201)
    assert statuses.count(404) == 48 and statuses.count(409) == 48 and stored == 384
    assert events_in(db) == before + stored
    counts = Client(port).call("GET", "/health")[2]["events"]
    assert counts["rows_in"] == 480 == counts["stored"] + counts["rejected"] and counts["stored"] == stored


def test_cli_bad_flags_exit_2(qriff, tmp_path):
    proc = qriff("rec", "serve", "--port", "70000")
    assert proc.returncode == 2 and "70000 is out of range (allowed: 1-65535)" in proc.stderr
    proc = qriff("rec", "serve", "--db", str(tmp_path / "none.db"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    proc = qriff("rec", "serve", "--db", str(tmp_path / "none.db"), "--ray-address", "127.0.0.1:1")
    assert proc.returncode == 2 and "--ray-address '127.0.0.1:1' is not reachable" in proc.stderr, proc.stderr


@pytest.mark.slow
def test_cli_serves_until_interrupted(db):
    """``qriff rec serve`` as a user runs it: answers on loopback, stops on Ctrl-C with exit 0."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "rec", "serve", "--db", str(db), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, _, body = Client(port, timeout=5).call("GET", "/health")
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.2)
        assert status == 200 and body["db"] == str(db)
        assert Client(port).call("POST", "/events", {"user": "cli", "item": 6, "timestamp": 1_800_000_000})[0] == 201
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"on http://127.0.0.1:{port}" in out
    assert events_in(db) == 28


def test_the_docs_page_lists_every_endpoint_and_event_field():
    from recommender.events import FIELDS

    page = (Path(__file__).resolve().parents[2] / "docs" / "service.md").read_text()
    listed = set(re.findall(r"^\| `(GET|POST) (/\w+)`", page, re.M))
    assert listed - {("GET", "/docs")} == {(m, p) for m, p, _ in ROUTES}
    fields = {f for row in re.findall(r"^\| (`\w+`(?:, `\w+`)*) \|", page, re.M) for f in re.findall(r"`(\w+)`", row)}
    assert set(FIELDS) <= fields
