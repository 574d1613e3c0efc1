"""``/qriff/feedback``: verdicts over OSC land in the feedback store; bad ones are refused and change nothing."""

from __future__ import annotations

import sqlite3
import time

import pytest

from engine.feedback import SCHEMA_VERSION, FeedbackStore
from tests.bridge.support import Peer, running_server


@pytest.fixture
def served(tmp_path):
    with running_server(tmp_path) as srv:
        peer = Peer(srv.address)
        names = []
        for rid in (1, 2):
            end = peer.request("/qriff/generate", rid, "bars", 1, "seed", rid, until="/qriff/clip/end")[-1][1]
            names.append(end[4].rsplit("/", 1)[1])
        yield srv, peer, names, tmp_path / "feedback.sqlite"
        peer.close()


def stored(path):
    with sqlite3.connect(path) as db:
        return db.execute("SELECT clip_path, verdict, stars, source, revisions FROM verdicts ORDER BY clip_path").fetchall()


def test_verdicts_are_stored_and_acknowledged(served):
    srv, peer, (a, b), db = served
    assert peer.request("/qriff/feedback", 10, a, "keep") == [("/qriff/feedback/stored", [10, a, "keep", 0])]
    assert peer.request("/qriff/feedback", 11, b, "discard", 2, "source", "device") == \
        [("/qriff/feedback/stored", [11, b, "discard", 2])]
    assert peer.request("/qriff/feedback", "x", a, "DISCARD", 5.0) == [("/qriff/feedback/stored", ["x", a, "discard", 5])]
    rows = stored(db)
    assert [(r[1:]) for r in rows] == [("discard", 5, "osc", 2), ("discard", 2, "device", 1)]
    assert rows[0][0].endswith(a) and rows[1][0].endswith(b)
    with FeedbackStore(db) as store:
        v = next(iter(store.verdicts("discard", 1)))
        assert v.model == "test-walk" and v.seed in (1, 2) and v.clip["tracks"]


@pytest.mark.parametrize("args,code,needle", [
    (("{a}", "maybe"), "bad_value", "verdict 'maybe' is not valid: allowed are keep or discard"),
    (("{a}", "keep", 6), "bad_value", "stars 6 is not valid: allowed an integer 1-5"),
    (("{a}", "keep", 0), "bad_value", "stars 0"),
    (("{a}", "keep", 2.5), "bad_value", "stars 2.5"),
    (("{a}", "keep", "source", "cli"), "bad_value", "source 'cli'"),
    (("nothing.json", "keep"), "not_found", "does not exist"),
    (("../feedback.sqlite", "keep"), "bad_value", "no folders"),
    (("{a}",), "bad_request", "expected id clip verdict [stars]"),
    (("{a}", "keep", 3, "stars"), "bad_request", "option name 3 at position 1 is not a string"),
])
def test_bad_verdicts_are_refused_with_one_line_and_store_nothing(served, args, code, needle):
    srv, peer, (a, _), db = served
    peer.request("/qriff/feedback", 1, a, "keep")
    before = stored(db)
    [(addr, params)] = peer.request("/qriff/feedback", 7, *[x.format(a=a) if isinstance(x, str) else x for x in args])
    assert addr == "/qriff/error" and params[:2] == [7, code] and needle in params[2], params
    assert "\n" not in params[2] and stored(db) == before


def test_the_answer_goes_to_reply_port(served):
    srv, peer, (a, _), db = served
    listener = Peer(srv.address)
    peer.send("/qriff/feedback", 3, a, "keep", 4, "source", "device", "reply_port", listener.port)
    assert listener.recv()[:2] == ("/qriff/feedback/stored", [3, a, "keep", 4])
    peer.send("/qriff/feedback", 4, a, "reply_port", listener.port)  # no verdict: the error still goes there
    addr, params, _ = listener.recv()
    assert addr == "/qriff/error" and params[:2] == [4, "bad_value"] and "verdict" in params[2]


def test_a_store_from_a_newer_qriff_is_reported_and_left_alone(tmp_path):
    db = tmp_path / "feedback.sqlite"
    FeedbackStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = db.read_bytes()
    with running_server(tmp_path) as srv:
        peer = Peer(srv.address)
        end = peer.request("/qriff/generate", 1, "bars", 1, until="/qriff/clip/end")[-1][1]
        [(addr, params)] = peer.request("/qriff/feedback", 2, end[4].rsplit("/", 1)[1], "keep")
        assert addr == "/qriff/error" and params[1] == "store" and "newer than this qriff's" in params[2]
        assert peer.request("/qriff/ping", 3)[0][0] == "/qriff/pong"
    assert db.read_bytes() == before


def test_verdicts_queued_when_the_server_stops_are_stored_and_answered(tmp_path):
    """Group commits: whatever the receive loop accepted is stored before the server is gone."""
    db = tmp_path / "feedback.sqlite"
    srv_cm = running_server(tmp_path)
    srv = srv_cm.__enter__()
    try:
        peer = Peer(srv.address)
        end = peer.request("/qriff/generate", 1, "bars", 1, "variations", 4, until="/qriff/clip/end", count=4)
        names = [p[4].rsplit("/", 1)[1] for a, p in end if a == "/qriff/clip/end"]
        base = srv.read("served")
        for i in range(300):
            peer.send("/qriff/feedback", i, names[i % 4], "keep" if i % 2 else "discard")
        deadline = time.monotonic() + 20
        while srv.read("served") - base < 300 and time.monotonic() < deadline:
            time.sleep(0.001)
    finally:
        srv_cm.__exit__(None, None, None)
    acks = 0
    peer.sock.settimeout(0.5)
    try:
        while True:
            data, _ = peer.sock.recvfrom(65536)
            acks += b"/qriff/feedback/stored" in data
    except TimeoutError:
        pass
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT sum(revisions) FROM verdicts").fetchone()[0] == 300 == acks
