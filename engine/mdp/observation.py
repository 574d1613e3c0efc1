"""The observation: one pure numpy function shared by training and the runtime policy.

:func:`observe` turns a batch of partial melodies plus their musical context
(:class:`MelodyBatch`) into a float32 matrix ``[batch, D]``. Everything in it is
relative to the tonic, so one network plays every key. The environment calls it while
training and :class:`engine.runtime.policy.Policy` calls it under onnxruntime; the ONNX model
stores :data:`OBS_VERSION` and :func:`layout` and a mismatch is refused.

Segments (name: size) in order, see :func:`layout`:

* ``history``: the last 16 tokens, one-hot over the 38 actions, newest last (16 x 38);
  steps before the melody starts are all zero.
* ``last_pitch``: the last sounding pitch token, one-hot over 36 pitches, plus a
  "no pitch yet" flag (37).
* ``note_age``: steps since the last onset / 16, clipped to 1 (1).
* ``last_interval``: the last melodic interval in semitones clipped to +-12, one-hot,
  plus "none" (26); ``pending_leap``: the last interval was a leap of a fifth or more,
  up / down (2).
* ``bar_pos``: the step within the bar, one-hot (16); ``beat``: metrical strength
  0-3, one-hot (4).
* ``phrase``: bar index modulo 8, one-hot (8: where in a 4-bar phrase and in an 8-bar
  period of statement and answer); ``edges``: first step, last bar, last step (3).
* ``steps_left``: min(steps left, 16) one-hot (17) and the fraction of the clip done (1).
* ``scale``: 12 flags relative to the tonic.
* ``chord``: chord tones (12), chord root one-hot (12) and the next bar's chord tones
  (12), relative to the tonic.
* ``role``: one-hot over :data:`engine.music.tokens.ROLES` (2).
* ``metre``: one-hot over the supported time signatures (4).
* ``stats``: highest and lowest pitch so far (/37), whether each occurred only once,
  onset density, rest share, hold share, distinct pitches in the last 8 steps / 8 (8).
* ``lookback``: the tokens 1, 2 and 4 bars back at the step being chosen, one-hot over
  the 38 actions each (zeros where that lies before the melody's start), as Magenta's
  Lookback RNN gives its network (3 x 38): playing them repeats the bar; 4 bars back
  is the phrase to answer.
* ``repeating``: for 1, 2 and 4 bars back, how many of the newest steps (up to 16,
  /16) equal the steps that many bars before them (the melody is repeating now); whether
  that lookback exists yet (3 + 3); and for 1 and 2 bars back, the same run counted on
  onsets only (the rhythm repeats) (2).
* ``style``: the style weights / 5 in the model's term order (n_terms).

Speed: everything from ``bar_pos`` to ``metre`` depends only on the context and the
step index, so :class:`MelodyBatch` tabulates it once per row (:meth:`MelodyBatch.context_table`).
The facts about the melody so far (:func:`melody_features`) are kept up to date by
:meth:`MelodyBatch.append` in O(batch) work a step instead of rescanning the melody;
writing ``tokens``/``step`` directly is still allowed (the cache notices the changed
``step`` and rebuilds). Either way the output is the same as computing every segment
from scratch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.base.errors import EngineError
from engine.music import limits, theory, tokens

OBS_VERSION = 2
HISTORY = 16
#: Lookback distances in bars: the tokens this many bars back at the step being chosen.
LOOKBACK_BARS = (1, 2, 4)
#: Lookback distances whose onset pattern (rhythm) is compared too.
RHYTHM_LOOKBACK_BARS = (1, 2)
_TS_LIST = tuple(theory.TIME_SIGNATURES)

#: A melodic interval of this many semitones or more is a leap (RL Tuner: a fifth).
LEAP_SEMITONES = 7
#: Leaping back resolves a leap only when more than this many steps lie between the two
#: leaps (RL Tuner's ``steps_between_leaps``; ``engine.evaluation.metrics`` counts the same).
LEAP_BACK_MIN_STEPS = 6
#: Context tables larger than this many float32 cells are not built (rows are then
#: computed step by step, with the same result).
_MAX_TABLE_CELLS = 32_000_000


def layout(n_style_terms: int) -> list[tuple[str, int]]:
    """(segment name, width) pairs in observation order."""
    return [
        ("history", HISTORY * tokens.N_ACTIONS), ("last_pitch", tokens.N_PITCHES + 1), ("note_age", 1),
        ("last_interval", 26), ("pending_leap", 2), ("bar_pos", theory.MAX_STEPS_PER_BAR), ("beat", 4),
        ("phrase", 8), ("edges", 3), ("steps_left", 18), ("scale", 12), ("chord", 36),
        ("role", len(tokens.ROLES)), ("metre", len(_TS_LIST)), ("stats", 8),
        ("lookback", len(LOOKBACK_BARS) * tokens.N_ACTIONS),
        ("repeating", 2 * len(LOOKBACK_BARS) + len(RHYTHM_LOOKBACK_BARS)), ("style", n_style_terms),
    ]


def obs_dim(n_style_terms: int) -> int:
    """Width D of the observation for a model with ``n_style_terms`` style terms."""
    return sum(w for _, w in layout(n_style_terms))


def layout_string(n_style_terms: int) -> str:
    """Compact layout description stored in ONNX metadata, e.g. ``history:608,...``."""
    return ",".join(f"{n}:{w}" for n, w in layout(n_style_terms))


def _offsets() -> dict[str, int]:
    out, col = {}, 0
    for name, width in layout(0):
        out[name] = col
        col += width
    return out


_OFF = _offsets()
_OBS_BASE = obs_dim(0)
#: Columns [_CTX_START, _CTX_END) hold the segments that depend only on context and step.
_CTX_START = _OFF["bar_pos"]
_CTX_END = _OFF["stats"]
_CTX_WIDTH = _CTX_END - _CTX_START


# ------------------------------------------------------------------ melody features

#: Features :func:`observe` needs; the rest are only for rewards.
_OBS_FEATURES = ("last_pitch", "prev_pitch", "last_onset", "max_tok", "min_tok", "max_count", "min_count",
                 "n_onsets", "n_rests", "n_holds")
_REWARD_INT_FEATURES = ("max_pos", "silence", "leap_dir", "leapt_from", "since_leap", "run_dir", "run_len")
_MINUS_ONE = ("last_pitch", "prev_pitch", "last_onset", "max_tok", "min_tok", "max_pos", "leapt_from")
_FLOAT_FEATURES = ("tok_sum", "tok_sq", "lag1", "lag2", "lag3")
_LAG123 = np.arange(1, 4)[None, :]


def empty_features(size: int, reward: bool = True) -> dict[str, np.ndarray]:
    """Features of ``size`` empty melodies (see :func:`melody_features` for the keys)."""
    keys = _OBS_FEATURES + (_REWARD_INT_FEATURES if reward else ())
    feats = {k: np.full(size, -1 if k in _MINUS_ONE else 0, np.int64) for k in keys}
    if reward:
        feats.update({k: np.zeros(size, np.float64) for k in _FLOAT_FEATURES})
    return feats


def leap_update(feats: dict[str, np.ndarray], actions: np.ndarray, started: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """RL Tuner's leap bookkeeping for appending ``actions`` (int64 ``[B]``).

    ``started``: bool ``[B]``, False where the melody is still empty (then nothing
    changes, as in RL Tuner). A leap is an interval of :data:`LEAP_SEMITONES` or more
    from the last pitch (rests and holds skipped). The first leap remembers its direction
    and the pitch it left; a second leap the same way is *doubled* (the leap stays
    pending); a leap back with more than :data:`LEAP_BACK_MIN_STEPS` steps between it
    and the last leap (RL Tuner's rule: leaps at steps 1 and 9 have 7 between them and
    resolve, leaps at steps 1 and 8 do not), or a non-leap note at or past the pitch it
    left, *resolves* it (a quicker leap back just clears it). ``since_leap`` counts the
    steps after the last leap (the steps between it and the step being written).

    Returns ``(outcome, leap_dir, leapt_from, since_leap)``: outcome int64 ``[B]`` is
    +1 resolved, -1 doubled, 0 neither; the rest is the state after appending.
    """
    last, d = feats["last_pitch"], feats["leap_dir"]
    frm, since = feats["leapt_from"], feats["since_leap"]
    note = (actions >= tokens.FIRST_PITCH) & started
    iv = np.where(note & (last >= 0), actions - last, 0)
    leap = np.abs(iv) >= LEAP_SEMITONES
    sgn = np.sign(iv)
    pending = d != 0
    fresh = leap & ~pending
    doubled = leap & pending & (sgn == d)
    back = leap & pending & (sgn != d)
    gradual = note & ~leap & (((d == 1) & (actions <= frm)) | ((d == -1) & (actions >= frm)))
    resolved = (back & (since > LEAP_BACK_MIN_STEPS)) | gradual
    reset = back | gradual
    outcome = resolved.astype(np.int64) - doubled
    new_dir = np.where(fresh, sgn, np.where(reset, 0, d))
    new_from = np.where(fresh, last, np.where(reset, -1, frm))
    new_since = np.where(leap, 0, since + started)
    return outcome, new_dir, new_from, new_since


def contour_update(feats: dict[str, np.ndarray], actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Direction (+1 up, -1 down, 0 none yet) and length (in intervals) of the current
    melodic run after appending ``actions``. Repeated pitches, rests and holds leave the
    run as it is; a note moving the other way starts a new run of length 1."""
    last, d, n = feats["last_pitch"], feats["run_dir"], feats["run_len"]
    iv = np.where((actions >= tokens.FIRST_PITCH) & (last >= 0), actions - last, 0)
    sgn = np.sign(iv)
    new_len = np.where(sgn == 0, n, np.where(sgn == d, n + 1, 1))
    new_dir = np.where(sgn == 0, d, sgn)
    return new_dir, new_len


