"""The observation: one pure numpy function shared by training and the runtime policy.

:func:`observe` turns a batch of partial melodies plus their musical context
(:class:`MelodyBatch`) into a float32 matrix ``[batch, D]``. Everything in it is
relative to the tonic, so one network plays every key. The environment calls it while
training and :class:`engine.policy.Policy` calls it under onnxruntime; the ONNX model
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
* ``phrase``: bar index modulo 4, one-hot (4); ``edges``: first step, last bar, last
  step (3).
* ``steps_left``: min(steps left, 16) one-hot (17) and the fraction of the clip done (1).
* ``scale``: 12 flags relative to the tonic.
* ``chord``: chord tones (12), chord root one-hot (12) and the next bar's chord tones
  (12), relative to the tonic.
* ``role``: one-hot over :data:`engine.tokens.ROLES` (2).
* ``metre``: one-hot over the supported time signatures (4).
* ``stats``: highest and lowest pitch so far (/37), whether each occurred only once,
  onset density, rest share, hold share, distinct pitches in the last 8 steps / 8 (8).
* ``style``: the style weights / 5 in the model's term order (n_terms).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine import theory, tokens

OBS_VERSION = 1
HISTORY = 16
_TS_LIST = tuple(theory.TIME_SIGNATURES)


def layout(n_style_terms: int) -> list[tuple[str, int]]:
    """(segment name, width) pairs in observation order."""
    return [
        ("history", HISTORY * tokens.N_ACTIONS), ("last_pitch", tokens.N_PITCHES + 1), ("note_age", 1),
        ("last_interval", 26), ("pending_leap", 2), ("bar_pos", theory.MAX_STEPS_PER_BAR), ("beat", 4),
        ("phrase", 4), ("edges", 3), ("steps_left", 18), ("scale", 12), ("chord", 36),
        ("role", len(tokens.ROLES)), ("metre", len(_TS_LIST)), ("stats", 8), ("style", n_style_terms),
    ]


def obs_dim(n_style_terms: int) -> int:
    """Width D of the observation for a model with ``n_style_terms`` style terms."""
    return sum(w for _, w in layout(n_style_terms))


def layout_string(n_style_terms: int) -> str:
    """Compact layout description stored in ONNX metadata, e.g. ``history:608,...``."""
    return ",".join(f"{n}:{w}" for n, w in layout(n_style_terms))


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
        role: int64 ``[B]`` index into :data:`engine.tokens.ROLES`.
        style: float32 ``[B, S]`` style vector (see :func:`engine.styles.style_vector`).
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

    @property
    def size(self) -> int:
        """Batch size B."""
        return int(self.step.shape[0])

    @classmethod
    def create(cls, contexts: list[MelodyContext]) -> MelodyBatch:
        """Empty melodies (no tokens written) for a list of contexts."""
        b = len(contexts)
        t = max(c.n_steps for c in contexts)
        s = len(contexts[0].style)
        chord_mask = np.zeros((b, t, 12), np.float32)
        chord_root = np.zeros((b, t), np.int64)
        for i, c in enumerate(contexts):
            chord_mask[i, : c.n_steps] = c.chord_mask_per_step
            chord_root[i, : c.n_steps] = c.chord_root_per_step
        return cls(
            tokens=np.zeros((b, t), np.int64), step=np.zeros(b, np.int64),
            n_steps=np.array([c.n_steps for c in contexts], np.int64),
            steps_per_bar=np.array([c.steps_per_bar for c in contexts], np.int64),
            ts_index=np.array([_TS_LIST.index(c.time_signature) for c in contexts], np.int64),
            scale_mask=np.array([c.scale_mask for c in contexts], np.float32),
            chord_mask=chord_mask, chord_root=chord_root,
            role=np.array([tokens.ROLES.index(c.role) for c in contexts], np.int64),
            style=np.array([c.style for c in contexts], np.float32).reshape(b, s),
        )

    def append(self, actions: np.ndarray, active: np.ndarray | None = None) -> None:
        """Write one token per row (rows where ``active`` is False are left alone)."""
        rows = np.arange(self.size) if active is None else np.flatnonzero(active)
        self.tokens[rows, self.step[rows]] = actions[rows]
        self.step[rows] += 1


@dataclass
class MelodyContext:
    """The musical frame of one melody, relative to the tonic.

    Build it with :meth:`from_music`; ``style`` is the style vector (already scaled).
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
        """Context for ``bars`` bars in a key/scale with a looping progression (one chord per bar)."""
        tonic = theory.parse_key(key) if isinstance(key, str) else int(key) % 12
        scale = theory.parse_scale(scale)
        ts = theory.parse_time_signature(time_signature)
        spb = theory.steps_per_bar(ts)
        prog = theory.default_progression(scale) if not chords else theory.parse_progression(chords, tonic, scale)
        if not chords:  # the default progression is written relative to C: move it to the key
            prog = [theory.Chord((c.root + tonic) % 12, c.intervals, c.symbol) for c in prog]
        n = bars * spb
        masks = np.zeros((n, 12), np.float32)
        roots = np.zeros(n, np.int64)
        for bar in range(bars):
            ch = prog[bar % len(prog)]
            masks[bar * spb:(bar + 1) * spb] = ch.mask(tonic)
            roots[bar * spb:(bar + 1) * spb] = (ch.root - tonic) % 12
        return cls(n_steps=n, steps_per_bar=spb, time_signature=ts, scale_mask=np.array(theory.scale_mask(scale), np.float32),
                   chord_mask_per_step=masks, chord_root_per_step=roots, role=tokens.check_role(role),
                   style=np.asarray(style, np.float32), tonic=tonic, scale=scale, chords=tuple(prog))


