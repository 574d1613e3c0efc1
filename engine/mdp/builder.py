"""Observations built one step at a time: :class:`ObservationBuilder`, the fast path of
:func:`engine.mdp.observation.observe`.

``observe`` computes a batch's observation from the whole melody so far with array
operations over the batch: the reference, used by the environment and training. Generating
a clip needs the same rows for a handful of melodies, one step at a time, where array
overheads dominate: the builder keeps a few integers per melody and writes only what a
step changes. Both live here, in the MDP layer; ``tests/engine/runtime/test_policy.py``
checks they agree bit for bit at every step of every role, metre and look-back.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.mdp import observation
from engine.music import tokens

_NONE = tokens.N_PITCHES
_N_MEL = tokens.N_PITCHES + 1
#: observation's own table of the last_pitch .. pending_leap columns, rows (last, previous) flattened.
_MELODIC = observation.melodic_table().reshape(_N_MEL * _N_MEL, -1)
_LOOKBACK = observation.LOOKBACK_BARS
_RHYTHM = observation.RHYTHM_LOOKBACK_BARS
_RUN = observation.HISTORY


class ObservationBuilder:
    """Builds :func:`engine.mdp.observation.observe`'s rows step by step, cheaply.

    The one incremental observation builder (``observe`` is the reference; a test checks
    the two agree bit for bit at every step). All rows share one length; rows may differ
    in role (and so in their context). The position/context columns are tabulated once
    per context by ``observation`` itself (:meth:`static_table`); the melody-dependent
    segments are kept as a few Python integers per row and written with a handful of
    array operations a step, whatever the batch size. Column offsets come from
    :func:`engine.mdp.observation.layout`, and the last-pitch/interval block is a lookup
    into the observation's own table.
    """

    def __init__(self, contexts: Sequence[observation.MelodyContext],
                 tables: Sequence[np.ndarray] | None = None) -> None:
        """``contexts``: one per row, all of the same length. ``tables`` (optional): each
        row's :meth:`static_table`, when the caller keeps them cached."""
        b = len(contexts)
        self.n_steps = contexts[0].n_steps
        n_style = len(contexts[0].style)
        self.dim = observation.obs_dim(n_style)
        off, col = {}, 0
        for name, width in observation.layout(n_style):
            off[name] = (col, col + width)
            col += width
        self._h = off["history"][1]
        self._m0, self._m1 = off["last_pitch"][0], off["bar_pos"][0]   # last_pitch .. pending_leap
        self._age = off["note_age"][0]
        self._s0, self._s1 = off["stats"]
        self._lb0 = off["lookback"][0]
        self._r0, self._r1 = off["repeating"]
        self._st0 = off["style"][0]
        if tables is None:
            uniq: dict[int, np.ndarray] = {}
            for c in contexts:
                if id(c) not in uniq:
                    uniq[id(c)] = self.static_table(c)
            tables = [uniq[id(c)] for c in contexts]
        self._static = np.ascontiguousarray(np.stack(tables, axis=1))  # [T, B, w]
        self.obs = np.zeros((b, self.dim), np.float32)
        self.obs[:, self._st0:] = np.stack([c.style for c in contexts]).astype(np.float32)
        self.obs[:, self._m1:self._s0] = self._static[0]
        none = tokens.N_PITCHES
        self.obs[:, self._m0:self._m1] = _MELODIC[none * _N_MEL + none]
        self.obs[:, self._age] = 1.0  # note age: no onset yet
        self._row = self.obs[0]
        self.step = 0
        # per row: last pitch, previous pitch, last onset, max, min, max count, min count, onsets, rests, holds
        self._state = [[-1, -1, -1, -1, -1, 0, 0, 0, 0, 0] for _ in range(b)]
        self._win: list[list[int]] = [[] for _ in range(b)]
        self._seq: list[list[int]] = [[] for _ in range(b)]
        self._spb = [c.steps_per_bar for c in contexts]
        # per row: repeat runs for each lookback distance, then rhythm runs
        self._runs = [[0] * (len(_LOOKBACK) + len(_RHYTHM)) for _ in range(b)]

    @classmethod
    def static_table(cls, ctx: observation.MelodyContext) -> np.ndarray:
        """The columns that depend only on the context and the step (``bar_pos`` .. ``metre``)
        for every step of ``ctx``: float32 ``[n_steps, W]``, computed by ``observation`` itself."""
        rows = observation.context_rows(observation.MelodyBatch.create([ctx]), np.zeros(ctx.n_steps, np.int64),
                                        np.arange(ctx.n_steps, dtype=np.int64))
        return np.ascontiguousarray(rows)

    def append(self, actions: np.ndarray) -> np.ndarray:
        """Write one token per row (int ``[B]``); returns the next step's observations ``float32 [B, D]``.

        The returned array is updated in place by the next call: copy it to keep it.
        """
        t = self.step
        s = t + 1
        mid_idx, ages, stats, reps, hot = [], [], [], [], []
        n_run = _RUN
        for j, (row, win, seq, runs, spb, a) in enumerate(zip(self._state, self._win, self._seq, self._runs,
                                                              self._spb, actions.tolist())):
            lp, pp, lo, mx, mn, mxc, mnc, non, nre, nho = row
            if a >= 2:
                pp, lp, lo = lp, a, t
                if a > mx:
                    mx, mxc = a, 1
                elif a == mx:
                    mxc += 1
                if mn < 0 or a < mn:
                    mn, mnc = a, 1
                elif a == mn:
                    mnc += 1
                non += 1
            elif a == 0:
                nre += 1
            else:
                nho += 1
            row[:] = lp, pp, lo, mx, mn, mxc, mnc, non, nre, nho
            win.append(a)
            if len(win) > 8:
                del win[0]
            # repeat runs: the new token equals the one k bars before it (onsets only for rhythm)
            rep = []
            for i, k in enumerate(_LOOKBACK):
                src = t - k * spb
                runs[i] = min(runs[i] + 1, n_run) if src >= 0 and seq[src] == a else 0
                rep.append(runs[i] / n_run)
            rep += [float(s >= k * spb) for k in _LOOKBACK]
            for i, k in enumerate(_RHYTHM, len(_LOOKBACK)):
                src = t - k * spb
                runs[i] = min(runs[i] + 1, n_run) if src >= 0 and (seq[src] >= 2) == (a >= 2) else 0
                rep.append(runs[i] / n_run)
            seq.append(a)
            if s < self.n_steps:
                for i, k in enumerate(_LOOKBACK):
                    src = s - k * spb
                    if src >= 0:
                        hot.append((j, i * tokens.N_ACTIONS + seq[src]))
            reps.append(rep)
            mid_idx.append((lp - 2 if lp >= 0 else _NONE) * _N_MEL + (pp - 2 if pp >= 0 else _NONE))
            ages.append(min(s - lo, 16) / 16.0 if lo >= 0 else 1.0)
            seen = mx >= 0
            stats.append((mx / 37.0 if seen else 0.0, mn / 37.0 if seen else 0.0, float(seen and mxc == 1),
                          float(seen and mnc == 1), non / s, nre / s, nho / s,
                          len({x for x in win if x >= 2}) / 8.0))
        h, m0, m1, s0, s1, lb0, r0, r1 = self._h, self._m0, self._m1, self._s0, self._s1, self._lb0, self._r0, self._r1
        if len(mid_idx) == 1:  # one melody: 1-D row views and scalar writes, no fancy indexing
            r = self._row
            r[:h - tokens.N_ACTIONS] = r[tokens.N_ACTIONS:h]
            r[h - tokens.N_ACTIONS:h] = _EYE[a]
            r[m0:m1] = _MELODIC[mid_idx[0]]
            r[self._age] = ages[0]
            if s < self.n_steps:
                r[m1:s0] = self._static[s, 0]
            r[s0:s1] = stats[0]
            r[lb0:r0] = 0.0
            for _, c in hot:
                r[lb0 + c] = 1.0
            r[r0:r1] = reps[0]
        else:
            o = self.obs
            o[:, :h - tokens.N_ACTIONS] = o[:, tokens.N_ACTIONS:h]
            o[:, h - tokens.N_ACTIONS:h] = _EYE[actions]
            o[:, m0:m1] = _MELODIC[mid_idx]
            o[:, self._age] = ages
            if s < self.n_steps:
                o[:, m1:s0] = self._static[s]
            o[:, s0:s1] = stats
            o[:, lb0:r0] = 0.0
            if hot:
                rows_, cols = zip(*hot)
                o[list(rows_), [lb0 + c for c in cols]] = 1.0
            o[:, r0:r1] = reps
        self.step = s
        return self.obs


_EYE = np.eye(tokens.N_ACTIONS, dtype=np.float32)
