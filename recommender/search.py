"""Full-text search over the catalog with FTS5 and bm25.

Any text people type is safe: it is split into words (Unicode letters and digits)
and each word is quoted before it reaches ``MATCH``, so quotes, ``AND``/``OR``/``NOT``,
``NEAR``, ``*``, ``:`` or column filters are searched for as plain words, never parsed
as FTS syntax. The last word matches as a prefix (search as you type). All words must
match; when that finds fewer than asked, tracks matching any word fill up the list.

Typos: a word the index does not hold (the last one: no indexed word starts with it) is
replaced by its closest indexed word. Candidates come from an FTS5 trigram index over
the index's own vocabulary (``terms_trigram``, kept up to date by ingest); the closest
by Damerau-Levenshtein distance (at most 1 edit for words up to 4 letters, 2 up to 8,
3 beyond) wins, the more frequent word on a tie. A known word costs one primary-key
lookup, so correct queries pay nothing for this.
"""

from __future__ import annotations

import re
import sqlite3
import unicodedata

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


def normalise(word: str) -> str:
    """A word as the FTS5 tokenizer stores it: case-folded, diacritics removed."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def refresh_terms(conn: sqlite3.Connection) -> None:
    """Bring the spelling vocabulary (``terms`` and its trigram index) up to date with the FTS index."""
    before = conn.execute("SELECT count(*) FROM terms").fetchone()[0]
    conn.execute("INSERT INTO terms (term, docs) SELECT term, doc FROM tracks_vocab WHERE true "
                 "ON CONFLICT (term) DO UPDATE SET docs = excluded.docs")
    if conn.execute("SELECT count(*) FROM terms").fetchone()[0] != before:
        conn.execute("INSERT INTO terms_trigram(terms_trigram) VALUES ('rebuild')")


def edit_distance(a: str, b: str, cap: int = 3) -> int:
    """Damerau-Levenshtein distance (optimal string alignment) of ``a`` and ``b``, capped at ``cap + 1``."""
    if abs(len(a) - len(b)) > cap:
        return cap + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > cap:
            return cap + 1
        prev2, prev = prev, cur
    return prev[-1]


def _allowed_edits(word: str) -> int:
    return 1 if len(word) <= 4 else 2 if len(word) <= 8 else 3


def correct(conn: sqlite3.Connection, word: str, prefix: bool = False, pool: int = 40) -> str:
    """``word`` when the index holds it (as a prefix of a word when ``prefix``), else the closest
    indexed word (see the module doc), else ``word`` unchanged."""
    w = normalise(word)
    if len(w) < 3:
        return word
    if prefix:
        hit = conn.execute("SELECT 1 FROM terms WHERE term >= ? AND term < ? LIMIT 1", (w, w + "\U0010ffff")).fetchone()
    else:
        hit = conn.execute("SELECT 1 FROM terms WHERE term = ?", (w,)).fetchone()
    if hit:
        return word
    grams = sorted({w[i:i + 3] for i in range(len(w) - 2)})
    expr = " OR ".join('"' + g.replace('"', '""') + '"' for g in grams)
    try:
        rows = conn.execute("SELECT t.term, t.docs FROM terms_trigram JOIN terms t ON t.id = terms_trigram.rowid "
                            "WHERE terms_trigram MATCH ? ORDER BY terms_trigram.rank LIMIT ?", (expr, pool)).fetchall()
    except sqlite3.OperationalError:  # a database from before the spelling index
        return word
    cap = _allowed_edits(w)
    best: tuple[int, int, str] | None = None
    for term, docs in rows:
        cand = term[:len(w)] if prefix and len(term) > len(w) else term
        d = edit_distance(w, cand, cap)
        if d <= cap and (best is None or (d, -docs) < best[:2]):
            best = (d, -docs, cand if prefix else term)
    return best[2] if best else word


def bm25_candidates(conn: sqlite3.Connection, query: str, limit: int, min_all_words: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Catalog ids ``[K]`` and relevance ``[K]`` (= -bm25, higher is better) of up to ``limit`` tracks.

    Tracks matching any word are added only when fewer than ``min_all_words`` (default
    ``limit``) match all of them.
    """
    words = terms(query)
    if not words:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    words = [correct(conn, w, prefix=i == len(words) - 1) for i, w in enumerate(words)]
    sql = (f"SELECT rowid, bm25(tracks_fts, {', '.join(map(str, BM25_WEIGHTS))}) AS r FROM tracks_fts "
           "WHERE tracks_fts MATCH ? ORDER BY r LIMIT ?")
    rows = conn.execute(sql, (match_expression(words), limit)).fetchall()
    if len(rows) < (limit if min_all_words is None else min_all_words) and len(words) > 1:
        seen = {r[0] for r in rows}
        more = conn.execute(sql, (match_expression(words, any_word=True), limit)).fetchall()
        rows += [r for r in more if r[0] not in seen][:limit - len(rows)]
    ids = np.array([r[0] for r in rows], np.int64)
    return ids, -np.array([r[1] for r in rows], np.float32)
