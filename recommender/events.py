"""Plays and skips posted to the service (``POST /events``), checked and stored by the one writer.

An event carries the fields the ingest formats read, under the generic CSV's names:

- ``user`` (required): the listener's name. A name the database does not hold yet is a
  new listener, added with their first play.
- ``item`` (required, unless ``artist`` and ``title`` are given): the track, as
  ``qriff rec next --history`` takes it: a catalog id, a CSV item id, a stored key or
  ``Artist - Title``. The track must be in the catalog (``qriff rec ingest`` adds tracks).
- ``timestamp``: unix seconds or milliseconds, or ISO 8601 (default: now, on the
  server). Give it: the same user, time and track stored twice is rejected as a
  duplicate, which makes a retried request safe.
- ``ms_played``, ``duration_ms``, ``skipped``, ``reason_end`` (Spotify's): decide the
  outcome (completed or skipped) by the rules of :mod:`recommender.rewards`; without a
  ``duration_ms`` the catalog's duration is used.

A request body is one event object or a JSON list of them (at most :data:`MAX_EVENTS`),
stored all or nothing, in one transaction: a list with one bad event stores none of it.

Accounting, as ingest keeps it: every event received is either stored or rejected with
its reason (``rows_in == stored + rejected``). An event that meets a locked or full
database is neither: it is not stored, the request is answered 503 with ``Retry-After``,
and the client sends it again. Only a committed event is answered 201.

One :class:`EventWriter` owns the write connection and is called from one thread at a
time (the service runs it on a single-thread executor, or as one Ray actor), so events
never contend with each other for SQLite's write lock; only an ingest running beside
the service can hold it.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recommender import catalog, rewards
from recommender.ingest import DUPLICATE
from recommender.ingest.records import parse_time, time_reason
from recommender.schema import connect

log = logging.getLogger(__name__)

#: Events in one request body, at most.
MAX_EVENTS = 1000
#: The fields an event may carry (anything else is a typo, and rejected).
FIELDS = ("user", "item", "timestamp", "ms_played", "duration_ms", "skipped", "reason_end", "artist", "title")
MAX_MS = 24 * 3600 * 1000
#: Seconds a client is told to wait after a locked database, and after a full one.
RETRY_LOCKED_S = 1
RETRY_FULL_S = 30


@dataclass
class Outcome:
    """What a request to the writer came to: an HTTP status, the JSON body and extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class Rejected(ValueError):
    """One event that cannot be stored: ``status`` (400, 404 or 409) and a one-line message."""

    def __init__(self, status: int, message: str, reason: str | None = None):
        super().__init__(message)
        self.status = status
        self.reason = reason or message
        self.index = 0


@dataclass
class Event:
    """One checked event (catalog track resolved later, under the write lock)."""

    user: str
    item: str
    ts: float
    ms_played: int | None
    duration_ms: int | None
    skipped: bool | None
    reason_end: str | None


def _int_field(raw: dict, name: str, lo: int, hi: int) -> int | None:
    v = raw.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or (isinstance(v, float) and not v.is_integer()):
        raise Rejected(400, f"{name} {v!r} is not an integer (allowed: {lo}-{hi})", f"{name} is not an integer")
    if not lo <= v <= hi:
        raise Rejected(400, f"{name} {v!r} is out of range (allowed: {lo}-{hi})", f"{name} is out of range")
    return int(v)


