"""Tuning toward the musician's taste (engine.learn.tune) and ``qriff tune`` (engine.learn.personal)."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
import torch

from engine.cli import main
from engine.evaluation.evaluate import clip_tokens
from engine.evaluation.musician import TASTES, Musician
from engine.feedback import SCHEMA_VERSION, FeedbackStore, Judgement
from engine.learn.kl_train import sample_tokens
from engine.learn.seqmodel import KLPolicyNet, SeqConfig, SeqNet, g_network_from_prior
from engine.learn.tune import (
    DEFAULT_KL,
    KL_RANGE,
    TuneConfig,
    TuneContext,
    TuneError,
    check_kl,
    shaped_rewards,
    soft_returns,
    taste_network,
    tune_policy,
    tuned_terms,
)
from engine.mdp import observation, styles


def high_notes(seqs, spbs):
    """A toy taste: log-odds rise with the share of onsets above the tonic's octave (token >= 26)."""
    out = []
    for s in seqs:
        on = np.asarray(s)[np.asarray(s) >= 2]
        out.append(6.0 * float((on >= 26).mean()) - 1.0 if len(on) else -1.0)
    return np.array(out)


def test_shaped_rewards_sum_to_the_clip_score_and_pay_at_bar_ends():
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 38, 16 * b) for b in (1, 2, 4)]
    w = np.array([2.0, -1.0, 0.5])
    rews = shaped_rewards(high_notes, seqs, [16] * 3, w)
    for s, r, wi in zip(seqs, rews, w):
        assert r.sum() == pytest.approx(wi * high_notes([s], [16])[0], abs=1e-5)
        assert set(np.flatnonzero(r)) <= {16 * b - 1 for b in range(1, len(s) // 16 + 1)}


def test_shaped_rewards_paid_every_beat_score_prefixes_filled_to_the_bar_with_holds():
    rng = np.random.default_rng(1)
    seqs = [rng.integers(0, 38, 16 * b) for b in (1, 3)]
    w = np.array([1.5, -2.0])
    seen = []

    def recording(prefixes, spbs):
        seen.extend(len(p) for p in prefixes)
        for p in prefixes:  # every prefix is whole bars; the filling is holds after the real steps
            assert len(p) % 16 == 0
        return high_notes(prefixes, spbs)

    rews = shaped_rewards(recording, seqs, [16, 16], w, every=4)
    for s, r, wi in zip(seqs, rews, w):
        assert r.sum() == pytest.approx(wi * high_notes([s], [16])[0], abs=1e-5)
        assert set(np.flatnonzero(r)) <= set(range(3, len(s), 4))
    assert len(seen) == 4 + 12
    # the second payment of the first melody scores its first 8 steps, then 8 holds
    pre8 = np.concatenate([seqs[0][:8], np.full(8, 1)])
    pre4 = np.concatenate([seqs[0][:4], np.full(12, 1)])
    expected = w[0] * (high_notes([pre8], [16])[0] - high_notes([pre4], [16])[0])
    assert rews[0][7] == pytest.approx(expected, abs=1e-5)


def test_soft_returns_are_the_kl_regularised_return_of_the_played_clip():
    rew = torch.tensor([[0.0, 1.0, 0.0, 2.0], [0.5, 0.0, 9.0, 9.0]])
    ratio = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.0, 0.5, 9.0, 9.0]])
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0]])
    y = soft_returns(rew, ratio, mask, kl_coef=2.0, gamma=1.0)
    # step t: r_t/c + sum_{k>t} (r_k/c - log pi/pi0)
    assert y[0].tolist() == pytest.approx([0.0 + (0.5 - 0.2) + (0 - 0.3) + (1 - 0.4), 0.5 + (-0.3) + 0.6,
                                           0.0 + 0.6, 1.0])
    assert y[1].tolist() == pytest.approx([0.25 + (0 - 0.5), 0.0, 0.0, 0.0])
    # a value passed with lambda 1 changes nothing
    v = torch.tensor([[3.0, -1.0, 2.0, 7.0], [1.0, 4.0, 9.0, 9.0]])
    assert torch.allclose(soft_returns(rew, ratio, mask, 2.0, 1.0, v, lam=1.0), y)


