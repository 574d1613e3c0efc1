"""The sequence network's own embedding as a taste representation (engine.learn.embedding, the
``embedding`` of engine.evaluation.taste, and its wiring in engine.learn.personal / .tune)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from engine.evaluation import metrics
from engine.evaluation.evaluate import clip_tokens
from engine.evaluation.musician import Musician
from engine.evaluation.taste import EMBEDDING, RewardModel, TasteError, fit_reward_model, representations_of
from engine.learn.embedding import ClipEmbedder, prior_digest
from engine.learn.personal import SHIPPED_POLICY_WEIGHTS, load_reward_model
from engine.learn.seqmodel import KLPolicyNet, SeqConfig, SeqNet, g_network_from_prior, save_policy
from engine.learn.tune import TuneConfig, TuneContext, reads_contexts, shaped_rewards, tune_policy
from engine.mdp import observation, styles


@pytest.fixture(scope="module")
def embedder() -> ClipEmbedder:
    return ClipEmbedder.from_weights(SHIPPED_POLICY_WEIGHTS, "qriff-default-3")


@pytest.fixture(scope="module")
def shipped():
    """360 clips of the shipped model (4 bars, C major): 240 to judge, 120 fresh; their tokens and embedding."""
    from engine.runtime import Policy

    clips = Policy.load().generate_many(360, seed=4242, bars=4)
    return clips, [clip_tokens(c) for c in clips]


@pytest.fixture(scope="module")
def embedded(shipped, embedder):
    clips, seqs = shipped
    return embedder(seqs, 16, clips)


def ends_on_tonic(seqs) -> np.ndarray:
    """A hidden rule none of the five descriptors reads: the last note is a tonic."""
    return np.array([float((metrics.notes_of(np.asarray(s))[-1][0] - 14) % 12 == 0) for s in seqs])


def judged_by_rule(seqs, seed=0) -> np.ndarray:
    """Keeps 85% of the clips ending on a tonic and 10% of the others."""
    p = np.where(ends_on_tonic(seqs) > 0, 0.85, 0.10)
    return (np.random.default_rng(seed).random(len(seqs)) < p).astype(np.int64)


def test_the_embedding_is_a_fixed_size_vector_per_clip_whatever_the_batch(shipped, embedder, embedded):
    clips, seqs = shipped
    assert embedded.shape == (360, 256) and embedded.dtype == np.float64 and np.isfinite(embedded).all()
    again = embedder(seqs[:40], 16, clips[:40])
    assert np.array_equal(again, embedded[:40])  # deterministic, and the batch does not matter:
    alone = embedder([seqs[7]], 16, [clips[7]])
    reordered = embedder(seqs[:40][::-1], 16, clips[:40][::-1])[::-1]
    assert np.allclose(alone[0], embedded[7], atol=1e-6) and np.allclose(reordered, embedded[:40], atol=1e-6)
    # different lengths in one batch (padding): a 2-bar prefix is embedded as it is alone
    mixed = embedder([seqs[0][:32], seqs[1]], 16)
    assert np.allclose(mixed[0], embedder([seqs[0][:32]], 16)[0], atol=1e-6)
    assert len(set(map(tuple, np.round(embedded[:40], 6)))) == 40  # clips are told apart


def test_the_embedding_reads_the_setting_and_is_relative_to_the_tonic(shipped, embedder):
    _, seqs = shipped
    s = seqs[:5]
    c_major = [TuneContext("C", "major", 4, (4, 4), (), {})] * 5
    g_major = [TuneContext("G", "major", 4, (4, 4), (), {})] * 5
    c_minor = [TuneContext("C", "minor", 4, (4, 4), ("Cm", "Ab", "Eb", "Bb"), {})] * 5
    default = embedder(s, 16)
    assert np.array_equal(embedder(s, 16, c_major), default)  # None: C major, the default progression
    assert np.allclose(embedder(s, 16, g_major), default, atol=1e-6)  # tokens and chords are tonic-relative
    assert np.abs(embedder(s, 16, c_minor) - default).max() > 0.05  # the scale and chords are read


def test_the_final_state_reads_how_the_melody_ends(embedder):
    body = [14, 1, 1, 1, 16, 1, 18, 1, 19, 1, 21, 1, 23, 1, 1, 1]
    tonic, leading = body + [26, 1, 1, 1] * 4, body + [25, 1, 1, 1] * 4
    a, b = embedder([tonic, leading], 16)
    mean_gap, final_gap = np.abs(a[:128] - b[:128]).mean(), np.abs(a[128:] - b[128:]).mean()
    assert final_gap > 2 * mean_gap > 0


def test_bad_input_is_refused_by_name(embedder):
    with pytest.raises(TasteError, match="at most 16 bars"):
        embedder([[14] * (17 * 16)], 16)
    with pytest.raises(TasteError, match="steps_per_bar 12 does not match its metre 4/4"):
        embedder([[14] * 12], 12, [TuneContext("C", "major", 1, (4, 4), (), {})])
    with pytest.raises(TasteError, match="give one of each per melody"):
        embedder([[14] * 16, [14] * 16], [16])


@pytest.mark.slow
def test_a_reward_model_on_the_embedding_recovers_a_hidden_rule_on_fresh_clips(shipped, embedded):
    _, seqs = shipped
    y = judged_by_rule(seqs)
    fit, fresh = slice(0, 240), slice(240, 360)
    model = fit_reward_model({EMBEDDING: embedded[fit]}, y[fit], seed=0)
    auc = roc_auc_score(y[fresh], model.log_odds(embedded[fresh]))
    ceiling = roc_auc_score(y[fresh], ends_on_tonic(seqs[240:]))  # the rule itself
    shuffled = np.mean([roc_auc_score(y[fresh], fit_reward_model(
        {EMBEDDING: embedded[fit]}, np.random.default_rng(s).permutation(y[fit]), seed=0).log_odds(embedded[fresh]))
        for s in range(4)])
    assert auc > 0.8 and auc > shuffled + 0.2 and model.heldout_auc > 0.75, (auc, shuffled, ceiling)
    assert abs(shuffled - 0.5) < 0.15 and ceiling >= auc - 0.05


@pytest.mark.slow
def test_validation_picks_the_embedding_for_a_rule_only_it_reads_well_and_not_for_a_descriptor_taste(
        shipped, embedder, embedded):
    clips, seqs = shipped
    judged = slice(0, 240)
    reps = representations_of(seqs[judged], 16, embedder, clips[judged])
    assert set(reps) == {"descriptors", "features", EMBEDDING} and np.array_equal(reps[EMBEDDING], embedded[judged])
    by_rule = fit_reward_model(reps, judged_by_rule(seqs[judged]), seed=0, embedder=embedder)
    assert by_rule.representation == EMBEDDING, by_rule.validation
    assert by_rule.embedding == embedder.source and by_rule.embedder is embedder
    # a taste for syncopated riffs is two descriptors: the embedding reads it less well and loses
    m = Musician.calibrated("syncopated", {"offbeat_share": 1.5, "notes_per_bar": 0.6}, seqs[240:], base_rate=0.3)
    y = m.judge(seqs[judged], np.random.default_rng(2))
    by_descriptors = fit_reward_model(reps, y, seed=0, embedder=embedder)
    assert by_descriptors.representation != EMBEDDING, by_descriptors.validation
    assert by_descriptors.embedding is None and by_descriptors.embedder is None
    assert set(by_descriptors.validation) == set(reps)  # every representation was tried and recorded
    # callers that pass only the old representations get what they got before
    assert set(representations_of(seqs[:30], 16)) == {"descriptors", "features"}


@pytest.fixture
def saved(tmp_path, shipped, embedder, embedded):
    """A reward model on the embedding, saved as 'qriff tune' saves it (models/mine.taste.json)."""
    _, seqs = shipped
    model = fit_reward_model({EMBEDDING: embedded[:240]}, judged_by_rule(seqs[:240]), seed=0, embedder=embedder)
    path = tmp_path / "models" / "mine.taste.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"model_id": "mine", "reward_model": model.to_dict()}))
    return model, path


def test_a_saved_reward_model_on_the_embedding_scores_the_same_after_loading(saved, shipped):
    clips, seqs = shipped
    model, path = saved
    data = json.loads(path.read_text())["reward_model"]
    assert data["representation"] == EMBEDDING and data["embedding"]["base_model"] == "qriff-default-3"
    loaded = load_reward_model(path)
    assert np.allclose(loaded.score(seqs[240:], 16, clips[240:]), model.score(seqs[240:], 16, clips[240:]))
    assert np.allclose(loaded.score(seqs[240:250], 16), model.score(seqs[240:250], 16))  # as bench_taste calls it
    bare = RewardModel.from_dict(data)  # read without its network
    with pytest.raises(TasteError, match=r"reads the embedding of base model 'qriff-default-3' .* no network is "
                                         r"attached: load it with engine\.learn\.personal\.load_reward_model"):
        bare.score(seqs[:3], 16)


def test_the_network_is_found_in_the_personal_models_own_weights(saved, shipped):
    """Tuning copies the prior unchanged, so NAME.pt holds the network when the base's file moved."""
    from engine.learn.seqmodel import load_policy

    model, path = saved
    data = json.loads(path.read_text())
    data["reward_model"]["embedding"].update(weights=str(path.parent / "gone.pt"), base_model="gone")
    path.write_text(json.dumps(data))
    save_policy(load_policy(SHIPPED_POLICY_WEIGHTS), path.parent / "mine.pt")
    _, seqs = shipped
    assert np.allclose(load_reward_model(path).score(seqs[:10], 16), model.score(seqs[:10], 16))