def _advance(feats: dict[str, np.ndarray], seq: np.ndarray, pos: np.ndarray, actions: np.ndarray,
             active: np.ndarray | None) -> None:
    """Update ``feats`` in place for writing ``actions`` at positions ``pos`` (``[B]``).

    ``seq`` must already hold the tokens before ``pos``; rows where ``active`` is False
    are left alone. Reward features are updated only when ``feats`` has them.
    """
    a = actions
    is_pitch = a >= tokens.FIRST_PITCH
    is_rest = a == tokens.REST
    is_hold = a == tokens.HOLD
    last, mx, mn = feats["last_pitch"], feats["max_tok"], feats["min_tok"]
    higher = is_pitch & (a > mx)
    lower = is_pitch & ((a < mn) | (mn < 0))
    new: dict[str, np.ndarray] = {}
    if "leap_dir" in feats:
        started = pos > 0
        _, new["leap_dir"], new["leapt_from"], new["since_leap"] = leap_update(feats, a, started)
        new["run_dir"], new["run_len"] = contour_update(feats, a)
        new["max_pos"] = np.where(higher, pos, feats["max_pos"])
        # Silence: a rest, or a hold while nothing sounds (after a rest or before any note).
        silence = feats["silence"]
        silent = is_rest | (is_hold & ((silence > 0) | (last < 0)))
        new["silence"] = np.where(silent, silence + 1, 0)
        x = a.astype(np.float64)
        new["tok_sum"] = feats["tok_sum"] + x
        new["tok_sq"] = feats["tok_sq"] + x * x
        src = pos[:, None] - _LAG123
        prev = np.where(src >= 0, seq[np.arange(a.shape[0])[:, None], np.maximum(src, 0)], 0) * x[:, None]
        new["lag1"] = feats["lag1"] + prev[:, 0]
        new["lag2"] = feats["lag2"] + prev[:, 1]
        new["lag3"] = feats["lag3"] + prev[:, 2]
    new["prev_pitch"] = np.where(is_pitch, last, feats["prev_pitch"])
    new["last_pitch"] = np.where(is_pitch, a, last)
    new["last_onset"] = np.where(is_pitch, pos, feats["last_onset"])
    new["max_tok"] = np.where(higher, a, mx)
    new["max_count"] = np.where(higher, 1, feats["max_count"] + (is_pitch & (a == mx)))
    new["min_tok"] = np.where(lower, a, mn)
    new["min_count"] = np.where(lower, 1, feats["min_count"] + (is_pitch & (a == mn)))
    new["n_onsets"] = feats["n_onsets"] + is_pitch
    new["n_rests"] = feats["n_rests"] + is_rest
    new["n_holds"] = feats["n_holds"] + is_hold
    if active is None:
        feats.update(new)
    else:
        for k, v in new.items():
            feats[k] = np.where(active, v, feats[k])


