"""Reward terms on hand-made melodies with hand-worked answers, RL Tuner's rules checked
against a plain-Python transcription, the prior term and custom terms."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from engine.base.errors import EngineError
from engine.mdp import observation, rewards, styles
from engine.mdp.env import EnvConfig, VecMelodyEnv
from engine.mdp.observation import MelodyBatch, MelodyContext
from engine.mdp.rewards import RewardError, RewardFunction
from engine.music import theory

R, H = 0, 1
C4, D4, E4, F4, Fs4, G4, Gs4, A4, B4 = 14, 16, 18, 19, 20, 21, 22, 23, 25
C5, D5 = 26, 28


def ctx(bars: int = 2, ts=(4, 4), chords: str | None = "I V vi IV", role: str = "lead", scale: str = "major",
        terms=styles.BUILTIN_TERMS) -> MelodyContext:
    return MelodyContext.from_music(key="C", scale=scale, bars=bars, time_signature=ts, chords=chords, role=role,
                                    style=np.zeros(len(terms), np.float32))


def pad(seq: list[int], n: int, fill: int = H) -> list[int]:
    return seq + [fill] * (n - len(seq))


def raw_of(term: str, seq: list[int], context: MelodyContext | None = None) -> np.ndarray:
    """Raw reward of ``term`` at every step of ``seq`` (padded with holds to the context)."""
    context = context or ctx()
    fn = RewardFunction(styles.BUILTIN_TERMS)
    _, raw = fn.score(context, pad(seq, context.n_steps))
    return raw[:, styles.BUILTIN_TERMS.index(term)]


def test_builtin_terms_registered_in_order():
    assert rewards.available_terms()[:len(styles.BUILTIN_TERMS)] == styles.BUILTIN_TERMS
    for t in styles.BUILTIN_TERMS:
        assert rewards.term_doc(t)


# ----------------------------------------------------------------- hand-worked terms

def test_key_penalises_pitches_outside_the_scale():
    r = raw_of("key", [C4, D4, Fs4, R, H, Gs4, G4])
    assert r[:7].tolist() == [0, 0, -1, 0, 0, -1, 0]
    # the same F# is in G lydian's... C lydian scale
    r = raw_of("key", [C4, Fs4], ctx(scale="lydian", chords=None))
    assert r[:2].tolist() == [0, 0]


def test_chord_tones_struck_on_beats_weighted_by_strength():
    # bar 0 is C major (C E G), bar 1 G major (G B D); only notes struck on a beat count
    seq = [C4, H, H, H, F4, H, H, H, G4, H, H, H, H, H, H, H, R, H, H, H, B4, H, H, H, C4]
    r = raw_of("chord", seq)
    assert r[0] == 1.0      # downbeat, C in C
    assert r[1] == 0.0      # off-beat
    assert r[4] == 0.0      # other beat, F not in C: a passing tone costs nothing there
    assert r[8] == 0.0      # strong beat, G in C: the bar's cap (+1) was reached on the downbeat
    assert r[12] == 0.0     # beat, G only held
    assert r[16] == 0.0     # rest on the downbeat
    assert r[20] == 0.5     # beat, B in G
    assert r[24] == -0.75   # strong beat, C not in G


def test_chord_pays_at_most_one_downbeat_a_bar():
    # C E G C on the four beats of a C bar: 1 on the downbeat reaches the cap, nothing more
    r = raw_of("chord", [C4, H, H, H, E4, H, H, H, G4, H, H, H, C5, H, H, H])
    assert r[:16].tolist() == [1.0] + [0.0] * 15
    # a passing tone on the downbeat (-1), then chord tones: 0.5 + 0.75 + 0.5 up to the cap
    r = raw_of("chord", [D4, H, H, H, E4, H, H, H, G4, H, H, H, C5, H, H, H])
    assert r[:16].sum() == pytest.approx(0.75) and r[0] == -1.0
    # bar 2 is G major: F on its downbeat costs the full -1 (penalties are not capped)
    r = raw_of("chord", [C4, H, H, H, E4, H, H, H, G4, H, H, H, C5, H, H, H, F4])
    assert r[16] == -1.0


def test_chord_in_three_four_and_for_bass():
    r = raw_of("chord", [D4, H, H, H, A4, H, H, H, E4], ctx(ts=(3, 4)))
    assert r[0] == -1.0 and r[4] == 0.0 and r[8] == 0.5   # 3/4: beats 2 and 3 are weak beats
    bass = ctx(role="bass")
    assert raw_of("chord", [C4], bass)[0] == 1.0                   # root on the downbeat
    assert raw_of("chord", [E4], bass)[0] == 0.5                   # other chord tone
    assert raw_of("chord", [D4], bass)[0] == -1.0                  # not in the chord
    assert raw_of("chord", [D4, H, H, H, D4, H, H, H, F4], bass)[8] == -0.75   # later beats as for a lead


@pytest.mark.parametrize("first", [C4, C5, 2, E4, R, H])
def test_cadence_does_not_pay_for_the_first_note(first):
    # paying for a tonic start made 99.6% of clips open on it (Essen: 39.5%)
    assert raw_of("cadence", [first], ctx(bars=1, chords="I"))[0] == 0.0


@pytest.mark.parametrize("tail,expected", [
    ([C4, H], 1.5),   # tonic still held at the end
    ([H, C4], 1.0),   # tonic struck on the last step
    ([C4, R], 1.0),   # tonic, then a rest: not held
    ([E4, G4], 0.5),  # G, the tonic's fifth: a stable ending, struck on the last step
    ([E4, D4], -0.5),  # D is neither the tonic, its third or fifth, nor the root of the last chord (F)
    ([E4, H], 1.0),   # E, the tonic's third, held: 0.5 + 0.5
    ([E4, F4], 0.5),  # root of the last chord (F) struck on the last step
    ([F4, H], 1.0),   # root of the last chord, held
])
def test_cadence_last_step(tail, expected):
    c = ctx(bars=2, chords="I IV")
    seq = [E4] + [H] * (c.n_steps - 1 - len(tail)) + tail
    r = raw_of("cadence", seq, c)
    assert r[-1] == expected
    assert (r[1:-1] == 0).all()


def test_cadence_mid_phrase_end_every_fourth_bar():
    c = ctx(bars=5, chords="I V vi IV")  # bar 3 is IV (F)
    seq = [E4] + [H] * 62 + [C4]
    r = raw_of("cadence", seq, c)
    assert r[63] == 0.5     # last step of bar 3: tonic
    seq = [E4] + [H] * 62 + [D4]
    assert raw_of("cadence", seq, c)[63] == 0.0


def test_leap_gradual_resolution_and_doubling():
    # C4 -> A4 leaps up (9 semitones) from C4; stepping back down to C4 resolves it
    # (the term pays nothing for it: a bonus per resolved leap paid for leaping)
    r = raw_of("leap", [C4, A4, G4, F4, E4, D4, C4])
    assert r[:7].tolist() == [0, 0, 0, 0, 0, 0, 0]
    # two leaps up in a row: doubled
    r = raw_of("leap", [C4, G4, D5, H])
    assert r[:4].tolist() == [0, 0, -1, 0]


@pytest.mark.parametrize("gap,expected", [(8, 0.0), (7, 0.0), (6, -0.5), (5, -0.5), (0, -0.5)])
def test_leap_back_counts_only_with_more_than_six_steps_between(gap, expected):
    # RL Tuner: more than steps_between_leaps = 6 steps must lie between the two leaps; a quicker
    # leap back is a ping-pong (the hook's C3-F3-C4 riff) and costs
    seq = [C4, A4] + [H] * gap + [C4]  # gap steps lie between the leap and the leap back
    outcome, _, _, _ = observation.leap_update(
        observation.melody_features(np.array([seq[:-1]]), np.array([len(seq) - 1])), np.array([C4]),
        np.array([True]))
    assert outcome[0] == (1 if gap > 6 else 0)
    r = raw_of("leap", seq)
    assert r[len(seq) - 1] == expected
    # either way the leap is no longer pending: a later leap up starts afresh
    r2 = raw_of("leap", seq + [A4])
    assert r2[len(seq)] == 0.0


def test_leap_pending_at_the_end():
    c = ctx(bars=1, chords="I")
    r = raw_of("leap", [C4] + [H] * 14 + [A4], c)
    assert r[-1] == -0.5
    r = raw_of("leap", [C4] + [H] * 14 + [D4], c)
    assert r[-1] == 0.0


@pytest.mark.parametrize("seq,flag_at", [
    ([C4] * 6, [5]),                                         # 5 earlier copies, nothing between
    ([C4, H] * 7 + [C4], [14]),                              # 7 copies with holds between
    ([R, R, R, R], []),                                      # rests and holds: a silence, not a repeat...
    ([C4, H, H, H, H, H, H, H, H], []),                      # ...and a half note is a long note
    ([R] * 18, [16, 17]),                                    # until it passes a bar (16 steps)
    ([C4] + [H] * 17, [16, 17]),
    ([C4, D4] * 8, []),
])
def test_repetition_rule(seq, flag_at):
    r = raw_of("repetition", seq)
    assert np.flatnonzero(r[:len(seq)] == -1).tolist() == flag_at


def test_autocorrelation_hand_worked():
    # x = 14 18 14 18: centred -2 2 -2 2, var 4; lag1 -12/4/4, lag2 8/4/4, lag3 -4/4/4
    b = MelodyBatch.create([ctx()])
    for tok in (C4, E4, C4):
        b.append(np.array([tok]))
    rho = rewards.autocorrelation(b, np.array([E4]), b.features())
    np.testing.assert_allclose(rho[0], [-0.75, 0.5, -0.25])
    r = raw_of("autocorr", [C4, E4, C4, E4])
    assert r[3] == pytest.approx(-1.5)
    assert r[0] == 0.0  # a single token has no variance


def test_motif_and_repeated_motif_once_per_window():
    # judged once per 8-step window (steps 0-7, 8-15, ...): paid per step, a busy run maxed them
    motif = [C4, D4, E4, H, H, H, H, H]
    r = raw_of("motif", motif + motif)
    assert np.flatnonzero(r).tolist() == [7, 15] and r[7] == r[15] == 1.0
    assert raw_of("motif", [C4, D4, E4, F4, H, H, H, H])[7] == pytest.approx(1.1)
    assert raw_of("motif", [C4, D4, C4, D4, H, H, H, H])[7] == 0.0
    rr = raw_of("repeat_motif", motif * 3)
    # the first restatement pays; a third statement of the same motif earns nothing
    assert np.flatnonzero(rr[:24]).tolist() == [15] and rr[15] == 1.0
    four = [C4, D4, E4, F4, H, H, H, H]
    assert raw_of("repeat_motif", four + four)[15] == pytest.approx(1.25)


@pytest.mark.parametrize("a,b,expected", [
    (C4, D4, 0.0), (D4, F4, 0.0), (E4, Gs4, 0.0), (F4, B4, -0.5), (B4, C5, 0.0), (C5, C4, 0.0),
    (C4, G4, 0.0), (D4, A4, 0.0), (C4, B4, -1.5), (C4, D5, -2.0), (C4, F4, 0.0), (C4, A4, -0.25), (C4, C4, 0.0),
    (C4, Gs4, -0.25), (C4, R, 0.0), (C4, H, 0.0),
])
def test_intervals(a, b, expected):
    assert raw_of("intervals", [a, b])[1] == pytest.approx(expected)


def test_intervals_skip_rests_and_holds():
    assert raw_of("intervals", [C4, R, H, B4])[3] == pytest.approx(-1.5)
    assert raw_of("intervals", [D4])[0] == 0.0


def test_range_unique_extremes_and_span():
    c = ctx(bars=1, chords="I")
    r = raw_of("range", [C4, E4, G4, E4, C4], c)
    assert r[-1] == 1.0                  # G once, C twice
    r = raw_of("range", [C4, E4, G4, E4, D4], c)
    assert r[-1] == 2.0
    r = raw_of("range", [C4, 35, C4], c)  # A5 stretches the span to 21 semitones
    assert r[1] == -0.5 and r[2] == 0.0


def test_contour_runs_turns_and_arch():
    r = raw_of("contour", [C4, D4, E4, F4, G4, A4, B4])
    assert r[:7].tolist() == [0, 0, 0, 0, 0, -0.5, -0.5]
    assert raw_of("contour", [C4, D4, E4, D4])[3] == 0.0   # no bonus per turn (it paid for zigzags)
    assert raw_of("contour", [C4, D4, C4])[2] == 0.0   # a run of 1 is not a run
    c = ctx(bars=1, chords="I")
    assert raw_of("contour", [C4, H, H, H, H, H, G4], c)[-1] == 1.0   # peak at step 6 of 16
    assert raw_of("contour", [C4, G4], c)[-1] == 0.0                   # peak at step 1


def test_density_rests_register():
    # density: a bar's (notes - 4) / 3 clipped to [-1, 1], paid as it accrues
    r = raw_of("density", [C4, H, R])
    assert r[:3].tolist() == [-1.0, 0.0, 0.0] and r[:16].sum() == -1.0       # one note: (1 - 4) / 3 -> -1
    r = raw_of("density", [C4, D4, E4, F4, G4] + [H] * 11)
    assert r[:16].sum() == pytest.approx(1 / 3) and r[4] == pytest.approx(1 / 3)
    r = raw_of("density", [C4] * 16)
    assert r[:16].sum() == pytest.approx(1.0) and r[7:16].tolist() == [0.0] * 9  # no pay past the 7th note
    assert raw_of("density", [C4] * 12, ctx(bars=1, ts=(3, 4)))[:12].sum() == pytest.approx(1.0)  # (12 - 3) / 2.25
    # a silence past 8 steps costs every further step (the padding holds keep it silent)
    r = raw_of("rests", [C4, R] + [H] * 9)
    assert r[:11].tolist() == [0] * 9 + [-0.5, -0.5]
    # a bar with 2-8 silent steps earns +1 at its end, once
    breath = [C4, H, H, H, R, H, H, H, E4]
    r = raw_of("rests", breath)
    assert np.flatnonzero(r).tolist() == [15] and r[15] == 1.0
    assert raw_of("rests", [H, H, C4, H])[15] == 1.0      # holds before the first note are silent
    assert raw_of("rests", [C4, R, E4, H])[15] == 0.0     # one silent step is no breath
    assert raw_of("rests", [C4] + [R] * 9 + [E4])[15] == 0.0  # nine are more than a breath
    # the register is judged once a bar, as the mean height of its notes (not per note)
    r = raw_of("register", [C5, 2, 37, H])
    assert np.flatnonzero(r).tolist() == [15]
    assert r[15] == pytest.approx((6.5 / 12 - 1.0 + 1.0) / 3)
    busy = raw_of("register", [37] * 6 + [H] * 10)
    assert busy[15] == raw_of("register", [37] + [H] * 15)[15] == 1.0


# -------------------------------------------- RL Tuner's rules, transcribed plainly

def ref_excessive(comp: list[int], a: int) -> bool:
    count, breaks, held = 0, False, False
    for tok in reversed(comp):
        if tok == a:
            count += 1
        elif tok == R:
            breaks = True
        elif tok == H:
            held = True
        else:
            break
    if a == R and count > 1:
        return True
    if not held and not breaks:
        return count > 4
    return count > 6


def ref_autocorr(seq: list[int], lag: int) -> float:
    x = np.asarray(seq, float)
    n = len(x)
    var = x.var()
    if var < 1e-9:
        return float("nan")
    xc = x - x.mean()
    return float((xc[lag:] * xc[:n - lag]).sum() / n / var)


def ref_leaps(seq: list[int]) -> tuple[list[int], bool]:
    """Leap outcome per step (+1 resolved, -1 doubled) and whether a leap is pending at the end.

    RL Tuner's ``detect_leap_up_back`` as written: ``steps_since_last_leap`` goes up by one for
    every step that is not a leap (rests and holds included) and back to 0 at a leap; a leap back
    resolves only when it is above ``steps_between_leaps`` = 6 at that moment."""
    out, direction, frm, since = [], 0, None, 0
    for i, a in enumerate(seq):
        if i == 0:
            out.append(0)
            continue
        if a in (R, H):
            since += 1
            out.append(0)
            continue
        prev = next((p for p in reversed(seq[:i]) if p >= 2), None)
        iv = abs(a - prev) if prev is not None else 0
        outcome = 0
        if iv >= 7:
            up = a > prev
            d = 1 if up else -1
            if direction != 0:
                if direction != d:
                    outcome = 1 if since > 6 else 0
                    direction, frm = 0, None
                else:
                    outcome = -1
            else:
                direction, frm = d, prev
            since = 0
        else:
            since += 1
            if (direction == 1 and a <= frm) or (direction == -1 and a >= frm):
                outcome = 1
                direction, frm = 0, None
        out.append(outcome)
    return out, direction != 0


def ref_repeated_motif(comp: list[int]) -> bool:
    if len(comp) < 8:
        return False
    win = comp[-8:]
    if len({t for t in win if t >= 2}) < 3:
        return False
    prev = comp[:-8]
    return any(prev[i:i + 8] == win for i in range(len(prev) - 7))


def leap_bookkeeping(contexts: list[MelodyContext], seqs: list[list[int]]) -> list[list[int]]:
    """The reward's leap outcome (+1 resolved, -1 doubled, 0) at every step of each melody, from
    :func:`engine.mdp.observation.leap_update` on the batch's features as the term sees them."""
    batch = MelodyBatch.create(contexts)
    out = []
    for t in range(max(c.n_steps for c in contexts)):
        acts = np.array([s[t] if t < len(s) else H for s in seqs])
        outcome, _, _, _ = observation.leap_update(batch.features(), acts, batch.step > 0)
        out.append(outcome)
        batch.append(acts)
    return [np.stack(out, axis=1)[i, :len(s)].tolist() for i, s in enumerate(seqs)]


