"""Spotify "extended streaming history" (``Streaming_History_Audio_*.json``).

A JSON array of objects with ``ts`` (ISO 8601 UTC), ``ms_played``,
``master_metadata_track_name``, ``master_metadata_album_artist_name``,
``master_metadata_album_album_name``, ``spotify_track_uri``, ``reason_start``,
``reason_end``, ``shuffle``, ``skipped`` (and, in older exports, ``username``).
Podcast episodes (no track name, an ``spotify_episode_uri``) are rejected as not music.

A well-formed file of flat objects (every real export) is decoded in one call (msgspec,
into :class:`Play`: only the fields read here) and each object's line number is found
from the positions of its ``{``; chunks of
:data:`CHUNK` objects whose every row is plain (``...Z`` timestamps, integer
``ms_played``, a title and an artist) are converted column by column into a
:class:`~recommender.ingest.records.Batch`, and a chunk with a row to reject goes row by
row. Anything else (malformed or truncated JSON, a ``{`` inside a string) is decoded one
object at a time, so a rejected row always has its real line number.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import repeat
from operator import attrgetter
from typing import IO, Any

import msgspec
import numpy as np

from recommender import rewards
from recommender.ingest.records import MAX_TS, MIN_TS, Batch, Record, parse_time, time_reason, track_key

FORMAT = "spotify"
CHUNK = 20_000
#: The fields the column-wise path reads, in this order.
FIELDS = ("ts", "ms_played", "master_metadata_track_name", "master_metadata_album_artist_name",
          "master_metadata_album_album_name", "reason_end", "skipped")


class Play(msgspec.Struct, gc=False):
    """The fields of one history object that ingest reads (both layouts); UNSET where absent."""

    ts: Any = msgspec.UNSET
    endTime: Any = msgspec.UNSET  # noqa: N815 - Spotify's own names
    username: Any = msgspec.UNSET
    ms_played: Any = msgspec.UNSET
    msPlayed: Any = msgspec.UNSET  # noqa: N815
    master_metadata_track_name: Any = msgspec.UNSET
    trackName: Any = msgspec.UNSET  # noqa: N815
    master_metadata_album_artist_name: Any = msgspec.UNSET
    artistName: Any = msgspec.UNSET  # noqa: N815
    master_metadata_album_album_name: Any = msgspec.UNSET
    reason_end: Any = msgspec.UNSET
    skipped: Any = msgspec.UNSET
    spotify_episode_uri: Any = msgspec.UNSET
    episode_name: Any = msgspec.UNSET

    def as_dict(self) -> dict:
        """The object as the JSON had it, restricted to these fields (what :func:`_record` reads)."""
        return {f: v for f in self.__struct_fields__ if (v := getattr(self, f)) is not msgspec.UNSET}


_DECODE = msgspec.json.Decoder(list[Play])


def sniff(head: str) -> bool:
    """True when the start of a file looks like a Spotify extended history."""
    s = head.lstrip()
    return s.startswith("[") and '"ms_played"' in head and ('"ts"' in head or '"endTime"' in head)


def read(fh: IO[str], default_user: str, rule: rewards.OutcomeRule) -> Iterator[tuple[int, Record | str, int]]:
    text = fh.read()
    objs, lines = _whole(text)
    if objs is None:
        yield from _scan(text, default_user, rule)
        return
    size = len(text) // max(1, len(objs))
    for start in range(0, len(objs), CHUNK):
        chunk, at = objs[start:start + CHUNK], lines[start:start + CHUNK]
        batch = _columns(chunk, at, default_user, rule)
        if batch is not None:
            yield at[0], batch, size * len(chunk)
            continue
        for line, obj in zip(at, chunk):
            yield line, _record(obj.as_dict(), default_user, rule), size


def _whole(text: str) -> tuple[list[Play] | None, list[int]]:
    """The file's objects and the line each starts on, or ``(None, [])`` when the file is not a
    JSON array of flat objects whose only ``{`` are their own (then :func:`_scan` reads it)."""
    try:
        objs = _DECODE.decode(text)
    except msgspec.MsgspecError:  # malformed or truncated, or not an array of objects
        return None, []
    if text.count("{") != len(objs):  # nested objects, or a '{' inside a string
        return None, []
    raw = np.frombuffer(text.encode("utf-8"), np.uint8)  # UTF-8 never puts '{' or '\n' inside a character
    newlines = np.flatnonzero(raw == ord("\n"))
    starts = np.flatnonzero(raw == ord("{"))
    return objs, (np.searchsorted(newlines, starts) + 1).tolist()


def _scan(text: str, default_user: str, rule: rewards.OutcomeRule) -> Iterator[tuple[int, Record | str, int]]:
    """One object at a time (files :func:`_whole` does not take), with each row's line number."""
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


def _columns(objs: list[Play], lines: list[int], default_user: str, rule: rewards.OutcomeRule) -> Batch | None:
    """The chunk as one Batch when every object is a plain music play in the current layout
    (what :func:`_record` would accept without conversion); None sends it row by row."""
    ts, ms, titles, artists, albums, reasons, skipped = (list(map(attrgetter(f), objs)) for f in FIELDS)
    if not (_all_str(titles) and _all_str(artists)) or set(map(type, ms)) != {int} or min(ms) < 0:
        return None
    # 'YYYY-MM-DDTHH:MM:SSZ', as Spotify writes them: parsed at once (numpy reads them as UTC)
    joined = "".join(ts) if _all_str(ts) else ""
    n = len(objs)
    if len(joined) != 20 * n or joined[19::20] != "Z" * n or joined[10::20] != "T" * n:
        return None
    try:
        secs = np.array([t[:19] for t in ts], "datetime64[s]").astype(np.int64)
    except ValueError:
        return None
    if not ((secs >= MIN_TS) & (secs <= MAX_TS)).all():
        return None
    flags = [s if s.__class__ is bool else None for s in skipped]
    outcome = list(map(rewards.classify, flags, [r or None for r in reasons], ms, repeat(None), repeat(rule)))
    users = [str(o.username or default_user) for o in objs]
    albums = [str(a or "") for a in albums]
    return Batch(users, list(map(track_key, artists, titles)), titles, artists, albums, [""] * n, [None] * n,
                 secs.astype(np.float64).tolist(), ms, outcome, lines)


def _all_str(col: list) -> bool:
    """Every value a non-empty str."""
    return set(map(type, col)) == {str} and "" not in col


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
