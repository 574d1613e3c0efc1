"""The Python API: what ``qriff rec next|playlist`` and ``qriff search`` do, for other programs
(the OSC bridge uses it).

    from recommender import Recommender

    with Recommender("~/music.db") as rec:
        r = rec.next("ana.listens", n=10)
        print(r.cold_start, [t.label() for t in r.tracks])
        rec.playlist("ana.listens", steps=20)
        rec.search("bossa nova", user="ana.listens")

Run time is numpy and SQLite only (no torch). Per request: the user's last events
from the database, candidates from the ALS factors (``implicit``), the DQN state of the
history and Q-values of the candidates. Unknown users start cold from the history
given or, without one, from popularity (``Recommendation.cold_start`` and ``source``
say which). Unknown track ids in a history are ignored with a warning.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix

from recommender import catalog
from recommender import rewards as rw
from recommender.artifact import ModelArtifact, default_model_path
from recommender.candidates import CandidateConfig, Candidates
from recommender.errors import ConfigError, ModelMissingError
from recommender.features import normalised
from recommender.schema import DEFAULT_LOCK_TIMEOUT, connect, default_db_path
from recommender.scoring import Scorer
from recommender.search import bm25_candidates

log = logging.getLogger(__name__)

MAX_N = 1000
MAX_STEPS = 500


@dataclass
class Recommendation:
    """Tracks for a user (best first, or in playlist order) and how they were chosen.

    ``source``: ``model`` (the user's own history), ``history`` (cold start from the
    history given), ``popularity`` (cold start, nothing known) or ``search``.
    """

    user: str | None
    tracks: list[catalog.Track]
    cold_start: bool
    source: str
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"user": self.user, "cold_start": self.cold_start, "source": self.source, "warnings": self.warnings,
                "tracks": [asdict(t) for t in self.tracks]}


def _check_n(name: str, value: int, hi: int) -> None:
    if not isinstance(value, int | np.integer) or not 1 <= value <= hi:
        raise ConfigError(f"{name} {value!r} is out of range (allowed: 1-{hi})")


class Recommender:
    """Serving front end over a database and its trained model (see the module doc)."""

    def __init__(self, db: str | Path | None = None, model: str | Path | None = None,
                 lock_timeout: float = DEFAULT_LOCK_TIMEOUT, candidates: int = 300, require_model: bool = True):
        self.db = Path(db).expanduser() if db else default_db_path()
        self.conn = connect(self.db, timeout=lock_timeout, create=False)
        self.n_candidates = int(candidates)
        model_path = Path(model).expanduser() if model else default_model_path(self.db)
        self.art: ModelArtifact | None = None
        try:
            self.art = ModelArtifact.load(model_path)
        except ModelMissingError:
            if require_model:
                self.conn.close()
                raise
            log.warning("no trained model at %s: search ranks by text only", model_path)
            return
        self.scorer = Scorer(self.art.weights)
        self.track_ids = self.art.track_ids  # dense index -> catalog id (sorted, [0] = 0)
        # catalog id -> dense index (0: newer than the model), one read per id where a binary search
        # over track_ids would take ~16, most of them cache misses after the ALS scan
        self._index_of = np.zeros(int(self.track_ids[-1]) + 1, np.int64)
        self._index_of[self.track_ids] = np.arange(len(self.track_ids))
        self.users = {name: i for i, name in enumerate(self.art.user_names)}
        cc = CandidateConfig(**self.art.candidate_config)
        self.cand = Candidates.from_factors(cc, self.art.user_factors, self.art.item_factors)
        self._empty_row = csr_matrix((1, len(self.track_ids)), dtype=np.float32)
        self._user_vecs = normalised(self.art.user_factors) if self.scorer.user_dim else None
        self._popular = np.argsort(-self.art.popularity, kind="stable")
        reward = self.art.info.get("train_config", {}).get("reward", {})
        self._rewards = rw.RewardConfig(**reward).rewards(np.arange(3)) if reward else \
            rw.DEFAULT_REWARD.rewards(np.arange(3))

    # ------------------------------------------------------------------ plumbing
    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Recommender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _need_model(self) -> ModelArtifact:
        if self.art is None:
            raise ModelMissingError(f"no trained model for {self.db}: run 'qriff rec train --db {self.db}' first")
        return self.art

    def _dense(self, ids: list[int]) -> np.ndarray:
        """Dense model index per catalog id, 0 where the track is newer than the model."""
        a = np.asarray(ids, np.int64)
        known = (a >= 0) & (a < len(self._index_of))
        return self._index_of[np.where(known, a, 0)]

    def _vectors(self, ids: list[int]) -> np.ndarray:
        """Item vectors ``[len(ids), dim]``: trained ones, or from content features for new tracks."""
        dense = self._dense(ids)
        vecs = self.scorer.item_vectors[dense]  # indexing with an array copies
        new = np.flatnonzero(dense == 0)
        if len(new):
            feats = catalog.track_content(self.conn, [ids[i] for i in new])
            vecs[new] = self.scorer.feature_vectors(self._pad_features(feats))
        return vecs

    def _pad_features(self, content: np.ndarray) -> np.ndarray:
        """Content features plus zero collaborative factors (a new track has no plays)."""
        wf = self.scorer.w.get("feat.weight")
        width = wf.shape[1] if wf is not None else content.shape[1]
        out = np.zeros((len(content), width), np.float32)
        out[:, :min(width, content.shape[1])] = content[:, :width]
        return out

    def _context(self, user: str | None, history: list[str] | None
                 ) -> tuple[str | None, list[int], list[int], bool, str, list[str]]:
        """(user, history ids, outcomes, cold_start, source, warnings) of a request."""
        warnings: list[str] = []
        items: list[int] = []
        outs: list[int] = []
        known = False
        if user is not None:
            uid = catalog.user_id(self.conn, user)
            if uid is not None:
                items, outs = catalog.recent_history(self.conn, uid, self.scorer.L)
                known = bool(items)
            else:
                warnings.append(f"user {user!r} is not in the database: cold start")
        if history:
            ids, unknown = catalog.resolve_tracks(self.conn, list(history))
            if unknown:
                shown = ", ".join(repr(u) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
                warnings.append(f"ignored {len(unknown)} unknown track id(s) in the history: {shown}")
                log.info(warnings[-1])
            items += ids
            outs += [rw.COMPLETED] * len(ids)
        elif history is not None and not items:
            warnings.append("the history given is empty")
        cold = not known
        source = "model" if known else ("history" if items else "popularity")
        return user, items, outs, cold, source, warnings

    def _candidates(self, user: str | None, items: list[int], exclude_last: int | None = None) -> np.ndarray:
        """Dense indices of up to ``n_candidates`` candidates from the ALS factors, none of the history's
        tracks (only its last ``exclude_last`` when given)."""
        dense = self._dense(items)
        excluded = dense if exclude_last is None else dense[-exclude_last:] if exclude_last else dense[:0]
        filt = np.unique(excluded[excluded > 0])
        dense = dense[dense > 0]
        n = min(self.n_candidates, len(self.track_ids) - 1)
        # (asking implicit for only n with index 0 filtered too gave the same candidates in 3,000 tries and
        # saved ~5%, but where scores tie at the n-th place its heap could keep other tracks: not done)
        if user in self.users and len(dense) == len(items):
            ids, _ = self.cand.recommend(self.users[user], self._empty_row, n + len(filt) + 1, filter_seen=False,
                                         filter_items=filt if len(filt) else None)
        elif len(dense):
            row = csr_matrix((np.ones(len(dense), np.float32), (np.zeros(len(dense), np.int64), dense)),
                             shape=(1, len(self.track_ids)))
            row.sum_duplicates()
            if self.cand.config.kind == "als":
                ids, _ = self.cand.recommend_history(row, n + len(filt) + 1, filter_seen=False,
                                                     filter_items=filt if len(filt) else None)
            else:  # BPR cannot fold a user in: average the history's item factors
                uvec = self.art.item_factors[dense].mean(0)
                ids = np.argsort(-(self.art.item_factors @ uvec))[:n + len(filt) + 1]
        else:
            ids = self._popular[:n + len(filt) + 1]
        ids = np.asarray(ids, np.int64)
        blocked = np.zeros(len(self.track_ids), bool)
        blocked[0] = True
        blocked[filt] = True
        return ids[~blocked[ids]][:n]

    def _user_vector(self, user: str | None, items: list[int], outs: list[int] | None = None) -> np.ndarray | None:
        """The listener's long-term taste for the state: their ALS factor, or one folded in from the history.

        The fold-in weighs each event by its reward, as the ALS fit did (a skip weighs 0, so a history of
        skips does not read as a taste for what was skipped); without ``outs`` every event counts 1.
        """
        if self._user_vecs is None:
            return None
        dense = self._dense(items)
        if user in self.users and (dense > 0).all():
            return self._user_vecs[self.users[user]]
        weights = np.ones(len(dense), np.float32) if outs is None else self._rewards[np.asarray(outs, np.int64)]
        keep = (dense > 0) & (weights != 0)
        dense, weights = dense[keep], weights[keep]
        if not len(dense):
            return None
        if self.cand.config.kind == "als":
            row = csr_matrix((weights, (np.zeros(len(dense), np.int64), dense)), shape=(1, len(self.track_ids)))
            row.sum_duplicates()
            v = self.cand.user_vector(row)
        else:
            v = (self.art.item_factors[dense] * weights[:, None]).sum(0) / max(float(np.abs(weights).sum()), 1e-6)
        return normalised(v[None, :])[0]

    def _state(self, user: str | None, items: list[int], outs: list[int]) -> np.ndarray:
        """The DQN state ``[dim]`` after the history (and the listener's taste)."""
        return self.scorer.state(self._vectors(items), np.asarray(outs, np.int64), self._user_vector(user, items))

    def _tracks(self, dense_or_ids: np.ndarray, scores: np.ndarray, dense: bool = True) -> list[catalog.Track]:
        ids = [int(i) for i in (self.track_ids[dense_or_ids] if dense else dense_or_ids)]
        meta = catalog.tracks_by_id(self.conn, ids)
        out = []
        for i, s in zip(ids, scores):
            t = meta.get(i)
            if t is not None:
                t.score = round(float(s), 5)
                out.append(t)
        return out

    # ------------------------------------------------------------------ requests
    def next(self, user: str | None = None, n: int = 10, history: list[str] | None = None) -> Recommendation:
        """The ``n`` best next tracks for ``user`` (and/or a ``history`` of track ids), best first,
        ranked by the model's ``rank_by`` head (default: SQN's supervised head, see TrainConfig)."""
        self._need_model()
        _check_n("n", n, MAX_N)
        user, items, outs, cold, source, warnings = self._context(user, history)
        if source == "popularity":
            top = self._popular[:n]
            top = top[top > 0]
            return Recommendation(user, self._tracks(top, self.art.popularity[top]), True, source, warnings)
        h = self._state(user, items, outs)  # before the ALS scan, which leaves the CPU caches cold
        cand = self._candidates(user, items)
        scores = self.scorer.rank_scores(h, cand)
        order = np.argsort(-scores, kind="stable")[:n]
        return Recommendation(user, self._tracks(cand[order], scores[order]), cold, source, warnings)

    def playlist(self, user: str | None = None, steps: int = 20, history: list[str] | None = None) -> Recommendation:
        """A ``steps``-track playlist, each pick conditioned on the picks before it (assumed heard to the end).

        Each step takes the candidate with the highest Q-value: the expected reward of playing
        it now *and* of the playlist after it, which is what spreads a playlist over a
        listener's tastes instead of wearing out their favourite artist.
        """
        self._need_model()
        _check_n("steps", steps, MAX_STEPS)
        user, items, outs, cold, source, warnings = self._context(user, history)
        cand = self._candidates(user, items)
        if len(cand) < steps:  # a small catalog: let older history back in
            cand = self._candidates(user, items, exclude_last=5)
        picks, scores = [], []
        available = np.ones(len(cand), bool)
        uvec = self._user_vector(user, items)  # taste, fixed for the playlist; the history grows
        for _ in range(min(steps, len(cand))):
            h = self.scorer.state(self._vectors(items), np.asarray(outs, np.int64), uvec)
            _, q = self.scorer.scores(h, cand)  # a playlist is a long-horizon decision: pick by Q
            s = np.where(available, q, -np.inf)
            j = int(np.argmax(s))
            available[j] = False
            picks.append(int(cand[j]))
            scores.append(float(s[j]))
            items.append(int(self.track_ids[cand[j]]))
            outs.append(rw.COMPLETED)
        if len(picks) < steps:
            warnings.append(f"the catalog offers only {len(picks)} tracks for this playlist (asked for {steps})")
        return Recommendation(user, self._tracks(np.array(picks, np.int64), np.array(scores)), cold, source, warnings)

    def candidate_scores(self, history: list[int], outcomes: list[int], candidates: list[int],
                         head: str = "q") -> np.ndarray:
        """Scores float64 ``[K]`` of catalog tracks ``candidates`` right after ``history`` (catalog ids,
        oldest first) with their ``outcomes`` (:mod:`recommender.rewards`).

        ``head="q"``: Q-values, the value of playing each one next *and* of the session after it;
        ``head="rank"``: the model's ``rank_by`` score (what ``next`` ranks by). The state is built as
        for a new listener (taste folded in from the history). Tracks newer than the model are scored
        from their features with zero biases.
        """
        self._need_model()
        if head not in ("q", "rank"):
            raise ConfigError(f"head {head!r} is not known (allowed: q, rank)")
        if len(history) != len(outcomes):
            raise ConfigError(f"history has {len(history)} tracks but {len(outcomes)} outcomes (allowed: one each)")
        items = [int(i) for i in history]
        h = self.scorer.state(self._vectors(items), np.asarray(outcomes, np.int64),
                              self._user_vector(None, items, list(outcomes)))
        dense = self._dense(list(candidates))
        new = np.flatnonzero(dense == 0)
        extra = self._vectors([int(candidates[i]) for i in new]) if len(new) else None
        known = np.flatnonzero(dense > 0)
        rank, q = self.scorer.scores(h, dense[known], extra)
        out = np.empty(len(dense), np.float64)
        out[np.concatenate([known, new])] = q if head == "q" else rank
        return out

    def search(self, query: str, user: str | None = None, n: int = 10, history: list[str] | None = None,
               pool: int = 100, user_weight: float = 0.5) -> Recommendation:
        """Tracks matching ``query`` (FTS5 bm25), re-ranked by the user's Q-values when a user or history is given.

        The top ``pool`` text matches are re-scored as ``relevance + user_weight * Q``, each
        min-max scaled to 0-1 within the pool, so the text still decides between weak and
        strong matches and taste decides among comparable ones.
        """
        _check_n("n", n, MAX_N)
        ids, rel = bm25_candidates(self.conn, query, max(pool, n), min_all_words=n)
        warnings = [] if ids.size or query.strip() else ["empty query: nothing to search for"]
        if ids.size == 0:
            return Recommendation(user, [], user is None, "search", warnings)
        score = _scale(rel)
        cold = True
        if self.art is not None and (user is not None or history):
            user, items, outs, cold, source, more = self._context(user, history)
            warnings += more
            if items:
                h = self.scorer.state(self._vectors(items), np.asarray(outs, np.int64),
                                      self._user_vector(user, items))
                dense = self._dense(list(ids))
                _, q = self.scorer.scores(h, dense)
                new = dense == 0  # tracks newer than the model: score from their features
                if new.any():
                    vecs = self._vectors([int(i) for i in ids[new]])
                    q[new] = self.scorer.q_values(h, vecs, np.zeros(int(new.sum()), np.float32))
                score = score + user_weight * _scale(q)
        order = np.argsort(-score, kind="stable")[:n]
        return Recommendation(user, self._tracks(ids[order], score[order], dense=False), cold, "search", warnings)


def _scale(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    lo, hi = x.min(), x.max()
    return np.zeros_like(x) if hi - lo < 1e-12 else (x - lo) / (hi - lo)
