"""A listening-session simulator: where logged data cannot say what would have happened.

Users have tastes over genres (Dirichlet) and artists, tracks have a genre, an artist
and a quality. Whether a user listens to a track to the end is a coin with

    P(complete) = sigmoid(bias + taste_weight * log(G * taste[u, genre]) + artist_affinity[u, artist]
                          + quality[t] - genre_fatigue * F_genre - artist_fatigue * F_artist
                          - repeat_penalty * [track played earlier in the session])

where the fatigues ``F`` count recent plays of the same genre and artist within the
session, decaying by ``fatigue_decay`` per step. A greedy recommender plays the
user's favourite artist over and over and gets skipped; a policy that plans a
playlist spreads it over the user's tastes. Reward per step comes from
:class:`~recommender.rewards.RewardConfig` (defaults: 1 completed, 0 skipped), so a
20-step playlist's cumulative reward is the number of tracks heard to the end.

:meth:`Simulator.logged_history` produces training logs (users choosing their own
music, with some exploration), and :meth:`Simulator.rollout` runs a policy online.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
        """Every user's logged sessions: the users pick by taste (softmax of appeal), ``explore`` at random."""
        c = self.config
        rng = np.random.default_rng(c.seed + 1)
        pop = np.exp(self.static[:, 1:]).mean(0)
        pop_p = pop / pop.sum()
        users, items, ts, outs = [], [], [], []
        for u in range(c.n_users):
            logits = self.static[u, 1:] / c.choice_temperature
            p = np.exp(logits - logits.max())
            p /= p.sum()
            for s in range(c.sessions):
                sess = self.session(u, rng)
                for k in range(c.session_length):
                    pick = rng.choice(c.n_tracks, p=pop_p if rng.random() < c.explore else p) + 1
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