def tiny_policy(seed: int = 0) -> KLPolicyNet:
    torch.manual_seed(seed)
    prior = SeqNet(SeqConfig(obs_dim=observation.obs_dim(0), embed=16, hidden=8, head=16))
    g = g_network_from_prior(prior, observation.obs_dim(len(styles.BUILTIN_TERMS)))
    return KLPolicyNet(prior, g).eval()


def test_a_missing_or_different_network_is_refused_clearly(saved, embedder):
    model, path = saved
    data = json.loads(path.read_text())
    data["reward_model"]["embedding"].update(weights=str(path.parent / "gone.pt"), base_model="gone")
    path.write_text(json.dumps(data))
    with pytest.raises(TasteError, match=r"base model 'gone', whose weights '.*gone\.pt' are missing: put that file "
                                         r"back, or refit the taste model \(qriff tune\)"):
        load_reward_model(path)
    save_policy(tiny_policy(), path.parent / "mine.pt")  # a file that holds another network
    with pytest.raises(TasteError, match=r"mine\.pt holds another network"):
        load_reward_model(path)
    other = ClipEmbedder(tiny_policy(1).prior)
    assert other.source["digest"] != embedder.source["digest"] == prior_digest(embedder.prior)
    with pytest.raises(TasteError, match="is not the one this reward model was fitted on"):
        model.with_embedder(other)
    data["reward_model"]["embedding"]["pooling"] = "max"
    path.write_text(json.dumps(data))
    with pytest.raises(TasteError, match="pooling='max', this qriff computes pooling='mean\\+final'"):
        load_reward_model(path)
    path.write_text("{}")
    with pytest.raises(TasteError, match="is not a taste model"):
        load_reward_model(path)


