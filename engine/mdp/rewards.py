"""The reward: named terms, each a small pure function of the melody so far and the action.

A term has the signature :data:`TermFn`: it gets the batch *before* the action is
appended, the actions (int64 ``[B]``) and :func:`engine.mdp.observation.melody_features`,
and returns its raw, unweighted reward (float32 ``[B]``). Raw values are of order 1 so
that style weights (``-5..5``, see :mod:`engine.mdp.styles`) are comparable across terms.
The total reward of a step is ``sum_s weight_s * raw_s``.

Built-in terms (names in :data:`engine.mdp.styles.BUILTIN_TERMS`). Under KL control the RL
optimises these terms alone (the corpus prior is the KL reference), so each must stand on its
own: **no term pays per note, per copied step or per silent step**. A term either only charges
(a penalty real tunes rarely incur), or pays a bounded amount once a bar, a window or a clip
that real tunes also reach. ``tests/engine/mdp/test_degenerate.py`` holds every preset to this:
no degenerate melody (ping-pong, one-note loops, silence, runs, trills, copied bars, lines of
chord tones) may earn as much as the lowest quarter of held-out Essen tunes. See
``docs/rewards.md``. Several terms follow RL Tuner (Jaques et al. 2017):

==============  ==============================================================================
term            raw reward
==============  ==============================================================================
key             -1 for a pitch outside the requested scale (its characteristic degrees, e.g. the
                7th of major, #4 of lydian, natural 6 of dorian, cost nothing).
chord           a chord tone struck on a beat: downbeat +1, strong beat +0.75, other beats +0.5;
                a non-chord tone struck on the downbeat -1, on a strong beat -0.75 (a passing
                tone on another beat 0); pays at most +1 a bar (:data:`CHORD_CAP`). Held notes
                do not count. A bass on a downbeat: root +1, other chord tone +0.5, else -1.
cadence         last step: the final note is the tonic +1, its third or fifth or the last
                chord's root +0.5, else -0.5; +0.5 more for a stable final note still held.
                End of every 4th bar: +0.5 for the tonic or chord root. No reward for the
                first note (paying for a tonic start made 99.6% of clips open on it).
leap            a leap (>= 7 semitones) doubled -1; a leap back with 6 or fewer steps between
                the two leaps -0.5 (ping-pong; RL Tuner resolves only with more than 6); a
                leap still pending at the end -0.5. Resolving earns nothing (a bonus paid for
                leaping). Bookkeeping: :func:`engine.mdp.observation.leap_update`.
repetition      -1 when RL Tuner's "excessively repeated" test fires for a pitch; a rest or a
                hold only when it stretches a silence or a note past a whole bar.
autocorr        -(sum over lags 1-3 of abs(rho) where abs(rho) > 0.15), rho the autocorrelation
                of the raw tokens (RL Tuner's penalty / 3). Real tunes trip it at most steps,
                so no preset weighs it.
motif           once per 8-step window: 1 + 0.1 per distinct pitch beyond 3 when it holds >= 3.
repeat_motif    once per 8-step window: 1 + 0.25 per distinct pitch beyond 3 when its motif
                restates an earlier one for the first time (a third statement earns nothing).
intervals       per new note vs the last pitch: tritone -0.5, sixths -0.25, sevenths -1.5,
                wider than an octave -2; everything else 0 (penalties only).
range           last step: +1 if the highest pitch occurs once, +1 if the lowest does (RL
                Tuner's unique max/min); any step: -0.5 for a note stretching the range past
                19 semitones.
contour         -0.5 for a note extending a run in one direction to 5 or more intervals; last
                step: +1 if the first highest note lies in the middle half (an arch).
density         a bar's (notes - 4) / 3 clipped to [-1, 1] (16 steps; scaled to the metre),
                paid as it accrues: -1 on the bar's first step (0 notes), +1/3 for each
                note up to the 7th. A dial: weight > 0 busier, < 0 sparser.
rests           at each bar's end: +1 for a bar with 2-8 silent steps (of 16, scaled to the
                metre); any step: -0.5 for a silent step once a silence passes 8 steps.
register        at each bar's end: the mean over its notes of (token - 19.5) / 12 clipped to
                [-1, 1] (a dial: weight > 0 higher).
prior           log p(a|s) + log 38 under the corpus prior (0 for a uniform prior), floored at
                -10; 0 (and a warning, once) when no prior is loaded.
bar_repeat      at each bar's end: restating the bar one or two back with variation (>= half
                its notes at the same step and pitch, not a copy) +1, copying it +0.5, a third
                copy in a row (or a 2-bar riff's third statement) -1.
phrase_return   8-bar periods: at the end of bars 5 and 6, +1 if the bar restates the bar four
                back, -0.5 if not; at the end of bars 7 and 8, -1 for a bar copied whole.
rhythm_motif    at each bar's end (2 or more notes): onset steps shared with the bar one or two
                back / onset steps of either >= 0.5: +0.5; under 0.25: -0.25.
phrase_cadence  second half of a phrase-end bar (every 4th bar, and the last): +1 for a chord
                tone struck on the half bar, -0.5 for any other onset, +0.25 for holding.
crowding        -1 for a note beyond 6 in the current bar (6 per 16 steps, scaled to the metre).
pace            -1 at the end of a bar, the last excepted, striking fewer than 2 different
                pitches.
note_length     when a note ends: -1 for a 16th, -0.25 for an 8th.
span            -1 for a note stretching the range past an octave.
steps           at each bar's end: +1 if a note of the bar moves by a step (1-2 semitones).
==============  ==============================================================================

Custom terms: :func:`register_term` adds a named :data:`TermFn`; list it in
``RewardFunction(terms=...)`` (and ``EnvConfig.terms``) and it gets its own style weight,
its own column in the observation's style segment and its own reward column.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from engine.base.errors import EngineError
from engine.mdp import styles
from engine.mdp.observation import (
    _BEATS,
    LEAP_BACK_MIN_STEPS,
    LEAP_SEMITONES,
    MelodyBatch,
    MelodyContext,
    contour_update,
    leap_update,
    obs_dim,
    observe,
)
from engine.music import tokens

log = logging.getLogger(__name__)

TermFn = Callable[[MelodyBatch, np.ndarray, "dict[str, np.ndarray]"], np.ndarray]
"""(batch before appending, actions int64 ``[B]``, features) -> raw reward float32 ``[B]``."""


class RewardError(EngineError, ValueError):
    """A reward term is unknown, badly registered or returned a bad value."""


class Prior(Protocol):
    """What the ``prior`` term needs: log-probabilities of the 38 actions."""

    def log_probs(self, obs: np.ndarray) -> np.ndarray:
        """``obs`` float32 ``[B, obs_dim(0)]`` (no style) -> log p(a|s) float32 ``[B, 38]``."""
        ...


@dataclass(frozen=True)
class Term:
    """A registered reward term."""

    name: str
    fn: TermFn
    doc: str
    builtin: bool


_REGISTRY: dict[str, Term] = {}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")

#: RL Tuner: an action whose last 8 tokens hold this many distinct pitches is a motif.
MOTIF_LEN = 8
MOTIF_MIN_PITCHES = 3
#: Autocorrelation magnitudes above this are penalised (lags 1-3).
AUTOCORR_LIMIT = 0.15
#: Range (semitones) beyond which a new note is penalised by the range term.
RANGE_LIMIT = 19
_BEAT_WEIGHT = np.array([0.0, 0.5, 0.75, 1.0], np.float32)
_LOG_N_ACTIONS = math.log(tokens.N_ACTIONS)
PRIOR_FLOOR = -10.0
#: Bars in a period of statement and answer: bars 5-6 answer bars 1-2 (phrase_return).
PHRASE_PERIOD = 8
#: Notes in a bar of 16 steps beyond which the crowding term charges each new note.
CROWDING_NOTES = 6


def register_term(name: str, fn: TermFn, *, doc: str = "", replace: bool = False) -> None:
    """Register a custom reward term under ``name`` (lower case, digits, ``_``; max 32 chars).

    ``fn(batch, actions, features)`` gets the batch before appending, the actions int64
    ``[B]`` and :func:`engine.mdp.observation.melody_features`; it must return a finite
    float array ``[B]`` of order 1. Re-registering a custom name needs ``replace=True``;
    built-in terms cannot be replaced.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise RewardError(f"reward term name {name!r} is not valid: use 1-32 lower-case letters, digits or _, "
                          "starting with a letter (e.g. 'syncopation')")
    if not callable(fn):
        raise RewardError(f"reward term {name!r}: {fn!r} is not callable; give fn(batch, actions, features) -> [B]")
    old = _REGISTRY.get(name)
    if old is not None and old.builtin:
        raise RewardError(f"reward term {name!r} is built in and cannot be replaced: choose another name")
    if old is not None and not replace:
        raise RewardError(f"reward term {name!r} is already registered: pass replace=True to replace it")
    _REGISTRY[name] = Term(name, fn, doc or (fn.__doc__ or "").strip(), builtin=False)


