"""Full-text search over the catalog with FTS5 and bm25.

Any text people type is safe: it is split into words (Unicode letters and digits)
and each word is quoted before it reaches ``MATCH``, so quotes, ``AND``/``OR``/``NOT``,
``NEAR``, ``*``, ``:`` or column filters are searched for as plain words, never parsed
as FTS syntax. The last word matches as a prefix (search as you type). All words must
match; when that finds fewer than asked, tracks matching any word fill up the list.
"""

from __future__ import annotations

import re
import sqlite3

import numpy as np

#: bm25 column weights: title, artist, album, tags.
BM25_WEIGHTS = (10.0, 6.0, 2.0, 3.0)
MAX_TERMS = 32
_WORD = re.compile(r"\w+", re.UNICODE)


def terms(query: str) -> list[str]:
    """The words of ``query`` (at most :data:`MAX_TERMS`)."""
    return _WORD.findall(query or "")[:MAX_TERMS]


def match_expression(words: list[str], any_word: bool = False) -> str:
    """An FTS5 MATCH string of quoted words (``"a" "b"*``; ``OR`` between them when ``any_word``)."""
    quoted = ['"' + w.replace('"', '""') + '"' for w in words]
    quoted[-1] += "*"
    return (" OR " if any_word else " ").join(quoted)


def bm25_candidates(conn: sqlite3.Connection, query: str, limit: int, min_all_words: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Catalog ids ``[K]`` and relevance ``[K]`` (= -bm25, higher is better) of up to ``limit`` tracks.

    Tracks matching any word are added only when fewer than ``min_all_words`` (default
    ``limit``) match all of them.
    """
    words = terms(query)
    if not words:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    sql = (f"SELECT rowid, bm25(tracks_fts, {', '.join(map(str, BM25_WEIGHTS))}) AS r FROM tracks_fts "
           "WHERE tracks_fts MATCH ? ORDER BY r LIMIT ?")
    rows = conn.execute(sql, (match_expression(words), limit)).fetchall()
    if len(rows) < (limit if min_all_words is None else min_all_words) and len(words) > 1:
        seen = {r[0] for r in rows}
        more = conn.execute(sql, (match_expression(words, any_word=True), limit)).fetchall()
        rows += [r for r in more if r[0] not in seen][:limit - len(rows)]
    ids = np.array([r[0] for r in rows], np.int64)
    return ids, -np.array([r[1] for r in rows], np.float32)
