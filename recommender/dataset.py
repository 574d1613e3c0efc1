"""Interaction logs as arrays, the leave-last-out split and the MovieLens-100K loader.

Items and users are dense indices: users ``0..n_users-1``, items ``1..n_items`` (index
0 is the padding item of the sequence models). Events are kept sorted by user, then
by time, then by a fixed tie-break key (see :func:`tie_break_key`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recommender import rewards as rw
from recommender.errors import DatasetError

log = logging.getLogger(__name__)


def tie_break_key(user: np.ndarray, item: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random uint64 per (user, item): the order of events with equal timestamps.

    MovieLens stores ratings to the second and 76% of ML-100K events share a timestamp
    with another event of the same user. Ordering ties by item id would leak (a
    sequence model learns "the next id is larger"); a splitmix64 hash of the pair is
    deterministic and carries no such signal.
    """
    with np.errstate(over="ignore"):
        z = (np.asarray(user, np.uint64) << np.uint64(32)) ^ np.asarray(item, np.uint64)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


@dataclass
class Interactions:
    """A log of ``E`` events over ``n_users`` users and ``n_items`` items.

    Attributes:
        user: int64 ``[E]`` user indices ``0..n_users-1``.
        item: int64 ``[E]`` item indices ``1..n_items``.
        ts: float64 ``[E]`` timestamps in seconds since the epoch.
        outcome: int8 ``[E]`` :mod:`recommender.rewards` outcomes.
        item_features: float32 ``[n_items + 1, F]`` content features (row 0 unused), or ``F = 0``.
        user_features: float32 ``[n_users, U]`` long-term taste (ALS user factors), or ``U = 0``.
        user_names / item_names: external ids, index-aligned (item_names[0] is "").
    """

    n_users: int
    n_items: int
    user: np.ndarray
    item: np.ndarray
    ts: np.ndarray
    outcome: np.ndarray
    item_features: np.ndarray = field(default_factory=lambda: np.zeros((1, 0), np.float32))
    user_names: list[str] = field(default_factory=list)
    item_names: list[str] = field(default_factory=list)
    user_features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def __post_init__(self) -> None:
        order = np.lexsort((tie_break_key(self.user, self.item), self.ts, self.user))
        for name in ("user", "item", "ts", "outcome"):
            setattr(self, name, np.ascontiguousarray(getattr(self, name)[order]))
        if self.item_features.shape[0] != self.n_items + 1:
            self.item_features = np.zeros((self.n_items + 1, 0), np.float32)
        if self.user_features.shape[0] != self.n_users:
            self.user_features = np.zeros((self.n_users, 0), np.float32)

    def __len__(self) -> int:
        return len(self.user)

    @property
    def bounds(self) -> np.ndarray:
        """int64 ``[n_users + 1]``: user ``u``'s events are ``bounds[u]:bounds[u+1]``."""
        return np.searchsorted(self.user, np.arange(self.n_users + 1))

    def sequences(self) -> list[np.ndarray]:
        """Per user, the item indices in listening order."""
        b = self.bounds
        return [self.item[b[u]:b[u + 1]] for u in range(self.n_users)]

    def session_ends(self, gap: float) -> np.ndarray:
        """bool ``[E]``: the event is the last of its session (the user's next event comes more
        than ``gap`` seconds later, or there is none)."""
        end = np.ones(len(self), bool)
        if len(self) > 1:
            end[:-1] = (self.user[1:] != self.user[:-1]) | (self.ts[1:] - self.ts[:-1] > gap)
        return end

    def user_items(self, weights: np.ndarray | None = None):
        """scipy CSR ``[n_users, n_items + 1]`` of summed weights (count by default), users x items."""
        from scipy.sparse import csr_matrix

        w = np.ones(len(self), np.float32) if weights is None else np.asarray(weights, np.float32)
        m = csr_matrix((w, (self.user, self.item)), shape=(self.n_users, self.n_items + 1), dtype=np.float32)
        m.sum_duplicates()
        return m

    def subset(self, keep: np.ndarray) -> Interactions:
        """The events where bool ``keep [E]`` is true, same users and items."""
        return Interactions(self.n_users, self.n_items, self.user[keep], self.item[keep], self.ts[keep],
                            self.outcome[keep], self.item_features, self.user_names, self.item_names,
                            self.user_features)


