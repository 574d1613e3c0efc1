"""``qriff rec ingest``: listening exports into the SQLite catalog.

Formats (one module each): Spotify extended streaming history JSON (:mod:`.spotify`),
ListenBrainz JSON-lines exports (:mod:`.listenbrainz`), Last.fm-1K TSV scrobbles
(:mod:`.lastfm`) and a generic CSV (:mod:`.csvfile`). ``auto`` detects the format
from the start of the file.

Accounting: every non-blank row of a file is either stored or rejected with a reason
and its line number, so ``rows_in == stored + rejected`` always holds. A row already
in the database (same user, timestamp and track: a re-ingested file) is rejected as
``duplicate``, which makes ingesting the same file twice add nothing. Each file is one
transaction: an interrupted ingest leaves the database as it was.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from itertools import repeat
from pathlib import Path
from types import ModuleType

from recommender import rewards
from recommender.errors import IngestError
from recommender.ingest import csvfile, lastfm, listenbrainz, spotify
from recommender.ingest.records import Batch
from recommender.schema import DEFAULT_LOCK_TIMEOUT, connect, locked_error

log = logging.getLogger(__name__)

FORMATS: dict[str, ModuleType] = {"spotify": spotify, "listenbrainz": listenbrainz, "lastfm": lastfm, "csv": csvfile}
DUPLICATE = "duplicate (this user, time and track are already stored)"
#: Line numbers kept per rejection reason and file (the counts are always complete).
MAX_LINES_PER_REASON = 1000
BATCH = 20_000


@dataclass
class IngestReport:
    """What one file contributed. ``rows_in == stored + rejected``."""

    path: str
    format: str
    rows_in: int = 0
    stored: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    """Rejected rows per reason."""
    lines: dict[str, list[int]] = field(default_factory=dict)
    """Line numbers (1-based) per reason, the first :data:`MAX_LINES_PER_REASON`."""
    new_tracks: int = 0
    new_users: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """A few lines for people: totals, then each rejection reason with example lines."""
        out = [f"{self.path} ({self.format}): {self.rows_in} rows in = {self.stored} stored + {self.rejected} rejected; "
               f"{self.new_tracks} new tracks, {self.new_users} new users; {self.seconds:.2f} s"]
        for reason, n in sorted(self.reasons.items(), key=lambda kv: -kv[1]):
            lines = self.lines.get(reason, [])
            shown = ", ".join(map(str, lines[:5])) + (", ..." if n > 5 else "")
            out.append(f"  rejected {n}: {reason} (line {shown})")
        return "\n".join(out)


def detect_format(path: str | Path) -> str:
    """The format name of a file from its first few kilobytes; raises IngestError if none fits."""
    head = _head(path)
    for name in ("spotify", "listenbrainz", "lastfm", "csv"):
        if FORMATS[name].sniff(head):
            return name
    raise IngestError(f"{path}: unknown format (allowed: {', '.join(FORMATS)}): pass --format, or see "
                      "'qriff rec ingest --help' for the columns each format needs")


def _head(path: str | Path, size: int = 8192) -> str:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(size)
    except OSError as exc:
        raise IngestError(f"cannot read {path}: {exc.strerror}") from None
    return raw.decode("utf-8-sig", errors="replace")


def _db_path(conn: sqlite3.Connection) -> str:
    row = conn.execute("PRAGMA database_list").fetchone()
    return row[2] if row and row[2] else "the database"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def ingest_file(conn: sqlite3.Connection, path: str | Path, fmt: str = "auto", default_user: str = "me",
                rule: rewards.OutcomeRule = rewards.DEFAULT_RULE, progress: bool | None = None,
                lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> IngestReport:
    """Ingest one file into an open database (see the module doc); returns its report.

    ``default_user`` names the listener when the format has no user column (Spotify's
    newer exports). ``progress`` shows a tqdm bar (default: when stderr is a terminal).
    """
    from tqdm import tqdm

    p = Path(path)
    if not p.is_file():
        raise IngestError(f"{p}: no such file (pass a listening-history export: {', '.join(FORMATS)})")
    if fmt == "auto":
        fmt = detect_format(p)
    if fmt not in FORMATS:
        raise IngestError(f"format {fmt!r} is not known (allowed: auto, {', '.join(FORMATS)})")
    reader = FORMATS[fmt]
    report = IngestReport(str(p), fmt)
    t0 = time.perf_counter()
    show = sys.stderr.isatty() if progress is None else progress
    # Ids are assigned here under the write lock, so per-row foreign-key checks only cost time.
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("PRAGMA cache_size = -65536")
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise locked_error(_db_path(conn), lock_timeout) from None
        raise
    # The load makes millions of short-lived rows and tuples, none in a reference cycle: the cyclic
    # collector would only walk them over and over (a fifth of the time), so it waits until the end.
    collecting = gc.isenabled()
    gc.disable()
    try:
        _ingest(conn, p, reader, fmt, default_user, rule, report, tqdm(
            total=os.path.getsize(p), unit="B", unit_scale=True, disable=not show, desc=p.name, leave=False))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    finally:
        if collecting:
            gc.enable()
        conn.execute("PRAGMA foreign_keys = ON")
    report.seconds = time.perf_counter() - t0
    log.info("%s", report.summary())
    return report


def _ingest(conn: sqlite3.Connection, p: Path, reader: ModuleType, fmt: str, default_user: str,
            rule: rewards.OutcomeRule, report: IngestReport, bar) -> None:
    users = dict(conn.execute("SELECT name, id FROM users"))
    tracks = dict(conn.execute("SELECT key, id FROM tracks"))
    next_user = first_new_user = (conn.execute("SELECT max(id) FROM users").fetchone()[0] or 0) + 1
    next_track = first_new_track = (conn.execute("SELECT max(id) FROM tracks").fetchone()[0] or 0) + 1
    source = conn.execute("INSERT INTO sources (path, format, sha256, ingested_at, rows_in, stored, rejected) "
                          "VALUES (?, ?, ?, ?, 0, 0, 0)", (str(p.resolve()), fmt, _sha256(p), time.time())).lastrowid
    new_users: list[tuple[int, str]] = []
    new_tracks: list[tuple] = []
    batch: list[tuple] = []
    lines: list[int] = []
    rejected: list[tuple[int, str]] = []
    chars = 0

    def reject(line: int, reason: str) -> None:
        report.rejected += 1
        report.reasons[reason] = report.reasons.get(reason, 0) + 1
        kept = report.lines.setdefault(reason, [])
        if len(kept) < MAX_LINES_PER_REASON:
            kept.append(line)
            rejected.append((source, line, reason))

    def flush() -> None:
        if new_users:
            conn.executemany("INSERT INTO users (id, name) VALUES (?, ?)", new_users)
            new_users.clear()
        if new_tracks:
            conn.executemany("INSERT INTO tracks (id, key, title, artist, album, tags, duration_ms) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?)", new_tracks)
            new_tracks.clear()
        if batch:
            sql = "INSERT OR IGNORE INTO events (user_id, track_id, ts, ms_played, outcome, source_id) VALUES (?,?,?,?,?,?)"
            conn.execute("SAVEPOINT batch")
            # in index order, the unique (user, ts, track) index is updated page by page, not at random
            added = conn.executemany(sql, sorted(batch)).rowcount
            if added < len(batch):  # some rows were already stored: redo one by one to name their lines
                conn.execute("ROLLBACK TO batch")
                added = 0
                for row, line in zip(batch, lines):
                    if conn.execute(sql, row).rowcount:
                        added += 1
                    else:
                        reject(line, DUPLICATE)
            conn.execute("RELEASE batch")
            report.stored += added
            batch.clear()
            lines.clear()

    try:
        with open(p, encoding="utf-8-sig", newline="" if fmt == "csv" else None) as fh:
            users_get, tracks_get, add, add_line = users.get, tracks.get, batch.append, lines.append
            for line, rec, size in reader.read(fh, default_user, rule):
                chars += size
                if chars > 1 << 20:
                    bar.update(chars)
                    chars = 0
                if rec.__class__ is Batch:
                    uids = list(map(users_get, rec.user))
                    for k in [k for k, v in enumerate(uids) if v is None]:
                        uid = users_get(rec.user[k])
                        if uid is None:
                            uid = users[rec.user[k]] = next_user
                            new_users.append((uid, rec.user[k]))
                            next_user += 1
                        uids[k] = uid
                    tids = list(map(tracks_get, rec.key))
                    for k in [k for k, v in enumerate(tids) if v is None]:
                        tid = tracks_get(rec.key[k])
                        if tid is None:
                            tid = tracks[rec.key[k]] = next_track
                            new_tracks.append((tid, rec.key[k], rec.title[k], rec.artist[k], rec.album[k],
                                               rec.tags[k], rec.duration_ms[k]))
                            next_track += 1
                        tids[k] = tid
                    batch.extend(zip(uids, tids, rec.ts, rec.ms_played, rec.outcome, repeat(source)))
                    lines.extend(rec.lines)
                    if len(batch) >= BATCH:
                        report.rows_in += len(batch)
                        flush()
                    continue
                if rec.__class__ is str:
                    if rec:  # "" marks a blank line, which is not a row
                        report.rows_in += 1
                        reject(line, rec)
                    continue
                user, key, title, artist, album, tags, duration, ts, ms, outcome = rec
                uid = users_get(user)
                if uid is None:
                    uid = users[user] = next_user
                    new_users.append((uid, user))
                    next_user += 1
                tid = tracks_get(key)
                if tid is None:
                    tid = tracks[key] = next_track
                    new_tracks.append((tid, key, title, artist, album, tags, duration))
                    next_track += 1
                add((uid, tid, ts, ms, outcome, source))
                add_line(line)
                if len(batch) >= BATCH:
                    report.rows_in += len(batch)
                    flush()
    except UnicodeDecodeError as exc:
        raise IngestError(f"{p}: not UTF-8 text at byte {exc.start}: export the file as UTF-8") from None
    report.rows_in += len(batch)
    flush()
    bar.update(chars)
    bar.close()
    report.new_tracks = next_track - first_new_track
    report.new_users = next_user - first_new_user
    if report.new_tracks:
        conn.execute("INSERT INTO tracks_fts (rowid, title, artist, album, tags) "
                     "SELECT id, title, artist, album, tags FROM tracks WHERE id >= ?", (first_new_track,))
        from recommender.search import refresh_terms

        refresh_terms(conn)
    if rejected:
        conn.executemany("INSERT INTO rejections (source_id, line, reason) VALUES (?, ?, ?)", rejected)
    conn.execute("UPDATE sources SET rows_in = ?, stored = ?, rejected = ? WHERE id = ?",
                 (report.rows_in, report.stored, report.rejected, source))
    assert report.rows_in == report.stored + report.rejected, report


def ingest_files(db: str | Path, paths: Iterable[str | Path], fmt: str = "auto", default_user: str = "me",
                 rule: rewards.OutcomeRule = rewards.DEFAULT_RULE, progress: bool | None = None,
                 lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> list[IngestReport]:
    """Open (or create) the database ``db`` and ingest every file in order; returns their reports."""
    conn = connect(db, timeout=lock_timeout)
    try:
        return [ingest_file(conn, p, fmt, default_user, rule, progress, lock_timeout) for p in paths]
    finally:
        conn.close()