def random_melody(rng: np.random.Generator, n: int) -> list[int]:
    """Melodies with plenty of repeats, rests, holds and leaps."""
    pool = np.array([R, H, H, C4, D4, E4, G4, C5, 2, 35])
    seq = rng.choice(pool, size=n).tolist()
    for i in range(8, n - 8, 11):  # copy motifs forward so repeats occur
        if rng.random() < 0.5:
            seq[i:i + 8] = seq[i - 8:i]
    return seq[:n]


@pytest.mark.parametrize("seed", range(6))
def test_terms_match_rl_tuner_rules_on_random_melodies(seed):
    rng = np.random.default_rng(seed)
    c = ctx(bars=3)
    seq = random_melody(rng, c.n_steps)
    fn = RewardFunction(styles.BUILTIN_TERMS)
    _, raw = fn.score(c, seq)
    col = {t: raw[:, i] for i, t in enumerate(styles.BUILTIN_TERMS)}
    leaps, pending = ref_leaps(seq)
    assert leap_bookkeeping([c], [seq])[0] == leaps
    for i in range(len(seq)):
        comp, a = seq[:i], seq[i]
        if a >= 2:  # for rests and holds the term departs from RL Tuner (test_repetition_rule)
            assert (col["repetition"][i] == -1) == ref_excessive(comp, a), i
        rhos = [ref_autocorr(comp + [a], lag) for lag in (1, 2, 3)]
        want = -sum(abs(r) for r in rhos if not np.isnan(r) and abs(r) > 0.15)
        assert col["autocorr"][i] == pytest.approx(want, abs=1e-4), i
        window = (comp + [a])[-8:]
        distinct = len({t for t in window if t >= 2})
        window_end = (i + 1) % 8 == 0
        assert (col["motif"][i] > 0) == (window_end and distinct >= 3), i
        assert (col["repeat_motif"][i] > 0) <= ref_repeated_motif(comp + [a]), i
        if leaps[i] == -1:
            assert col["leap"][i] <= -1, i
        elif i < len(seq) - 1:
            assert col["leap"][i] in (0.0, -0.5), i


