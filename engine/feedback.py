"""The musician's verdicts on clips (keep or discard, optional stars), in a SQLite store.

Every front end records here: the Max for Live device and any OSC client through
``/qriff/feedback`` (the bridge), and ``qriff keep|discard|feedback`` (the CLI). The
store is the training data of a later reward model of the musician's taste, so each
row holds everything that model needs without the clip file: the whole clip JSON
(notes and context), the model that made it and the contract it was made under
(model file format and observation version), style, key, scale, chords and seed,
when the verdict was given and through which front end.

* One row per clip, keyed by :func:`clip_id` (a digest of the canonical clip JSON), so
  the same clip judged from two paths or front ends is one clip. A clip judged again
  keeps its last verdict (``revisions`` counts the verdicts it got).
* Bad input (an unreadable clip, a verdict other than keep/discard, stars outside 1-5,
  an unknown source) raises :class:`FeedbackError` before the store is touched; several
  clips are recorded in one transaction, all or none.
* The schema is versioned (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`): a store
  written by a newer qriff is refused, never rewritten.

The store lives in the user data folder (platformdirs), ``feedback.sqlite``;
``QRIFF_FEEDBACK_DB`` names another file. It runs in WAL mode with
``synchronous=NORMAL``: a committed verdict survives a crash of qriff; a power cut may
lose the last few, never corrupt the file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from engine.base.errors import EngineError
from engine.music.clip import Clip
from engine.music.clipfile import load_clip

__all__ = ["SCHEMA_VERSION", "SOURCES", "VERDICTS", "FeedbackError", "FeedbackStore", "Judgement", "Verdict",
           "clip_id", "default_store_path", "judgements", "load_judged_clip", "parse_stars", "parse_verdict"]

#: Version of the store's tables; a store with a higher ``user_version`` is refused.
SCHEMA_VERSION = 1
#: What a musician can say about a clip.
VERDICTS = ("keep", "discard")
#: Through which front end a verdict arrived.
SOURCES = ("device", "osc", "cli")
STARS_RANGE = (1, 5)

_SCHEMA = """
CREATE TABLE verdicts (
    clip_id       TEXT PRIMARY KEY,     -- sha256 of the canonical clip JSON (clip_id())
    verdict       TEXT NOT NULL CHECK (verdict IN ('keep', 'discard')),
    stars         INTEGER CHECK (stars BETWEEN 1 AND 5),   -- NULL: not given
    source        TEXT NOT NULL CHECK (source IN ('device', 'osc', 'cli')),
    decided_at    TEXT NOT NULL,        -- ISO 8601 UTC of the last verdict
    first_at      TEXT NOT NULL,        -- ISO 8601 UTC of the first verdict on this clip
    revisions     INTEGER NOT NULL,     -- verdicts this clip got; the last one is stored
    clip_path     TEXT NOT NULL,        -- where the clip file was when judged last
    model         TEXT NOT NULL,        -- model id that generated the clip ('' when unknown)
    model_format  TEXT NOT NULL,        -- ONNX model format (metadata qriff_model) of the judging qriff
    obs_version   INTEGER NOT NULL,     -- observation version (metadata obs_version) of the judging qriff
    qriff_version TEXT NOT NULL,
    key           TEXT NOT NULL,
    scale         TEXT NOT NULL,
    chords        TEXT NOT NULL,        -- JSON list, one symbol per bar
    style         TEXT NOT NULL,        -- JSON object term -> weight
    seed          INTEGER,              -- NULL when the clip does not say (a bare .mid)
    tempo         REAL NOT NULL,
    bars          INTEGER NOT NULL,
    time_signature TEXT NOT NULL,       -- "4/4"
    clip          TEXT NOT NULL         -- the whole clip JSON (docs/clip-json.md)
);
CREATE INDEX verdicts_decided ON verdicts (decided_at);
"""

_UPSERT = """
INSERT INTO verdicts (clip_id, verdict, stars, source, decided_at, first_at, revisions, clip_path, model,
                      model_format, obs_version, qriff_version, key, scale, chords, style, seed, tempo, bars,
                      time_signature, clip)
