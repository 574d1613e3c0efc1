"""Hostile datagrams against a running server: no traceback in its log, and it keeps answering.

:func:`hostile` makes seeded datagrams of every kind a careless or malicious sender
produces: random bytes, messages of the address table with arguments of every OSC type
(T, F and N anywhere, before strings and blobs), odd option lists, stray ``reply_port``
words, type tags and sizes that lie, truncations, byte flips and bundles nested too
deep or framed wrong. The server log is captured from every logger; any record
carrying a traceback (``exc_info``) is a failure, so is a server that stops answering
ping or generate afterwards. The full 30,000-datagram run is marked slow; the same
test with 3,000 runs in the fast suite.
"""

from __future__ import annotations

import logging
import random
import struct
import time

import pytest

from bridge import protocol
from bridge.datagrams import encode
from tests.bridge.support import Peer, free_udp_port, running_server

ADDRESSES = sorted(protocol.request_addresses()) + ["/qriff", "/qriff/", "/qriff/set/*", "/live/test", "/"]
WORDS = ["key", "scale", "bars", "style", "chords", "seed", "variations", "reply_port", "clip", "primer",
         "source", "stars", "keep", "discard", "REPLY_PORT", "temperature", "roles", "count", "", "..", "../x"]


def _value(rng: random.Random, reply_port: int) -> tuple[object, str]:
    """One argument and its OSC type tag."""
    kind = rng.choice("iifffssssssTFNbhdrm")
    if kind == "i":
        return rng.choice([0, 1, -1, 7, 99999, 2**31 - 1, -2**31, reply_port, rng.randrange(-10**6, 10**6)]), "i"
    if kind == "f":
        return rng.choice([0.0, 0.5, -1.5, 1e30, float("inf"), float("nan"), 2.0, 1e-40]), "f"
    if kind == "s":
        return rng.choice(WORDS + ["D", "dorian", "hook", "C G Am F", "000001-0.json", "x" * 300, "é✓"]), "s"
    if kind == "b":
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40))), "b"
    if kind == "h":
        return rng.choice([2**40, -2**40, 5]), "h"
    if kind == "d":
        return rng.choice([0.25, -1e300, float("nan")]), "d"
    if kind == "r":
        return rng.randrange(2**31), kind
    if kind == "m":
        return tuple(rng.randrange(256) for _ in range(4)), kind
    return {"T": True, "F": False, "N": None}[kind], kind


def _message(rng: random.Random, reply_port: int) -> bytes:
    address = rng.choice(ADDRESSES)
    args, tags = [], ""
    for _ in range(rng.randrange(0, 9)):
        value, tag = _value(rng, reply_port)
        args.append(value)
        tags += tag
    if rng.random() < 0.3:  # a reply_port anywhere, valid or not
        at = rng.randrange(0, len(args) + 1)
        port = rng.choice([reply_port, reply_port, 0, -5, 70000, "x", None])
        args[at:at] = ["reply_port", port]
        tags = tags[:at] + "s" + ("N" if port is None else "s" if isinstance(port, str) else "i") + tags[at:]
    try:
        return encode(address, args, tags)
    except (ValueError, OverflowError, TypeError, struct.error):
        return encode(address, [1], "i")


def _lie(rng: random.Random, data: bytes) -> bytes:
    """Corrupt a valid message: truncate, flip bytes, rewrite its type tags or append junk."""
    how = rng.randrange(5)
    if how == 0 and len(data) > 1:
        return data[:rng.randrange(1, len(data))]
    if how == 1:
        b = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if how == 2 and b"," in data:
        start = data.index(b",") + 1
        end = data.index(b"\x00", start)
        tags = bytes(rng.choice(b"ihfdsbrmtTFN[]") for _ in range(end - start))
        return data[:start] + tags + data[end:]
    if how == 3:
        return data + bytes(rng.randrange(256) for _ in range(rng.choice([1, 3, 4, 8])))
    return data + b"\x00\x00\x00\x00"


def _bundle(rng: random.Random, elements: list[bytes], depth: int = 0) -> bytes:
    body = b""
    for e in elements:
        size = len(e) if rng.random() < 0.8 else rng.choice([-4, 0, 3, len(e) + 4, 2**31 - 1])
        body += struct.pack(">i", size) + e
    out = b"#bundle\x00" + struct.pack(">Q", 1) + body
    if depth < 6 and rng.random() < 0.3:
        return _bundle(rng, [out], depth + 1)
    return out


def hostile(rng: random.Random, reply_port: int) -> bytes:
    """One hostile (or, by chance, perfectly valid) datagram."""
    roll = rng.random()
    if roll < 0.15:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
    if roll < 0.55:
        return _message(rng, reply_port)
    if roll < 0.85:
        return _lie(rng, _message(rng, reply_port))
    return _bundle(rng, [_message(rng, reply_port) for _ in range(rng.randrange(1, 4))])