@dataclass
class Split:
    """Leave-last-out: ``train`` holds every event but each user's last; ``test_users`` /
    ``test_items`` (int64 ``[U]``) the held-out last event of every user with >= 2 events."""

    train: Interactions
    test_users: np.ndarray
    test_items: np.ndarray


def leave_last_out(data: Interactions) -> Split:
    """Hold out each user's last event by (timestamp, tie-break key); users with one event only train."""
    b = data.bounds
    counts = np.diff(b)
    users = np.flatnonzero(counts >= 2)
    if len(users) == 0:
        raise DatasetError("no user has 2 or more events: leave-last-out needs a history and a held-out event")
    last = b[users + 1] - 1
    keep = np.ones(len(data), bool)
    keep[last] = False
    return Split(data.subset(keep), users.astype(np.int64), data.item[last].astype(np.int64))


# ---------------------------------------------------------------- MovieLens-100K

ML100K_HINT = ("install it with: .venv/bin/pip install --no-deps recbole==1.2.1 (benchmarks only; --no-deps "
               "keeps recbole's own training stack out)")


def movielens_100k_dir() -> Path:
    """Folder of recbole 1.2.1's copy of MovieLens-100K; raises DatasetError when absent."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("recbole")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(f"MovieLens-100K needs the recbole package, which is not installed: {ML100K_HINT}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "dataset_example" / "ml-100k"
    if not (folder / "ml-100k.inter").exists():
        raise DatasetError(f"recbole is installed but {folder / 'ml-100k.inter'} is missing: {ML100K_HINT}")
    return folder


def genre_features(tag_lists: list[list[str]], buckets: int = 32) -> np.ndarray:
    """float32 ``[len(tag_lists), buckets]``: hashed multi-hot tags, rows L2-normalised.

    A stable hash (crc32) so the same tag lands in the same bucket in every process.
    """
    import zlib

    out = np.zeros((len(tag_lists), buckets), np.float32)
    for i, tags in enumerate(tag_lists):
        for t in tags:
            out[i, zlib.crc32(t.strip().lower().encode()) % buckets] = 1.0
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norm, 1.0)


def load_movielens_100k() -> Interactions:
    """MovieLens-100K from recbole's wheel: 943 users, 1,682 movies, 100,000 ratings.

    Ratings become outcomes: 4-5 stars ``COMPLETED``, 1-2 ``SKIPPED``, 3 ``UNKNOWN``.
    Item features are the hashed genres. The data's licence forbids redistribution,
    so it is read from the installed package and never copied.
    """
    folder = movielens_100k_dir()
    raw = np.loadtxt(folder / "ml-100k.inter", skiprows=1, dtype=np.float64)
    users, uidx = np.unique(raw[:, 0].astype(np.int64), return_inverse=True)
    items, iidx = np.unique(raw[:, 1].astype(np.int64), return_inverse=True)
    rating = raw[:, 2]
    outcome = np.where(rating >= 4, rw.COMPLETED, np.where(rating <= 2, rw.SKIPPED, rw.UNKNOWN)).astype(np.int8)
    genres: dict[int, list[str]] = {}
    with open(folder / "ml-100k.item", encoding="latin-1") as fh:
        next(fh)
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 4:
                genres[int(parts[0])] = parts[3].split()
    feats = genre_features([[]] + [genres.get(int(i), []) for i in items])
    return Interactions(len(users), len(items), uidx.astype(np.int64), iidx.astype(np.int64) + 1, raw[:, 3],
                        outcome, feats, [str(u) for u in users], [""] + [str(i) for i in items])