def unregister_term(name: str) -> None:
    """Remove a custom term (built-in terms stay)."""
    term = _REGISTRY.get(name)
    if term is None or term.builtin:
        raise RewardError(f"reward term {name!r} is not a registered custom term: custom terms are "
                          f"{', '.join(t for t in _REGISTRY if not _REGISTRY[t].builtin) or 'none'}")
    del _REGISTRY[name]


def available_terms() -> tuple[str, ...]:
    """Built-in terms (in :data:`engine.mdp.styles.BUILTIN_TERMS` order), then custom ones."""
    return tuple(_REGISTRY)


def term_doc(name: str) -> str:
    """One-line description of a term."""
    return _get(name).doc


def _get(name: str) -> Term:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise RewardError(f"reward term {name!r} is not known: available are {', '.join(_REGISTRY)} "
                          "(register custom terms with engine.mdp.rewards.register_term)") from None


def _builtin(name: str, doc: str) -> Callable[[TermFn], TermFn]:
    def deco(fn: TermFn) -> TermFn:
        _REGISTRY[name] = Term(name, fn, doc, builtin=True)
        return fn

    return deco


# ------------------------------------------------------------------------ helpers

def _rows(batch: MelodyBatch) -> np.ndarray:
    return np.arange(batch.size)


def _pc(tok: np.ndarray) -> np.ndarray:
    """Pitch class relative to the tonic (garbage for rests/holds: mask them)."""
    return (tok - tokens.TONIC_TOKEN) % 12


def _in_scale(batch: MelodyBatch, tok: np.ndarray) -> np.ndarray:
    return batch.scale_mask[_rows(batch), _pc(tok)] > 0