def test_soft_lambda_returns_bootstrap_from_the_next_states_soft_value():
    rew = torch.tensor([[0.0, 1.0, 0.0, 2.0], [0.5, 0.0, 9.0, 9.0]])
    ratio = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.0, 0.5, 9.0, 9.0]])
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0]])
    v = torch.tensor([[3.0, -1.0, 2.0, 7.0], [1.0, 4.0, 9.0, 9.0]])
    # lambda 0: one-step soft Bellman targets r_t/c + gamma V(s_{t+1}), 0 after the last step
    y0 = soft_returns(rew, ratio, mask, 2.0, 0.5, v, lam=0.0)
    assert y0[0].tolist() == pytest.approx([0.0 + 0.5 * -1.0, 0.5 + 0.5 * 2.0, 0.0 + 0.5 * 7.0, 1.0])
    assert y0[1].tolist() == pytest.approx([0.25 + 0.5 * 4.0, 0.0, 0.0, 0.0])
    # lambda 0.5: half the next step's own target (less its log-ratio), half its value
    y = soft_returns(rew, ratio, mask, 2.0, 1.0, v, lam=0.5)
    t3 = 1.0
    t2 = 0.0 + 0.5 * (t3 - 0.4) + 0.5 * 7.0
    t1 = 0.5 + 0.5 * (t2 - 0.3) + 0.5 * 2.0
    t0 = 0.0 + 0.5 * (t1 - 0.2) + 0.5 * -1.0
    assert y[0].tolist() == pytest.approx([t0, t1, t2, t3])


def tiny_base(seed: int = 0) -> KLPolicyNet:
    torch.manual_seed(seed)
    prior = SeqNet(SeqConfig(obs_dim=observation.obs_dim(0), embed=16, hidden=8, head=16))
    g = g_network_from_prior(prior, observation.obs_dim(len(styles.BUILTIN_TERMS)))
    with torch.no_grad():  # a base whose G is not zero, as the shipped one's is not
        g.out.weight.normal_(0, 0.05)
    return KLPolicyNet(prior, g).eval()


def test_the_taste_network_starts_as_the_base_whatever_the_dial():
    base = tiny_base()
    g = taste_network(base.g)
    obs = torch.rand(3, 5, base.obs_dim)
    for taste in (-1.0, 0.0, 1.0):
        full = torch.cat([obs, torch.full((3, 5, 1), taste)], dim=-1)
        assert torch.allclose(g(full)[0], base.g(obs)[0], atol=1e-6)


@pytest.mark.parametrize("bad", [0.0, 0.01, 101.0, float("nan"), float("inf")])
def test_kl_out_of_range_is_refused(bad):
    with pytest.raises(TuneError, match=f"--kl .* is out of range \\(allowed: {KL_RANGE[0]:g} to {KL_RANGE[1]:g}"):
        check_kl(bad)


def test_a_bad_config_is_refused_by_name():
    with pytest.raises(TuneError, match="TuneConfig.taste_weights"):
        TuneConfig(taste_weights=(-6.0, 1.0)).validate()
    with pytest.raises(TuneError, match="TuneConfig.kl_coef"):
        TuneConfig(kl_coef=0.0).validate()


def taste_context(net_terms, w: float | None, bars: int = 2) -> observation.MelodyContext:
    spec = "folk" if w is None else f"folk,taste={w}"
    vec = styles.style_vector(styles.parse_style(spec, net_terms), net_terms)
    return observation.MelodyContext.from_music(key=0, scale="major", bars=bars, time_signature=(4, 4), style=vec)


def test_the_tune_loop_moves_a_tiny_model_toward_the_taste():
    base = tiny_base()
    terms = styles.BUILTIN_TERMS
    contexts = [TuneContext("C", "major", 2, (4, 4), ("C", "G"), {"key": 1.0}),
                TuneContext("D", "dorian", 2, (4, 4), (), {})]
    cfg = TuneConfig(seed=0, kl_coef=1.0, episodes=192, n_envs=32, updates_per_episode=1.0, lr=3e-3, quiet=True)
    tuned, log = tune_policy(base, terms, contexts, high_notes, cfg)
    assert tuned.obs_dim == observation.obs_dim(len(terms) + 1) and tuned.prior is not base.prior
    assert log["episodes"] == 192 and log["updates"] > 0 and log["cpu_seconds"] > 0
    tt = tuned_terms(terms)
    before = high_notes(sample_tokens(KLPolicyNet(base.prior, base.g), [taste_context(terms, None)] * 256, 5), None)
    after = high_notes(sample_tokens(tuned, [taste_context(tt, 4.0)] * 256, 5), None)
    assert after.mean() > before.mean() + 0.25, (before.mean(), after.mean())  # sd of a mean: ~0.1
    # the prior is untouched (frozen), and so is the base's own G
    assert torch.equal(tuned.prior.inp.weight, base.prior.inp.weight)


