"""Listening-session simulators: where logged data cannot say what would have happened.

Two of them:

- :class:`LogSimulator`, made by :func:`fit_simulator` from real logged sessions: tastes
  from ALS factors, each track's observed completion rate, fatigue from repeating
  similar tracks and the chance to leave after a skip or a completion, all fit on the
  logs and calibrated on held-out sessions. The evaluation and the bench use it.
- :class:`Simulator`, a synthetic world whose truth is known (genres, artists, quality,
  fatigue), for the tests: logs drawn from it must let :func:`fit_simulator` find its
  fatigue again. Users have tastes over genres (Dirichlet) and artists; whether a user
  listens to a track to the end is a coin with

    P(complete) = sigmoid(bias + taste_weight * log(G * taste[u, genre]) + artist_affinity[u, artist]
                          + quality[t] - genre_fatigue * F_genre - artist_fatigue * F_artist
                          - repeat_penalty * [track played earlier in the session])

  where the fatigues ``F`` count recent plays of the same genre and artist within the
  session, decaying by ``fatigue_decay`` per step. Its logged listeners choose with the
  same fatigue (:meth:`Simulator.logged_history`), and :meth:`Simulator.rollout` runs a
  policy online.

Reward per step: 1 for a completed track, 0 for a skip, so a session's cumulative
reward is the number of tracks heard to the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from recommender import rewards as rw
from recommender.dataset import Interactions
from recommender.errors import ConfigError
from recommender.features import content_features


@dataclass(frozen=True)
class SimConfig:
    """World and behaviour parameters of the simulator."""

    n_users: int = 300
    n_tracks: int = 3000
    n_genres: int = 12
    n_artists: int = 200
    taste_concentration: float = 0.3
    """Dirichlet alpha of genre tastes: small values make users love a few genres."""
    taste_weight: float = 1.0
    """Weight of log genre taste in the completion logit."""
    artist_affinity: float = 1.0
    """Std of per-user artist affinities."""
    quality_std: float = 0.5
    """Std of track quality."""
    bias: float = 0.0
    """Completion logit of a fresh, averagely liked track (0: even odds; the logs then show
    about half the plays skipped, in line with the skip rates streaming services report)."""
    genre_fatigue: float = 1.0
    """Logit lost per recent play of the same genre."""
    artist_fatigue: float = 1.5
    """Logit lost per recent play of the same artist."""
    repeat_penalty: float = 4.0
    """Logit lost when the track already played in this session."""
    fatigue_decay: float = 0.85
    """Fatigue kept from one step to the next."""
    sessions: int = 20
    """Logged sessions per user (training data)."""
    session_length: int = 20
    """Tracks per logged session."""
    explore: float = 0.3
    """Share of logged plays chosen at random among popular tracks (radio, shuffle) instead of by taste."""
    choice_temperature: float = 1.0
    """Temperature of the user's own choices over track appeal."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_users", "n_tracks", "n_genres", "n_artists", "sessions", "session_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"simulator {name} {getattr(self, name)} is out of range (allowed: >= 1)")
        if not 0.0 <= self.fatigue_decay < 1.0:
            raise ConfigError(f"fatigue_decay {self.fatigue_decay} is out of range (allowed: 0 <= d < 1)")
        if not 0.0 <= self.explore <= 1.0:
            raise ConfigError(f"explore {self.explore} is out of range (allowed: 0-1)")


#: A policy maps (user, history items [m], history outcomes [m], played-this-session items) to a track index.
Policy = Callable[[int, np.ndarray, np.ndarray, list[int]], int]


