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
    leave_after_skip: float = 0.0
    """P(a logged listener ends the session after a skip); 0: sessions run ``session_length`` tracks."""
    leave_after_complete: float = 0.0
    """P(a logged listener ends the session after a completed track)."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_users", "n_tracks", "n_genres", "n_artists", "sessions", "session_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"simulator {name} {getattr(self, name)} is out of range (allowed: >= 1)")
        if not 0.0 <= self.fatigue_decay < 1.0:
            raise ConfigError(f"fatigue_decay {self.fatigue_decay} is out of range (allowed: 0 <= d < 1)")
        if not 0.0 <= self.explore <= 1.0:
            raise ConfigError(f"explore {self.explore} is out of range (allowed: 0-1)")
        for name in ("leave_after_skip", "leave_after_complete"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} {getattr(self, name)} is out of range (allowed: 0-1)")


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
                    leave = c.leave_after_complete if done else c.leave_after_skip
                    if leave and rng.random() < leave:
                        break
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
    eval_users: float = 0.2
    """Share of the users (drawn at random) held out of the fit: the calibration and the
    policies' evaluation use only them, with ALS tastes folded in from their history."""
    l2: float = 1e-3
    """L2 of the completion model's logistic regression."""
    seed: int = 1000

    def __post_init__(self) -> None:
        if not 0.0 <= self.fatigue_decay < 1.0:
            raise ConfigError(f"fatigue_decay {self.fatigue_decay} is out of range (allowed: 0 <= d < 1)")
        if not 0.0 < self.eval_users < 1.0:
            raise ConfigError(f"eval_users {self.eval_users} is out of range (allowed: 0 < share < 1)")
        if not self.session_gap > 0:
            raise ConfigError(f"session_gap {self.session_gap} is out of range (allowed: > 0 seconds)")


COEF_NAMES = ("bias", "taste", "item", "fatigue", "repeat")
#: Session positions (0-based) where the leaving probability may change: a piecewise-constant
#: hazard, finer at the start where most sessions end (tracks 1, 2, 3, 4-5, 6-8, ..., 145 on).
LEAVE_BUCKETS = np.array([1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144])
#: Critical value of the two-sample Kolmogorov-Smirnov statistic at the 1% level (times sqrt((n+m)/nm)).
KS_C_ALPHA = 1.628
#: Two-sided 1% critical value of a standard normal (the overall skip-rate test).
Z_CRITICAL = 2.576
#: 1% critical value of chi-square with 10 degrees of freedom (Hosmer-Lemeshow over ten bins of
#: predicted odds, on users the model never saw).
HL_CRITICAL = 23.21
#: A simulated session stops here even if the listener never left (counted in the calibration).
MAX_SIM_LENGTH = 2000


