"""Reading the SQLite catalog back: events as :class:`~recommender.dataset.Interactions`,
track metadata, a user's recent history, and track lookups by id or key."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import numpy as np

from recommender.dataset import Interactions
from recommender.errors import DatasetError
from recommender.features import content_features


@dataclass
class Track:
    """A catalog track as shown to people and returned by the API."""

    id: int
    title: str
    artist: str
    album: str
    tags: str
    score: float | None = None

    def label(self) -> str:
        return f"{self.artist} - {self.title}" if self.artist else self.title


def load_interactions(conn: sqlite3.Connection) -> tuple[Interactions, np.ndarray]:
    """Every event of the database, and ``track_ids`` int64 ``[n_items + 1]``: the catalog id of each
    dense item index (``track_ids[0] = 0``). Users are indexed in id order; ``user_names`` holds names.

    Only tracks with at least one event get an index; item features are the content features.
    """
    rows = conn.execute("SELECT user_id, track_id, ts, outcome FROM events").fetchall()
    if not rows:
        raise DatasetError("the database holds no listening events: run 'qriff rec ingest FILE' first")
    arr = np.array(rows, dtype=np.float64)
    users, uidx = np.unique(arr[:, 0].astype(np.int64), return_inverse=True)
    tracks, iidx = np.unique(arr[:, 1].astype(np.int64), return_inverse=True)
    names = dict(conn.execute("SELECT id, name FROM users"))
    meta = {r[0]: r[1:] for r in conn.execute("SELECT id, tags, artist FROM tracks")}
    feats = content_features([""] + [meta[t][0] for t in tracks], [""] + [meta[t][1] for t in tracks])
    data = Interactions(len(users), len(tracks), uidx.astype(np.int64), iidx.astype(np.int64) + 1, arr[:, 2],
                        arr[:, 3].astype(np.int8), feats, [names[u] for u in users], [""] + [str(t) for t in tracks])
    return data, np.concatenate([[0], tracks]).astype(np.int64)


def tracks_by_id(conn: sqlite3.Connection, ids: list[int]) -> dict[int, Track]:
    """Metadata of the given catalog ids (missing ids are absent from the result)."""
    out: dict[int, Track] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        q = f"SELECT id, title, artist, album, tags FROM tracks WHERE id IN ({','.join('?' * len(chunk))})"
        for r in conn.execute(q, chunk):
            out[r[0]] = Track(*r)
    return out


def resolve_tracks(conn: sqlite3.Connection, refs: list[str]) -> tuple[list[int], list[str]]:
    """Catalog ids for references given by people: a numeric catalog id, a stored key
    (``i:<csv item>``, ``t:artist - title``), a CSV item id, or ``Artist - Title``.
    Returns ``(ids, unknown_refs)``."""
    from recommender.ingest.records import track_key

    ids, unknown = [], []
    for ref in refs:
        ref_s = str(ref).strip()
        found = None
        if ref_s.isdigit():
            row = conn.execute("SELECT id FROM tracks WHERE id = ?", (int(ref_s),)).fetchone()
            found = row[0] if row else None
        if found is None:
            candidates = [ref_s, "i:" + ref_s]
            if " - " in ref_s:
                artist, title = ref_s.split(" - ", 1)
                candidates.append(track_key(artist, title))
            for key in candidates:
                row = conn.execute("SELECT id FROM tracks WHERE key = ?", (key,)).fetchone()
                if row:
                    found = row[0]
                    break
        if found is None:
            unknown.append(ref_s)
        else:
            ids.append(int(found))
    return ids, unknown


def user_id(conn: sqlite3.Connection, name: str) -> int | None:
    row = conn.execute("SELECT id FROM users WHERE name = ?", (name,)).fetchone()
    return None if row is None else int(row[0])


def recent_history(conn: sqlite3.Connection, uid: int, limit: int) -> tuple[list[int], list[int]]:
    """The user's last ``limit`` events, oldest first: ``(track ids, outcomes)``."""
    rows = conn.execute("SELECT track_id, outcome FROM events WHERE user_id = ? ORDER BY ts DESC, id DESC LIMIT ?",
                        (uid, limit)).fetchall()
    rows.reverse()
    return [r[0] for r in rows], [r[1] for r in rows]


def track_content(conn: sqlite3.Connection, ids: list[int]) -> np.ndarray:
    """Content features ``[len(ids), F]`` of catalog tracks (for tracks newer than the model)."""
    meta = {r[0]: (r[1], r[2]) for r in conn.execute(
        f"SELECT id, tags, artist FROM tracks WHERE id IN ({','.join('?' * len(ids))})", ids)} if ids else {}
    return content_features([meta.get(i, ("", ""))[0] for i in ids], [meta.get(i, ("", ""))[1] for i in ids])