class Simulator:
    """A seeded world of users and tracks (indices: users ``0..n_users-1``, tracks ``1..n_tracks``)."""

    def __init__(self, config: SimConfig = SimConfig(), reward: rw.RewardConfig = rw.DEFAULT_REWARD) -> None:
        self.config, self.reward = config, reward
        c = config
        rng = np.random.default_rng(c.seed)
        self.artist_genre = rng.integers(0, c.n_genres, c.n_artists)
        # artists differ in size: a few have many tracks
        artist_p = rng.dirichlet(np.full(c.n_artists, 0.8))
        self.track_artist = np.concatenate([[0], rng.choice(c.n_artists, c.n_tracks, p=artist_p)])
        self.track_genre = self.artist_genre[self.track_artist]
        self.quality = np.concatenate([[0.0], rng.normal(0, c.quality_std, c.n_tracks)])
        self.taste = rng.dirichlet(np.full(c.n_genres, c.taste_concentration), c.n_users)
        self.affinity = rng.normal(0, c.artist_affinity, (c.n_users, c.n_artists))
        self._rng = rng
        # static part of the completion logit, [n_users, n_tracks + 1]; column 0 is padding
        g = self.track_genre[1:]
        static = (c.bias + c.taste_weight * np.log(c.n_genres * self.taste[:, g] + 1e-9)
                  + self.affinity[:, self.track_artist[1:]] + self.quality[1:])
        self.static = np.concatenate([np.full((c.n_users, 1), -np.inf), static], axis=1)

    # ------------------------------------------------------------------ catalog
    def item_features(self) -> np.ndarray:
        """float32 ``[n_tracks + 1, F]`` content features (genre as tag, artist), as ingest would give."""
        tags = [""] + [f"genre{g}" for g in self.track_genre[1:]]
        artists = [""] + [f"artist{a}" for a in self.track_artist[1:]]
        return content_features(tags, artists)

    # ------------------------------------------------------------------ one session
    def session(self, user: int, rng: np.random.Generator) -> _Session:
        return _Session(self, user, rng)

    def logged_history(self) -> Interactions:
        """Every user's logged sessions: the users pick by how much they would enjoy a track now
        (softmax of its completion log-odds, fatigue included), ``explore`` of the time by popularity."""
        c = self.config
        rng = np.random.default_rng(c.seed + 1)
        pop = np.exp(self.static[:, 1:]).mean(0)
        pop_p = pop / pop.sum()
        users, items, ts, outs = [], [], [], []
        for u in range(c.n_users):
            for s in range(c.sessions):
                sess = self.session(u, rng)
                for k in range(c.session_length):
                    if rng.random() < c.explore:
                        pick = rng.choice(c.n_tracks, p=pop_p) + 1
                    else:  # the listener's own choice feels the session's fatigue too
                        logits = np.log(sess.p_complete_all()[1:] + 1e-12) / c.choice_temperature
                        p = np.exp(logits - logits.max())
                        pick = rng.choice(c.n_tracks, p=p / p.sum()) + 1
                    done = sess.play(int(pick))
                    users.append(u)
                    items.append(pick)
                    ts.append(1.6e9 + s * 86_400.0 + k * 240.0)
                    outs.append(rw.COMPLETED if done else rw.SKIPPED)
        return Interactions(c.n_users, c.n_tracks, np.array(users, np.int64), np.array(items, np.int64),
                            np.array(ts), np.array(outs, np.int8), self.item_features())

    def rollout(self, policy: Policy, history: Interactions, steps: int = 20, users: np.ndarray | None = None,
                seed: int = 123) -> np.ndarray:
        """Cumulative reward ``[U]`` of a ``steps``-track playlist per user, the policy picking each track.

        The policy sees the user's logged history followed by this playlist's tracks and
        outcomes so far. A fresh session (no fatigue) starts every playlist.
        """
        rng = np.random.default_rng(seed)
        users = np.arange(self.config.n_users) if users is None else users
        b = history.bounds
        totals = np.zeros(len(users))
        for j, u in enumerate(users):
            items = list(history.item[b[u]:b[u + 1]])
            outs = list(history.outcome[b[u]:b[u + 1]].astype(np.int64))
            sess = self.session(int(u), rng)
            played: list[int] = []
            for _ in range(steps):
                pick = int(policy(int(u), np.array(items, np.int64), np.array(outs, np.int64), played))
                if not 1 <= pick <= self.config.n_tracks:
                    raise ConfigError(f"policy picked track {pick} (allowed: 1-{self.config.n_tracks})")
                done = sess.play(pick)
                outcome = rw.COMPLETED if done else rw.SKIPPED
                totals[j] += self.reward.completed if done else self.reward.skipped
                items.append(pick)
                outs.append(outcome)
                played.append(pick)
        return totals