def test_a_model_that_already_reads_taste_or_has_no_g_is_refused():
    base = tiny_base()
    ctx = [TuneContext("C", "major", 1, (4, 4), (), {})]
    with pytest.raises(TuneError, match="without a KL G-network"):
        tune_policy(KLPolicyNet(base.prior, None, obs_dim=base.obs_dim), styles.BUILTIN_TERMS, ctx, high_notes,
                    TuneConfig(episodes=1, quiet=True))
    with pytest.raises(TuneError, match="style terms give"):
        tune_policy(base, tuned_terms(styles.BUILTIN_TERMS), ctx, high_notes, TuneConfig(episodes=1, quiet=True))


def test_the_taste_term_defaults_to_its_weight_only_where_a_model_reads_it():
    tt = tuned_terms(styles.BUILTIN_TERMS)
    assert styles.parse_style("folk", tt)[styles.TASTE_TERM] == styles.TERM_DEFAULTS[styles.TASTE_TERM]
    assert styles.parse_style("hook,taste=-3", tt)[styles.TASTE_TERM] == -3.0
    assert styles.parse_style("taste=0", tt)["prior"] == styles.PRESETS["folk"]["prior"]
    assert styles.TASTE_TERM not in styles.parse_style("folk")
    with pytest.raises(styles.StyleError, match="'taste' is not known"):
        styles.parse_style("folk,taste=1")
    with pytest.raises(styles.StyleError, match="out of range"):
        styles.parse_style("folk,taste=6", tt)


# ------------------------------------------------------------------ qriff tune


@pytest.fixture(scope="module")
def judged():
    """40 clips of the shipped model judged by a musician who likes a high register."""
    from engine.runtime import Policy

    policy = Policy.load()
    ref = [clip_tokens(c) for c in policy.generate_many(100, seed=500, bars=2)]
    clips = policy.generate_many(40, seed=900, bars=2)
    m = Musician.calibrated("high-register", TASTES["high-register"], ref, base_rate=0.4)
    return clips, m.judge([clip_tokens(c) for c in clips], np.random.default_rng(0))


def fill_store(path, clips, labels):
    with FeedbackStore(path) as store:
        store.record_many([Judgement(c, "keep" if k else "discard", None, "cli", f"c{i}.json")
                           for i, (c, k) in enumerate(zip(clips, labels))])