VALUES (:clip_id, :verdict, :stars, :source, :decided_at, :decided_at, 1, :clip_path, :model, :model_format,
        :obs_version, :qriff_version, :key, :scale, :chords, :style, :seed, :tempo, :bars, :time_signature, :clip)
ON CONFLICT (clip_id) DO UPDATE SET
    verdict = excluded.verdict, stars = excluded.stars, source = excluded.source,
    decided_at = excluded.decided_at, revisions = verdicts.revisions + 1, clip_path = excluded.clip_path,
    model_format = excluded.model_format, obs_version = excluded.obs_version,
    qriff_version = excluded.qriff_version
"""


class FeedbackError(EngineError, ValueError):
    """A verdict that cannot be recorded, or a store that cannot be used."""


def default_store_path() -> Path:
    """``$QRIFF_FEEDBACK_DB``, else ``feedback.sqlite`` in the user data folder (platformdirs)."""
    env = os.environ.get("QRIFF_FEEDBACK_DB")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_path

    return user_data_path("qriff", appauthor=False) / "feedback.sqlite"


def _canonical(clip: Clip) -> str:
    """The clip JSON with sorted keys and no whitespace: what is stored, and what its id digests."""
    return json.dumps(clip.to_dict(), sort_keys=True, separators=(",", ":"))


def clip_id(clip: Clip) -> str:
    """The clip's identity: sha256 (hex) of its canonical JSON (sorted keys, no whitespace)."""
    return hashlib.sha256(_canonical(clip).encode("utf-8")).hexdigest()


def parse_verdict(value: Any) -> str:
    """``keep`` or ``discard`` (case-insensitive); FeedbackError otherwise."""
    text = value.strip().lower() if isinstance(value, str) else None
    if text not in VERDICTS:
        raise FeedbackError(f"verdict {value!r} is not valid: allowed are {' or '.join(VERDICTS)}")
    return text


def parse_stars(value: Any) -> int | None:
    """None, or an integer 1-5 (an integral float or numeric string is accepted); FeedbackError otherwise."""
    if value is None:
        return None
    number: Any = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if isinstance(number, float) and number.is_integer():
        number = int(number)
    lo, hi = STARS_RANGE
    if isinstance(number, bool) or not isinstance(number, int) or not lo <= number <= hi:
        raise FeedbackError(f"stars {value!r} is not valid: allowed an integer {lo}-{hi} (or none)")
    return number


def _parse_source(value: Any) -> str:
    if value not in SOURCES:
        raise FeedbackError(f"source {value!r} is not valid: allowed are {', '.join(SOURCES)}")
    return value


def load_judged_clip(path: str | os.PathLike[str]) -> tuple[Clip, Path]:
    """The clip a verdict is about, and the file it was read from.

    For a ``.mid`` with a clip ``.json`` of the same name beside it, the JSON is read:
    only it carries the model, style and seed. FeedbackError for a missing or unreadable clip.
    """
    p = Path(path)
    if p.suffix.lower() in (".mid", ".midi") and p.with_suffix(".json").is_file():
        p = p.with_suffix(".json")
    try:
        return load_clip(p), p.resolve()
    except EngineError as exc:
        raise FeedbackError(f"clip {str(path)!r} cannot be judged: {exc}") from None


@dataclass(frozen=True)
class Judgement:
    """One verdict to record: the clip, ``keep``/``discard``, stars 1-5 or None, the front end."""

    clip: Clip
    verdict: str
    stars: int | None = None
    source: str = "cli"
    clip_path: str = ""

    def checked(self) -> Judgement:
        """The same judgement with its values checked and canonical; FeedbackError on bad input."""
        if not isinstance(self.clip, Clip):
            raise FeedbackError(f"clip {self.clip!r} is not a qriff clip")
        return Judgement(self.clip, parse_verdict(self.verdict), parse_stars(self.stars), _parse_source(self.source),
                         str(self.clip_path))


