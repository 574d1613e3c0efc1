"""Generic CSV: a header row, then one event per row.

Required columns: ``user``, ``item``, ``timestamp`` (unix seconds/ms or ISO 8601).
Optional: ``ms_played``, ``duration_ms`` (or ``duration`` in seconds), ``skipped``
(true/false/1/0/yes/no), ``title``, ``artist``, ``album``, ``tags`` (separated by
``|``, ``;`` or ``,``). Column names are case-insensitive. The ``item`` value is the
track's identity (an id of your own; the same id is the same track).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import IO

from recommender import rewards
from recommender.ingest.records import MAX_TS, MIN_TS, Record, parse_time, time_reason

FORMAT = "csv"
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
    min_ts, max_ts = MIN_TS, MAX_TS
    last_line = 1
    for row in reader:
        line_no = last_line + 1
        last_line = reader.line_num
        if not row:
            yield line_no, "", 1
            continue
        size = sum(map(len, row)) + len(row)
        if len(row) != width:
            yield line_no, f"expected {width} columns as in the header, found {len(row)}", size
            continue
        item = row[ii].strip()
        if not item:
            yield line_no, "empty item", size
            continue
        try:  # fast path: unix seconds
            ts = float(row[it])
            if not min_ts <= ts <= max_ts:
                ts = parse_time(row[it])
        except ValueError:
            ts = parse_time(row[it])
        if ts is None:
            yield line_no, time_reason(row[it]), size
            continue
        rec = _optional(row, opt, rule)
        if isinstance(rec, str):
            yield line_no, rec, size
            continue
        ms, duration, outcome = rec
        title, artist, album, raw_tags = (row[i].strip() if i is not None else "" for i in text_cols)
        tags = tag_cache.get(raw_tags)
        if tags is None:
            tags = tag_cache[raw_tags] = ", ".join(
                t.strip() for t in raw_tags.replace(";", "|").replace(",", "|").split("|") if t.strip())
        yield line_no, Record(row[iu].strip() or default_user, "i:" + item, title or item, artist, album, tags,
                              duration, ts, ms, outcome), size


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