@pytest.mark.parametrize("seed", range(4))
def test_terms_count_what_the_evaluation_metrics_count(seed):
    """The RL Tuner terms fire exactly where engine.evaluation.metrics (the yardstick) counts."""
    metrics = pytest.importorskip("engine.evaluation.metrics")
    rng = np.random.default_rng(100 + seed)
    c = ctx(bars=2, chords="I")
    seq = random_melody(rng, c.n_steps)
    seq[-1] = H
    _, raw = RewardFunction().score(c, seq)
    col = {t: raw[:, i] for i, t in enumerate(styles.BUILTIN_TERMS)}
    pitch = np.asarray(seq) >= 2  # for rests and holds the repetition term departs from RL Tuner
    np.testing.assert_array_equal((col["repetition"] == -1)[pitch], metrics.repeated_flags(seq)[pitch])
    np.testing.assert_array_equal(col["key"] == -1, metrics.not_in_key_flags(seq, "major"))
    in_motif, repeated = metrics.motif_flags(seq)
    window_end = (np.arange(len(seq)) + 1) % 8 == 0  # the terms judge each 8-step window once
    np.testing.assert_array_equal(col["motif"] > 0, in_motif & window_end)
    assert ((col["repeat_motif"] > 0) <= (repeated & window_end)).all()
    outcome = np.array(leap_bookkeeping([c], [seq])[0])
    assert (int((outcome == 1).sum()), int((outcome == -1).sum())) == metrics.leap_outcomes(seq)
    high, low = metrics.unique_extremes(seq)
    assert col["range"][-1] == high + low
    rho = [metrics.autocorrelation(seq, lag) for lag in (1, 2, 3)]
    assert col["autocorr"][-1] == pytest.approx(-sum(abs(r) for r in rho if abs(r) > 0.15), abs=1e-4)