def melody_features(seq: np.ndarray, step: np.ndarray, reward: bool = True) -> dict[str, np.ndarray]:
    """Per-row facts about the melody so far that both observations and rewards need.

    ``seq`` int64 ``[B, T]``, ``step`` int64 ``[B]`` (row ``b`` holds ``step[b]`` tokens).
    Returns arrays of shape ``[B]`` (int64 unless noted):

    * ``last_pitch`` (token or -1), ``prev_pitch`` (pitch before it or -1),
      ``last_onset`` (step index of the last onset or -1);
    * ``max_tok``/``min_tok`` (highest/lowest pitch token or -1), ``max_count``,
      ``min_count`` (their occurrences);
    * ``n_onsets``, ``n_rests``, ``n_holds`` (token counts).

    With ``reward=True`` (what reward terms get) also:

    * ``max_pos``: step index of the first occurrence of the highest pitch, or -1;
    * ``silence``: trailing silent steps (rests, and holds while nothing sounds);
    * ``leap_dir`` (+1/-1 pending leap up/down, 0 none), ``leapt_from`` (pitch it left
      or -1), ``since_leap`` (steps since the last leap), see :func:`leap_update`;
    * ``run_dir``, ``run_len``: the current melodic run, see :func:`contour_update`;
    * float64 ``tok_sum``, ``tok_sq`` (sum of tokens and of squares) and ``lag1``..``lag3``
      (sum over t of ``seq[t] * seq[t - lag]``), for autocorrelation.

    This scans the melodies (O(T) vectorized steps); :meth:`MelodyBatch.features` keeps
    the same values up to date incrementally.
    """
    seq = np.asarray(seq, np.int64)
    step = np.asarray(step, np.int64)
    feats = empty_features(seq.shape[0], reward)
    for t in range(int(step.max(initial=0))):
        pos = np.full(seq.shape[0], t, np.int64)
        _advance(feats, seq, pos, seq[:, t], step > t)
    return feats


