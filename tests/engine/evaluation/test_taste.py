"""The reward model of the musician's taste and the simulated musician (engine.evaluation.taste, .musician)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.evaluation.evaluate import clip_tokens
from engine.evaluation.musician import ALL_TASTES, DEV_TASTES, FEATURES, TASTES, Musician, hidden_features
from engine.evaluation.taste import (
    MIN_PER_CLASS,
    MIN_VERDICTS,
    REPRESENTATIONS,
    RewardModel,
    TasteError,
    check_verdict_counts,
    descriptors,
    fit_reward_model,
    plot_calibration,
    representations_of,
    taste_features,
)


@pytest.fixture(scope="module")
def shipped_clips():
    """Melodies of the shipped model: 300 to calibrate the musician, 300 to judge, 200 fresh."""
    from engine.runtime import Policy

    policy = Policy.load()
    seqs = [clip_tokens(c) for c in policy.generate_many(800, seed=77, bars=4)]
    return seqs[:300], seqs[300:600], seqs[600:]


def true_log_odds(m: Musician, seqs) -> np.ndarray:
    p = m.keep_probability(seqs)
    return np.log(p / (1 - p))


def test_descriptors_read_register_steps_length_offbeats_and_density():
    # C D E F as quarters (tokens 14, 16, 18, 19 each held 4 steps) over one 4/4 bar
    seq = [14, 1, 1, 1, 16, 1, 1, 1, 18, 1, 1, 1, 19, 1, 1, 1]
    register, steps, length, offbeat, per_bar = descriptors(seq, 16)
    assert register == pytest.approx(np.mean([14, 16, 18, 19]) / 35)
    assert steps == 1.0 and length == pytest.approx(4 / 16) and offbeat == 0.0 and per_bar == pytest.approx(4 / 16)
    syncopated = [0, 0, 14, 1, 0, 0, 16, 1, 0, 0, 18, 1, 0, 0, 19, 1]
    assert descriptors(syncopated, 16)[3] == 1.0


def test_hidden_features_read_leaps_repeats_range_rests_and_the_last_note():
    # C, G above (a leap of 7), G again, rest, then C an octave up (a leap of 5), one 4/4 bar
    seq = [14, 1, 1, 1, 21, 1, 1, 1, 21, 1, 0, 0, 26, 1, 1, 1]
    leaps, repeats, span, rests, tonic_end = hidden_features(seq)
    assert leaps == pytest.approx(2 / 3) and repeats == pytest.approx(1 / 3)
    assert span == pytest.approx(12 / 24) and rests == pytest.approx(2 / 16) and tonic_end == 1.0
    assert hidden_features(seq[:-4])[4] == 0.0  # ends on G
    assert list(hidden_features([0] * 16)) == [0.0, 0.0, 0.0, 1.0, 0.0]  # silence: all rests, no notes


def test_development_tastes_are_apart_from_the_evaluation_tastes():
    """The defaults are chosen on DEV_TASTES: they must not be the evaluation tastes."""
    assert not set(DEV_TASTES) & set(TASTES) and ALL_TASTES == {**TASTES, **DEV_TASTES}
    hidden = {n for n, _ in FEATURES[5:]}
    leaning = [name for name, taste in DEV_TASTES.items() if set(taste) & hidden]
    assert 0 < len(leaning) < len(DEV_TASTES)  # some lean on hidden features, some on the descriptors alone
    for name, taste in DEV_TASTES.items():
        assert all(taste != t for t in TASTES.values()), name


def test_the_musician_keeps_its_base_rate_of_the_reference(shipped_clips):
    ref, _, fresh = shipped_clips
    for name, taste in ALL_TASTES.items():
        m = Musician.calibrated(name, taste, ref, base_rate=0.3)
        assert m.keep_probability(ref).mean() == pytest.approx(0.3, abs=1e-3)
        opp = m.opposite(ref)
        assert opp.keep_probability(ref).mean() == pytest.approx(0.3, abs=1e-3)
        # opposite tastes rank clips in reverse
        assert np.corrcoef(true_log_odds(m, fresh), true_log_odds(opp, fresh))[0, 1] < -0.99


@pytest.mark.parametrize("taste", ["high-register", *(pytest.param(t, marks=pytest.mark.slow)
                                                      for t in TASTES if t != "high-register")])
def test_the_reward_model_recovers_a_synthetic_taste(shipped_clips, taste):
    ref, judged, fresh = shipped_clips
    m = Musician.calibrated(taste, TASTES[taste], ref)
    y = m.judge(judged, np.random.default_rng(1))
    model = fit_reward_model(representations_of(judged, 16), y, seed=0)
    assert model.representation in REPRESENTATIONS and model.n_verdicts == 300 and model.n_keep == int(y.sum())
    # held-out verdicts it never saw are ranked well above chance...
    assert model.heldout_auc > 0.7, model.summary()
    # ...and on fresh clips its log-odds follow the hidden taste's
    r = np.corrcoef(model.score(fresh, 16), true_log_odds(m, fresh))[0, 1]
    assert r > 0.6, r
    assert sum(b["n"] for b in model.calibration) == model.n_heldout
    again = RewardModel.from_dict(model.to_dict())
    assert np.allclose(again.score(fresh[:5], 16), model.score(fresh[:5], 16))


def test_shuffled_verdicts_teach_nothing(shipped_clips):
    """The negative control: labels that do not depend on the clip give a held-out AUC near chance."""
    ref, judged, _ = shipped_clips
    aucs = []
    for seed in range(2):
        y = np.random.default_rng(seed).permutation(np.r_[np.ones(90, np.int64), np.zeros(210, np.int64)])
        aucs.append(fit_reward_model(representations_of(judged, 16), y, seed=seed).heldout_auc)
    assert np.mean(aucs) < 0.65, aucs


def test_the_representation_is_picked_by_validation(shipped_clips):
    ref, judged, _ = shipped_clips
    m = Musician.calibrated("high-register", TASTES["high-register"], ref)
    y = m.judge(judged, np.random.default_rng(2))
    noise = np.random.default_rng(3).normal(size=(len(judged), 8))
    model = fit_reward_model({"noise": noise, "features": taste_features(judged, 16)}, y, seed=0)
    assert model.representation == "features"
    assert set(model.validation) == {"noise", "features"}
    assert model.validation["features"]["cv_log_loss"] < model.validation["noise"]["cv_log_loss"]


@pytest.mark.parametrize(("keeps", "discards", "needle"), [
    (0, 0, f"only 0 verdicts recorded: a taste model needs at least {MIN_VERDICTS}, so {MIN_VERDICTS} more"),
    (5, 7, f"only 12 verdicts recorded: a taste model needs at least {MIN_VERDICTS}, so 8 more"),
    (2, 40, f"only 2 of 42 verdicts are kept: a taste model needs at least {MIN_PER_CLASS} of each, so 3 more kept"),
    (40, 1, f"only 1 of 41 verdicts are discarded: a taste model needs at least {MIN_PER_CLASS} of each, so 4 more"),
])
def test_too_few_verdicts_say_how_many_more(keeps, discards, needle):
    with pytest.raises(TasteError, match=needle):
        check_verdict_counts([1] * keeps + [0] * discards)
    with pytest.raises(TasteError, match="needs at least"):
        fit_reward_model({"features": np.zeros((keeps + discards, 3))}, [1] * keeps + [0] * discards)


def test_the_calibration_plot_is_written(tmp_path, shipped_clips):
    ref, judged, _ = shipped_clips
    y = Musician.calibrated("x", TASTES["stepwise-long"], ref).judge(judged[:100], np.random.default_rng(0))
    model = fit_reward_model({"features": taste_features(judged[:100], 16)}, y)
    plot_calibration(model, tmp_path / "cal.png")
    assert (tmp_path / "cal.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