def test_batch_rows_are_independent():
    """Scoring rows together gives the same raw rewards as scoring each alone."""
    rng = np.random.default_rng(3)
    contexts = [ctx(bars=1), ctx(bars=2, ts=(3, 4)), ctx(bars=1, role="bass")]
    seqs = [random_melody(rng, c.n_steps) for c in contexts]
    fn = RewardFunction()
    alone = [fn.score(c, s)[1] for c, s in zip(contexts, seqs)]
    batch = MelodyBatch.create(contexts)
    w = np.ones((3, len(fn.terms)), np.float32)
    for t in range(max(c.n_steps for c in contexts)):
        active = batch.step < batch.n_steps
        acts = np.array([s[t] if t < len(s) else H for s in seqs])
        total, raw = fn(batch, acts, w)
        for r in np.flatnonzero(active):
            np.testing.assert_array_equal(raw[r], alone[r][t])
            assert total[r] == pytest.approx(raw[r].sum())
        batch.append(acts, active)


# ------------------------------------------------------------------ weights, prior

def test_total_is_weighted_sum():
    fn = RewardFunction(("key", "intervals"))
    b = MelodyBatch.create([ctx(terms=("key", "intervals"))] * 2)
    b.append(np.array([C4, C4]))
    total, raw = fn(b, np.array([Fs4, B4]), np.array([[2.0, 1.0], [2.0, -1.0]], np.float32))
    assert raw.tolist() == [[-1.0, -0.5], [0.0, -1.5]]   # F# out of key, a tritone; B a seventh
    assert total.tolist() == [-2.5, 1.5]
    assert total.dtype == np.float32 and raw.dtype == np.float32


