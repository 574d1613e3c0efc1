"""Per-scale-family evaluation: does the degree that makes a scale sound like itself appear?

C major alone hides a model that never plays its 7th degree. For each family below, the
share of a melody set's notes on the family's *characteristic degree* is compared with
the share of that degree in real tunes (``docs/evaluation.md``):

==============  ===========  =======================================================
family          degree       why it is characteristic
==============  ===========  =======================================================
major           7 (pc 11)    the leading tone: B -> C at cadences
natural_minor   b6 (pc 8)    what sets it apart from Dorian
harmonic_minor  7 (pc 11)    the raised leading tone
dorian          6 (pc 9)     the major sixth over a minor third
lydian          #4 (pc 6)    the raised fourth
==============  ===========  =======================================================

**Corpus share** (:func:`corpus_shares`): the share of notes (onsets) on that pitch
class in the corpus tunes of that scale, transposed to C, from the held-out split. The
corpus labels a tune's mode from its file, and Essen's from its third, so some modes have
few tunes. Fallbacks, in order, each recorded in :class:`CorpusShare`:

1. the held-out tunes of the scale, when there are at least :data:`MIN_TUNES`;
2. else the tunes of the scale from every split (train + held-out: this is a reference
   share, nothing is fitted on it), when there are at least :data:`MIN_TUNES`;
3. else the parent family's held-out tunes (:data:`PARENT`), counting every pitch class
   that spells the same *scale degree* (:data:`DEGREE_SPELLINGS`): for harmonic minor,
   the 7th degree of minor tunes (pc 10 or 11; minor tunes are labelled natural minor
   by their third whatever their 7th), for Lydian the 4th degree of major tunes (pc 5
   or 6). The characteristic degree then counts as often as the degree it replaces.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.music import theory, tokens

#: The scale families evaluated, in table order.
FAMILIES: tuple[str, ...] = ("major", "natural_minor", "harmonic_minor", "dorian", "lydian")
#: family -> (pitch class above the tonic, label) of its characteristic degree.
CHARACTERISTIC: dict[str, tuple[int, str]] = {
    "major": (11, "7th"),
    "natural_minor": (8, "b6"),
    "harmonic_minor": (11, "7th (raised)"),
    "dorian": (9, "6th (natural)"),
    "lydian": (6, "#4"),
}
#: family -> the family whose tunes stand in when the corpus has too few of its own.
PARENT: dict[str, str] = {"major": "major", "natural_minor": "natural_minor", "harmonic_minor": "natural_minor",
                          "dorian": "natural_minor", "lydian": "major"}
#: pitch class -> every pitch class spelling the same scale degree (the fallback counts them all).
DEGREE_SPELLINGS: dict[int, tuple[int, ...]] = {11: (10, 11), 10: (10, 11), 8: (8, 9), 9: (8, 9), 6: (5, 6),
                                                5: (5, 6)}
#: Fewest tunes a corpus share is taken from before falling back (see the module doc).
MIN_TUNES = 30
#: The target band, as a ratio to the corpus share, for the families the issue sets one.
TARGET_BAND = (0.5, 1.5)
TARGET_FAMILIES = ("major", "harmonic_minor")


@dataclass(frozen=True)
class CorpusShare:
    """A family's characteristic-degree share in the corpus, and what it was taken from."""

    family: str
    share: float
    """Notes on the degree / notes, 0..1 (NaN when no tune was found)."""
    n_tunes: int
    basis: str
    """Which tunes and pitch classes, e.g. ``"142 held-out dorian tunes, pc 9"``."""


def degree_share(seqs: Sequence[Sequence[int] | np.ndarray], pcs: int | Sequence[int]) -> float:
    """Share of all notes (onsets) of ``seqs`` whose pitch class above the tonic is in ``pcs`` (NaN without notes)."""
    want = {int(pcs)} if isinstance(pcs, (int, np.integer)) else {int(p) for p in pcs}
    hit = total = 0
    for s in seqs:
        a = np.asarray(s, np.int64)
        p = a[a >= tokens.FIRST_PITCH]
        total += len(p)
        hit += int(np.isin((p - tokens.TONIC_TOKEN) % 12, list(want)).sum())
    return hit / total if total else math.nan


def corpus_shares(heldout: Sequence[Any], every: Sequence[Any] | None = None,
                  families: Sequence[str] = FAMILIES) -> dict[str, CorpusShare]:
    """The corpus share of each family's characteristic degree (module doc gives the fallbacks).

    ``heldout``: the held-out corpus tunes (objects with ``tokens`` and ``scale``, e.g.
    :class:`engine.corpus.melodies.CorpusMelody`); ``every``: the tunes of all splits,
    for rule 2 (None skips it).
    """
    out = {}
    for fam in families:
        fam = theory.parse_scale(fam)
        pc, _ = CHARACTERISTIC[fam]
        own = [t.tokens for t in heldout if t.scale == fam]
        if len(own) >= MIN_TUNES:
            out[fam] = CorpusShare(fam, degree_share(own, pc), len(own), f"{len(own)} held-out {fam} tunes, pc {pc}")
            continue
        if every is not None:
            all_own = [t.tokens for t in every if t.scale == fam]
            if len(all_own) >= MIN_TUNES:
                out[fam] = CorpusShare(fam, degree_share(all_own, pc), len(all_own),
                                       f"{len(all_own)} {fam} tunes of all splits (only {len(own)} held out), pc {pc}")
                continue
        parent = PARENT[fam]
        spell = DEGREE_SPELLINGS.get(pc, (pc,))
        par = [t.tokens for t in heldout if t.scale == parent]
        n_own = len([t for t in (every if every is not None else heldout) if t.scale == fam])
        out[fam] = CorpusShare(fam, degree_share(par, spell), len(par),
                               f"{len(par)} held-out {parent} tunes, pcs {'/'.join(map(str, spell))} "
                               f"(the corpus has {n_own} {fam} tunes)")
    return out