@pytest.fixture
def models(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    monkeypatch.setenv("QRIFF_MODEL_DIR", str(folder))
    return folder


def refused(capsys, argv, needle):
    try:
        rc = main(argv)
    except SystemExit as exc:  # the parser's own refusals
        rc = exc.code
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err


def test_no_verdicts_is_refused_and_nothing_written(tmp_path, models, capsys):
    store = tmp_path / "none.sqlite"
    refused(capsys, ["tune", "--store", str(store)], "no verdicts recorded yet")
    assert not store.exists() and not models.exists()
    FeedbackStore(store).close()  # an empty store
    refused(capsys, ["tune", "--store", str(store)], "only 0 verdicts recorded: a taste model needs at least 20")
    assert not models.exists()


def test_too_few_verdicts_say_how_many_more(tmp_path, models, capsys, judged):
    clips, labels = judged
    store = tmp_path / "fb.sqlite"
    fill_store(store, clips[:12], labels[:12])
    refused(capsys, ["tune", "--store", str(store)], "only 12 verdicts recorded: a taste model needs at least 20, so 8 more")
    refused(capsys, ["tune", "--store", str(store), "--verdicts", "5"], "only 5 verdicts")
    assert not models.exists()


@pytest.mark.parametrize(("argv", "needle"), [
    (["--kl", "0"], "argument --kl: 0 is out of range (allowed: 0.05-100)"),
    (["--kl", "1000"], "argument --kl: 1000 is out of range"),
    (["--realism-guard", "2"], "argument --realism-guard: 2 is out of range (allowed: 0-1)"),
    (["--base", "no-such-model"], "--base 'no-such-model' is not a known model: allowed are qriff-default-3"),
    (["--out", "../escape"], "--out '../escape' is not a valid model name"),
    (["--out", "qriff-default-3"], "--out 'qriff-default-3' is already a model's id"),
])
def test_bad_options_are_refused_with_one_line(tmp_path, models, capsys, judged, argv, needle):
    clips, labels = judged
    store = tmp_path / "fb.sqlite"
    fill_store(store, clips, labels)
    before = store.read_bytes()
    refused(capsys, ["tune", "--store", str(store), *argv], needle)
    assert not models.exists() and store.read_bytes() == before


def test_a_store_from_a_newer_qriff_is_refused_untouched(tmp_path, models, capsys, judged):
    clips, labels = judged
    store = tmp_path / "fb.sqlite"
    fill_store(store, clips, labels)
    with sqlite3.connect(store) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = store.read_bytes()
    refused(capsys, ["tune", "--store", str(store)], f"schema version {SCHEMA_VERSION + 1}, newer than this qriff's")
    assert store.read_bytes() == before and not models.exists()


def test_an_existing_model_is_never_replaced(tmp_path, models, capsys, judged):
    clips, labels = judged
    store = tmp_path / "fb.sqlite"
    fill_store(store, clips, labels)
    models.mkdir()
    (models / "mine.taste.json").write_text("{}")
    refused(capsys, ["tune", "--store", str(store), "--out", "mine"], "mine.taste.json exists")
    assert (models / "mine.taste.json").read_text() == "{}" and not (models / "mine.onnx").exists()


@pytest.mark.slow
def test_qriff_tune_end_to_end(tmp_path, models, judged, qriff):
    """Verdicts in a store -> qriff tune -> a personal model qriff lists and generates with."""
    import os

    clips, labels = judged
    store = tmp_path / "fb.sqlite"
    fill_store(store, clips, labels)
    env = dict(os.environ, QRIFF_MODEL_DIR=str(models))
    r = qriff("tune", "--store", str(store), "--out", "mine", "--episodes", "16", "--kl", "2", "--seed", "3",
              env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "held-out AUC" in r.stdout and "model 'mine'" in r.stdout
    for name in ("mine.onnx", "mine.pt", "mine.taste.json", "mine.calibration.png"):
        assert (models / name).is_file(), name
    from engine.runtime import Policy, available_models

    policy = Policy.load(models / "mine.onnx")
    cfg = policy.info.train_config
    assert policy.info.model_id == "mine" and policy.info.style_terms[-1] == "taste"
    assert cfg["verdicts"] == 40 and cfg["kept"] == int(labels.sum()) and cfg["kl_asked"] == 2.0
    # the realism guard ran on the judged setting and kept 2, or doubled it once or twice
    guard = cfg["realism_guard"]
    assert guard["setting"] == {"bars": 2, "scale": "major", "time_signature": "4/4"} and guard["checks"]
    assert cfg["kl_coef"] == guard["kl_kept"] == guard["checks"][-1]["kl"] in (2.0, 4.0, 8.0)
    assert "realism guard at --kl 2" in r.stdout
    assert cfg["base_model"] == "qriff-default-3" and len(cfg["base_commit"]) >= 7
    assert 0.0 <= cfg["reward_heldout_auc"] <= 1.0
    taste = json.loads((models / "mine.taste.json").read_text())
    assert taste["reward_model"]["n_verdicts"] == 40
    assert policy.info.state_size == Policy.load().info.state_size  # the shipped model's size: as fast
    out = tmp_path / "clips"
    r = qriff("generate", "--model", "mine", "--style", "folk,taste=-1", "--count", "2", "--format", "json",
              "--out", str(out), env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "clip-0000.json").read_text())["style"]["taste"] == -1.0
    assert "mine" in [e.model_id for e in available_models()]
    r = qriff("tune", "--store", str(store), "--out", "mine", env=env)
    assert r.returncode == 2 and "exists" in r.stderr


def test_a_failed_export_leaves_no_files(tmp_path, models, judged, monkeypatch):
    from engine.base.errors import ModelError
    from engine.learn import personal, seqexport

    clips, labels = judged
    store = tmp_path / "fb.sqlite"
    fill_store(store, clips, labels)

    def fail(*args, **kw):
        raise ModelError("export parity check failed: (simulated)")

    monkeypatch.setattr(seqexport, "export_seq_model", fail)
    # without the guard the failure comes at the final export, after the other files were written
    with pytest.raises(ModelError, match="simulated"):
        personal.make_personal_model("mine", store=store, episodes=1, quiet=True, realism_guard=None)
    assert models.is_dir() and list(models.iterdir()) == []
    # with it, at the guard's own export, before anything is written
    with pytest.raises(ModelError, match="simulated"):
        personal.make_personal_model("mine", store=store, episodes=1, quiet=True,
                                     guard_reference_features=np.zeros((60, 148)))
    assert list(models.iterdir()) == []


def test_the_cli_repeats_the_tuners_kl_range_and_default():
    from engine.cli import tune as cli_tune

    assert (cli_tune.KL_LO, cli_tune.KL_HI) == KL_RANGE and cli_tune.DEFAULT_KL == DEFAULT_KL == TuneConfig().kl_coef


def test_the_cli_repeats_the_realism_guards_default():
    from engine.cli import tune as cli_tune
    from engine.learn import personal

    assert cli_tune.DEFAULT_GUARD == personal.REALISM_GUARD


def test_the_realism_guard_tunes_again_with_twice_the_kl_until_realism_holds(tmp_path, models, judged, monkeypatch):
    """Scripted checks: the first tuned model is told from corpus tunes too easily (+0.10), the second
    is not (+0.01): the second is kept, at twice the KL coefficient, and both checks are recorded."""
    from engine.learn import personal

    clips, labels = judged
    store = tmp_path / "fb.sqlite"
    fill_store(store, clips, labels)
    asked = []
    real_tune = personal.tune_policy

    def tune(base, terms, contexts, score, cfg):
        asked.append(cfg.kl_coef)
        return real_tune(base, terms, contexts, score, cfg)

    rises = iter([0.10, 0.01])
    monkeypatch.setattr(personal, "tune_policy", tune)
    monkeypatch.setattr(personal, "realism_check",
                        lambda base, tuned, setting, ref, kl, seed=0, **kw: personal.GuardCheck(kl, 0.7, 0.7 + next(rises)))
    result = personal.make_personal_model("mine", store=store, episodes=1, kl=1.5, quiet=True,
                                          guard_reference_features=np.zeros((60, 3)))
    assert asked == [1.5, 3.0] and result.kl == 3.0 and [c.kl for c in result.guard] == [1.5, 3.0]
    from engine.runtime import Policy

    cfg = Policy.load(models / "mine.onnx").info.train_config
    assert cfg["kl_coef"] == 3.0 and cfg["kl_asked"] == 1.5
    guard = cfg["realism_guard"]
    assert guard["passed"] and guard["kl_kept"] == 3.0 and [c["rise"] for c in guard["checks"]] == [0.1, 0.01]
    assert guard["setting"] == {"bars": 2, "scale": "major", "time_signature": "4/4"}


def test_the_realism_guard_gives_up_after_two_doublings_and_keeps_the_last(tmp_path, models, judged, monkeypatch):
    from engine.learn import personal

    clips, labels = judged
    store = tmp_path / "fb.sqlite"
    fill_store(store, clips, labels)
    monkeypatch.setattr(personal, "realism_check",
                        lambda base, tuned, setting, ref, kl, seed=0, **kw: personal.GuardCheck(kl, 0.7, 0.9))
    result = personal.make_personal_model("mine", store=store, episodes=1, kl=2.0, quiet=True,
                                          guard_reference_features=np.zeros((60, 3)))
    assert [c.kl for c in result.guard] == [2.0, 4.0, 8.0] and result.kl == 8.0
    off = personal.make_personal_model("off", store=store, episodes=1, kl=2.0, quiet=True, realism_guard=None)
    assert off.guard == () and off.kl == 2.0


@pytest.mark.slow
def test_the_realism_check_tells_a_model_that_forgot_music_from_the_shipped_one(tmp_path):
    """The check itself, on real clips: the shipped model against itself rises by exactly 0 (same seeds,
    same clips); an untrained model's clips are told from the reference far more easily."""
    from engine.evaluation import twosample
    from engine.learn import personal
    from engine.runtime import Policy
    from tests.bridge.tiny_models import write_tiny_model

    shipped = Policy.load()
    setting = personal.GuardSetting(2, "major", (4, 4))
    # a stand-in for corpus openings that the shipped model resembles: its own clips from other seeds
    reference = twosample.feature_matrix([clip_tokens(c) for c in shipped.generate_many(120, seed=4242, bars=2)], 16)
    same = personal.realism_check(shipped, shipped, setting, reference, 1.5, clips=120)
    assert same.rise == 0.0 and 0.3 < same.auc_base < 0.7
    # a base AUC measured before is used as given, not measured again
    assert personal.realism_check(shipped, shipped, setting, reference, 3.0, clips=120, base_auc=0.25).auc_base == 0.25
    untrained = Policy.load(write_tiny_model(tmp_path / "u.onnx", "untrained", personal=True))
    far = personal.realism_check(shipped, untrained, setting, reference, 1.5, clips=120)
    assert far.rise > 0.3, far