# ------------------------------------------------------------------------ batches

@dataclass
class MelodyBatch:
    """A batch of B melodies being written, with their context. All arrays are numpy.

    Attributes:
        tokens: int64 ``[B, T]`` tokens written so far (row ``b`` valid up to ``step[b]``).
        step: int64 ``[B]`` number of tokens written = index of the step to choose next.
        n_steps: int64 ``[B]`` total steps of each melody (bars x steps per bar).
        steps_per_bar: int64 ``[B]``.
        ts_index: int64 ``[B]`` index into the supported time signatures.
        scale_mask: float32 ``[B, 12]`` scale tones relative to the tonic.
        chord_mask: float32 ``[B, T, 12]`` chord tones under each step, relative to the tonic.
        chord_root: int64 ``[B, T]`` chord root under each step, relative to the tonic.
        role: int64 ``[B]`` index into :data:`engine.music.tokens.ROLES`.
        style: float32 ``[B, S]`` style vector (see :func:`engine.mdp.styles.style_vector`).

    Write tokens with :meth:`append` (fast path). Writing ``tokens`` and ``step``
    directly works too; after changing any context array in place call
    :meth:`context_changed`.
    """

    tokens: np.ndarray
    step: np.ndarray
    n_steps: np.ndarray
    steps_per_bar: np.ndarray
    ts_index: np.ndarray
    scale_mask: np.ndarray
    chord_mask: np.ndarray
    chord_root: np.ndarray
    role: np.ndarray
    style: np.ndarray
    extra: dict = field(default_factory=dict)
    _table: np.ndarray | None = field(default=None, repr=False, compare=False)
    _feats: dict | None = field(default=None, repr=False, compare=False)
    _feats_step: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def size(self) -> int:
        """Batch size B."""
        return int(self.step.shape[0])

    @classmethod
    def create(cls, contexts: list[MelodyContext], length: int | None = None) -> MelodyBatch:
        """Empty melodies (no tokens written) for a list of contexts.

        ``length`` is the token capacity T (default: the longest context); a larger one
        lets :meth:`reset_rows` put longer melodies into the batch later.
        """
        if not contexts:
            raise EngineError("MelodyBatch.create got no contexts: give at least one MelodyContext")
        b = len(contexts)
        t = max(c.n_steps for c in contexts)
        if length is not None:
            if length < t:
                raise EngineError(f"batch length {length} is shorter than the longest melody ({t} steps)")
            t = int(length)
        s = len(contexts[0].style)
        for c in contexts:
            if len(c.style) != s:
                raise EngineError(f"contexts mix style widths {s} and {len(c.style)}: every melody in a batch "
                                  "needs the same style terms")
        batch = cls(
            tokens=np.zeros((b, t), np.int64), step=np.zeros(b, np.int64),
            n_steps=np.zeros(b, np.int64), steps_per_bar=np.ones(b, np.int64), ts_index=np.zeros(b, np.int64),
            scale_mask=np.zeros((b, 12), np.float32), chord_mask=np.zeros((b, t, 12), np.float32),
            chord_root=np.zeros((b, t), np.int64), role=np.zeros(b, np.int64), style=np.zeros((b, s), np.float32),
        )
        batch._write_contexts(np.arange(b), contexts)
        batch._feats, batch._feats_step = empty_features(b, reward=False), batch.step.copy()
        return batch

    def _write_contexts(self, rows: np.ndarray, contexts: list[MelodyContext]) -> None:
        t = self.tokens.shape[1]
        for i, c in zip(rows, contexts):
            if c.n_steps > t:
                raise EngineError(f"melody of {c.n_steps} steps does not fit a batch of length {t}")
            if len(c.style) != self.style.shape[1]:
                raise EngineError(f"context has {len(c.style)} style terms, the batch {self.style.shape[1]}")
            self.n_steps[i] = c.n_steps
            self.steps_per_bar[i] = c.steps_per_bar
            self.ts_index[i] = _TS_LIST.index(c.time_signature)
            self.scale_mask[i] = c.scale_mask
            self.chord_mask[i] = 0.0
            self.chord_mask[i, : c.n_steps] = c.chord_mask_per_step
            self.chord_root[i] = 0
            self.chord_root[i, : c.n_steps] = c.chord_root_per_step
            self.role[i] = tokens.ROLES.index(c.role)
            self.style[i] = c.style
        self.tokens[rows] = 0
        self.step[rows] = 0
        if self._table is not None:
            self._table[rows] = context_rows(self, np.repeat(rows, t + 1), np.tile(np.arange(t + 1), len(rows))
                                              ).reshape(len(rows), t + 1, _CTX_WIDTH)

    def take(self, rows: np.ndarray) -> MelodyBatch:
        """A new batch holding copies of ``rows`` (int indices, repeats allowed) in that order,
        melodies so far and their cached features included (what a beam search needs to
        branch a melody into several continuations)."""
        rows = np.asarray(rows, np.int64)
        out = MelodyBatch(
            tokens=self.tokens[rows], step=self.step[rows], n_steps=self.n_steps[rows],
            steps_per_bar=self.steps_per_bar[rows], ts_index=self.ts_index[rows], scale_mask=self.scale_mask[rows],
            chord_mask=self.chord_mask[rows], chord_root=self.chord_root[rows], role=self.role[rows],
            style=self.style[rows], extra=dict(self.extra),
        )
        if self._table is not None:
            out._table = self._table[rows]
        if self._feats_valid():
            out._feats = {k: v[rows] for k, v in self._feats.items()}  # type: ignore[union-attr]
            out._feats_step = out.step.copy()
        return out

    def reset_rows(self, rows: np.ndarray, contexts: list[MelodyContext]) -> None:
        """Start new, empty melodies in ``rows`` (int indices) with the given contexts."""
        rows = np.asarray(rows, np.int64)
        if len(rows) != len(contexts):
            raise EngineError(f"reset_rows got {len(rows)} rows but {len(contexts)} contexts")
        valid = self._feats_valid()
        self._write_contexts(rows, contexts)
        if valid:
            fresh = empty_features(len(rows), reward="leap_dir" in self._feats)  # type: ignore[operator]
            for k, v in fresh.items():
                self._feats[k][rows] = v  # type: ignore[index]
            self._feats_step[rows] = 0  # type: ignore[index]

    def context_changed(self) -> None:
        """Forget cached context tables (call after editing context arrays in place)."""
        self._table = None

    def context_table(self) -> np.ndarray | None:
        """float32 ``[B, T + 1, W]``: the context segments (``bar_pos`` .. ``metre``) for
        every row and step, built on first use; None when it would be too large."""
        if self._table is None:
            b, t = self.tokens.shape
            if b * (t + 1) * _CTX_WIDTH > _MAX_TABLE_CELLS:
                return None
            rows = np.repeat(np.arange(b), t + 1)
            steps = np.tile(np.arange(t + 1), b)
            self._table = context_rows(self, rows, steps).reshape(b, t + 1, _CTX_WIDTH)
        return self._table

    def _feats_valid(self) -> bool:
        fs = self._feats_step
        return self._feats is not None and fs is not None and fs.shape == self.step.shape and bool((fs == self.step).all())

    def features(self, reward: bool = True) -> dict[str, np.ndarray]:
        """:func:`melody_features` of the melodies so far (cached; do not modify).

        Once reward features have been asked for, :meth:`append` keeps them up to date too.
        """
        if not self._feats_valid() or (reward and "leap_dir" not in self._feats):  # type: ignore[operator]
            self._feats = melody_features(self.tokens, self.step, reward)
            self._feats_step = self.step.copy()
        return self._feats  # type: ignore[return-value]

    def append(self, actions: np.ndarray, active: np.ndarray | None = None) -> None:
        """Write one token per row (rows where ``active`` is False are left alone).

        ``actions`` int ``[B]`` in 0..37; ``active`` bool ``[B]`` or None for all rows.
        """
        actions = np.asarray(actions, np.int64)
        fresh = self._feats_valid()
        rows = np.arange(self.size) if active is None else np.flatnonzero(active)
        if fresh:
            _advance(self._feats, self.tokens, self.step, actions, None if active is None else np.asarray(active, bool))
        self.tokens[rows, self.step[rows]] = actions[rows]
        self.step[rows] += 1
        if fresh:
            self._feats_step = self.step.copy()