class UniformPrior:
    def log_probs(self, obs):
        assert obs.shape[1] == observation.obs_dim(0)
        return np.full((obs.shape[0], 38), -np.log(38), np.float32)


class PeakedPrior:
    def log_probs(self, obs):
        lp = np.full((obs.shape[0], 38), -30.0, np.float32)
        lp[:, C4] = 0.0
        return lp


def test_prior_term():
    b = MelodyBatch.create([ctx()] * 2)
    w = np.ones((2, len(styles.BUILTIN_TERMS)), np.float32)
    col = styles.BUILTIN_TERMS.index("prior")
    _, raw = RewardFunction(prior=UniformPrior())(b, np.array([C4, R]), w)
    np.testing.assert_allclose(raw[:, col], 0.0, atol=1e-6)
    _, raw = RewardFunction(prior=PeakedPrior())(b, np.array([C4, R]), w)
    np.testing.assert_allclose(raw[:, col], [np.log(38), rewards.PRIOR_FLOOR], rtol=1e-6)


def test_theory_scale_multiplies_every_term_but_the_prior():
    b = MelodyBatch.create([ctx()] * 2)
    rng = np.random.default_rng(0)
    w = rng.uniform(-5, 5, (2, len(styles.BUILTIN_TERMS))).astype(np.float32)
    plain, raw = RewardFunction(prior=PeakedPrior())(b, np.array([C4, Fs4]), w)
    scaled, raw2 = RewardFunction(prior=PeakedPrior(), theory_scale=2.0)(b, np.array([C4, Fs4]), w)
    np.testing.assert_array_equal(raw, raw2)
    scale = np.array([1.0 if t == "prior" else 2.0 for t in styles.BUILTIN_TERMS], np.float32)
    np.testing.assert_array_equal(scaled, (raw * w * scale).sum(axis=1, dtype=np.float32))
    np.testing.assert_array_equal(plain, (raw * w).sum(axis=1, dtype=np.float32))
    with pytest.raises(RewardError, match="theory_scale 0"):
        RewardFunction(theory_scale=0)