def _beat_table() -> np.ndarray:
    table = np.zeros((len(_TS_LIST), theory.MAX_STEPS_PER_BAR), np.int64)
    for i, ts in enumerate(_TS_LIST):
        for s in range(theory.TIME_SIGNATURES[ts]):
            table[i, s] = theory.beat_strength(s, ts)
    return table


_BEATS = _beat_table()


def melody_features(seq: np.ndarray, step: np.ndarray) -> dict[str, np.ndarray]:
    """Per-row facts about the melody so far that both observations and rewards need.

    ``seq`` int64 ``[B, T]``, ``step`` int64 ``[B]``. Returns arrays of shape ``[B]``:
    ``last_pitch`` (token or -1), ``prev_pitch`` (pitch before it or -1), ``last_onset``
    (step index of the last onset or -1), ``max_tok``/``min_tok`` (or -1), ``max_count``,
    ``min_count``, ``n_onsets``, ``n_rests``, ``n_holds``.
    """
    b, t = seq.shape
    idx = np.arange(t)[None, :]
    valid = idx < step[:, None]
    pitch = (seq >= tokens.FIRST_PITCH) & valid
    rest = (seq == tokens.REST) & valid
    hold = (seq == tokens.HOLD) & valid
    pos = np.where(pitch, idx, -1)
    last_on = pos.max(axis=1)
    rows = np.arange(b)
    last_pitch = np.where(last_on >= 0, seq[rows, np.maximum(last_on, 0)], -1)
    pos2 = np.where(pitch & (idx < last_on[:, None]), idx, -1)
    prev_on = pos2.max(axis=1)
    prev_pitch = np.where(prev_on >= 0, seq[rows, np.maximum(prev_on, 0)], -1)
    masked_hi = np.where(pitch, seq, -1)
    masked_lo = np.where(pitch, seq, 99)
    max_tok = masked_hi.max(axis=1)
    min_tok = masked_lo.min(axis=1)
    min_tok = np.where(min_tok == 99, -1, min_tok)
    max_count = (pitch & (seq == max_tok[:, None])).sum(axis=1)
    min_count = (pitch & (seq == min_tok[:, None])).sum(axis=1)
    return {"last_pitch": last_pitch, "prev_pitch": prev_pitch, "last_onset": last_on, "max_tok": max_tok,
            "min_tok": min_tok, "max_count": max_count, "min_count": min_count, "n_onsets": pitch.sum(axis=1),
            "n_rests": rest.sum(axis=1), "n_holds": hold.sum(axis=1)}


