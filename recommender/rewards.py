"""Reward of one listening event, from what the listener did.

Each stored event carries an *outcome*: ``COMPLETED`` (played to the end or most of
it), ``SKIPPED`` (cut short) or ``UNKNOWN`` (the export does not say). The outcome is
decided at ingest time from, in this order:

1. an explicit ``skipped`` flag (Spotify extended history, generic CSV);
2. Spotify's ``reason_end``: ``trackdone`` is completed, ``fwdbtn`` / ``backbtn`` /
   ``clickrow`` / ``endplay`` / ``remote`` / ``logout`` ... anything else that ends a
   track early is skipped;
3. ``ms_played`` against the track's duration: at least ``completed_fraction`` of it
   is completed, less is skipped; without a duration, less than ``skip_ms``
   milliseconds (Spotify's own 30 s "stream" threshold) is skipped, more is completed.

Scrobbles (Last.fm, ListenBrainz) are only submitted after half the track or four
minutes were played (the scrobbling rules of both services), so a scrobble without
other information is ``COMPLETED``.

The reward itself is mapped from the outcome at training time by
:class:`RewardConfig`, so changing it needs no re-ingest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from recommender.errors import ConfigError

COMPLETED = 1
SKIPPED = 0
UNKNOWN = 2
OUTCOME_NAMES = {COMPLETED: "completed", SKIPPED: "skipped", UNKNOWN: "unknown"}

#: Spotify ``reason_end`` values that mean the track played to its end.
SPOTIFY_COMPLETED_REASONS = frozenset({"trackdone"})


@dataclass(frozen=True)
class OutcomeRule:
    """How ms_played decides an outcome when no skip flag or end reason says it."""

    completed_fraction: float = 0.8
    """Share (0-1) of the track's duration that counts as a completed play."""
    skip_ms: int = 30_000
    """Without a duration: plays shorter than this many milliseconds are skips."""

    def __post_init__(self) -> None:
        if not 0.0 < self.completed_fraction <= 1.0:
            raise ConfigError(f"completed_fraction {self.completed_fraction} is out of range (allowed: 0 < f <= 1)")
        if self.skip_ms < 0:
            raise ConfigError(f"skip_ms {self.skip_ms} is out of range (allowed: >= 0)")


def classify(skipped: bool | None, reason_end: str | None, ms_played: int | None, duration_ms: int | None,
             rule: OutcomeRule = OutcomeRule(), scrobble: bool = False) -> int:
    """The outcome (``COMPLETED``, ``SKIPPED`` or ``UNKNOWN``) of one event; see the module doc."""
    if skipped is not None:
        return SKIPPED if skipped else COMPLETED
    if reason_end:
        return COMPLETED if reason_end in SPOTIFY_COMPLETED_REASONS else SKIPPED
    if ms_played is not None:
        if duration_ms:
            return COMPLETED if ms_played >= rule.completed_fraction * duration_ms else SKIPPED
        return COMPLETED if ms_played >= rule.skip_ms else SKIPPED
    return COMPLETED if scrobble else UNKNOWN


@dataclass(frozen=True)
class RewardConfig:
    """Reward per outcome, used by training, evaluation and the simulator.

    The defaults make a playlist's cumulative reward the number of tracks listened to
    the end, so the simulator's ratios read as "how many more tracks were enjoyed".
    """

    completed: float = 1.0
    """Reward of a track played to the end."""
    skipped: float = 0.0
    """Reward of a skipped track (make it negative to punish skips harder)."""
    unknown: float = 0.5
    """Reward when the export does not say (e.g. a rating of 3 in MovieLens)."""

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not np.isfinite(value) or abs(value) > 100:
                raise ConfigError(f"reward {name}={value} is out of range (allowed: -100 to 100)")

    def rewards(self, outcomes: np.ndarray) -> np.ndarray:
        """float32 ``[E]`` rewards for int ``[E]`` outcomes."""
        table = np.array([self.skipped, self.completed, self.unknown], np.float32)
        return table[np.asarray(outcomes, np.int64)]


DEFAULT_RULE = OutcomeRule()
DEFAULT_REWARD = RewardConfig()