def test_given_prior_log_probs_are_the_prior_terms_input():
    """Training hands the environment the prior's log-probs it computed already: same reward."""
    env_a = VecMelodyEnv(4, EnvConfig(), reward=RewardFunction(prior=PeakedPrior()), seed=3)
    env_b = VecMelodyEnv(4, EnvConfig(), reward=RewardFunction(prior=PeakedPrior()), seed=3)
    obs_a, obs_b = env_a.reset(), env_b.reset()
    rng = np.random.default_rng(1)
    for _ in range(30):
        a = rng.integers(0, 38, 4)
        given = PeakedPrior().log_probs(obs_b[:, :observation.obs_dim(0)])
        obs_a, r_a, _, info_a = env_a.step(a)
        obs_b, r_b, _, info_b = env_b.step(a, prior_log_probs=given)
        np.testing.assert_array_equal(r_a, r_b)
        np.testing.assert_array_equal(info_a["terms"], info_b["terms"])
    with pytest.raises(RewardError, match=r"prior log-probs have shape \(1, 38\)"):
        env_b.step(a, prior_log_probs=np.zeros((1, 38), np.float32))


def test_missing_prior_warns_once(caplog):
    fn = RewardFunction()
    b = MelodyBatch.create([ctx()])
    w = np.ones((1, len(fn.terms)), np.float32)
    with caplog.at_level(logging.WARNING, logger="engine.mdp.rewards"):
        fn(b, np.array([C4]), w)
        fn(b, np.array([C4]), w)
    assert sum("prior" in r.message for r in caplog.records) == 1


# -------------------------------------------------------------------- bad input

def test_bad_inputs_name_the_value():
    fn = RewardFunction(("key",))
    b = MelodyBatch.create([ctx(terms=("key",))])
    with pytest.raises(RewardError, match="action 38 is out of range"):
        fn(b, np.array([38]), np.ones((1, 1), np.float32))
    with pytest.raises(RewardError, match=r"weights have shape \(1, 2\)"):
        fn(b, np.array([3]), np.ones((1, 2), np.float32))
    with pytest.raises(RewardError, match="got 2 actions"):
        fn(b, np.array([3, 4]), np.ones((1, 1), np.float32))
    with pytest.raises(RewardError, match="'nope' is not known"):
        RewardFunction(("key", "nope"))
    with pytest.raises(RewardError, match="listed twice"):
        RewardFunction(("key", "key"))
    with pytest.raises(RewardError, match="at least one term"):
        RewardFunction(())
    with pytest.raises(RewardError, match="melody has 3 tokens but its context 32 steps"):
        fn.score(ctx(terms=("key",)), [C4, C4, C4])
    assert issubclass(RewardError, EngineError)


# ------------------------------------------------------------------ custom terms

def high_c(batch, actions, feats):
    """+1 for the tonic an octave up."""
    return (actions == C5).astype(np.float32)


@pytest.fixture
def sparkle():
    rewards.register_term("sparkle", high_c, doc="+1 for C5")
    yield "sparkle"
    rewards.unregister_term("sparkle")


def test_custom_term_changes_reward_and_observation(sparkle):
    assert "sparkle" in rewards.available_terms()
    assert rewards.term_doc("sparkle") == "+1 for C5"
    terms = styles.BUILTIN_TERMS + (sparkle,)
    fn = RewardFunction(terms)
    b = MelodyBatch.create([ctx(terms=terms)] * 2)
    w = np.zeros((2, len(terms)), np.float32)
    w[:, -1] = [2.0, 0.0]
    total, raw = fn(b, np.array([C5, C5]), w)
    assert raw[:, -1].tolist() == [1.0, 1.0]
    assert total.tolist() == [2.0, 0.0]
    # the style segment grows by one column, and the env carries the weight through
    cfg = EnvConfig(terms=terms, style="folk,sparkle=3")
    env = VecMelodyEnv(2, cfg, seed=1)
    obs = env.reset()
    assert env.obs_dim == observation.obs_dim(len(styles.BUILTIN_TERMS)) + 1 == obs.shape[1]
    np.testing.assert_allclose(obs[:, -1], 3 / styles.MAX_WEIGHT)
    _, reward, _, info = env.step(np.array([C5, D5]))
    assert info["terms"][:, -1].tolist() == [1.0, 0.0]
    np.testing.assert_allclose(reward, (info["terms"] * env.weights).sum(axis=1), rtol=1e-6)
    # presets do not mention custom terms; random training styles do, half of the time
    assert styles.parse_style("folk", terms)["sparkle"] == 0.0
    rng = np.random.default_rng(0)
    drawn = [styles.sample_style(rng, terms)["sparkle"] for _ in range(200)]
    assert 0.3 < np.mean(np.array(drawn) > 0) < 0.7 and max(drawn) <= 2.0