def observe(batch: MelodyBatch) -> np.ndarray:
    """Observations ``float32 [B, D]`` for the next step of every melody in ``batch``.

    Pure: depends only on ``batch``. Rows whose melody is complete get the observation
    of a (non-existent) step past the end, which callers ignore.
    """
    b = batch.size
    rows = np.arange(b)
    step = batch.step
    seq = batch.tokens
    feats = melody_features(seq, step)
    n_style = batch.style.shape[1]
    out = np.zeros((b, obs_dim(n_style)), np.float32)
    col = 0

    # history: one-hot of the last HISTORY tokens, newest in the last slot
    lags = np.arange(HISTORY, 0, -1)  # slot 0 holds the token HISTORY steps ago
    src = step[:, None] - lags[None, :]
    ok = src >= 0
    toks = seq[rows[:, None], np.maximum(src, 0)]
    slot_cols = col + np.arange(HISTORY)[None, :] * tokens.N_ACTIONS + toks
    r, c = np.nonzero(ok)
    out[r, slot_cols[r, c]] = 1.0
    col += HISTORY * tokens.N_ACTIONS

    # last sounding pitch
    lp = feats["last_pitch"]
    out[rows, col + np.where(lp >= 0, lp - tokens.FIRST_PITCH, tokens.N_PITCHES)] = 1.0
    col += tokens.N_PITCHES + 1
    age = np.where(feats["last_onset"] >= 0, step - feats["last_onset"], 16)
    out[:, col] = np.minimum(age, 16) / 16.0
    col += 1

    # last interval and pending leap
    pp = feats["prev_pitch"]
    has_iv = (lp >= 0) & (pp >= 0)
    iv = np.clip(lp - pp, -12, 12)
    out[rows, col + np.where(has_iv, iv + 12, 25)] = 1.0
    col += 26
    out[:, col] = (has_iv & (iv >= 7)).astype(np.float32)
    out[:, col + 1] = (has_iv & (iv <= -7)).astype(np.float32)
    col += 2

    # position in the bar and beat strength
    spb = batch.steps_per_bar
    pos = np.minimum(step, batch.n_steps - 1) % spb
    out[rows, col + pos] = 1.0
    col += theory.MAX_STEPS_PER_BAR
    out[rows, col + _BEATS[batch.ts_index, pos]] = 1.0
    col += 4

    # phrase position and edges
    bar = np.minimum(step, batch.n_steps - 1) // spb
    n_bars = batch.n_steps // spb
    out[rows, col + bar % 4] = 1.0
    col += 4
    out[:, col] = (step == 0)
    out[:, col + 1] = (bar == n_bars - 1)
    out[:, col + 2] = (step == batch.n_steps - 1)
    col += 3

    # steps left
    left = np.maximum(batch.n_steps - step, 0)
    out[rows, col + np.minimum(left, 16)] = 1.0
    out[:, col + 17] = step / np.maximum(batch.n_steps, 1)
    col += 18

    # scale and chords
    out[:, col:col + 12] = batch.scale_mask
    col += 12
    cur = np.minimum(step, batch.n_steps - 1)
    out[:, col:col + 12] = batch.chord_mask[rows, cur]
    out[rows, col + 12 + batch.chord_root[rows, cur]] = 1.0
    nxt = np.minimum((bar + 1) * spb, batch.n_steps - 1)
    out[:, col + 24:col + 36] = batch.chord_mask[rows, nxt]
    col += 36

    # role and metre
    out[rows, col + batch.role] = 1.0
    col += len(tokens.ROLES)
    out[rows, col + batch.ts_index] = 1.0
    col += len(_TS_LIST)

    # statistics of the melody so far
    seen = feats["max_tok"] >= 0
    out[:, col] = np.where(seen, feats["max_tok"], 0) / 37.0
    out[:, col + 1] = np.where(seen, feats["min_tok"], 0) / 37.0
    out[:, col + 2] = seen & (feats["max_count"] == 1)
    out[:, col + 3] = seen & (feats["min_count"] == 1)
    denom = np.maximum(step, 1)
    out[:, col + 4] = feats["n_onsets"] / denom
    out[:, col + 5] = feats["n_rests"] / denom
    out[:, col + 6] = feats["n_holds"] / denom
    win = toks[:, -8:]
    winok = ok[:, -8:] & (win >= tokens.FIRST_PITCH)
    srt = np.sort(np.where(winok, win, -1), axis=1)
    distinct = ((srt[:, 1:] != srt[:, :-1]) & (srt[:, 1:] >= 0)).sum(axis=1) + (srt[:, 0] >= 0)
    out[:, col + 7] = distinct / 8.0
    col += 8

    out[:, col:col + n_style] = batch.style
    return out