@dataclass
class MelodyContext:
    """The musical frame of one melody, relative to the tonic.

    Build it with :meth:`from_music`; ``style`` is the style vector (already scaled,
    see :func:`engine.mdp.styles.style_vector`). ``chord_mask_per_step`` is float32
    ``[n_steps, 12]`` and ``chord_root_per_step`` int64 ``[n_steps]``, both relative to
    the tonic.
    """

    n_steps: int
    steps_per_bar: int
    time_signature: tuple[int, int]
    scale_mask: np.ndarray
    chord_mask_per_step: np.ndarray
    chord_root_per_step: np.ndarray
    role: str
    style: np.ndarray
    tonic: int = 0
    scale: str = "major"
    chords: tuple[theory.Chord, ...] = ()

    @classmethod
    def from_music(cls, *, key: str | int = "C", scale: str = "major", bars: int = 2,
                   time_signature: tuple[int, int] | str = (4, 4), chords: str | list[str] | None = None,
                   role: str = "lead", style: np.ndarray) -> MelodyContext:
        """Context for ``bars`` bars (1..16) in a key/scale with a looping progression
        (one chord per bar; the scale's default progression when ``chords`` is empty)."""
        if isinstance(bars, bool) or not isinstance(bars, (int, np.integer)) or not 1 <= bars <= limits.MAX_BARS:
            raise EngineError(f"bars {bars!r} is out of range: allowed are whole numbers 1-{limits.MAX_BARS}")
        tonic = theory.parse_key(key) if isinstance(key, str) else int(key) % 12
        scale = theory.parse_scale(scale)
        ts = theory.parse_time_signature(time_signature)
        spb = theory.steps_per_bar(ts)
        prog = theory.default_progression(scale) if not chords else theory.parse_progression(chords, tonic, scale)
        if not chords:  # the default progression is written relative to C: move it to the key
            prog = [theory.Chord((c.root + tonic) % 12, c.intervals, c.symbol) for c in prog]
        n = int(bars) * spb
        masks = np.zeros((n, 12), np.float32)
        roots = np.zeros(n, np.int64)
        for bar in range(int(bars)):
            ch = prog[bar % len(prog)]
            masks[bar * spb:(bar + 1) * spb] = ch.mask(tonic)
            roots[bar * spb:(bar + 1) * spb] = (ch.root - tonic) % 12
        return cls(n_steps=n, steps_per_bar=spb, time_signature=ts, scale_mask=np.array(theory.scale_mask(scale), np.float32),
                   chord_mask_per_step=masks, chord_root_per_step=roots, role=tokens.check_role(role),
                   style=np.asarray(style, np.float32).reshape(-1), tonic=tonic, scale=scale, chords=tuple(prog))