def test_register_term_errors(sparkle):
    with pytest.raises(RewardError, match="already registered"):
        rewards.register_term("sparkle", high_c)
    rewards.register_term("sparkle", high_c, replace=True)
    with pytest.raises(RewardError, match="built in"):
        rewards.register_term("key", high_c, replace=True)
    with pytest.raises(RewardError, match="name 'Bad Name' is not valid"):
        rewards.register_term("Bad Name", high_c)
    with pytest.raises(RewardError, match="not callable"):
        rewards.register_term("other", 3)  # type: ignore[arg-type]
    with pytest.raises(RewardError, match="not a registered custom term"):
        rewards.unregister_term("key")


def test_custom_term_bad_output():
    rewards.register_term("broken", lambda b, a, f: np.zeros(3, np.float32))
    rewards.register_term("nan_term", lambda b, a, f: np.full(b.size, np.nan, np.float32))
    try:
        b = MelodyBatch.create([ctx(terms=("broken",))])
        with pytest.raises(RewardError, match=r"'broken' returned shape \(3,\)"):
            RewardFunction(("broken",))(b, np.array([3]), np.ones((1, 1), np.float32))
        with pytest.raises(RewardError, match="'nan_term' returned a non-finite"):
            RewardFunction(("nan_term",))(b, np.array([3]), np.ones((1, 1), np.float32))
    finally:
        rewards.unregister_term("broken")
        rewards.unregister_term("nan_term")


# ------------------------------------------------------------- structure terms

BAR_A = [C4, H, E4, H, G4, H, H, H, E4, H, H, H, C4, H, H, H]
BAR_B = [G4, H, H, H, E4, H, D4, H, C4, H, H, H, H, H, H, H]


def per_bar(term: str, seq: list[int], bars: int) -> list[float]:
    r = raw_of(term, seq, ctx(bars=bars))
    return [round(float(r[b * 16:(b + 1) * 16].sum()), 3) for b in range(bars)]


BAR_A2 = BAR_A[:12] + [D4, H, H, H]   # bar A with its last note changed: 4 of its 5 notes restated


def test_bar_repeat_rewards_the_riff_and_charges_a_third_copy():
    # judged at each bar's end: a copy +0.5, a third copy in a row -1, another bar 0
    assert per_bar("bar_repeat", BAR_A + BAR_A + BAR_A + BAR_B, 4) == [0.0, 0.5, -1.0, 0.0]
    # a varied restatement (>= half the notes at the same step and pitch) earns the most
    assert per_bar("bar_repeat", BAR_A + BAR_A2 + BAR_A, 3) == [0.0, 1.0, 0.5]
    # a 2-bar riff: copies two bars back, its third statement costs
    assert per_bar("bar_repeat", (BAR_A + BAR_B) * 3, 6) == [0.0, 0.0, 0.5, 0.5, -1.0, -1.0]
    # silence restates nothing: paid per step, copied rests and holds maxed the old term
    assert per_bar("bar_repeat", [R] + [H] * 63, 4) == [0.0, 0.0, 0.0, 0.0]


def test_phrase_return_answers_bars_one_two_and_varies_the_end():
    seq = BAR_A + BAR_B + BAR_B + BAR_B + BAR_A + BAR_B + BAR_B + BAR_A
    assert per_bar("phrase_return", seq, 8) == [0, 0, 0, 0, 1.0, 1.0, -1.0, 0.0]  # bar 7 copies bar 3 whole
    other = BAR_A + BAR_B + BAR_B + BAR_B + BAR_B + BAR_A + BAR_A + BAR_A
    assert per_bar("phrase_return", other, 8) == [0, 0, 0, 0, -0.5, -0.5, 0.0, 0.0]
    assert per_bar("phrase_return", [R] + [H] * 127, 8) == [0, 0, 0, 0, -0.5, -0.5, 0.0, 0.0]


def test_rhythm_motif_compares_onsets_with_one_or_two_bars_back():
    busy = [C4, D4] * 8
    # bar 2 shares 5 of 16 onset steps with bar 1 (0.31: neither); bar 3 strikes exactly as bar 1
    assert per_bar("rhythm_motif", BAR_A + busy + BAR_A, 3) == [0.0, 0.0, 0.5]
    # B shares 3 of the 6 onset steps of A and B (0.5)
    assert per_bar("rhythm_motif", BAR_A + BAR_B, 2) == [0.0, 0.5]
    offbeat = [H, C4, H, D4, H, E4, H, F4] + [H] * 8
    assert per_bar("rhythm_motif", BAR_A + offbeat, 2) == [0.0, -0.25]
    assert per_bar("rhythm_motif", BAR_A + [C4] + [H] * 15, 2) == [0.0, 0.0]   # one note: no rhythm


