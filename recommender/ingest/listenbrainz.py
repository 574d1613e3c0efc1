"""ListenBrainz listen exports: JSON lines, one listen per line.

Each line: ``{"listened_at": <unix s>, "user_name": ..., "recording_msid": ...,
"track_metadata": {"artist_name", "track_name", "release_name", "additional_info":
{"duration_ms", "tags", ...}}}``. A listen is a scrobble (submitted after half the
track or 4 minutes), so it counts as completed unless ``additional_info`` says more.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO

from recommender import rewards
from recommender.ingest.records import Record, parse_time, time_reason, track_key

FORMAT = "listenbrainz"


def sniff(head: str) -> bool:
    return head.lstrip().startswith("{") and '"listened_at"' in head and '"track_metadata"' in head


def read(fh: IO[str], default_user: str, rule: rewards.OutcomeRule) -> Iterator[tuple[int, Record | str, int]]:
    for line_no, line in enumerate(fh, 1):
        if not line.strip():
            yield line_no, "", len(line)  # blank line: not a row
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield line_no, f"malformed JSON ({exc.msg})", len(line)
            continue
        yield line_no, _record(obj, default_user, rule), len(line)


def _record(obj: object, default_user: str, rule: rewards.OutcomeRule) -> Record | str:
    if not isinstance(obj, dict):
        return "not a JSON object"
    meta = obj.get("track_metadata")
    if not isinstance(meta, dict):
        return "missing track_metadata"
    title, artist = meta.get("track_name"), meta.get("artist_name")
    if not title or not artist:
        return "missing track_name or artist_name"
    raw = obj.get("listened_at")
    ts = parse_time(str(raw)) if isinstance(raw, int | float | str) and not isinstance(raw, bool) else None
    if ts is None:
        return time_reason(raw)
    info = meta.get("additional_info") if isinstance(meta.get("additional_info"), dict) else {}
    duration = info.get("duration_ms")
    if not isinstance(duration, int) or duration <= 0:
        duration = int(info["duration"] * 1000) if isinstance(info.get("duration"), int | float) else None
    tags = info.get("tags")
    tags = ", ".join(str(t) for t in tags) if isinstance(tags, list) else ""
    skipped = info.get("skipped")
    outcome = rewards.classify(skipped if isinstance(skipped, bool) else None, None, None, duration, rule, scrobble=True)
    return Record(str(obj.get("user_name") or default_user), track_key(artist, title), str(title), str(artist),
                  str(meta.get("release_name") or ""), tags, duration, ts, None, outcome)