class _Session:
    """Fatigue state of one listening session."""

    def __init__(self, sim: Simulator, user: int, rng: np.random.Generator) -> None:
        self.sim, self.user, self.rng = sim, user, rng
        c = sim.config
        self.f_genre = np.zeros(c.n_genres)
        self.f_artist = np.zeros(c.n_artists)
        self.played: set[int] = set()

    def p_complete(self, track: int) -> float:
        s, c = self.sim, self.sim.config
        z = (s.static[self.user, track] - c.genre_fatigue * self.f_genre[s.track_genre[track]]
             - c.artist_fatigue * self.f_artist[s.track_artist[track]]
             - (c.repeat_penalty if track in self.played else 0.0))
        return float(1.0 / (1.0 + np.exp(-z)))

    def p_complete_all(self) -> np.ndarray:
        """float ``[n_tracks + 1]`` completion probability of every track now (index 0 is 0)."""
        s, c = self.sim, self.sim.config
        z = (s.static[self.user] - c.genre_fatigue * self.f_genre[s.track_genre]
             - c.artist_fatigue * self.f_artist[s.track_artist])
        if self.played:
            z[list(self.played)] -= c.repeat_penalty
        return 1.0 / (1.0 + np.exp(-z))

    def play(self, track: int) -> bool:
        """Play ``track``; returns True when the user listens to the end."""
        s, c = self.sim, self.sim.config
        done = bool(self.rng.random() < self.p_complete(track))
        self.f_genre *= c.fatigue_decay
        self.f_artist *= c.fatigue_decay
        self.f_genre[s.track_genre[track]] += 1.0
        self.f_artist[s.track_artist[track]] += 1.0
        self.played.add(track)
        return done


# ---------------------------------------------------------------- a simulator fit from logged sessions

@dataclass(frozen=True)
class FitConfig:
    """How :func:`fit_simulator` reads the logs."""

    session_gap: float = 1800.0
    """Seconds between events that start a new session."""
    factors: int = 32
    """ALS factors of the simulated tastes (its own ALS, not the policies')."""
    regularization: float = 1.0
    """L2 of that ALS."""
    fatigue_decay: float = 0.8
    """Weight kept per step by an earlier play of the session in the fatigue sum."""
    holdout: float = 0.2
    """Share of each user's sessions held out for calibration (drawn at random; a user keeps one or more)."""
    l2: float = 1e-3
    """L2 of the completion model's logistic regression."""
    seed: int = 1000

    def __post_init__(self) -> None:
        if not 0.0 <= self.fatigue_decay < 1.0:
            raise ConfigError(f"fatigue_decay {self.fatigue_decay} is out of range (allowed: 0 <= d < 1)")
        if not 0.0 <= self.holdout < 1.0:
            raise ConfigError(f"holdout {self.holdout} is out of range (allowed: 0 <= h < 1)")
        if not self.session_gap > 0:
            raise ConfigError(f"session_gap {self.session_gap} is out of range (allowed: > 0 seconds)")


COEF_NAMES = ("bias", "taste", "item", "fatigue", "repeat")
#: Session positions (0-based) where the leaving probability changes: tracks 1-5, 6-20, 21 on.
LEAVE_BUCKETS = np.array([5, 20])


def _bucket_name(j: int) -> str:
    lo = 1 if j == 0 else int(LEAVE_BUCKETS[j - 1]) + 1
    return f"{lo}-{int(LEAVE_BUCKETS[j])}" if j < len(LEAVE_BUCKETS) else f"{lo}+"