def _beat_table() -> np.ndarray:
    table = np.zeros((len(_TS_LIST), theory.MAX_STEPS_PER_BAR), np.int64)
    for i, ts in enumerate(_TS_LIST):
        for s in range(theory.TIME_SIGNATURES[ts]):
            table[i, s] = theory.beat_strength(s, ts)
    return table


_BEATS = _beat_table()


def context_rows(batch: MelodyBatch, rows: np.ndarray, step: np.ndarray) -> np.ndarray:
    """The context segments (``bar_pos`` .. ``metre``) for (row, step) pairs: float32 ``[N, W]``."""
    n = len(rows)
    out = np.zeros((n, _CTX_WIDTH), np.float32)
    idx = np.arange(n)
    n_steps = batch.n_steps[rows]
    spb = batch.steps_per_bar[rows]
    cur = np.minimum(step, n_steps - 1)
    col = 0
    pos = cur % spb
    out[idx, col + pos] = 1.0
    col += theory.MAX_STEPS_PER_BAR
    out[idx, col + _BEATS[batch.ts_index[rows], pos]] = 1.0
    col += 4
    bar = cur // spb
    n_bars = n_steps // spb
    out[idx, col + bar % 8] = 1.0
    col += 8
    out[:, col] = step == 0
    out[:, col + 1] = bar == n_bars - 1
    out[:, col + 2] = step == n_steps - 1
    col += 3
    left = np.maximum(n_steps - step, 0)
    out[idx, col + np.minimum(left, 16)] = 1.0
    out[:, col + 17] = step / np.maximum(n_steps, 1)
    col += 18
    out[:, col:col + 12] = batch.scale_mask[rows]
    col += 12
    out[:, col:col + 12] = batch.chord_mask[rows, cur]
    out[idx, col + 12 + batch.chord_root[rows, cur]] = 1.0
    nxt = np.minimum((bar + 1) * spb, n_steps - 1)
    out[:, col + 24:col + 36] = batch.chord_mask[rows, nxt]
    col += 36
    out[idx, col + batch.role[rows]] = 1.0
    col += len(tokens.ROLES)
    out[idx, col + batch.ts_index[rows]] = 1.0
    return out