def _bucket_name(j: int) -> str:
    lo = 1 if j == 0 else int(LEAVE_BUCKETS[j - 1]) + 1
    if j >= len(LEAVE_BUCKETS):
        return f"{lo}+"
    hi = int(LEAVE_BUCKETS[j])
    return f"{lo}" if hi == lo else f"{lo}-{hi}"


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class LogSimulator:
    """Listening sessions simulated from what logged sessions show (RecSim's user model, fit).

    For user ``u`` offered track ``i`` after the session's earlier plays ``j``:

        P(complete) = sigmoid(w_0 + w_taste * z(U_u . V_i) + w_item * logit_i
                              + w_fatigue * sum_j decay^(age j) * cos(i, j) + w_repeat * [i played])
        P(leave | outcome, position): a piecewise-constant hazard, by the last outcome and the
                                      position in the session (:data:`LEAVE_BUCKETS`)

    Everything is fit on the **training users** only: ``V`` and their ``U`` are ALS factors
    of their logs (``z``: standardised), ``logit_i`` each track's smoothed completion
    log-odds among them, ``cos`` the cosine of content features (tags, artist; ALS factors
    when there are none), and the ``w`` a logistic regression on their logged outcomes.
    The held-out users (``eval_users``) are what policies are evaluated on: their ``U``
    is folded into the trained ALS from their history (implicit's ``recalculate_user``),
    never fit.

    When the logs show no re-listening at all (MovieLens: nobody rates a movie twice),
    nothing says how a repeat would go, so a track the listener already heard (in the
    history or this session) is a certain skip; policies should filter them. A session ends
    when the listener leaves or after ``steps`` tracks; its reward is the number of
    completed tracks. ``calibration`` (from :func:`calibrate`) compares held-out users'
    real sessions with simulated ones.
    """

    def __init__(self, user_factors: np.ndarray, item_factors: np.ndarray, item_logit: np.ndarray,
                 similarity_vectors: np.ndarray, coef: np.ndarray, p_leave: np.ndarray,
                 config: FitConfig, taste_scale: tuple[float, float], train_users: np.ndarray | None = None,
                 eval_users: np.ndarray | None = None, relisten: bool = True) -> None:
        self.U, self.V = user_factors, item_factors
        self.item_logit, self.sim_vecs = item_logit, similarity_vectors
        self.coef, self.p_leave, self.config = coef, p_leave, config
        self.taste_scale = taste_scale
        self.n_items = item_factors.shape[0] - 1
        n = user_factors.shape[0]
        self.train_users = np.arange(n) if train_users is None else train_users
        self.eval_users = np.zeros(0, np.int64) if eval_users is None else eval_users
        self.relisten = relisten
        self.als: Any = None
        """The fitted :class:`~recommender.candidates.Candidates` ALS (to fold in new histories)."""
        self.calibration: dict[str, Any] = {}

    def static_logit(self, user: int, user_vector: np.ndarray | None = None) -> np.ndarray:
        """float ``[n_items + 1]``: the completion logit of every track for a fresh session (index 0: -inf)."""
        w = self.coef
        u = self.U[user] if user_vector is None else user_vector
        z = (u @ self.V.T - self.taste_scale[0]) / self.taste_scale[1]
        out = w[0] + w[1] * z + w[2] * self.item_logit
        out[0] = -np.inf
        return out

    def completion_odds(self, static: np.ndarray, fatigue: np.ndarray, played: list[int],
                        seen: np.ndarray | None = None) -> np.ndarray:
        """float ``[n_items + 1]`` P(complete) of every track now, given the session's ``fatigue``
        vector, the tracks ``played`` and (when the logs show no re-listening) the ``seen`` ones."""
        w = self.coef
        z = static + w[3] * (self.sim_vecs @ fatigue)
        if played:
            z[played] += w[4]
        p = _sigmoid(z)
        if not self.relisten:
            p[played] = 0.0
            if seen is not None and len(seen):
                p[seen] = 0.0
        return p

    def play_session(self, policy: Policy, user: int, items: list[int], outs: list[int], steps: int,
                     rng: np.random.Generator) -> tuple[list[int], list[int]]:
        """One session of at most ``steps`` tracks for ``user`` whose history is ``items``/``outs``;
        returns the tracks played and their outcomes (the listener may leave early)."""
        w, d = self.coef, self.config.fatigue_decay
        items, outs = list(items), list(outs)
        seen = set(items)
        static = self.static_logit(int(user))
        fatigue = np.zeros(self.sim_vecs.shape[1])
        played: list[int] = []
        results: list[int] = []
        for _ in range(steps):
            pick = int(policy(int(user), np.array(items, np.int64), np.array(outs, np.int64), played))
            if not 1 <= pick <= self.n_items:
                raise ConfigError(f"policy picked track {pick} (allowed: 1-{self.n_items})")
            heard = pick in played
            if not self.relisten and (heard or pick in seen):
                p = 0.0
            else:
                p = float(_sigmoid(static[pick] + w[3] * float(self.sim_vecs[pick] @ fatigue) + w[4] * heard))
            done = bool(rng.random() < p)
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
        """Play one session per user (default: the held-out users, or every user when none are), the
        policy picking each track; returns (completed tracks ``[U]``, session length ``[U]``). The
        policy sees the user's logged history followed by this session's tracks and outcomes,
        and the tracks played in this session."""
        rng = np.random.default_rng(seed)
        if users is None:
            users = self.eval_users if len(self.eval_users) else np.arange(self.U.shape[0])
        b = history.bounds
        rewards, lengths = np.zeros(len(users)), np.zeros(len(users), np.int64)
        for j, u in enumerate(users):
            played, results = self.play_session(policy, int(u), list(history.item[b[u]:b[u + 1]]),
                                                list(history.outcome[b[u]:b[u + 1]].astype(np.int64)), steps, rng)
            rewards[j] = sum(r == rw.COMPLETED for r in results)
            lengths[j] = len(played)
        return rewards, lengths

    def expected_completions(self, user: int, tracks: list[int], seen: np.ndarray | None = None) -> float:
        """The exact expected number of completed tracks when ``tracks`` are played in order (the
        listener may leave after each)."""
        static = self.static_logit(user)
        fatigue = np.zeros(self.sim_vecs.shape[1])
        alive, total = 1.0, 0.0
        for t, i in enumerate(tracks):
            p = float(self.completion_odds(static, fatigue, tracks[:t], seen)[i])
            total += alive * p
            alive *= p * (1 - self.leave_probability(1, t)) + (1 - p) * (1 - self.leave_probability(0, t))
            fatigue = self.config.fatigue_decay * fatigue + self.sim_vecs[i]
        return total

    def plan(self, user: int, seen: np.ndarray, steps: int, beam: int = 8, expand: int = 12) -> list[int]:
        """A playlist of ``steps`` tracks planned on this simulator's own odds: beam search over the
        exact expected completions (:meth:`expected_completions`). An outcome here changes no later
        completion odds, only whether the session goes on, so a sequence planned up front loses
        nothing against a policy that reacts to outcomes: the best sequence is the optimum, and
        the beam's is a reference ceiling (never below the greedy sequence, which it keeps)."""
        static = self.static_logit(user)
        d = self.config.fatigue_decay

        def grow(seq: list[int], fatigue: np.ndarray, k: int) -> list[tuple[int, float]]:
            """The ``k`` tracks most likely completed next after ``seq``, with their odds."""
            p = self.completion_odds(static, fatigue, seq, seen)
            p[0] = -1.0
            top = np.argpartition(-p, min(k, len(p) - 1))[:k]
            return [(int(i), float(p[i])) for i in top if p[i] >= 0]

        # greedy first: its value still to come per unit of survival, after each step, guides the
        # beam's pruning (a partial playlist is worth what it has plus what greedy would add)
        greedy: list[int] = []
        fat = np.zeros(self.sim_vecs.shape[1])
        gained, alive_at, alive = [], [], 1.0
        for t in range(steps):
            i, p = max(grow(greedy, fat, 1), key=lambda x: x[1])
            alive_at.append(alive)
            gained.append(alive * p)
            alive *= p * (1 - self.leave_probability(1, t)) + (1 - p) * (1 - self.leave_probability(0, t))
            greedy.append(i)
            fat = d * fat + self.sim_vecs[i]
        to_go = np.zeros(steps + 1)
        for t in range(steps):
            to_go[t] = sum(gained[t:]) / alive_at[t] if alive_at[t] > 0 else 0.0
        beams = [(0.0, 1.0, [], np.zeros(self.sim_vecs.shape[1]))]
        for t in range(steps):
            nxt = []
            lc, ls = self.leave_probability(1, t), self.leave_probability(0, t)
            for value, alive, seq, fatigue in beams:
                for i, p in grow(seq, fatigue, expand):
                    nxt.append((value + alive * p, alive * (p * (1 - lc) + (1 - p) * (1 - ls)), seq + [i], fatigue))
            nxt.sort(key=lambda b: -(b[0] + b[1] * to_go[t + 1]))
            beams = [(v, a, s, d * f + self.sim_vecs[s[-1]]) for v, a, s, f in nxt[:beam]]
        best = max(beams, key=lambda b: b[0])
        return best[2] if best[0] >= self.expected_completions(user, greedy, seen) else greedy

    def summary(self) -> dict[str, Any]:
        return {"coefficients": dict(zip(COEF_NAMES, (round(float(c), 4) for c in self.coef))),
                "p_leave": {f"after a {kind}, track {_bucket_name(j)}": round(float(v), 4)
                            for i, kind in enumerate(("skip", "completion"))
                            for j, v in enumerate(self.p_leave[i])},
                "relisten": self.relisten, "train_users": int(len(self.train_users)),
                "eval_users": int(len(self.eval_users)), "calibration": self.calibration}


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