class LogSimulator:
    """Listening sessions simulated from what logged sessions show (RecSim's user model, fit).

    For user ``u`` offered track ``i`` after the session's earlier plays ``j``:

        P(complete) = sigmoid(w_0 + w_taste * z(U_u . V_i) + w_item * logit_i
                              + w_fatigue * sum_j decay^(age j) * cos(i, j) + w_repeat * [i played])
        P(leave | skipped), P(leave | completed): the observed shares of session ends, by position
                                                  in the session (tracks 1-5, 6-20, 21 on)

    ``U, V`` are ALS factors of the logs (``z``: standardised), ``logit_i`` the track's
    smoothed observed completion log-odds, ``cos`` the cosine of content features (tags,
    artist; ALS factors when there are none), and the ``w`` a logistic regression on the
    logged outcomes. A session ends when the listener leaves or after ``steps`` tracks;
    its reward is the number of completed tracks, so a playlist that keeps the listener
    longer scores higher. ``calibration`` holds the held-out sessions' real and
    simulated skip rate and session length.
    """

    def __init__(self, user_factors: np.ndarray, item_factors: np.ndarray, item_logit: np.ndarray,
                 similarity_vectors: np.ndarray, coef: np.ndarray, p_leave: np.ndarray,
                 config: FitConfig, taste_scale: tuple[float, float]) -> None:
        self.U, self.V = user_factors, item_factors
        self.item_logit, self.sim_vecs = item_logit, similarity_vectors
        self.coef, self.p_leave, self.config = coef, p_leave, config
        self.taste_scale = taste_scale
        self.n_items = item_factors.shape[0] - 1
        self.calibration: dict[str, float] = {}

    def static_logit(self, user: int) -> np.ndarray:
        """float ``[n_items + 1]``: the completion logit of every track for a fresh session (index 0: -inf)."""
        w = self.coef
        z = (self.U[user] @ self.V.T - self.taste_scale[0]) / self.taste_scale[1]
        out = w[0] + w[1] * z + w[2] * self.item_logit
        out[0] = -np.inf
        return out

    def play_session(self, policy: Policy, user: int, items: list[int], outs: list[int], steps: int,
                     rng: np.random.Generator) -> tuple[list[int], list[int]]:
        """One session of at most ``steps`` tracks for ``user`` whose history is ``items``/``outs``;
        returns the tracks played and their outcomes (the listener may leave early)."""
        w, d = self.coef, self.config.fatigue_decay
        items, outs = list(items), list(outs)
        static = self.static_logit(int(user))
        fatigue = np.zeros(self.sim_vecs.shape[1])
        played: list[int] = []
        results: list[int] = []
        for _ in range(steps):
            pick = int(policy(int(user), np.array(items, np.int64), np.array(outs, np.int64), played))
            if not 1 <= pick <= self.n_items:
                raise ConfigError(f"policy picked track {pick} (allowed: 1-{self.n_items})")
            z = static[pick] + w[3] * float(self.sim_vecs[pick] @ fatigue) + w[4] * (pick in played)
            done = bool(rng.random() < 1.0 / (1.0 + np.exp(-z)))
            outcome = rw.COMPLETED if done else rw.SKIPPED
            items.append(pick)
            outs.append(outcome)
            played.append(pick)
            results.append(outcome)
            fatigue = d * fatigue + self.sim_vecs[pick]
            if rng.random() < self.leave_probability(int(done), len(played) - 1):
                break
        return played, results

    def leave_probability(self, completed: int, position: int) -> float:
        """P(the listener leaves after the track at 0-based ``position`` of the session), by its outcome."""
        return float(self.p_leave[completed, int(np.searchsorted(LEAVE_BUCKETS, position, side="right"))])

    def rollout(self, policy: Policy, history: Interactions, steps: int = 20, users: np.ndarray | None = None,
                seed: int = 123) -> tuple[np.ndarray, np.ndarray]:
        """Play one session per user, the policy picking each track; returns (completed tracks ``[U]``,
        session length ``[U]``). The policy sees the user's logged history followed by this
        session's tracks and outcomes, and the tracks played in this session."""
        rng = np.random.default_rng(seed)
        users = np.arange(self.U.shape[0]) if users is None else users
        b = history.bounds
        rewards, lengths = np.zeros(len(users)), np.zeros(len(users), np.int64)
        for j, u in enumerate(users):
            played, results = self.play_session(policy, int(u), list(history.item[b[u]:b[u + 1]]),
                                                list(history.outcome[b[u]:b[u + 1]].astype(np.int64)), steps, rng)
            rewards[j] = sum(r == rw.COMPLETED for r in results)
            lengths[j] = len(played)
        return rewards, lengths

    def oracle(self, user: int, played: list[int], fatigue_vec: np.ndarray) -> np.ndarray:
        """float ``[n_items + 1]``: the true completion logit of every track now (a reference policy's view)."""
        w = self.coef
        z = self.static_logit(user) + w[3] * (self.sim_vecs @ fatigue_vec)
        if played:
            z[played] += w[4]
        return z

    def summary(self) -> dict[str, Any]:
        return {"coefficients": dict(zip(COEF_NAMES, (round(float(c), 4) for c in self.coef))),
                "p_leave": {f"after a {kind}, tracks {_bucket_name(j)}": round(float(v), 4)
                            for i, kind in enumerate(("skip", "completion"))
                            for j, v in enumerate(self.p_leave[i])},
                "calibration": self.calibration}