def melodic_table() -> np.ndarray:
    """float32 ``[37, 37, W]``: the columns ``last_pitch`` .. ``pending_leap`` for (last
    pitch, previous pitch) indices (pitch token - 2, or 36 for none); note age left 0."""
    width = _CTX_START - _OFF["last_pitch"]
    iv0, pl0 = _OFF["last_interval"] - _OFF["last_pitch"], _OFF["pending_leap"] - _OFF["last_pitch"]
    none = tokens.N_PITCHES
    tab = np.zeros((none + 1, none + 1, width), np.float32)
    for li in range(none + 1):
        for pi in range(none + 1):
            tab[li, pi, li] = 1.0
            if li < none and pi < none:
                iv = min(max(li - pi, -12), 12)
                tab[li, pi, iv0 + iv + 12] = 1.0
                tab[li, pi, pl0] = iv >= LEAP_SEMITONES
                tab[li, pi, pl0 + 1] = iv <= -LEAP_SEMITONES
            else:
                tab[li, pi, iv0 + 25] = 1.0
    return tab


_MELODIC = melodic_table()
_LAGS = np.arange(HISTORY, 0, -1)  # slot 0 holds the token HISTORY steps ago
_SLOT_COLS = np.arange(HISTORY) * tokens.N_ACTIONS


def observe(batch: MelodyBatch) -> np.ndarray:
    """Observations ``float32 [B, D]`` for the next step of every melody in ``batch``.

    Pure: depends only on the melodies and contexts in ``batch`` (its caches only make
    it faster). Rows whose melody is complete get the observation of a (non-existent)
    step past the end, which callers ignore.
    """
    return observe_rows(batch, None)


