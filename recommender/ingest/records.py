"""What every format reader yields: one :class:`Record` per accepted row, or a reason.

Readers are generators of ``(line, record_or_reason, chars_consumed)``: ``line`` is the
1-based line number where the row starts, the middle item is a :class:`Record`, a
:class:`Batch` of many accepted rows (``line`` is then its first row's) or a ``str``
saying why the row is rejected, and ``chars_consumed`` feeds the progress bar.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from functools import lru_cache
from typing import NamedTuple

#: Earliest timestamp accepted (1990-01-01): anything older is a broken clock or a unit mix-up.
MIN_TS = 631_152_000.0
#: Latest timestamp accepted (2100-01-01).
MAX_TS = 4_102_444_800.0


class Record(NamedTuple):
    """One listening event, normalised. ``ts`` in seconds since the epoch (UTC), times in ms."""

    user: str
    key: str
    title: str
    artist: str
    album: str
    tags: str
    duration_ms: int | None
    ts: float
    ms_played: int | None
    outcome: int


class Batch(NamedTuple):
    """Many accepted rows at once, column by column (each a list of one value per row, in
    :class:`Record`'s field order), with each row's line number: a reader's fast path."""

    user: list[str]
    key: list[str]
    title: list[str]
    artist: list[str]
    album: list[str]
    tags: list[str]
    duration_ms: list[int | None]
    ts: list[float]
    ms_played: list[int | None]
    outcome: list[int]
    lines: list[int]


_SPACE = re.compile(r"\s+")


@lru_cache(maxsize=262_144)
def track_key(artist: str, title: str) -> str:
    """Identity of a song across services: ``artist - title`` case-folded, accents and spacing normalised."""
    text = unicodedata.normalize("NFKC", f"{artist} - {title}").casefold()
    return "t:" + _SPACE.sub(" ", text).strip()


def parse_time(text: str) -> float | None:
    """Seconds since the epoch from unix seconds/milliseconds or ISO 8601 (``Z`` or offset; naive = UTC)."""
    text = text.strip()
    if not text:
        return None
    try:
        v = float(text)
    except ValueError:
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        v = dt.timestamp()
    else:
        if v > MAX_TS * 10:  # milliseconds
            v /= 1000.0
    return v if MIN_TS <= v <= MAX_TS else None


def time_reason(text: object) -> str:
    return f"bad timestamp {str(text)[:40]!r} (allowed: unix seconds or ISO 8601 between 1990 and 2100)"