def _fatigue_features(items: np.ndarray, starts: np.ndarray, vecs: np.ndarray, decay: float
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per event: decayed similarity to the earlier plays of its session, and whether it repeats one."""
    fat = np.zeros(len(items))
    rep = np.zeros(len(items))
    acc = np.zeros(vecs.shape[1])
    seen: set[int] = set()
    for e, i in enumerate(items):
        if starts[e]:
            acc[:] = 0.0
            seen = set()
        fat[e] = float(vecs[i] @ acc)
        rep[e] = float(i in seen)
        acc = decay * acc + vecs[i]
        seen.add(int(i))
    return fat, rep


def _logistic(x: np.ndarray, y: np.ndarray, l2: float, iters: int = 50) -> np.ndarray:
    """Newton's method for L2-regularised logistic regression (``x`` has a bias column first)."""
    w = np.zeros(x.shape[1])
    reg = np.full(x.shape[1], l2 * len(y))
    reg[0] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        g = x.T @ (p - y) + reg * w
        h = (x * (p * (1 - p))[:, None]).T @ x + np.diag(reg) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(h, g)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def fit_simulator(data: Interactions, config: FitConfig = FitConfig(), steps: int = 20) -> LogSimulator:
    """Fit a :class:`LogSimulator` on ``data``'s sessions (a ``holdout`` share of each user's sessions
    held out) and report its calibration on the held-out ones."""
    from recommender.candidates import CandidateConfig, Candidates
    from recommender.features import normalised

    c = config
    ends = data.session_ends(c.session_gap)
    starts = np.ones(len(data), bool)
    starts[1:] = ends[:-1]
    sess_id = np.cumsum(starts) - 1
    # held out: a random ``holdout`` share of the sessions of users who have two or more (their
    # tastes stay known from the others)
    rng = np.random.default_rng(c.seed)
    b = data.bounds
    held = np.zeros(len(data), bool)
    for u in range(data.n_users):
        ids = np.unique(sess_id[b[u]:b[u + 1]])
        k = int(round(len(ids) * c.holdout))
        if k and len(ids) > 1:
            pick = rng.choice(ids, size=min(k, len(ids) - 1), replace=False)
            held[b[u]:b[u + 1]] = np.isin(sess_id[b[u]:b[u + 1]], pick)
    fit = ~held
    known = data.outcome != rw.UNKNOWN
    y = (data.outcome == rw.COMPLETED).astype(np.float64)
    sel = fit & known
    if sel.sum() < 10 or len(np.unique(y[sel])) < 2:
        raise ConfigError("the logs need completed and skipped plays to fit a simulator (found only one kind)")
    # tastes: ALS on the fitted part, completions weigh 1, unknown 0.5, skips count as "heard" (0.1).
    # The regression sees out-of-fold tastes (an ALS that never saw the event, as a simulated
    # recommendation is a pair the logs do not hold); the simulator scores with the ALS of all of it.
    weights = np.where(data.outcome == rw.COMPLETED, 1.0, np.where(data.outcome == rw.UNKNOWN, 0.5, 0.1))
    als_cfg = CandidateConfig(factors=c.factors, regularization=c.regularization, alpha=5.0, iterations=15,
                              seed=c.seed)

    def als_on(keep: np.ndarray) -> Any:
        return Candidates(als_cfg).fit(data.subset(keep).user_items(weights[keep]))

    fold = rng.random(sess_id[-1] + 1)[sess_id] < 0.5
    taste = np.zeros(len(data))
    for f in (True, False):
        m = als_on(fit & (fold != f))
        sel_f = fold == f
        taste[sel_f] = np.einsum("ef,ef->e", m.user_factors[data.user[sel_f]], m.item_factors[data.item[sel_f]])
    als = als_on(fit)
    U, V = als.user_factors, als.item_factors
    scale = (float(taste[fit].mean()), float(taste[fit].std() + 1e-9))
    # popularity of completion: smoothed log-odds per track, leave-one-out on the fitted events
    prior = float(y[fit & known].mean()) if (fit & known).any() else 0.5
    comp = np.bincount(data.item[fit & known], weights=y[fit & known], minlength=data.n_items + 1)
    tot = np.bincount(data.item[fit & known], minlength=data.n_items + 1).astype(np.float64)
    k = 5.0
    item_logit = np.log((comp + k * prior) / (tot - comp + k * (1 - prior)))
    loo_c = comp[data.item] - np.where(fit & known, y, 0.0)
    loo_t = tot[data.item] - (fit & known)
    loo_logit = np.log((loo_c + k * prior) / (loo_t - loo_c + k * (1 - prior)))
    vecs = data.item_features if data.item_features.shape[1] else np.zeros((data.n_items + 1, 0), np.float32)
    vecs = normalised(vecs if vecs.shape[1] and np.abs(vecs[1:]).sum() else V)
    vecs = np.asarray(vecs, np.float64)
    vecs[0] = 0.0
    fat, rep = _fatigue_features(data.item, starts, vecs, c.fatigue_decay)
    x = np.stack([np.ones(len(data)), (taste - scale[0]) / scale[1], loo_logit, fat, rep], axis=1)
    coef = _logistic(x[sel], y[sel], c.l2)
    # leaving: the share of session ends after skips and after completions, by position in the session
    pos = np.arange(len(data)) - np.maximum.accumulate(np.where(starts, np.arange(len(data)), 0))
    bucket = np.searchsorted(LEAVE_BUCKETS, pos, side="right")
    p_leave = np.zeros((2, len(LEAVE_BUCKETS) + 1))
    for v in (0, 1):
        for j in range(p_leave.shape[1]):
            m = fit & known & (y == v) & (bucket == j)
            p_leave[v, j] = float(ends[m].mean()) if m.any() else float(ends[fit & known].mean())
    sim = LogSimulator(np.asarray(U, np.float64), np.asarray(V, np.float64), item_logit, vecs, coef, p_leave, c,
                       scale)
    sim.calibration = _calibrate(sim, held & known, x, y, sess_id, held)
    return sim


def _calibrate(sim: LogSimulator, sel: np.ndarray, x: np.ndarray, y: np.ndarray, sess_id: np.ndarray,
               held: np.ndarray) -> dict[str, float]:
    """Held-out sessions, real vs simulated: skip rate of the logged tracks, and session length
    (the simulated listener hears the logged tracks, and leaves as the fitted model says)."""
    out: dict[str, float] = {"held_out_sessions": int(len(np.unique(sess_id[held]))), "held_out_events": int(sel.sum())}
    if not sel.any():
        return out
    p = 1.0 / (1.0 + np.exp(-(x[sel] @ sim.coef)))
    out["skip_rate_real"] = round(float(1.0 - y[sel].mean()), 4)
    out["skip_rate_sim"] = round(float(1.0 - p.mean()), 4)
    # length: the real one per held-out session, against the mean simulated one when the listener
    # hears the logged tracks in order (outcomes drawn from the model) and leaves by p_leave
    rng = np.random.default_rng(7)
    real, simulated = [], []
    xs = x[held]
    sid = sess_id[held]
    bounds = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        real.append(b - a)
        z = xs[a:b] @ sim.coef
        n = 0
        for zz in z:
            done = rng.random() < 1.0 / (1.0 + np.exp(-zz))
            n += 1
            if rng.random() < sim.leave_probability(int(done), n - 1):
                break
        simulated.append(n)
    out["session_length_real"] = round(float(np.mean(real)), 3)
    out["session_length_sim"] = round(float(np.mean(simulated)), 3)
    return out