@dataclass(frozen=True)
class Verdict:
    """A stored verdict (one row of the store). Times are ISO 8601 UTC strings."""

    clip_id: str
    verdict: str
    stars: int | None
    source: str
    decided_at: str
    first_at: str
    revisions: int
    clip_path: str
    model: str
    model_format: str
    obs_version: int
    qriff_version: str
    key: str
    scale: str
    chords: list[str]
    style: dict[str, float]
    seed: int | None
    tempo: float
    bars: int
    time_signature: str
    clip: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The row as plain JSON values (what ``qriff feedback export`` writes, one per line)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def _contract() -> tuple[str, int, str]:
    """(model format, observation version, qriff version) of this qriff: a model it loaded matched them."""
    from engine import __version__
    from engine.mdp.observation import OBS_VERSION
    from engine.runtime.modelfile import MODEL_FORMAT

    return MODEL_FORMAT, OBS_VERSION, __version__


class FeedbackStore:
    """The verdict store at ``path`` (default: :func:`default_store_path`), created on first use.

    Safe to share between threads (one connection behind a lock). Use as a context
    manager or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, create: bool = True) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        self._lock = threading.Lock()
        self._contract = _contract()
        if not self.path.exists():
            if not create:
                raise FeedbackError(f"no verdicts recorded yet: the store {self.path} does not exist (record one "
                                    "with 'qriff keep CLIP' or 'qriff discard CLIP')")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise FeedbackError(f"cannot create the feedback store's folder {self.path.parent}: "
                                    f"{exc.strerror or exc} (set QRIFF_FEEDBACK_DB to a writable file)") from None
        try:
            self._db = sqlite3.connect(str(self.path), timeout=10.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise FeedbackError(f"cannot open the feedback store {self.path}: {exc} (set QRIFF_FEEDBACK_DB to a "
                                "writable file)") from None
        try:
            self._prepare()
        except BaseException:
            self._db.close()
            raise

    def _prepare(self) -> None:
        try:
            self._check_version()  # before anything is changed: a newer store stays untouched
            if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            with self._transaction():  # a second process creating the store at the same time waits here
                if self._check_version() == 0:
                    for statement in _SCHEMA.split(";\n"):
                        if statement.strip():
                            self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise FeedbackError(f"{self.path} is not a qriff feedback store ({exc}): set QRIFF_FEEDBACK_DB to "
                                "another file") from None

    def _check_version(self) -> int:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise FeedbackError(f"feedback store {self.path} has schema version {version}, newer than this "
                                f"qriff's ({SCHEMA_VERSION}): upgrade qriff; the store was left untouched")
        if version == 0 and self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise FeedbackError(f"{self.path} is not a qriff feedback store (it holds other tables): set "
                                "QRIFF_FEEDBACK_DB to another file")
        return version

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing
    def _transaction(self) -> Any:
        db = self._db

        class _Tx:
            def __enter__(self) -> None:
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self, kind: object, *rest: object) -> None:
                db.execute("COMMIT" if kind is None else "ROLLBACK")

        return _Tx()

    def _row(self, j: Judgement, now: str) -> dict[str, Any]:
        clip = j.clip
        canonical = _canonical(clip)
        model_format, obs_version, qriff_version = self._contract
        return {"clip_id": hashlib.sha256(canonical.encode("utf-8")).hexdigest(), "verdict": j.verdict, "stars": j.stars, "source": j.source,
                "decided_at": now, "clip_path": j.clip_path, "model": clip.model or "",
                "model_format": model_format, "obs_version": obs_version, "qriff_version": qriff_version,
                "key": clip.key, "scale": clip.scale, "chords": json.dumps(list(clip.chords)),
                "style": json.dumps(clip.style, sort_keys=True), "seed": clip.seed, "tempo": float(clip.tempo),
                "bars": int(clip.bars), "time_signature": "{}/{}".format(*clip.time_signature),
                "clip": canonical}

    def record(self, judgement: Judgement) -> str:
        """Store one verdict (the last one given for a clip wins); returns the clip id."""
        return self.record_many([judgement])[0]

    def record_many(self, judgements: Sequence[Judgement]) -> list[str]:
        """Store several verdicts in one transaction, all or none; the clip ids in order.

        Every judgement is checked first: on FeedbackError nothing is written.
        """
        checked = [j.checked() for j in judgements]
        now = _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds")
        rows = [self._row(j, now) for j in checked]
        with self._lock:
            try:
                if len(rows) == 1:  # one statement commits by itself (autocommit): a third of the cost
                    self._db.execute(_UPSERT, rows[0])
                else:
                    with self._transaction():
                        self._db.executemany(_UPSERT, rows)
            except sqlite3.Error as exc:
                raise FeedbackError(f"cannot write to the feedback store {self.path}: {exc}") from None
        return [r["clip_id"] for r in rows]

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM verdicts").fetchone()[0])

    def verdicts(self, verdict: str | None = None, limit: int | None = None) -> Iterator[Verdict]:
        """Stored verdicts, oldest decision first; only ``verdict`` ones when given; at most ``limit``."""
        sql = "SELECT * FROM verdicts"
        params: list[Any] = []
        if verdict is not None:
            sql += " WHERE verdict = ?"
            params.append(parse_verdict(verdict))
        sql += " ORDER BY decided_at, clip_id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        with self._lock:
            cur = self._db.execute(sql, params)
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        for row in rows:
            yield _verdict(dict(zip(names, row)))

    def get(self, cid: str) -> Verdict | None:
        """The stored verdict of the clip with id ``cid``, or None."""
        with self._lock:
            cur = self._db.execute("SELECT * FROM verdicts WHERE clip_id = ?", (cid,))
            names = [d[0] for d in cur.description]
            row = cur.fetchone()
        return _verdict(dict(zip(names, row))) if row else None

    def stats(self) -> dict[str, Any]:
        """Counts: total, per verdict, per source, per model, stars histogram; first and last decision."""
        with self._lock:
            q = self._db.execute
            total = q("SELECT count(*) FROM verdicts").fetchone()[0]
            out: dict[str, Any] = {
                "clips": total,
                "verdicts": {v: 0 for v in VERDICTS},
                "sources": {s: 0 for s in SOURCES},
                "models": {},
                "stars": {str(s): 0 for s in range(STARS_RANGE[0], STARS_RANGE[1] + 1)},
                "first": None, "last": None,
            }
            for v, n in q("SELECT verdict, count(*) FROM verdicts GROUP BY verdict"):
                out["verdicts"][v] = n
            for s, n in q("SELECT source, count(*) FROM verdicts GROUP BY source"):
                out["sources"][s] = n
            for m, v, n in q("SELECT model, verdict, count(*) FROM verdicts GROUP BY model, verdict ORDER BY model"):
                out["models"].setdefault(m or "(unknown)", {x: 0 for x in VERDICTS})[v] = n
            for s, n in q("SELECT stars, count(*) FROM verdicts WHERE stars IS NOT NULL GROUP BY stars"):
                out["stars"][str(s)] = n
            out["first"], out["last"] = q("SELECT min(decided_at), max(decided_at) FROM verdicts").fetchone()
        return out

    def export(self, out: IO[str]) -> int:
        """Write every verdict as JSON lines (:meth:`Verdict.to_dict`); returns the number written."""
        n = 0
        for v in self.verdicts():
            out.write(json.dumps(v.to_dict(), separators=(",", ":"), ensure_ascii=False) + "\n")
            n += 1
        return n


def _verdict(row: dict[str, Any]) -> Verdict:
    row["chords"] = json.loads(row["chords"])
    row["style"] = json.loads(row["style"])
    row["clip"] = json.loads(row["clip"])
    return Verdict(**row)


def judgements(paths: Iterable[str | os.PathLike[str]], verdict: str, stars: Any = None,
               source: str = "cli") -> list[Judgement]:
    """Judgements of the clip files ``paths``, all checked; FeedbackError on the first bad one."""
    verdict, stars = parse_verdict(verdict), parse_stars(stars)
    out = []
    for path in paths:
        clip, where = load_judged_clip(path)
        out.append(Judgement(clip, verdict, stars, source, str(where)).checked())
    return out
