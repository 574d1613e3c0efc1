"""Last.fm scrobbles in the Last.fm-1K layout: tab-separated, no header.

Columns: ``user_id``, ``timestamp`` (ISO 8601, e.g. ``2009-05-04T23:08:57Z``),
``musicbrainz-artist-id``, ``artist-name``, ``musicbrainz-track-id``, ``track-name``
(the MBIDs may be empty). Scrobbles count as completed plays.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from recommender import rewards
from recommender.ingest.records import Record, parse_time, time_reason, track_key

FORMAT = "lastfm"


def sniff(head: str) -> bool:
    first = head.splitlines()[0] if head else ""
    cols = first.split("\t")
    return len(cols) == 6 and parse_time(cols[1]) is not None


def read(fh: IO[str], default_user: str, rule: rewards.OutcomeRule) -> Iterator[tuple[int, Record | str, int]]:
    completed = rewards.COMPLETED
    for line_no, line in enumerate(fh, 1):
        n = len(line)
        cols = line.rstrip("\r\n").split("\t")
        if len(cols) != 6:
            if not line.strip():
                yield line_no, "", n
            else:
                yield line_no, f"expected 6 tab-separated columns, found {len(cols)}", n
            continue
        user, when, _artist_id, artist, _track_id, title = cols
        if not artist or not title:
            yield line_no, "missing artist or track name", n
            continue
        ts = parse_time(when)
        if ts is None:
            yield line_no, time_reason(when), n
            continue
        yield line_no, Record(user or default_user, track_key(artist, title), title, artist, "", "", None, ts, None,
                              completed), n