def parse_event(raw: Any, now: float) -> Event:
    """An :class:`Event` from one decoded JSON value, or :class:`Rejected` naming the field."""
    if not isinstance(raw, dict):
        raise Rejected(400, f"an event must be a JSON object, not {type(raw).__name__} (fields: {', '.join(FIELDS)})",
                       "not an object")
    unknown = [k for k in raw if k not in FIELDS]
    if unknown:
        raise Rejected(400, f"unknown field {unknown[0]!r} (allowed: {', '.join(FIELDS)})", "unknown field")
    user = raw.get("user")
    if not isinstance(user, str) or not user.strip() or len(user) > 200:
        raise Rejected(400, f"user {user!r} is not a listener name (allowed: text of 1-200 characters)",
                       "bad user name")
    item = raw.get("item")
    if item is None and isinstance(raw.get("artist"), str) and isinstance(raw.get("title"), str):
        item = f"{raw['artist']} - {raw['title']}"
    if isinstance(item, bool) or not isinstance(item, str | int) or not str(item).strip() or len(str(item)) > 500:
        raise Rejected(400, f"item {item!r} is not a track reference (allowed: a catalog id, a CSV item id or "
                            "'Artist - Title'; or give artist and title)", "bad item")
    ts_raw = raw.get("timestamp")
    if ts_raw is None:
        ts = now
    else:
        ts = None if isinstance(ts_raw, bool) or not isinstance(ts_raw, str | int | float) else parse_time(str(ts_raw))
        if ts is None or not math.isfinite(ts):
            raise Rejected(400, time_reason(ts_raw), "bad timestamp")
    skipped = raw.get("skipped")
    if skipped is not None and not isinstance(skipped, bool):
        raise Rejected(400, f"skipped {skipped!r} is not a boolean (allowed: true, false)", "skipped is not a boolean")
    reason_end = raw.get("reason_end")
    if reason_end is not None and (not isinstance(reason_end, str) or len(reason_end) > 100):
        raise Rejected(400, f"reason_end {reason_end!r} is not a Spotify end reason (allowed: text such as "
                            "'trackdone' or 'fwdbtn')", "bad reason_end")
    return Event(user.strip(), str(item).strip(), float(ts), _int_field(raw, "ms_played", 0, MAX_MS),
                 _int_field(raw, "duration_ms", 1, MAX_MS), skipped, reason_end or None)


