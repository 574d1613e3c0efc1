"""Spotify "extended streaming history" (``Streaming_History_Audio_*.json``).

A JSON array of objects with ``ts`` (ISO 8601 UTC), ``ms_played``,
``master_metadata_track_name``, ``master_metadata_album_artist_name``,
``master_metadata_album_album_name``, ``spotify_track_uri``, ``reason_start``,
``reason_end``, ``shuffle``, ``skipped`` (and, in older exports, ``username``).
Podcast episodes (no track name, an ``spotify_episode_uri``) are rejected as not music.
The file is decoded one object at a time so a rejected row has its real line number.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO

from recommender import rewards
from recommender.ingest.records import Record, parse_time, time_reason, track_key

FORMAT = "spotify"


def sniff(head: str) -> bool:
    """True when the start of a file looks like a Spotify extended history."""
    s = head.lstrip()
    return s.startswith("[") and '"ms_played"' in head and ('"ts"' in head or '"endTime"' in head)


def read(fh: IO[str], default_user: str, rule: rewards.OutcomeRule) -> Iterator[tuple[int, Record | str, int]]:
    text = fh.read()
    dec = json.JSONDecoder()
    n = len(text)
    pos = 0
    while pos < n and text[pos].isspace():
        pos += 1
    if pos >= n or text[pos] != "[":
        yield 1, "not a JSON array (a Spotify extended streaming history file starts with '[')", n
        return
    pos += 1
    line, counted = 1, 0
    while True:
        while pos < n and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= n:
            yield line, "file ends inside the JSON array (truncated download?)", 0
            return
        if text[pos] == "]":
            return
        line += text.count("\n", counted, pos)
        counted = pos
        start = pos
        try:
            obj, pos = dec.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            yield line, f"malformed JSON ({exc.msg})", n - start
            return
        yield line, _record(obj, default_user, rule), pos - start


def _record(obj: object, default_user: str, rule: rewards.OutcomeRule) -> Record | str:
    if not isinstance(obj, dict):
        return "not a JSON object"
    title = obj.get("master_metadata_track_name") or obj.get("trackName")
    artist = obj.get("master_metadata_album_artist_name") or obj.get("artistName")
    if not title or not artist:
        if obj.get("spotify_episode_uri") or obj.get("episode_name"):
            return "not a music track (podcast episode)"
        return "missing track name or artist"
    raw_ts = obj.get("ts") or obj.get("endTime")
    ts = parse_time(str(raw_ts)) if raw_ts is not None else None
    if ts is None:
        return time_reason(raw_ts)
    ms = obj.get("ms_played", obj.get("msPlayed"))
    if not isinstance(ms, int) or isinstance(ms, bool) or ms < 0:
        return f"bad ms_played {ms!r} (allowed: an integer >= 0)"
    skipped = obj.get("skipped")
    outcome = rewards.classify(skipped if isinstance(skipped, bool) else None, obj.get("reason_end") or None,
                               ms, None, rule)
    user = obj.get("username") or default_user
    return Record(str(user), track_key(artist, title), str(title), str(artist),
                  str(obj.get("master_metadata_album_album_name") or ""), "", None, ts, ms, outcome)