class _Traces(logging.Handler):
    """Every log record of the process; ``tracebacks`` are those carrying exception info."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def tracebacks(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.exc_info or "Traceback" in r.getMessage()]


def run_fuzz(tmp_path, count: int, seed: int = 18) -> dict:
    """Send ``count`` hostile datagrams; returns what the log and the server said."""
    traces = _Traces()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(traces)
    root.setLevel(logging.DEBUG)
    # Live pushes a fuzzed live_track could ask for go to a port nobody holds, and give up quickly.
    try:
        with running_server(tmp_path, live_port=free_udp_port(), live_reply_port=free_udp_port(), live_timeout=0.05,
                            queue_size=16) as srv:
            peer = Peer(srv.address)
            rng = random.Random(seed)
            replies = 0
            for i in range(count):
                peer.send_raw(hostile(rng, peer.port))
                if i % 200 == 199 or i == count - 1:  # let the server catch up: a ping answered means all read
                    replies += _sync(peer, srv, 10**8 + i)
            srv.session.update(protocol.defaults())  # whatever fuzzed /qriff/set messages changed
            pong = _drain_until(peer, "/qriff/ping", "after-fuzz-ping", "/qriff/pong")
            clip = _drain_until(peer, "/qriff/generate", "after-fuzz-generate", "/qriff/clip/end", "bars", 1)
            alive = srv._loop_thread is not None and srv._loop_thread.is_alive()
            failures = srv.failures.total
            malformed, served = srv.read("malformed"), srv.read("served")
            peer.close()
    finally:
        root.removeHandler(traces)
        root.setLevel(old_level)
    return {"tracebacks": traces.tracebacks, "records": len(traces.records), "pong": pong, "clip": clip,
            "alive": alive, "failures": failures, "malformed": malformed, "served": served, "replies": replies}


def _sync(peer: Peer, srv, rid: int) -> int:
    """Ping (to our own port, whatever the session says) and read until its pong; the replies read."""
    peer.send("/qriff/ping", rid, "reply_port", peer.port)
    n, deadline = 0, time.monotonic() + 30
    while time.monotonic() < deadline:
        addr, params, _ = peer.recv(30)
        n += 1
        if addr == "/qriff/pong" and params[0] == rid:
            return n
    raise AssertionError("the server stopped answering ping")


def _drain_until(peer: Peer, address: str, rid: str, until: str, *options: object) -> list:
    """Send a request with an id no fuzzed datagram has, and read until its answer on ``until``.

    A ``busy`` answer (the queue still holds fuzzed generate requests) is retried as the
    error asks a client to, after a pause; any other error for our id fails."""
    peer.send(address, rid, *options, "reply_port", peer.port)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        addr, params, _ = peer.recv(30)
        if addr == until and params[0] == rid:
            return params
        if addr == "/qriff/error" and params[0] == rid and params[1] == "busy":
            time.sleep(0.5)
            peer.send(address, rid, *options, "reply_port", peer.port)
            continue
        assert not (addr == "/qriff/error" and params[0] == rid), params
    raise AssertionError("no clip after the fuzz")


def _check(result: dict, count: int) -> None:
    assert result["tracebacks"] == [], [r.getMessage() for r in result["tracebacks"][:3]]
    assert result["failures"] == 0 and result["alive"]
    assert result["pong"] == ["after-fuzz-ping", "0.1.0"] and result["clip"][0] == "after-fuzz-generate"
    assert result["malformed"] > count // 10 and result["replies"] > count // 2  # the fuzz did reach it


def test_hostile_datagrams_leave_no_traceback(tmp_path):
    _check(run_fuzz(tmp_path, 3000), 3000)


@pytest.mark.slow
def test_30000_hostile_datagrams_leave_no_traceback(tmp_path):
    _check(run_fuzz(tmp_path, 30000, seed=30000), 30000)


def test_the_fuzz_can_find_a_crash(tmp_path, monkeypatch):
    """Negative control: with the layout bug the issue reported put back, the same fuzz sees tracebacks."""
    from bridge import datagrams

    real = datagrams._check_layout

    def crashing(data, pos, tags, args):  # what the original bug did: T/F/N then a string raised
        if any(t in "TFN" for t in tags) and any(isinstance(a, str) for a in args):
            raise AttributeError("'bool' object has no attribute 'encode'")
        return real(data, pos, tags, args)

    monkeypatch.setattr(datagrams, "_check_layout", crashing)
    result = run_fuzz(tmp_path, 600)
    assert result["tracebacks"] and result["failures"] > len(result["tracebacks"])  # rate-limited
    assert result["pong"] == ["after-fuzz-ping", "0.1.0"]  # and even then the server answers


@pytest.mark.parametrize("flag", [True, False, None], ids=["T", "F", "N"])
def test_every_request_address_answers_flags_in_every_position(tmp_path, flag):
    """A well-formed message always gets an answer, whatever type its arguments have."""
    with running_server(tmp_path) as srv:
        peer = Peer(srv.address)
        rid = 0
        for address in sorted(protocol.request_addresses()):
            if address == "/qriff/generate":
                continue  # answered with a clip; its options are covered by the fuzz
            base = ["key", "s", b"blob"]
            for pos in range(len(base) + 1):
                rid += 1
                args = list(base)
                args.insert(pos, flag)
                got = peer.request(address, rid, *args, "reply_port", peer.port)
                assert got[0][1][0] == rid, (address, args, got)
        assert srv.failures.total == 0
        peer.close()
