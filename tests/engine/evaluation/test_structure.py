"""Structure measures (engine.evaluation.structure) and the classifier two-sample test (engine.evaluation.twosample)."""

import math

import numpy as np
import pytest

from engine.base.errors import EngineError
from engine.evaluation import structure, twosample

C, D, E, G = 14, 16, 18, 21
BAR_A = [C, 1, D, 1, E, 1, 1, 1, G, 1, 1, 1, E, 1, 1, 1]          # 5 notes
BAR_B = [G, 1, 1, 1, E, 1, D, 1, C, 1, 1, 1, 0, 1, 1, 1]          # 4 notes, another rhythm
BAR_A_RHYTHM = [E, 1, D, 1, C, 1, 1, 1, D, 1, 1, 1, C, 1, 1, 1]    # A's rhythm, other pitches


def test_sounding_codes_onsets_holds_and_silence():
    seq = [1, C, 1, 0, 1, D]
    assert structure.sounding(seq).tolist() == [-1, 2 * C + 1, 2 * C, -1, -1, 2 * D + 1]


def test_bar_repeats_rhythm_and_near():
    seq = BAR_A + BAR_B + BAR_A_RHYTHM + BAR_A
    rhythm, near = structure.bar_repeats(seq, 16)
    assert rhythm.tolist() == [False, False, True, True]
    assert near.tolist() == [False, False, False, True]


def test_near_repeat_needs_three_quarters_of_the_steps():
    varied = list(BAR_A)
    varied[8:12] = [C, 1, 1, 1]           # 4 of 16 steps differ: 75% still match
    assert structure.bar_repeats(BAR_A + varied, 16)[1].tolist() == [False, True]
    varied[12] = D                         # a fifth step differs
    assert structure.bar_repeats(BAR_A + varied, 16)[1].tolist() == [False, False]


def test_a_held_step_matches_only_the_same_held_pitch():
    long_a = [C] + [1] * 7 + [E] + [1] * 7
    long_b = [D] + [1] * 7 + [G] + [1] * 7  # 14 of 16 tokens equal (holds), no step sounds alike
    assert structure.bar_repeats(long_a + long_b, 16)[1].tolist() == [False, False]
    assert structure.bar_repeats(long_a + long_a, 16)[1].tolist() == [False, True]


def test_phrase_return_and_short_melodies():
    answer = BAR_A + BAR_B + BAR_B + BAR_B + BAR_A + BAR_B + BAR_A_RHYTHM + BAR_A_RHYTHM
    assert structure.phrase_return(answer, 16) is True
    no = BAR_A + BAR_B + BAR_B + BAR_B + BAR_B + BAR_A + BAR_A + BAR_A
    assert structure.phrase_return(no, 16) is False
    assert structure.phrase_return(BAR_A * 5, 16) is None


def test_structure_stats_pool_over_bars_and_melodies():
    one = BAR_A + BAR_B + BAR_A_RHYTHM + BAR_A + BAR_A + BAR_B + BAR_B + BAR_B
    stats = structure.structure_stats([one, BAR_B * 2], 16)
    # melody 1 (A B A' A A B B B): rhythm repeats at bars 3-8 (6 of 7), near at 4-8 (5 of 7);
    # melody 2: its bar 2 repeats both ways
    assert stats["rhythm_repeat"] == pytest.approx(7 / 8)
    assert stats["near_repeat"] == pytest.approx(6 / 8)
    assert stats["phrase_return"] == 1.0          # only melody 1 has 6+ bars
    assert stats["notes_per_bar"] == pytest.approx((36 / 8 + 4) / 2)  # mean over melodies
    assert stats["last_on_tonic"] == 1.0          # both end on C (BAR_B's last note)
    assert stats["pitch_range"] == pytest.approx(7.0)


def test_last_note_and_range():
    assert structure.last_on_tonic([C, 1, G, 0]) is False
    assert structure.last_on_tonic([G, C + 12, 0, 1]) is True
    assert structure.last_on_tonic([0, 1]) is False
    assert math.isnan(structure.pitch_range([0, 1, 0]))


def test_bad_lengths_are_refused():
    with pytest.raises(EngineError, match="whole number of bars"):
        structure.structure_stats([[C] * 10], 16)
    with pytest.raises(EngineError, match="no melodies"):
        structure.structure_stats([], 16)


def _melodies(rng, n, busy):
    out = []
    for _ in range(n):
        seq = []
        for _bar in range(4):
            for beat in range(4):
                if busy:
                    seq += list(rng.choice([C, D, E, G], 4))
                else:
                    seq += [int(rng.choice([C, D, E, G]))] + [1] * 3 if beat % 2 == 0 else [1, 1, 1, 1]
        out.append(np.array(seq))
    return out


def test_two_sample_tells_different_sets_apart_and_names_the_features():
    rng = np.random.default_rng(0)
    busy = twosample.feature_matrix(_melodies(rng, 60, True), 16)
    calm = twosample.feature_matrix(_melodies(rng, 60, False), 16)
    res = twosample.two_sample_test(busy, calm)
    assert res.auc > 0.95 and res.n_per_set == 60 and len(res.auc_folds) == 5
    names = [g["feature"] for g in res.give_away]
    assert any("sixteenth" in n or "notes per bar" in n or "16th" in n for n in names)
    top = res.give_away[0]
    assert (top["weight"] > 0) == (top["mean_a"] > top["mean_b"])


def test_two_sample_calibration_reads_near_chance():
    rng = np.random.default_rng(1)
    same = twosample.feature_matrix(_melodies(rng, 200, False) + _melodies(rng, 200, True), 16)
    assert abs(twosample.calibration(same).auc - 0.5) < 0.12


def test_feature_names_match_the_row_and_small_sets_are_refused():
    row = twosample.features(np.array(BAR_A * 2), 16)
    assert row.shape == (len(twosample.feature_names()),)
    with pytest.raises(EngineError, match="at least 10"):
        twosample.two_sample_test(np.zeros((4, row.size)), np.zeros((4, row.size)))