def observe_rows(batch: MelodyBatch, rows: np.ndarray | None) -> np.ndarray:
    """:func:`observe` for a subset of rows (int indices, or None for all): ``[len(rows), D]``."""
    feats_all = batch.features(reward=False)
    if rows is None:
        rows = np.arange(batch.size)
        feats = feats_all
        step = batch.step
        style = batch.style
    else:
        rows = np.asarray(rows, np.int64)
        feats = {k: v[rows] for k, v in feats_all.items()}
        step = batch.step[rows]
        style = batch.style[rows]
    b = len(rows)
    n_style = style.shape[1]
    d = _OBS_BASE + n_style
    out = np.zeros((b, d), np.float32)
    flat = out.reshape(-1)
    base = np.arange(b) * d

    # history: one-hot of the last HISTORY tokens, newest in the last slot
    src = step[:, None] - _LAGS[None, :]
    ok = src >= 0
    toks = batch.tokens[rows[:, None], np.maximum(src, 0)]
    flat[(base[:, None] + _SLOT_COLS[None, :] + toks)[ok]] = 1.0

    # last sounding pitch, note age, last interval and pending leap: one table lookup
    lp, pp = feats["last_pitch"], feats["prev_pitch"]
    li = np.where(lp >= 0, lp - tokens.FIRST_PITCH, tokens.N_PITCHES)
    pi = np.where(pp >= 0, pp - tokens.FIRST_PITCH, tokens.N_PITCHES)
    out[:, _OFF["last_pitch"]:_CTX_START] = _MELODIC[li, pi]
    last_on = feats["last_onset"]
    age = np.where(last_on >= 0, step - last_on, 16)
    out[:, _OFF["note_age"]] = np.minimum(age, 16) / 16.0

    # context segments: tabulated per (row, step) when the table fits
    table = batch.context_table()
    if table is not None:
        out[:, _CTX_START:_CTX_END] = table[rows, step]
    else:
        out[:, _CTX_START:_CTX_END] = context_rows(batch, rows, step)

    # statistics of the melody so far (computed in float64 like the reference, then stored)
    col = _OFF["stats"]
    stats = np.column_stack((feats["max_tok"], feats["min_tok"], feats["max_count"] == 1, feats["min_count"] == 1,
                             feats["n_onsets"], feats["n_rests"], feats["n_holds"])).astype(np.float64)
    np.maximum(stats[:, :2], 0.0, out=stats[:, :2])  # -1 (no pitch yet) shows as 0
    stats[:, :2] /= 37.0
    stats[:, 4:] /= np.maximum(step, 1)[:, None]
    out[:, col:col + 7] = stats
    # distinct pitches among the last 8 tokens: OR one bit per pitch, count the bits
    win = toks[:, -8:] - tokens.FIRST_PITCH
    bits = np.where(ok[:, -8:] & (win >= 0), np.left_shift(1, np.maximum(win, 0)), 0)
    distinct = np.bitwise_count(np.bitwise_or.reduce(bits, axis=1))
    out[:, col + 7] = distinct / 8.0
    col += 8

    col = _lookback(batch, rows, step, out, col)
    out[:, col:col + n_style] = style
    return out


#: Steps compared backwards from the newest token when measuring a repeat run.
_RUN = HISTORY
_RUN_LAGS = np.arange(1, _RUN + 1)[None, :]


def _lookback(batch: MelodyBatch, rows: np.ndarray, step: np.ndarray, out: np.ndarray, col: int) -> int:
    """Write the ``lookback`` and ``repeating`` segments of ``rows`` from column ``col``;
    returns the column after them."""
    b = len(rows)
    idx = np.arange(b)
    spb = batch.steps_per_bar[rows]
    tok = batch.tokens[rows]
    last_col = tok.shape[1] - 1
    # lookback: the token k bars back at the step being chosen, one-hot (zeros before the start)
    for j, k in enumerate(LOOKBACK_BARS):
        src = step - k * spb
        ok = (src >= 0) & (step < batch.n_steps[rows])
        hit = tok[idx, np.clip(src, 0, last_col)]
        out[idx[ok], col + j * tokens.N_ACTIONS + hit[ok]] = 1.0
    col += len(LOOKBACK_BARS) * tokens.N_ACTIONS
    # repeating: how many of the newest steps (up to 16) equal the steps k bars before them
    back = step[:, None] - _RUN_LAGS                            # newest first
    recent = np.where(back >= 0, tok[idx[:, None], np.clip(back, 0, last_col)], -1)
    earlier_of: dict[int, tuple[np.ndarray, np.ndarray]] = {}     # k -> (source steps, their tokens)
    for j, k in enumerate(LOOKBACK_BARS):
        src = back - k * spb[:, None]
        earlier = np.where(src >= 0, tok[idx[:, None], np.clip(src, 0, last_col)], -2)
        earlier_of[k] = src, earlier
        out[:, col + j] = _run_length(recent == earlier) / _RUN
        out[:, col + len(LOOKBACK_BARS) + j] = step >= k * spb
    col += 2 * len(LOOKBACK_BARS)
    for j, k in enumerate(RHYTHM_LOOKBACK_BARS):
        src, earlier = earlier_of[k]
        same = (src >= 0) & ((recent >= tokens.FIRST_PITCH) == (earlier >= tokens.FIRST_PITCH))
        out[:, col + j] = _run_length(same) / _RUN
    return col + len(RHYTHM_LOOKBACK_BARS)


def _run_length(match: np.ndarray) -> np.ndarray:
    """Leading True values per row of a bool ``[B, n]`` matrix (newest step first)."""
    miss = ~match
    return np.where(miss.any(axis=1), miss.argmax(axis=1), match.shape[1])