def _als_weights(outcome: np.ndarray) -> np.ndarray:
    """Confidence of each event in the simulator's ALS: completed 1, unknown 0.5, skipped 0.1 (heard)."""
    return np.where(outcome == rw.COMPLETED, 1.0, np.where(outcome == rw.UNKNOWN, 0.5, 0.1))


def _sessions(data: Interactions, gap: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(session starts bool ``[E]``, session ends bool ``[E]``, session id int ``[E]``)."""
    ends = data.session_ends(gap)
    starts = np.ones(len(data), bool)
    starts[1:] = ends[:-1]
    return starts, ends, np.cumsum(starts) - 1


def fit_simulator(data: Interactions, config: FitConfig = FitConfig(), steps: int = 20) -> LogSimulator:
    """Fit a :class:`LogSimulator` on the training users of ``data`` (all but a random ``eval_users``
    share) and :func:`calibrate` it on the held-out ones."""
    from recommender.candidates import CandidateConfig, Candidates
    from recommender.features import normalised

    c = config
    starts, ends, sess_id = _sessions(data, c.session_gap)
    rng = np.random.default_rng(c.seed)
    active = np.flatnonzero(np.diff(data.bounds) > 0)
    n_eval = max(1, int(round(len(active) * c.eval_users)))
    if len(active) - n_eval < 2:
        raise ConfigError(f"the logs hold {len(active)} users with plays: too few to hold {n_eval} out of the "
                          "simulator's fit (allowed: at least 2 training users; hint: lower eval_users)")
    eval_users = np.sort(rng.choice(active, n_eval, replace=False))
    train_users = np.setdiff1d(active, eval_users)
    fit = np.isin(data.user, train_users)
    known = data.outcome != rw.UNKNOWN
    y = (data.outcome == rw.COMPLETED).astype(np.float64)
    sel = fit & known
    if sel.sum() < 10 or len(np.unique(y[sel])) < 2:
        raise ConfigError("the logs need completed and skipped plays to fit a simulator (found only one kind)")
    # tastes: ALS on the training users. The regression sees out-of-fold tastes (an ALS that never
    # saw the event, as a simulated recommendation is a pair the logs do not hold).
    weights = _als_weights(data.outcome)
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
    U, V = np.asarray(als.user_factors, np.float64), np.asarray(als.item_factors, np.float64)
    scale = (float(taste[fit].mean()), float(taste[fit].std() + 1e-9))
    # how often each track is completed by the training users: smoothed log-odds (leave-one-out
    # for the regression's own events)
    prior = float(y[sel].mean())
    comp = np.bincount(data.item[sel], weights=y[sel], minlength=data.n_items + 1)
    tot = np.bincount(data.item[sel], minlength=data.n_items + 1).astype(np.float64)
    k = 5.0
    item_logit = np.log((comp + k * prior) / (tot - comp + k * (1 - prior)))
    loo_c = comp[data.item] - np.where(sel, y, 0.0)
    loo_t = tot[data.item] - sel
    loo_logit = np.log((loo_c + k * prior) / (loo_t - loo_c + k * (1 - prior)))
    vecs = data.item_features if data.item_features.shape[1] else np.zeros((data.n_items + 1, 0), np.float32)
    vecs = normalised(vecs if vecs.shape[1] and np.abs(vecs[1:]).sum() else V)
    vecs = np.asarray(vecs, np.float64)
    vecs[0] = 0.0
    fat, rep = _fatigue_features(data.item, starts, vecs, c.fatigue_decay)
    x = np.stack([np.ones(len(data)), (taste - scale[0]) / scale[1], loo_logit, fat, rep], axis=1)
    coef = _logistic(x[sel], y[sel], c.l2)
    # leaving: the hazard of a session end after a skip / a completion, by position (shrunk
    # towards the outcome's overall rate where a bucket holds few events)
    pos = np.arange(len(data)) - np.maximum.accumulate(np.where(starts, np.arange(len(data)), 0))
    bucket = np.searchsorted(LEAVE_BUCKETS, pos, side="right")
    p_leave = np.zeros((2, len(LEAVE_BUCKETS) + 1))
    for v in (0, 1):
        m_v = sel & (y == v)
        overall = float(ends[m_v].mean()) if m_v.any() else float(ends[sel].mean())
        for j in range(p_leave.shape[1]):
            m = m_v & (bucket == j)
            p_leave[v, j] = (float(ends[m].sum()) + 5.0 * overall) / (m.sum() + 5.0)
    # re-listening: does any training user play a track they played before?
    relisten = False
    for u in train_users[:]:
        b0, b1 = data.bounds[u], data.bounds[u + 1]
        if len(np.unique(data.item[b0:b1])) < b1 - b0:
            relisten = True
            break
    # held-out users: tastes folded in from their whole history (the rollouts' starting point)
    ui = data.user_items(weights)
    U[eval_users] = als.fold_in(ui[eval_users])
    sim = LogSimulator(U, V, item_logit, vecs, coef, p_leave, c, scale, train_users, eval_users, relisten)
    sim.als = als
    sim.calibration = calibrate(sim, data)
    return sim


def _ks(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and its 1% critical value."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    d = float(np.abs(np.searchsorted(a, grid, side="right") / len(a)
                     - np.searchsorted(b, grid, side="right") / len(b)).max())
    return d, KS_C_ALPHA * float(np.sqrt((len(a) + len(b)) / (len(a) * len(b))))


def calibrate(sim: LogSimulator, data: Interactions, seed: int = 7) -> dict[str, Any]:
    """Every session of the held-out users, real against simulated; each check can fail.

    A session's tastes are folded into the simulator's ALS from the user's *other* sessions
    (none for a one-session user), so no outcome of the session itself is read:

    - skip rate: overall (completions against the predicted sum, ``|z| <=`` :data:`Z_CRITICAL`),
      in ten bins of predicted odds (Hosmer-Lemeshow ``<=`` :data:`HL_CRITICAL`), and per
      session, the real skip rates against simulated ones (outcomes drawn from the model) by a
      two-sample KS test; every test at the 1% level;
    - session length, **untruncated**: the simulated listener hears the user's logged tracks
      from the session's start on (then from the user's first again) until leaving, as the
      fitted hazard says, and the real and simulated lengths pass the KS test at 1%.
    """
    from scipy.sparse import csr_matrix

    c, w = sim.config, sim.coef
    starts, _, sess_id = _sessions(data, c.session_gap)
    weights = _als_weights(data.outcome)
    b = data.bounds
    pairs = [(int(u), int(sid)) for u in sim.eval_users for sid in np.unique(sess_id[b[u]:b[u + 1]])]
    out: dict[str, Any] = {"held_out_users": int(sum(b[u + 1] > b[u] for u in sim.eval_users)),
                           "held_out_sessions": len(pairs)}
    if not pairs:
        out["passed"] = False
        out["note"] = "no held-out user has a session: nothing to calibrate on"
        return out
    r_rows, r_items, r_w = [], [], []
    for j, (u, sid) in enumerate(pairs):
        e = np.arange(b[u], b[u + 1])
        e = e[sess_id[e] != sid]
        r_rows.append(np.full(len(e), j))
        r_items.append(data.item[e])
        r_w.append(weights[e])
    rows = csr_matrix((np.concatenate(r_w), (np.concatenate(r_rows), np.concatenate(r_items))),
                      shape=(len(pairs), data.n_items + 1), dtype=np.float32)
    u_vecs = sim.als.fold_in(rows) if sim.als is not None else sim.U[[u for u, _ in pairs]]
    rng = np.random.default_rng(seed)
    real_len, sim_len, capped = [], [], 0
    p_all: list[np.ndarray] = []
    y_all: list[np.ndarray] = []
    real_rate: list[float] = []
    sim_rate: list[float] = []
    known_all = data.outcome != rw.UNKNOWN
    y_event = (data.outcome == rw.COMPLETED).astype(float)
    for j, (u, sid) in enumerate(pairs):
        static = sim.static_logit(u, u_vecs[j])
        stream = np.arange(b[u], b[u + 1])
        first = int(np.flatnonzero(sess_id[stream] == sid)[0])
        n_real = int((sess_id[stream] == sid).sum())
        fatigue = np.zeros(sim.sim_vecs.shape[1])
        played: set[int] = set()
        p_sess, n, left = [], 0, False
        # one walk: the logged session's tracks give the skip comparison, the walk goes on
        # (through the user's later tracks, untruncated) until the simulated listener leaves
        while n < MAX_SIM_LENGTH and (not left or n < n_real):
            i = int(data.item[stream[(first + n) % len(stream)]])
            p = float(_sigmoid(static[i] + w[3] * float(sim.sim_vecs[i] @ fatigue) + w[4] * (i in played)))
            if n < n_real:
                p_sess.append(p)
            fatigue = c.fatigue_decay * fatigue + sim.sim_vecs[i]
            played.add(i)
            n += 1
            if not left:
                done = rng.random() < p
                if rng.random() < sim.leave_probability(int(done), n - 1):
                    left = True
                    sim_len.append(n)
        if not left:
            capped += 1
            sim_len.append(n)
        ev = stream[first:first + n_real]
        known = known_all[ev]
        p_ev = np.array(p_sess)
        real_len.append(n_real)
        p_all.append(p_ev[known])
        y_all.append(y_event[ev][known])
        if known.any():
            real_rate.append(1.0 - y_event[ev][known].mean())
            sim_rate.append(1.0 - (rng.random(int(known.sum())) < p_ev[known]).mean())
    probs, yv = np.concatenate(p_all), np.concatenate(y_all)
    out["held_out_events"] = int(len(yv))
    out["skip_rate_real"] = round(float(1.0 - yv.mean()), 4)
    out["skip_rate_sim"] = round(float(1.0 - probs.mean()), 4)
    # overall: completions against their predicted sum, in standard errors
    var = float((probs * (1 - probs)).sum())
    out["skip_rate_z"] = round(float((probs.sum() - yv.sum()) / np.sqrt(max(var, 1e-12))), 3)
    # reliability: Hosmer-Lemeshow over ten equal-count bins of predicted odds
    bins = np.minimum((np.argsort(np.argsort(probs)) * 10) // max(len(probs), 1), 9)
    hl = 0.0
    for i in range(10):
        m = bins == i
        if m.any():
            e, n_i = float(probs[m].sum()), int(m.sum())
            hl += (float(yv[m].sum()) - e) ** 2 / max(e * (1 - e / n_i), 1e-9)
    out["skip_hosmer_lemeshow"], out["skip_hosmer_lemeshow_critical"] = round(hl, 2), HL_CRITICAL
    ks_skip, crit_skip = _ks(np.array(real_rate), np.array(sim_rate))
    out["skip_rate_ks"], out["skip_rate_ks_critical"] = round(ks_skip, 4), round(crit_skip, 4)
    ks_len, crit_len = _ks(np.array(real_len, float), np.array(sim_len, float))
    out["session_length_real"] = round(float(np.mean(real_len)), 3)
    out["session_length_sim"] = round(float(np.mean(sim_len)), 3)
    out["session_length_median_real"] = float(np.median(real_len))
    out["session_length_median_sim"] = float(np.median(sim_len))
    out["session_length_ks"], out["session_length_ks_critical"] = round(ks_len, 4), round(crit_len, 4)
    out["sessions_at_cap"] = capped
    out["skip_passed"] = bool(abs(out["skip_rate_z"]) <= Z_CRITICAL and hl <= HL_CRITICAL and ks_skip <= crit_skip)
    out["length_passed"] = bool(ks_len <= crit_len)
    out["passed"] = out["skip_passed"] and out["length_passed"]
    return out