def _window(batch: MelodyBatch, actions: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The last ``width`` tokens of each melody with the action appended: int64 ``[B, width]``
    (oldest first) and a validity mask (False before the melody's start)."""
    src = batch.step[:, None] - np.arange(width - 1, 0, -1)[None, :]
    ok = src >= 0
    prev = batch.tokens[_rows(batch)[:, None], np.maximum(src, 0)]
    win = np.concatenate([np.where(ok, prev, -1), actions[:, None]], axis=1)
    return win, np.concatenate([ok, np.ones((batch.size, 1), bool)], axis=1)


def _distinct_pitches(win: np.ndarray) -> np.ndarray:
    """Distinct pitch tokens per row of ``win`` (entries < 2 ignored)."""
    srt = np.sort(np.where(win >= tokens.FIRST_PITCH, win, -1), axis=1)
    return ((srt[:, 1:] != srt[:, :-1]) & (srt[:, 1:] >= 0)).sum(axis=1) + (srt[:, 0] >= 0)


def _is_last(batch: MelodyBatch) -> np.ndarray:
    return batch.step == batch.n_steps - 1


def _final_pitch(actions: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
    """The last pitch played once the action is appended (-1 if none)."""
    return np.where(actions >= tokens.FIRST_PITCH, actions, feats["last_pitch"])


# --------------------------------------------------------------------------- terms

@_builtin("key", "-1 for a pitch outside the scale")
def term_key(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
    out = (actions >= tokens.FIRST_PITCH) & ~_in_scale(batch, actions)
    return -out.astype(np.float32)


def _beat_value(batch: MelodyBatch, pitch: np.ndarray, beat: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Chord value of the pitch struck (token, or < 2 for none) at ``step`` of metrical strength
    ``beat`` (0-3), all ``[B, K]``: downbeat +-1, strong beat +-0.75, other beats +0.5 for a chord
    tone and 0 for a passing tone, off-beats 0; a bass on the downbeat: root +1, other chord tone
    +0.5, else -1."""
    rows = _rows(batch)[:, None]
    step = np.minimum(step, (batch.n_steps - 1)[:, None])
    pc = _pc(pitch)
    tone = batch.chord_mask[rows, step, pc] > 0
    weight = _BEAT_WEIGHT[beat]
    value = np.where(tone, weight, np.where(beat >= 2, -weight, 0.0))
    bass_down = (batch.role == tokens.ROLES.index("bass"))[:, None] & (beat == 3)
    root = pc == batch.chord_root[rows, step]
    value = np.where(bass_down, np.where(root, 1.0, np.where(tone, 0.5, -1.0)), value)
    return np.where(pitch >= tokens.FIRST_PITCH, value, 0.0)


#: Per bar, the chord term pays at most a downbeat's worth (+1): a melody with a chord tone on
#: the downbeat earns as much as a line of chord tones on every beat (which out-earned real
#: tunes when the cap was the strong beats' 1.75). Non-chord tones on strong beats still cost.
CHORD_CAP = 1.0


@_builtin("chord", "chord tones struck on beats (downbeat +-1, strong beat +-0.75, other beats +0.5), at most "
                   "+1 a bar (bass: root on the downbeat)")
def term_chord(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
    # Only notes struck on a beat count: when held notes counted, a line of whole-note chord
    # roots out-earned every real tune. The cap per bar makes a melody with chord tones where
    # it matters earn as much as a line of chord roots on every beat.
    _, pos, spb = _bar_of(batch)
    bar = _bar_tokens(batch, actions, 0, feats)                  # valid up to the action's column
    cols = np.arange(bar.shape[1])[None, :]
    beat = _BEATS[batch.ts_index[:, None], np.minimum(cols, (spb - 1)[:, None])]
    value = _beat_value(batch, bar, beat, (batch.step - pos)[:, None] + cols)
    total_before = np.where(cols < pos[:, None], value, 0.0).sum(axis=1)
    value_now = value[_rows(batch), pos]
    after = total_before + value_now
    return (np.minimum(after, CHORD_CAP) - np.minimum(total_before, CHORD_CAP)).astype(np.float32)


def _last_pitch_upto(batch: MelodyBatch, idx: np.ndarray) -> np.ndarray:
    """The last pitch token of each melody at or before step ``idx`` (-1 if none)."""
    cols = np.arange(batch.tokens.shape[1])[None, :]
    mask = (cols <= idx[:, None]) & (batch.tokens >= tokens.FIRST_PITCH)
    last = np.where(mask, cols, -1).max(axis=1)
    return np.where(last >= 0, batch.tokens[_rows(batch), np.maximum(last, 0)], -1)


@_builtin("cadence", "end on the tonic (or another stable tone) and hold it; tonic or chord root at phrase ends")
def term_cadence(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
    # No reward for the first note: paying for a tonic start made 99.6% of clips open on it,
    # where real tunes do 39.5% of the time (Essen openings: 23%).
    rows = _rows(batch)
    step = batch.step
    final = _final_pitch(actions, feats)
    cur = np.minimum(step, batch.n_steps - 1)
    root = batch.chord_root[rows, cur]
    has = final >= 0
    tonic = has & (_pc(final) == 0)
    on_root = has & (_pc(final) == root)
    # the third or fifth above the tonic (Essen 8-bar openings end on the tonic 34%, the
    # fifth 23%, the third 17%; whole tunes on the tonic 82%)
    triad = has & ((_pc(final) == 7) | ((_pc(final) == 3) | (_pc(final) == 4)) & _in_scale(batch, final))
    last = _is_last(batch)
    lasts = (actions == tokens.HOLD) & (feats["silence"] == 0) & (feats["last_pitch"] >= 0)
    stable = tonic | on_root | triad
    end = np.where(tonic, 1.0, np.where(stable, 0.5, -0.5)) + np.where(stable & lasts, 0.5, 0.0)
    steps_per_bar = batch.steps_per_bar
    bar_end = (step % steps_per_bar == steps_per_bar - 1) & ((step // steps_per_bar) % 4 == 3) & ~last
    phrase = np.where(tonic | on_root, 0.5, 0.0)
    return np.where(last, end, np.where(bar_end, phrase, 0.0)).astype(np.float32)


@_builtin("leap", "a leap doubled -1, a leap back with 6 or fewer steps between -0.5 (ping-pong), a leap left "
                  "pending at the end -0.5")
def term_leap(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
    started = batch.step > 0
    outcome, new_dir, _, _ = leap_update(feats, actions, started)
    last, d = feats["last_pitch"], feats["leap_dir"]
    iv = np.where((actions >= tokens.FIRST_PITCH) & started & (last >= 0), actions - last, 0)
    quick_back = (np.abs(iv) >= LEAP_SEMITONES) & (d != 0) & (np.sign(iv) != d) & \
        (feats["since_leap"] <= LEAP_BACK_MIN_STEPS)
    pending_end = _is_last(batch) & (new_dir != 0)
    return (np.minimum(outcome, 0) - 0.5 * quick_back - 0.5 * pending_end).astype(np.float32)


def excessive_repetition(batch: MelodyBatch, actions: np.ndarray) -> np.ndarray:
    """RL Tuner's "excessively repeated" test for appending ``actions``: bool ``[B]``.

    Count backwards over the melody while tokens equal the action or are rests/holds:
    flagged when the action is a rest and more than 1 copy was seen, or more than 4
    copies with no rest or hold between, or more than 6 with rests or holds between.
    """
    m = int(batch.step.max(initial=0))
    if m == 0:
        return np.zeros(batch.size, bool)
    seq = batch.tokens[:, :m]
    a = actions[:, None]
    idx = np.arange(m)[None, :]
    valid = idx < batch.step[:, None]
    same = seq == a
    inset = same | (seq <= tokens.HOLD)
    stop = np.where(valid & ~inset, idx, -1).max(axis=1)
    seg = valid & (idx > stop[:, None])
    count = (seg & same).sum(axis=1)
    gaps = (seg & ~same).any(axis=1)  # a rest or hold that is not the action itself
    return ((actions == tokens.REST) & (count > 1)) | (~gaps & (count > 4)) | (gaps & (count > 6))


@_builtin("repetition", "-1 when RL Tuner's excessive-repetition rule fires for a pitch; for a rest or a hold, "
                        "only when it stretches a silence or a note past a whole bar")
def term_repetition(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
    # RL Tuner's rule also flags a hold after 4 holds and a rest after 2 rests, which charges
    # every half note, every rest of 3 steps (the corpus writes rests as rest tokens) and the
    # long cadence notes: 11 flags an 8-bar Essen opening. A hold or a rest lengthens a note or
    # a silence; it repeats too much only once that passes a bar.
    pitch = actions >= tokens.FIRST_PITCH
    silent = _silent(actions, feats)
    sounding = (feats["silence"] == 0) & (feats["last_onset"] >= 0)
    length = np.where(silent, feats["silence"], batch.step - feats["last_onset"]) + 1
    too_long = ~pitch & (silent | sounding) & (length > batch.steps_per_bar)
    return -np.where(pitch, excessive_repetition(batch, actions), too_long).astype(np.float32)


def autocorrelation(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
    """Autocorrelation at lags 1, 2, 3 of each token sequence with the action appended.

    RL Tuner's definition: ``sum(x[t+lag] * x[t]) / n / var(x)`` with ``x`` mean-centred
    over the ``n`` tokens. Returns float64 ``[B, 3]``, NaN where the variance is 0.
    """
    rows = _rows(batch)[:, None]
    t = batch.step
    n = (t + 1).astype(np.float64)
    a = actions.astype(np.float64)
    s = feats["tok_sum"] + a
    mean = s / n
    var = (feats["tok_sq"] + a * a) / n - mean * mean
    last_col = batch.tokens.shape[1] - 1
    # x[t], x[t-1], x[t-2], x[t-3] of the new sequence (0 before its start)
    back = t[:, None] - np.arange(4)[None, :]
    recent = np.where(back >= 0, batch.tokens[rows, np.clip(back, 0, last_col)], 0).astype(np.float64)
    recent[:, 0] = a
    # x[0], x[1], x[2] of the new sequence (0 past its end)
    head_pos = np.arange(3)[None, :]
    head = np.where(head_pos < t[:, None], batch.tokens[:, :3], 0).astype(np.float64)
    head = np.where(head_pos == t[:, None], a[:, None], head)
    lags = np.arange(1, 4)[None, :]
    prod = np.stack([feats["lag1"], feats["lag2"], feats["lag3"]], axis=1) + a[:, None] * recent[:, 1:]
    first = np.cumsum(head, axis=1)          # sum of x[0..lag-1]
    last = np.cumsum(recent[:, :3], axis=1)  # sum of x[n-lag..n-1]
    nn, mm, ss = n[:, None], mean[:, None], s[:, None]
    cov = prod - mm * ((ss - first) + (ss - last)) + np.maximum(nn - lags, 0) * mm * mm
    cov = np.where(nn > lags, cov, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var[:, None] > 1e-9, cov / nn / var[:, None], np.nan)


@_builtin("autocorr", "-sum of |autocorrelation| above 0.15 at lags 1-3")
def term_autocorr(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
    rho = np.abs(autocorrelation(batch, actions, feats))
    over = np.where(rho > AUTOCORR_LIMIT, rho, 0.0)  # NaN compares False
    return -over.sum(axis=1).astype(np.float32)


def _motif(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray] | None = None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(is motif bool [B], distinct pitches [B], window int64 [B, 8]); memoised in ``feats``
    (a per-call copy made by :class:`RewardFunction`) so motif and repeat_motif share it."""
    if feats is not None and "_motif" in feats:
        return feats["_motif"]  # type: ignore[return-value]
    win, _ = _window(batch, actions, MOTIF_LEN)
    distinct = _distinct_pitches(win)
    full = batch.step + 1 >= MOTIF_LEN
    out = (full & (distinct >= MOTIF_MIN_PITCHES), distinct, win)
    if feats is not None:
        feats["_motif"] = out  # type: ignore[assignment]
    return out


def _window_end(batch: MelodyBatch) -> np.ndarray:
    """bool ``[B]``: the step being written closes one of the melody's 8-step windows (steps 0-7, 8-15, ...)."""
    return ((batch.step + 1) % MOTIF_LEN == 0) & (batch.step < batch.n_steps)


@_builtin("motif", "once per 8-step window: 1 (+0.1 per pitch beyond 3) when it holds >= 3 distinct pitches")
def term_motif(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
    is_motif, distinct, _ = _motif(batch, actions, feats)
    value = np.where(is_motif, 1.0 + 0.1 * (distinct - MOTIF_MIN_PITCHES), 0.0)
    return np.where(_window_end(batch), value, 0.0).astype(np.float32)


def repeated_motif(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """RL Tuner's repeated motif: the 8-token window ending with the action is a motif and
    occurs token for token before the window. Returns (bool ``[B]``, distinct pitches ``[B]``)."""
    found, distinct = _motif_copies(batch, actions, feats)
    return found > 0, distinct


def _motif_copies(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(earlier copies int ``[B]`` of the 8-token motif ending with the action, 0 where the
    window is no motif; distinct pitches ``[B]``)."""
    is_motif, distinct, win = _motif(batch, actions, feats)
    found = np.zeros(batch.size, np.int64)
    m = int(batch.step.max(initial=0)) + 1 - MOTIF_LEN  # length of the longest prefix before the window
    if m >= MOTIF_LEN and is_motif.any():
        views = sliding_window_view(batch.tokens[:, :m], MOTIF_LEN, axis=1)  # [B, m - 7, 8]
        hit = (views == win[:, None, :]).all(axis=2)
        start_ok = np.arange(views.shape[1])[None, :] + MOTIF_LEN <= (batch.step + 1 - MOTIF_LEN)[:, None]
        found = (hit & start_ok).sum(axis=1)
    return np.where(is_motif, found, 0), distinct


@_builtin("repeat_motif", "once per 8-step window: 1 (+0.25 per pitch beyond 3) when its motif restates an "
                          "earlier one for the first time (a third statement earns nothing)")
def term_repeat_motif(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
    out = np.zeros(batch.size, np.float32)
    rows = np.flatnonzero(_window_end(batch))
    if rows.size:
        sub = batch.take(rows)
        copies, distinct = _motif_copies(sub, actions[rows])
        out[rows] = np.where(copies == 1, 1.0 + 0.25 * (distinct - MOTIF_MIN_PITCHES), 0.0)
    return out


# semitones 0..12 -> reward; wider than an octave: _WIDE. Penalties only: a bonus per note
# would pay for playing more notes (a 16th-note scale run maxed it), and which consonant
# intervals a style favours is the corpus prior's business.
_INTERVAL_REWARD = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -0.5, 0.0, -0.25, -0.25, -1.5, -1.5, 0.0], np.float32)
_WIDE = -2.0


@_builtin("intervals", "awkward melodic intervals: tritone -0.5, sixths -0.25, sevenths -1.5, wider than an "
                       "octave -2 (steps, thirds, fourths, fifths and octaves 0)")
def term_intervals(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
    last = feats["last_pitch"]
    note = (actions >= tokens.FIRST_PITCH) & (last >= 0)
    iv = np.abs(actions - last)
    value = np.where(iv > 12, _WIDE, _INTERVAL_REWARD[np.minimum(iv, 12)])
    return np.where(note, value, 0.0).astype(np.float32)


@_builtin("range", "unique highest and lowest note at the end; no span beyond 19 semitones")
def term_range(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
    a = actions
    is_pitch = a >= tokens.FIRST_PITCH
    mx, mn = feats["max_tok"], feats["min_tok"]
    new_mx = np.where(is_pitch & (a > mx), a, mx)
    new_mn = np.where(is_pitch & ((mn < 0) | (a < mn)), a, mn)
    mx_count = np.where(is_pitch & (a > mx), 1, feats["max_count"] + (a == mx))
    mn_count = np.where(is_pitch & ((mn < 0) | (a < mn)), 1, feats["min_count"] + (a == mn))
    seen = new_mx >= 0
    end = (seen & (mx_count == 1)).astype(np.float32) + (seen & (mn_count == 1))
    stretch = is_pitch & (mn >= 0) & (new_mx - new_mn > RANGE_LIMIT) & ((a > mx) | (a < mn))
    return (np.where(_is_last(batch), end, 0.0) - 0.5 * stretch).astype(np.float32)


@_builtin("contour", "avoid long runs in one direction; an arch-shaped melody at the end")
def term_contour(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
    new_dir, new_len = contour_update(feats, actions)
    moved = (actions >= tokens.FIRST_PITCH) & (feats["last_pitch"] >= 0) & (actions != feats["last_pitch"])
    long_run = moved & (new_dir == feats["run_dir"]) & (new_len >= 5)
    a, mx = actions, feats["max_tok"]
    peak = np.where((a >= tokens.FIRST_PITCH) & (a > mx), batch.step, feats["max_pos"])
    n = batch.n_steps
    arch = (peak >= 0) & (4 * peak >= n) & (4 * peak < 3 * n)
    return (-0.5 * long_run + np.where(_is_last(batch) & arch, 1.0, 0.0)).astype(np.float32)


def _density_of(notes: np.ndarray, steps_per_bar: np.ndarray) -> np.ndarray:
    quarter = steps_per_bar / 4
    return np.clip((notes - quarter) / (0.75 * quarter), -1.0, 1.0)


@_builtin("density", "a bar's (notes - 4) / 3, clipped to [-1, 1] (16 steps; scaled to the metre), paid as it "
                     "accrues: -1 at the bar's start, +1/3 a note up to 7; positive weight: busier")
def term_density(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
    # Bounded a bar: paid per step, the dial paid 8th-note runs (and, turned down, silence) more
    # than any real tune as soon as a mood moved it by 1. Paid as the bar's count grows (the
    # increments of the clipped value) so the signal stays as immediate as a per-note one.
    _, pos, spb = _bar_of(batch)
    bar = _bar_tokens(batch, actions, 0, feats)
    struck = bar >= tokens.FIRST_PITCH
    before = (struck & (np.arange(bar.shape[1])[None, :] < pos[:, None])).sum(axis=1)
    after = before + (actions >= tokens.FIRST_PITCH)
    start = np.where(pos > 0, _density_of(before, spb), 0.0)
    return (_density_of(after, spb) - start).astype(np.float32)


def _silent(actions: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
    """bool ``[B]``: the action is a silent step (a rest, or a hold while nothing sounds)."""
    return (actions == tokens.REST) | ((actions == tokens.HOLD) & ((feats["silence"] > 0) | (feats["last_pitch"] < 0)))


#: Silent steps a bar of 16 may hold and still count as breathing (rests term), scaled to the metre.
BREATH_STEPS = (2, 8)


@_builtin("rests", "breathing space, judged at each bar's end: +1 for a bar with 2-8 silent steps (of 16, scaled "
                   "to the metre); -0.5 for every silent step once a silence passes 8 steps")
def term_rests(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
    # Paid once a bar, not per silent step: per step, "note, rest, rest, rest" over and over maxed it.
    silent = _silent(actions, feats)
    long = silent & (feats["silence"] + 1 > 8)
    end = _bar_end(batch)
    value = -0.5 * long
    if end.any():
        cur = _bar_tokens(batch, actions, 0, feats)
        spb = batch.steps_per_bar
        # silent steps in the bar: rests, and holds after a rest (or before the first note)
        n_silent = _silent_steps(cur, batch)
        lo, hi = (np.ceil(BREATH_STEPS[0] * spb / 16), np.floor(BREATH_STEPS[1] * spb / 16))
        value = value + np.where(end & (n_silent >= lo) & (n_silent <= hi), 1.0, 0.0)
    return value.astype(np.float32)


def _silent_steps(bar: np.ndarray, batch: MelodyBatch) -> np.ndarray:
    """Silent steps among a bar's tokens (int64 ``[B, W]``, -1 padding), the bar ending with the action."""
    _, pos, _ = _bar_of(batch)
    before = batch.step - pos - 1  # the step before the bar: does a note sound into the bar?
    sounding = (before >= 0) & _sounds_after(batch, before)
    count = np.zeros(batch.size, np.int64)
    for j in range(bar.shape[1]):
        tok = bar[:, j]
        sounding = np.where(tok >= tokens.FIRST_PITCH, True, np.where(tok == tokens.REST, False, sounding))
        count += (tok >= 0) & ~sounding
    return count


def _sounds_after(batch: MelodyBatch, idx: np.ndarray) -> np.ndarray:
    """bool ``[B]``: a note sounds after step ``idx`` of each melody (its last non-hold token up to
    ``idx`` is a pitch)."""
    cols = np.arange(batch.tokens.shape[1])[None, :]
    upto = cols <= idx[:, None]
    not_hold = upto & (batch.tokens != tokens.HOLD)
    last = np.where(not_hold, cols, -1).max(axis=1)
    tok = batch.tokens[_rows(batch), np.maximum(last, 0)]
    return (last >= 0) & (tok >= tokens.FIRST_PITCH)


@_builtin("register", "at each bar's end: the mean of (token - 19.5) / 12, clipped to [-1, 1], over the bar's "
                      "notes (positive weight: higher)")
def term_register(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
    # Once a bar, averaged: paid per note, a high register bought more notes (ambient's
    # optimum played six top-octave notes a bar).
    end = _bar_end(batch)
    if not end.any():
        return np.zeros(batch.size, np.float32)
    bar = _bar_tokens(batch, actions, 0, feats)
    struck = bar >= tokens.FIRST_PITCH
    height = np.where(struck, np.clip((bar - 19.5) / 12.0, -1.0, 1.0), 0.0).sum(axis=1)
    mean = height / np.maximum(struck.sum(axis=1), 1)
    return np.where(end, mean, 0.0).astype(np.float32)


@_builtin("prior", "log p(a|s) + log 38 under the corpus prior, floored at -10")
def term_prior_placeholder(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
    # The real computation needs the prior model, which the RewardFunction holds.
    return np.zeros(batch.size, np.float32)


# ---------------------------------------------------------------- structure terms
# They compare the step being written with the same step one, two or four bars back
# (what the observation's lookback segments show the network).

def _bar_of(batch: MelodyBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bar index, step within the bar, steps per bar) of the step being written."""
    step = np.minimum(batch.step, batch.n_steps - 1)
    spb = batch.steps_per_bar
    return step // spb, step % spb, spb


def _bar_tokens(batch: MelodyBatch, actions: np.ndarray, back: int, feats: dict | None = None) -> np.ndarray:
    """int64 ``[B, W]`` (W the longest bar): the tokens of the bar ``back`` bars before the one
    being written (0: that bar so far, the action in the step being written's column; later
    columns hold tokens of no meaning), meant for rows at a bar's last step. Columns past a
    row's bar length, and bars before the melody's start, hold -1. Memoised in ``feats`` (the
    per-call copy :class:`RewardFunction` hands the terms) when given."""
    key = f"_bar{back}"
    if feats is not None and key in feats:
        step, acts, out = feats[key]  # type: ignore[misc]
        if np.array_equal(step, batch.step) and np.array_equal(acts, actions):
            return out
    out = _bar_tokens_uncached(batch, actions, back)
    if feats is not None:
        feats[key] = (batch.step.copy(), np.array(actions, copy=True), out)  # type: ignore[assignment]
    return out


def _bar_tokens_uncached(batch: MelodyBatch, actions: np.ndarray, back: int) -> np.ndarray:
    _, pos, spb = _bar_of(batch)
    width = int(spb.max(initial=1))
    cols = np.arange(width)[None, :]
    src = (batch.step - pos - back * spb)[:, None] + cols
    ok = (cols < spb[:, None]) & (src >= 0)
    tok = batch.tokens[_rows(batch)[:, None], np.clip(src, 0, batch.tokens.shape[1] - 1)]
    if back == 0:
        tok = np.where(src == batch.step[:, None], actions[:, None], tok)
    return np.where(ok, tok, -1)


def _bar_end(batch: MelodyBatch, bars_back: int = 0) -> np.ndarray:
    """bool ``[B]``: the step being written ends a bar and ``bars_back`` whole bars lie before it."""
    bar, pos, spb = _bar_of(batch)
    return (pos == spb - 1) & (bar >= bars_back) & (batch.step < batch.n_steps)


def bar_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How much bar ``a`` restates bar ``b`` (int64 ``[B, W]`` tokens each): notes struck at the
    same step with the same pitch / the notes of the busier bar, float ``[B]`` in [0, 1]; 0 when
    neither bar strikes a note (silence restates nothing)."""
    on_a, on_b = a >= tokens.FIRST_PITCH, b >= tokens.FIRST_PITCH
    same = (on_a & (a == b)).sum(axis=1)
    most = np.maximum(on_a.sum(axis=1), on_b.sum(axis=1))
    return np.where(most > 0, same / np.maximum(most, 1), 0.0)


def rhythm_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Onset positions shared by bars ``a`` and ``b`` / onset positions of either (Jaccard),
    float ``[B]``; 0 when neither strikes a note."""
    on_a, on_b = a >= tokens.FIRST_PITCH, b >= tokens.FIRST_PITCH
    union = (on_a | on_b).sum(axis=1)
    return np.where(union > 0, (on_a & on_b).sum(axis=1) / np.maximum(union, 1), 0.0)


def _copies(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """bool ``[B]``: bar ``a`` copies bar ``b`` token for token and strikes at least one note."""
    return (a == b).all(axis=1) & (a >= tokens.FIRST_PITCH).any(axis=1) & (b >= 0).any(axis=1)


#: A bar restating this share of the notes of the bar one or two back (same step, same pitch)
#: is a repeat (bar_repeat) or an answer (phrase_return).
RESTATE = 0.5


def _last_two_bars(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray],
                   similarity: Callable[[np.ndarray, np.ndarray], np.ndarray]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """What a term judged at each bar's end against the bar one or two back reads: (the rows
    ending a bar, this bar's tokens, the bar one back, two back, the best ``similarity`` of this
    bar to either); None when no row ends a bar this step."""
    end = _bar_end(batch, 1)
    if not end.any():
        return None
    cur, b1, b2 = (_bar_tokens(batch, actions, k, feats) for k in (0, 1, 2))
    return end, cur, b1, b2, np.maximum(similarity(cur, b1), similarity(cur, b2))


@_builtin("bar_repeat", "riff, judged at each bar's end: restating the bar one or two back with variation +1, "
                        "copying it +0.5, a third copy in a row -1")
def term_bar_repeat(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
    bars = _last_two_bars(batch, actions, feats, bar_similarity)
    if bars is None:
        return np.zeros(batch.size, np.float32)
    end, cur, b1, b2, best = bars
    copy1, copy2 = _copies(cur, b1), _copies(cur, b2)
    # a third copy: the same bar for the third time in a row (lag 1), or a 2-bar riff's third time
    third = (copy1 & _copies(b1, b2)) | (copy2 & _copies(b2, _bar_tokens(batch, actions, 4, feats)))
    value = np.where(third, -1.0, np.where(copy1 | copy2, 0.5, np.where(best >= RESTATE, 1.0, 0.0)))
    return np.where(end, value, 0.0).astype(np.float32)


@_builtin("phrase_return", "statement and answer over 8-bar periods: bars 5-6 restate bars 1-2 (+1 each, -0.5 "
                           "if not); bars 7-8 end differently (-1 for a bar copied whole)")
def term_phrase_return(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
    bar, _, _ = _bar_of(batch)
    back = PHRASE_PERIOD // 2
    end = _bar_end(batch, back)
    if not end.any():
        return np.zeros(batch.size, np.float32)
    period = bar % PHRASE_PERIOD
    cur, old = _bar_tokens(batch, actions, 0, feats), _bar_tokens(batch, actions, back, feats)
    answer = (period == 4) | (period == 5)
    value = np.where(answer, np.where(bar_similarity(cur, old) >= RESTATE, 1.0, -0.5), 0.0)
    value = value - 1.0 * ((period >= 6) & _copies(cur, old))
    return np.where(end, value, 0.0).astype(np.float32)


@_builtin("rhythm_motif", "rhythm reuse, judged at each bar's end: a bar of 2 or more notes striking where the "
                          "bar one or two back struck (Jaccard >= 0.5) +0.5; one sharing under a quarter -0.25")
def term_rhythm_motif(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
    bars = _last_two_bars(batch, actions, feats, rhythm_similarity)
    if bars is None:
        return np.zeros(batch.size, np.float32)
    end, cur, _, _, best = bars
    notes = (cur >= tokens.FIRST_PITCH).sum(axis=1)
    value = np.where(notes >= 2, np.where(best >= 0.5, 0.5, np.where(best < 0.25, -0.25, 0.0)), 0.0)
    return np.where(end, value, 0.0).astype(np.float32)


@_builtin("phrase_cadence", "phrase ends (every 4th bar and the last) land and hold: a chord tone struck on the "
                            "half bar +1, a later onset -0.5, holding +0.25")
def term_phrase_cadence(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
    rows = _rows(batch)
    bar, pos, spb = _bar_of(batch)
    n_bars = batch.n_steps // spb
    end_bar = (bar % 4 == 3) | (bar == n_bars - 1)
    half = spb // 2
    second = end_bar & (pos >= half)
    onset = actions >= tokens.FIRST_PITCH
    step = np.minimum(batch.step, batch.n_steps - 1)
    tone = batch.chord_mask[rows, step, _pc(actions)] > 0
    holding = (actions == tokens.HOLD) & (feats["silence"] == 0) & (feats["last_pitch"] >= 0)
    value = np.where(onset, np.where((pos == half) & tone, 1.0, -0.5), np.where(holding, 0.25, 0.0))
    return np.where(second, value, 0.0).astype(np.float32)


@_builtin("crowding", "-1 for a note beyond 6 in a bar of 16 steps (scaled to the metre): a soft cap on density")
def term_crowding(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
    _, pos, spb = _bar_of(batch)
    cap = np.ceil(CROWDING_NOTES * spb / 16)
    # notes struck earlier in this bar: the last ``pos`` steps (at most a bar, not the whole melody)
    lags = np.arange(1, int(spb.max(initial=1)))[None, :]
    src = batch.step[:, None] - lags
    in_bar = lags <= pos[:, None]
    count = (in_bar & (batch.tokens[_rows(batch)[:, None], np.maximum(src, 0)] >= tokens.FIRST_PITCH)).sum(axis=1)
    return -((actions >= tokens.FIRST_PITCH) & (count >= cap)).astype(np.float32)


#: A bar (not the last) striking fewer different pitches than this is charged by the pace term.
PACE_MIN_PITCHES = 2


@_builtin("pace", "-1 at the end of a bar, the last excepted, that strikes fewer than 2 different pitches (one "
                  "held or repeated note, or silence, is no melody; 7% of Essen's bars)")
def term_pace(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
    end = _bar_end(batch) & ~_is_last(batch)
    if not end.any():
        return np.zeros(batch.size, np.float32)
    pitches = _distinct_pitches(_bar_tokens(batch, actions, 0, feats))
    return -(end & (pitches < PACE_MIN_PITCHES)).astype(np.float32)


@_builtin("note_length", "when a note ends: -1 for a 16th, -0.25 for an 8th (quarters and longer 0)")
def term_note_length(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
    # Penalties only: a bonus per quarter note paid for filling every bar with quarters (a line
    # of chord roots in quarters out-earned real tunes); pace and repetition stop the other end.
    sounding = (feats["silence"] == 0) & (feats["last_onset"] >= 0)
    ends_now = sounding & (actions != tokens.HOLD)        # a new onset or a rest ends the note
    length = batch.step - feats["last_onset"]
    value = np.where(ends_now, _length_value(length), 0.0)
    # the last step ends whatever sounds then: a new note of one step, or the held note
    last = _is_last(batch)
    held = sounding & (actions == tokens.HOLD)
    final = np.where(actions >= tokens.FIRST_PITCH, _length_value(np.ones_like(length)),
                     np.where(held, _length_value(length + 1), 0.0))
    return (value + np.where(last, final, 0.0)).astype(np.float32)


def _length_value(length: np.ndarray) -> np.ndarray:
    return np.where(length == 1, -1.0, np.where(length == 2, -0.25, 0.0))


#: Range in semitones past which the span term charges a note (an octave: a chorale soprano's).
SPAN_LIMIT = 12


@_builtin("span", "-1 for a note that stretches the melody's range past an octave")
def term_span(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
    a, mx, mn = actions, feats["max_tok"], feats["min_tok"]
    is_pitch = a >= tokens.FIRST_PITCH
    new_mx = np.where(is_pitch & (a > mx), a, mx)
    new_mn = np.where(is_pitch & ((mn < 0) | (a < mn)), a, mn)
    stretch = is_pitch & (mn >= 0) & (new_mx - new_mn > SPAN_LIMIT) & ((a > mx) | (a < mn))
    return -stretch.astype(np.float32)


@_builtin("steps", "stepwise motion, judged at each bar's end: +1 for a bar where a note moves by a step (1-2 "
                   "semitones) from the one before (86% of Essen's bars, 95% of Bach's soprano bars)")
def term_steps(batch: MelodyBatch, actions: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
    # Paid once a bar, so a scale run earns no more than a real tune; a line of chord tones
    # (arpeggios, roots) earns nothing: with the chord term capped, they out-earned real tunes.
    end = _bar_end(batch)
    if not end.any():
        return np.zeros(batch.size, np.float32)
    _, pos, _ = _bar_of(batch)
    bar = _bar_tokens(batch, actions, 0, feats)
    before = batch.step - pos - 1
    last = np.where(before >= 0, _last_pitch_upto(batch, before), -1)
    step = np.zeros(batch.size, bool)
    for j in range(bar.shape[1]):
        tok = bar[:, j]
        note = tok >= tokens.FIRST_PITCH
        step |= note & (last >= 0) & (np.abs(tok - last) >= 1) & (np.abs(tok - last) <= 2)
        last = np.where(note, tok, last)
    return (end & step).astype(np.float32)


if tuple(_REGISTRY) != styles.BUILTIN_TERMS:  # pragma: no cover - guards edits to this module
    raise RuntimeError(f"built-in reward terms {tuple(_REGISTRY)} differ from styles.BUILTIN_TERMS")


# ------------------------------------------------------------------ reward function

class RewardFunction:
    """The weighted sum of a fixed, ordered list of terms.

    ``terms`` are names from :func:`available_terms` (their order is the order of the
    style weights); ``prior`` is an object with ``log_probs(obs_no_style)`` (e.g.
    ``engine.corpus.prior.PriorModel``) or None, in which case the ``prior`` term is 0.
    ``theory_scale`` multiplies every term except ``prior`` (training uses 2, RL Tuner's
    1/c with c = 0.5): the prior keeps its natural scale, so softmax(Q) at temperature 1
    stays close to the corpus where a style asks for it, while the music-theory rules
    get gaps wide enough to be obeyed. ``prior_by_kl``: the prior is the KL reference of
    :mod:`engine.learn.kl_train`, so the ``prior`` term is 0 without a warning.
    """

    def __init__(self, terms: Sequence[str] = styles.BUILTIN_TERMS, prior: Prior | Any | None = None,
                 theory_scale: float = 1.0, prior_by_kl: bool = False) -> None:
        terms = tuple(terms)
        if not terms:
            raise RewardError("a reward needs at least one term: available are " + ", ".join(available_terms()))
        if len(set(terms)) != len(terms):
            dup = sorted({t for t in terms if terms.count(t) > 1})
            raise RewardError(f"reward terms {dup} are listed twice in {list(terms)}")
        self._fns = [_get(t).fn for t in terms]
        self.terms: tuple[str, ...] = terms
        self.prior = prior
        self._prior_col = terms.index("prior") if "prior" in terms else -1
        if not 0.0 < theory_scale <= 100.0:
            raise RewardError(f"theory_scale {theory_scale!r} is out of range (allowed: 0 < scale <= 100)")
        self.theory_scale = float(theory_scale)
        self._scale = None if theory_scale == 1.0 else \
            np.array([1.0 if t == "prior" else theory_scale for t in terms], np.float32)
        # Under KL control the prior is the reference policy, not a reward term: its term is 0 by design.
        self._warned = prior_by_kl

    def __repr__(self) -> str:
        return f"RewardFunction(terms={self.terms!r}, prior={type(self.prior).__name__ if self.prior else None})"

    def raw(self, batch: MelodyBatch, actions: np.ndarray, obs: np.ndarray | None = None,
            prior_log_probs: np.ndarray | None = None) -> np.ndarray:
        """Raw per-term rewards float32 ``[B, S]`` for appending ``actions`` (int ``[B]``).

        ``obs`` (optional) is ``observe(batch)``, reused by the prior term if given;
        ``prior_log_probs`` (optional, float32 ``[B, 38]``) is the prior's ``log_probs`` of
        those observations when the caller has them already (training computes them once a
        step for its network and the reward).
        """
        actions = np.asarray(actions, np.int64).reshape(-1)
        b = batch.size
        if actions.shape[0] != b:
            raise RewardError(f"got {actions.shape[0]} actions for a batch of {b} melodies")
        if b and (actions.min() < 0 or actions.max() >= tokens.N_ACTIONS):
            bad = actions[(actions < 0) | (actions >= tokens.N_ACTIONS)][0]
            raise RewardError(f"action {int(bad)} is out of range: allowed are 0-{tokens.N_ACTIONS - 1} "
                              "(0 rest, 1 hold, 2-37 pitches)")
        feats = dict(batch.features(reward=True))  # a per-call copy: terms may memoise shared work in it
        out = np.zeros((b, len(self.terms)), np.float32)
        for j, (name, fn) in enumerate(zip(self.terms, self._fns)):
            if j == self._prior_col:
                out[:, j] = self._prior(batch, actions, obs, prior_log_probs)
                continue
            value = np.asarray(fn(batch, actions, feats), dtype=np.float32)
            if value.shape != (b,):
                raise RewardError(f"reward term {name!r} returned shape {value.shape}, expected ({b},)")
            if not np.isfinite(value).all():
                raise RewardError(f"reward term {name!r} returned a non-finite value: terms must return finite floats")
            out[:, j] = value
        return out

    def _prior(self, batch: MelodyBatch, actions: np.ndarray, obs: np.ndarray | None,
               given: np.ndarray | None) -> np.ndarray:
        if self.prior is None:
            if not self._warned:
                log.warning("no corpus prior loaded: the 'prior' reward term is 0 (train one with `qriff corpus prior`)")
                self._warned = True
            return np.zeros(batch.size, np.float32)
        if given is not None:
            lp = np.asarray(given, np.float32)
        else:
            if obs is None:
                obs = observe(batch)
            lp = np.asarray(self.prior.log_probs(obs[:, :obs_dim(0)]), np.float32)
        if lp.shape != (batch.size, tokens.N_ACTIONS):
            raise RewardError(f"prior log-probs have shape {lp.shape}, expected ({batch.size}, {tokens.N_ACTIONS})")
        value = lp[np.arange(batch.size), actions] + np.float32(_LOG_N_ACTIONS)
        return np.maximum(value, np.float32(PRIOR_FLOOR))

    def __call__(self, batch: MelodyBatch, actions: np.ndarray, weights: np.ndarray,
                 obs: np.ndarray | None = None,
                 prior_log_probs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Reward for appending ``actions[b]`` to row ``b`` (``batch`` not yet appended).

        ``weights``: float32 ``[B, S]`` raw style weights (not the /5 scaled observation
        vector). Returns total float32 ``[B]`` = ``sum_s weights * theory_scale_s * raw``
        (the scale is 1 for ``prior``) and raw per-term float32 ``[B, S]``. ``obs`` and
        ``prior_log_probs``: see :meth:`raw`.
        """
        weights = np.asarray(weights, np.float32)
        if weights.shape != (batch.size, len(self.terms)):
            raise RewardError(f"weights have shape {weights.shape}, expected ({batch.size}, {len(self.terms)}) "
                              f"for terms {', '.join(self.terms)}")
        raw = self.raw(batch, actions, obs, prior_log_probs)
        weighted = raw * weights
        if self._scale is not None:
            weighted *= self._scale
        return weighted.sum(axis=1, dtype=np.float32), raw

    def score(self, context: MelodyContext, seq: Sequence[int] | np.ndarray,
              weights: dict[str, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Score a whole melody step by step: (total float32 ``[n]``, raw float32 ``[n, S]``).

        ``seq`` holds ``context.n_steps`` tokens; ``weights`` maps terms to weights
        (missing terms 0; default: all 1).
        """
        seq = np.asarray(seq, np.int64).reshape(-1)
        if seq.shape[0] != context.n_steps:
            raise RewardError(f"melody has {seq.shape[0]} tokens but its context {context.n_steps} steps")
        w = np.ones(len(self.terms), np.float32) if weights is None else \
            np.array([weights.get(t, 0.0) for t in self.terms], np.float32)
        batch = MelodyBatch.create([context])
        totals, raws = [], []
        for tok in seq:
            a = np.array([tok], np.int64)
            total, raw = self(batch, a, w[None, :])
            totals.append(total[0])
            raws.append(raw[0])
            batch.append(a)
        return np.array(totals, np.float32), np.array(raws, np.float32).reshape(len(seq), len(self.terms))


    def score_batch(self, contexts: Sequence[MelodyContext], seqs: Sequence[Sequence[int] | np.ndarray]
                    ) -> np.ndarray:
        """Raw rewards of whole melodies, scored together: float32 ``[N, T, S]``.

        ``seqs[i]`` holds ``contexts[i].n_steps`` tokens; ``T`` is the longest melody and steps
        past a melody's end are 0. The episode return under style weights ``w`` (``[S]``, raw
        weights as in :meth:`__call__`) is ``(raw.sum(axis=1) * w).sum(-1) * theory_scale``
        (times 1 for ``prior``).
        """
        if len(contexts) != len(seqs):
            raise RewardError(f"got {len(seqs)} melodies for {len(contexts)} contexts: give one melody per context")
        arrs = [np.asarray(s, np.int64).reshape(-1) for s in seqs]
        for c, a in zip(contexts, arrs):
            if a.shape[0] != c.n_steps:
                raise RewardError(f"melody has {a.shape[0]} tokens but its context {c.n_steps} steps")
        batch = MelodyBatch.create(list(contexts))
        t_max = batch.tokens.shape[1]
        padded = np.full((len(arrs), t_max), tokens.HOLD, np.int64)
        for i, a in enumerate(arrs):
            padded[i, :len(a)] = a
        out = np.zeros((len(arrs), t_max, len(self.terms)), np.float32)
        for t in range(t_max):
            active = batch.step < batch.n_steps
            out[:, t] = np.where(active[:, None], self.raw(batch, padded[:, t]), 0.0)
            batch.append(padded[:, t], active)
        return out