def test_the_tuner_hands_a_score_that_reads_contexts_each_prefixs_setting():
    seen = []

    def score(seqs, spbs, contexts=None):
        seen.append(list(contexts))
        return np.array([float(len(s)) for s in seqs])

    def old_style(seqs, spbs):
        return np.zeros(len(seqs))

    assert reads_contexts(score) and not reads_contexts(old_style)
    ctx = [TuneContext("C", "major", 2, (4, 4), (), {}), TuneContext("D", "dorian", 1, (4, 4), ("Dm",), {})]
    rews = shaped_rewards(score, [np.ones(32, np.int64), np.ones(16, np.int64)], [16, 16], np.ones(2), contexts=ctx)
    assert seen == [[ctx[0], ctx[0], ctx[1]]] and [r.sum() for r in rews] == [32.0, 16.0]
    seen.clear()
    base = tiny_policy()
    contexts = [TuneContext("D", "dorian", 1, (4, 4), ("Dm",), {}), TuneContext("F", "major", 2, (3, 4), (), {})]
    tune_policy(base, styles.BUILTIN_TERMS, contexts, score, TuneConfig(episodes=8, n_envs=8, quiet=True))
    assert seen and all(c in contexts for call in seen for c in call)


@pytest.mark.slow
def test_qriff_tune_offers_the_embedding_to_validation_and_saves_what_it_needs(tmp_path, monkeypatch, shipped):
    from engine.feedback import FeedbackStore, Judgement
    from engine.learn import personal

    clips, seqs = shipped
    y = judged_by_rule(seqs[:120])
    store = tmp_path / "fb.sqlite"
    with FeedbackStore(store) as fs:
        fs.record_many([Judgement(c, "keep" if k else "discard", None, "cli", f"c{i}.json")
                        for i, (c, k) in enumerate(zip(clips[:120], y))])
    monkeypatch.setenv("QRIFF_MODEL_DIR", str(tmp_path / "models"))
    result = personal.make_personal_model("mine", store=store, episodes=1, quiet=True)
    saved = json.loads((tmp_path / "models" / "mine.taste.json").read_text())
    assert set(saved["reward_model"]["validation"]) == {"descriptors", "features", EMBEDDING}
    assert saved["reward_representation"] == result.reward.representation
    loaded = load_reward_model(tmp_path / "models" / "mine.taste.json")
    assert np.allclose(loaded.score(seqs[200:220], 16, clips[200:220]),
                       result.reward.score(seqs[200:220], 16, clips[200:220]))
