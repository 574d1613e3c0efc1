"""Generic CSV: a header row, then one event per row.

Required columns: ``user``, ``item``, ``timestamp`` (unix seconds/ms or ISO 8601).
Optional: ``ms_played``, ``duration_ms`` (or ``duration`` in seconds), ``skipped``
(true/false/1/0/yes/no), ``title``, ``artist``, ``album``, ``tags`` (separated by
``|``, ``;`` or ``,``). Column names are case-insensitive. The ``item`` value is the
track's identity (an id of your own; the same id is the same track).

Rows are read in chunks of :data:`CHUNK`. A chunk whose every row is well formed (unix
timestamps, numbers where numbers go) is checked and converted column by column with
numpy and handed over as one :class:`~recommender.ingest.records.Batch`; a chunk with
any row to reject, or ISO timestamps, goes row by row, so every rejected row still
gets its reason and line number.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from itertools import islice
from typing import IO

import numpy as np

from recommender import rewards
from recommender.ingest.records import MAX_TS, MIN_TS, Batch, Record, parse_time, time_reason

FORMAT = "csv"
CHUNK = 20_000
REQUIRED = ("user", "item", "timestamp")
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f", ""}


def sniff(head: str) -> bool:
    first = head.splitlines()[0].lower() if head else ""
    cols = {c.strip() for c in first.split(",")}
    return all(c in cols for c in REQUIRED)


def read(fh: IO[str], default_user: str, rule: rewards.OutcomeRule) -> Iterator[tuple[int, Record | str, int]]:
    reader = csv.reader(fh)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        return
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        yield 1, f"header lacks column(s) {', '.join(missing)} (required: {', '.join(REQUIRED)})", 0
        return
    col = {name: i for i, name in enumerate(header)}
    iu, ii, it = col["user"], col["item"], col["timestamp"]
    opt = {k: col.get(k) for k in ("ms_played", "duration_ms", "duration", "skipped", "title", "artist", "album",
                                   "tags")}
    text_cols = [opt[k] for k in ("title", "artist", "album", "tags")]
    width = len(header)
    tag_cache: dict[str, str] = {}
    last_line = 1
    last_pos = _position(fh)
    while True:
        rows = list(islice(reader, CHUNK))
        if not rows:
            return
        if reader.line_num - last_line == len(rows):  # one line a row: line numbers follow on
            starts = list(range(last_line + 1, reader.line_num + 1))
        else:  # quoted fields with line breaks: a row spans as many lines as it holds breaks, plus one
            spans = [1 + sum(f.count("\n") + f.count("\r") - f.count("\r\n") for f in row) for row in rows]
            starts = (last_line + 1 + np.concatenate([[0], np.cumsum(spans)[:-1]])).tolist()
        last_line = reader.line_num
        batch = _columns(rows, starts, width, iu, ii, it, opt, default_user, rule, tag_cache)
        if batch is not None:
            pos = _position(fh)
            consumed = pos - last_pos if pos >= 0 else sum(map(len, map(",".join, rows))) + len(rows)
            last_pos = pos
            yield starts[0], batch, consumed
            continue
        for line_no, row in zip(starts, rows):
            yield line_no, *_row(row, width, iu, ii, it, opt, text_cols, default_user, rule, tag_cache)


def _position(fh: IO[str]) -> int:
    """Bytes read so far, for the progress bar (the binary file's position, exact to within its
    read-ahead buffer), or -1 where the text has no binary file under it."""
    try:
        return fh.buffer.tell()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return -1


def _tags(raw: str, cache: dict[str, str]) -> str:
    tags = cache.get(raw)
    if tags is None:
        tags = cache[raw] = ", ".join(t.strip() for t in raw.replace(";", "|").replace(",", "|").split("|")
                                      if t.strip())
    return tags


def _row(row: list[str], width: int, iu: int, ii: int, it: int, opt: dict[str, int | None],
         text_cols: list[int | None], default_user: str, rule: rewards.OutcomeRule, tag_cache: dict[str, str]
         ) -> tuple[Record | str, int]:
    """One row: its Record or the reason to reject it, and its size."""
    if not row:
        return "", 1
    size = sum(map(len, row)) + len(row)
    if len(row) != width:
        return f"expected {width} columns as in the header, found {len(row)}", size
    item = row[ii].strip()
    if not item:
        return "empty item", size
    try:  # fast path: unix seconds
        ts = float(row[it])
        if not MIN_TS <= ts <= MAX_TS:
            ts = parse_time(row[it])
    except ValueError:
        ts = parse_time(row[it])
    if ts is None:
        return time_reason(row[it]), size
    rec = _optional(row, opt, rule)
    if isinstance(rec, str):
        return rec, size
    ms, duration, outcome = rec
    title, artist, album, raw_tags = (row[i].strip() if i is not None else "" for i in text_cols)
    return Record(row[iu].strip() or default_user, "i:" + item, title or item, artist, album,
                  _tags(raw_tags, tag_cache), duration, ts, ms, outcome), size


def _numbers(col: tuple[str, ...], scale: float = 1.0) -> np.ndarray | None:
    """float64 ``[n]`` of a numeric column (NaN where empty), or None when a value is not a number >= 0."""
    try:
        v = np.array(list(map(float, col)), np.float64) * scale
    except ValueError:  # empty cells (or not numbers: then None below)
        try:
            v = np.array([x or "nan" for x in col], np.float64) * scale
        except ValueError:
            return None
    bad = (v < 0) | (v > 1e12)
    return None if bad.any() else v


def _columns(rows: list[list[str]], starts: list[int], width: int, iu: int, ii: int, it: int,
             opt: dict[str, int | None], default_user: str, rule: rewards.OutcomeRule, tag_cache: dict[str, str]
             ) -> Batch | None:
    """The chunk as one Batch when every row is well formed and plain; None sends it row by row."""
    if set(map(len, rows)) != {width}:
        return None
    cols = list(zip(*rows))
    items = list(map(str.strip, cols[ii]))
    if not all(items):
        return None
    try:
        ts = np.array(list(map(float, cols[it])), np.float64)
    except ValueError:  # ISO times or bad values: the row-by-row path parses and names them
        return None
    ts = np.where(ts > MAX_TS * 10, ts / 1000.0, ts)
    if not ((ts >= MIN_TS) & (ts <= MAX_TS)).all():
        return None
    n = len(rows)
    nan = np.full(n, np.nan)
    ms = _numbers(cols[opt["ms_played"]]) if opt["ms_played"] is not None else nan
    if opt["duration_ms"] is not None:
        duration = _numbers(cols[opt["duration_ms"]])
        if duration is not None and opt["duration"] is not None:
            alt = _numbers(cols[opt["duration"]], 1000.0)
            duration = None if alt is None else np.where(np.isnan(duration), alt, duration)
    else:
        duration = _numbers(cols[opt["duration"]], 1000.0) if opt["duration"] is not None else nan
    if ms is None or duration is None:
        return None
    ms, duration = np.floor(ms), np.floor(duration)
    skipped = np.full(n, -1, np.int8)  # -1: not said
    if opt["skipped"] is not None:
        flags = list(map(str.lower, map(str.strip, cols[opt["skipped"]])))
        if not set(flags) <= _TRUE | _FALSE:
            return None
        skipped = np.array([1 if f in _TRUE else (0 if f else -1) for f in flags], np.int8)
    # rewards.classify, column-wise (no reason_end in a CSV; a row without any signal is a scrobble)
    has_ms, has_dur = ~np.isnan(ms), ~np.isnan(duration) & (duration > 0)
    by_ms = np.where(has_dur, ms >= rule.completed_fraction * np.where(has_dur, duration, 1.0), ms >= rule.skip_ms)
    done = np.where(skipped >= 0, skipped == 0, np.where(has_ms, by_ms, True))
    outcome = np.where(done, rewards.COMPLETED, rewards.SKIPPED).astype(np.int64)

    def text(name: str) -> list[str]:
        return list(map(str.strip, cols[opt[name]])) if opt[name] is not None else [""] * n

    titles = text("title")
    if "" in titles:
        titles = [t or i for t, i in zip(titles, items)]
    if opt["tags"] is not None:
        raw_tags = text("tags")
        for raw in set(raw_tags).difference(tag_cache):
            _tags(raw, tag_cache)
        tags = list(map(tag_cache.__getitem__, raw_tags))
    else:
        tags = [""] * n
    users = list(map(str.strip, cols[iu]))
    if "" in users:
        users = [u or default_user for u in users]
    return Batch(users, ["i:" + i for i in items], titles, text("artist"), text("album"), tags, _ints(duration),
                 ts.tolist(), _ints(ms), outcome.tolist(), starts)


def _ints(v: np.ndarray) -> list[int | None]:
    """A float column as Python ints, None where NaN."""
    missing = np.isnan(v)
    out = np.where(missing, 0, v).astype(np.int64).tolist()
    for k in np.flatnonzero(missing).tolist():
        out[k] = None
    return out


def _int_field(row: list[str], i: int | None, name: str, scale: float = 1.0) -> int | None | str:
    if i is None:
        return None
    text = row[i]
    if not text or text.isspace():
        return None
    try:
        v = float(text) * scale
    except ValueError:
        return f"bad {name} {row[i][:40]!r} (allowed: a number >= 0)"
    if not v >= 0 or v > 1e12:
        return f"bad {name} {row[i][:40]!r} (allowed: a number >= 0)"
    return int(v)


def _optional(row: list[str], opt: dict[str, int | None], rule: rewards.OutcomeRule):
    """``(ms_played, duration_ms, outcome)`` from the optional columns, or a rejection reason."""
    ms = _int_field(row, opt["ms_played"], "ms_played")
    if isinstance(ms, str):
        return ms
    duration = _int_field(row, opt["duration_ms"], "duration_ms")
    if duration is None:
        duration = _int_field(row, opt["duration"], "duration", 1000.0)
    if isinstance(duration, str):
        return duration
    skipped = None
    if opt["skipped"] is not None:
        s = row[opt["skipped"]].strip().lower()
        if s in _TRUE:
            skipped = True
        elif s in _FALSE:
            skipped = False if s else None
        else:
            return f"bad skipped {s[:20]!r} (allowed: true/false, 1/0, yes/no or empty)"
    return ms, duration, rewards.classify(skipped, None, ms, duration, rule, scrobble=True)