def test_phrase_cadence_lands_and_holds_at_phrase_ends():
    hold = [C4, H, E4, H, D4, H, E4, H, C4] + [H] * 7       # C on the half bar of bar 4, then held
    busy = [C4, H, E4, H, D4, H, E4, H, C4, D4, E4, D4, C4, H, H, H]
    seq = BAR_A * 3
    assert per_bar("phrase_cadence", seq + hold, 4)[3] == 1.0 + 7 * 0.25
    assert per_bar("phrase_cadence", seq + busy, 4)[3] == 1.0 - 4 * 0.5 + 3 * 0.25
    assert per_bar("phrase_cadence", seq + hold, 4)[:3] == [0, 0, 0]  # bars 1-3 end no phrase


def test_crowding_charges_notes_beyond_six_a_bar():
    busy = [C4, D4] * 8
    assert per_bar("crowding", busy + BAR_A, 2) == [-10.0, 0.0]
    r = raw_of("crowding", [C4] * 12, ctx(bars=1, ts=(3, 4)))       # 3/4: 12 steps, cap ceil(4.5) = 5
    assert r.tolist() == [0.0] * 5 + [-1.0] * 7


def test_leap_term_and_leap_metric_agree_on_random_melodies():
    """The reward's leap bookkeeping and the evaluation metric's count the same leaps on melodies
    whose leaps fall 4-10 steps apart (around RL Tuner's boundary of more than 6 between)."""
    metrics = pytest.importorskip("engine.evaluation.metrics")
    rng = np.random.default_rng(7)
    contexts = [ctx(bars=4, chords="I") for _ in range(64)]
    seqs = []
    for c in contexts:
        seq: list[int] = []
        while len(seq) < c.n_steps:
            seq.append(int(rng.choice([C4, G4, C5, 2, 35, D4, A4])))
            seq.extend([int(rng.choice([H, H, R, E4, F4]))] * int(rng.integers(3, 10)))
        seqs.append(seq[:c.n_steps])
    outcomes = leap_bookkeeping(contexts, seqs)
    _, raw = RewardFunction(("leap",)).score(contexts[0], seqs[0])
    total = np.zeros(2, int)
    for row, seq in zip(outcomes, seqs):
        assert row == ref_leaps(seq)[0]
        got = (row.count(1), row.count(-1))
        assert got == metrics.leap_outcomes(seq)
        total += got
    assert total.min() >= 20  # the test bed does exercise both outcomes


def test_leap_term_charges_doubled_leaps_and_ping_pong():
    # C4 G4 (leap up) D5 (doubled: -1); the hook's C3-F3-C4 riff leaps back after 0 steps between: -0.5
    r = raw_of("leap", [C4, G4, D5])
    assert r[2] == -1.0
    riff = [2, 7, 14] * 10
    r = raw_of("leap", riff)
    assert r[3] == -0.5 and (r[:30] <= 0).all()


@pytest.mark.parametrize("scale", theory.SCALE_NAMES)
def test_key_uses_the_requested_scale_so_characteristic_degrees_cost_nothing(scale):
    # the 7th of major and harmonic minor, #4 of lydian, natural 6 of dorian: in the scale, no cost
    c = ctx(bars=1, chords=None, scale=scale)
    mask = theory.scale_mask(scale)
    seq = list(range(C4, C4 + 12)) + [H] * 4
    r = raw_of("key", seq, c)
    assert r[:12].tolist() == [0.0 if mask[pc] else -1.0 for pc in range(12)]



def test_pace_charges_a_bar_of_fewer_than_two_pitches_but_not_the_last():
    c = ctx(bars=3, chords="I")
    r = raw_of("pace", [C4, H, C4, H] * 4 + [C4, D4] + [H] * 14 + [C4] + [H] * 15, c)
    assert np.flatnonzero(r).tolist() == [15] and r[15] == -1.0   # bar 1: one pitch; bar 3 is the last


def test_note_length_charges_sixteenths_and_eighths_when_the_note_ends():
    c = ctx(bars=1, chords="I")
    r = raw_of("note_length", [C4, D4, H, E4, H, H, H, F4, R, G4, H, H, H, H, H, H], c)
    assert r[1] == -1.0       # C lasted one step
    assert r[3] == -0.25      # D lasted two
    assert r[7] == 0.0        # E lasted four
    assert r[8] == -1.0       # F, cut by the rest after one step
    assert r[15] == 0.0       # G held to the end: seven steps
    assert raw_of("note_length", [C4] * 16, c)[15] == -2.0   # the last step ends two 16ths


def test_span_charges_notes_stretching_the_range_past_an_octave():
    r = raw_of("span", [C4, C5, D5, 2, B4])
    assert r[:5].tolist() == [0.0, 0.0, -1.0, -1.0, 0.0]


def test_steps_pays_a_bar_that_moves_by_step_once():
    c = ctx(bars=3, chords="I")
    arpeggio = [C4, H, H, H, E4, H, H, H, G4, H, H, H, C5, H, H, H]
    run = [C4, D4, E4, F4, G4, A4, B4, C5] + [H] * 8
    r = raw_of("steps", arpeggio + run + [B4] + [H] * 15, c)
    assert np.flatnonzero(r).tolist() == [31, 47] and r[31] == r[47] == 1.0   # C5 -> B4 across the bar line