def _failure(exc: sqlite3.Error) -> str | None:
    """'locked' or 'full' for the SQLite errors a client should retry later, else None."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return "locked"
    if "full" in text:
        return "full"
    return None


class EventWriter:
    """The one writer of posted events (see the module doc). Not thread-safe: call it from one thread."""

    def __init__(self, db: str | Path, lock_timeout: float = 1.0, rule: rewards.OutcomeRule = rewards.DEFAULT_RULE,
                 source: str = "http:/events"):
        self.db = Path(db)
        self.lock_timeout = lock_timeout
        self.rule = rule
        self.source_name = source
        self.conn = connect(self.db, timeout=lock_timeout, create=False)
        self.source_id: int | None = None
        self.rows_in = 0
        self.stored = 0
        self.rejected = 0
        self.reasons: dict[str, int] = {}
        self._lock = threading.Lock()  # only guards counters read by /health from another thread

    def close(self) -> None:
        self.conn.close()

    def counts(self) -> dict[str, Any]:
        with self._lock:
            return {"rows_in": self.rows_in, "stored": self.stored, "rejected": self.rejected,
                    "reasons": dict(self.reasons)}

    def _reject(self, n: int, reason: str) -> None:
        with self._lock:
            self.rows_in += n
            self.rejected += n
            self.reasons[reason] = self.reasons.get(reason, 0) + n

    def store(self, body: Any) -> Outcome:
        """Check and store a decoded request body (one event object or a list); see the module doc."""
        events = body if isinstance(body, list) else [body]
        if not events:
            return Outcome(400, {"error": "the body is an empty list: send one event object or a list of 1-"
                                          f"{MAX_EVENTS} events"})
        if len(events) > MAX_EVENTS:
            self._reject(len(events), "too many events in one request")
            return Outcome(413, {"error": f"the body holds {len(events)} events, over the limit (allowed: 1-"
                                          f"{MAX_EVENTS} per request): send them in several requests"})
        now = time.time()
        parsed = []
        for i, raw in enumerate(events):
            try:
                parsed.append(parse_event(raw, now))
            except Rejected as exc:
                return self._rejected(len(events), exc, i)
        fresh_source = self.source_id is None  # created in this transaction: gone again if it rolls back
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            return self._unavailable(exc)
        try:
            ids = []
            for i, ev in enumerate(parsed):
                try:
                    ids.append(self._insert(ev))
                except Rejected as exc:
                    exc.index = i
                    raise
            with self._lock:
                rows_in, stored, rejected = self.rows_in + len(parsed), self.stored + len(parsed), self.rejected
            self.conn.execute("UPDATE sources SET rows_in = ?, stored = ?, rejected = ? WHERE id = ?",
                              (rows_in, stored, rejected, self.source_id))
            self.conn.execute("COMMIT")
        except Rejected as exc:
            self.conn.execute("ROLLBACK")
            if fresh_source:
                self.source_id = None
            return self._rejected(len(parsed), exc, exc.index)
        except sqlite3.Error as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            if fresh_source:
                self.source_id = None
            return self._unavailable(exc)
        with self._lock:
            self.rows_in += len(parsed)
            self.stored += len(parsed)
        return Outcome(201, {"stored": len(ids), "ids": ids})

    def _rejected(self, n: int, exc: Rejected, index: int) -> Outcome:
        self._reject(n, exc.reason)
        msg = str(exc) if n == 1 else f"event {index}: {exc} (none of the {n} events was stored)"
        return Outcome(exc.status, {"error": msg})

    def _unavailable(self, exc: sqlite3.Error) -> Outcome:
        kind = _failure(exc)
        if kind is None:
            raise exc
        if kind == "locked":
            msg = (f"database {self.db} is locked by another process (waited {self.lock_timeout:g} s): nothing "
                   f"was stored; send the events again in {RETRY_LOCKED_S} s")
            return Outcome(503, {"error": msg}, {"Retry-After": str(RETRY_LOCKED_S)})
        msg = f"database {self.db} is full ({exc}): nothing was stored; free disk space, then send the events again"
        log.error("%s", msg)
        return Outcome(503, {"error": msg}, {"Retry-After": str(RETRY_FULL_S)})

    def _insert(self, ev: Event) -> int:
        """Store one event inside the open transaction; returns its row id or raises :class:`Rejected`."""
        conn = self.conn
        tids, _ = catalog.resolve_tracks(conn, [ev.item])
        if not tids:
            raise Rejected(404, f"track {ev.item!r} is not in the catalog (allowed: a catalog id, a CSV item id or "
                                "'Artist - Title' of an ingested track): add it with 'qriff rec ingest' first",
                           "unknown track")
        tid = tids[0]
        conn.execute("INSERT OR IGNORE INTO users (name) VALUES (?)", (ev.user,))
        uid = conn.execute("SELECT id FROM users WHERE name = ?", (ev.user,)).fetchone()[0]
        duration = ev.duration_ms
        if duration is None:
            duration = conn.execute("SELECT duration_ms FROM tracks WHERE id = ?", (tid,)).fetchone()[0]
        outcome = rewards.classify(ev.skipped, ev.reason_end, ev.ms_played, duration, self.rule)
        if self.source_id is None:
            self.source_id = conn.execute(
                "INSERT INTO sources (path, format, sha256, ingested_at, rows_in, stored, rejected) "
                "VALUES (?, 'events', '', ?, 0, 0, 0)", (self.source_name, time.time())).lastrowid
        cur = conn.execute("INSERT OR IGNORE INTO events (user_id, track_id, ts, ms_played, outcome, source_id) "
                           "VALUES (?, ?, ?, ?, ?, ?)", (uid, tid, ev.ts, ev.ms_played, outcome, self.source_id))
        if not cur.rowcount:
            raise Rejected(409, f"event of user {ev.user!r}, track {ev.item!r} at {ev.ts:.3f} is a {DUPLICATE}",
                           "duplicate")
        return int(cur.lastrowid)

    def snapshot(self) -> bytes:
        """A consistent copy of the whole database file (SQLite's online backup), for read replicas."""
        fd, tmp = tempfile.mkstemp(suffix=".db", prefix="qriff-snapshot-")
        os.close(fd)
        try:
            dest = sqlite3.connect(tmp)
            try:
                self.conn.backup(dest)
            finally:
                dest.close()
            return Path(tmp).read_bytes()
        finally:
            os.unlink(tmp)
