"""The corpus prior: numpy inference contract, file checks, torch parity, training on a tiny corpus,
and the shipped model."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from engine.base.errors import EngineError, ModelError
from engine.corpus import prior
from engine.mdp import observation
from engine.music import tokens
from tests.engine.observed import observed_rows

D0 = observation.obs_dim(0)


def tiny_model(hidden=(8, 6), seed=0) -> prior.PriorModel:
    rng = np.random.default_rng(seed)
    widths = [D0, *hidden, tokens.N_ACTIONS]
    weights = [(rng.normal(0, 0.1, (a, b)).astype(np.float32), rng.normal(0, 0.1, b).astype(np.float32))
               for a, b in zip(widths, widths[1:])]
    return prior.PriorModel(weights, {"config": {"hidden": list(hidden)}, "metrics": {"test_nll": 1.0}})


def melody_obs(seq, scale="major", ts=(4, 4), chords=None):
    """Observations before every step of ``seq``, built the way the environment does."""
    bars = len(seq) // (16 if ts == (4, 4) else 12)
    ctx = observation.MelodyContext.from_music(key=0, scale=scale, bars=bars, time_signature=ts, chords=chords,
                                               role="lead", style=np.zeros((0,), np.float32))
    return observed_rows(ctx, seq)


# ------------------------------------------------------------------ inference

@pytest.mark.parametrize("batch", [1, 5])
def test_log_probs_contract(batch):
    m = tiny_model()
    x = np.random.default_rng(1).random((batch, D0)).astype(np.float32)
    lp = m.log_probs(x)
    assert lp.shape == (batch, tokens.N_ACTIONS) and lp.dtype == np.float32
    np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(m.log_prob(x, np.arange(batch)), lp[np.arange(batch), np.arange(batch)])


def test_wrong_width_is_refused():
    with pytest.raises(EngineError, match=rf"expected \[batch, {D0}\]"):
        tiny_model().log_probs(np.zeros((2, D0 + 3), np.float32))


def test_save_load_round_trip(tmp_path):
    m = tiny_model()
    path = m.save(tmp_path / "p.npz")
    assert (tmp_path / "p.json").is_file()
    side = json.loads((tmp_path / "p.json").read_text())
    assert side["obs_version"] == observation.OBS_VERSION and side["metrics"]["test_nll"] == 1.0
    back = prior.PriorModel.load(path)
    x = np.random.default_rng(2).random((3, D0)).astype(np.float32)
    np.testing.assert_array_equal(back.log_probs(x), m.log_probs(x))
    assert back.hidden == (8, 6)


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="does not exist.*qriff corpus prior --out"):
        prior.PriorModel.load(tmp_path / "nothing.npz")


def test_corrupt_file(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelError, match="corrupt or not a qriff prior"):
        prior.PriorModel.load(bad)


@pytest.mark.parametrize("field, value, match", [
    ("obs_version", 999, "observation version 999"),
    ("obs_layout", "history:1", "observation version"),
    ("format", 99, "format 99"),
])
def test_mismatched_file(tmp_path, field, value, match):
    path = tiny_model().save(tmp_path / "p.npz")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(arrays["meta"].tobytes().decode())
    meta[field] = value
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.raises(ModelError, match=match):
        prior.PriorModel.load(path)


def test_state_dict_layout_and_torch_parity():
    torch = pytest.importorskip("torch")
    m = tiny_model()
    sd = m.state_dict_numpy()
    assert list(sd) == ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias", "net.4.weight", "net.4.bias"]
    assert sd["net.0.weight"].shape == (8, D0) and sd["net.4.weight"].shape == (tokens.N_ACTIONS, 6)
    from engine.learn.prior_training import to_torch

    net = to_torch(m)
    x = np.random.default_rng(3).random((4, D0)).astype(np.float32)
    with torch.no_grad():
        ref = torch.log_softmax(net(torch.from_numpy(x)), dim=1).numpy()
    np.testing.assert_allclose(ref, m.log_probs(x), atol=1e-5)


# ----------------------------------------------------------------------- data

def test_step_data_matches_the_environment():
    seq = np.array([14, 1, 16, 0, 18, 1, 1, 1, 21, 1, 18, 1, 16, 1, 14, 1] * 2)
    data = prior.StepData(contexts=[observation.MelodyContext.from_music(
        key=0, scale="major", bars=2, time_signature=(4, 4), chords=["C", "G"], role="lead",
        style=np.zeros((0,), np.float32))], sequences=[seq])
    (obs, ys), = list(data.chunks())
    np.testing.assert_array_equal(ys, seq)
    np.testing.assert_array_equal(obs, melody_obs(seq, chords=["C", "G"]))


def test_episodes_cut_long_tunes():
    from engine.corpus.melodies import CorpusMelody

    m = CorpusMelody(tokens=np.full(40 * 12, 1), time_signature=(3, 4), scale="major", chords=["C"] * 40,
                     source="essen", name="long", split="train")
    eps = prior.episodes_of([m], max_bars=16)
    assert [e.bars for e in eps] == [14, 14, 12]
    assert all(len(e.chords) == e.bars for e in eps)


def test_unigram():
    # add-one: hold 3 + 1, C4 1 + 1, the other 36 tokens 1 each -> 42 in all
    lp = prior.unigram_log_probs(np.array([1, 1, 1, 14]))
    assert np.exp(lp[1]) == pytest.approx(4 / 42) and np.exp(lp[14]) == pytest.approx(2 / 42)
    assert np.exp(lp[0]) == pytest.approx(1 / 42)


# ------------------------------------------------------------------- training

@pytest.mark.slow  # trains a prior on real tunes
def test_train_tiny(cache):
    pytest.importorskip("torch")
    from engine.learn.prior_training import PriorConfig, train_prior

    cfg = PriorConfig(hidden=(16,), epochs=2, rows_per_epoch=2000, batch_size=256, limit=24, sources=("essen",), seed=3)
    model, m = train_prior(cfg, progress=False)
    for k in ("train_steps", "valid_steps", "test_steps", "valid_nll", "test_nll", "test_accuracy",
              "unigram_test_nll", "unigram_test_accuracy", "epochs", "history"):
        assert k in m
    assert m["train_steps"] > m["test_steps"] > 0 and 1 <= m["epochs"] <= 2
    assert 0 < m["test_nll"] < np.log(tokens.N_ACTIONS) and 0 <= m["test_accuracy"] <= 1
    assert model.hidden == (16,) and model.meta["metrics"] is m


# ---------------------------------------------------------------- shipped model

def test_shipped_prior():
    assert prior.DEFAULT_PATH.is_file(), "engine/models/prior.npz must ship with the package"
    assert prior.DEFAULT_PATH.stat().st_size < 2_000_000
    assert zipfile.is_zipfile(prior.DEFAULT_PATH)
    model = prior.PriorModel.load()
    m = model.metrics
    # the prior must beat the unigram baseline on held-out tunes
    assert m["test_nll"] < m["unigram_test_nll"]
    assert m["test_accuracy"] >= m["unigram_test_accuracy"]
    side = json.loads(prior.DEFAULT_PATH.with_suffix(".json").read_text())
    assert side["metrics"]["test_nll"] == pytest.approx(m["test_nll"])


def test_shipped_prior_matches_the_observation():
    """The observation must mean what it meant when the shipped prior was trained."""
    meta = prior.PriorModel.load().meta
    assert meta["obs_fingerprint"] == prior.observation_fingerprint(), (
        "engine.mdp.observation.observe changed since the shipped prior was trained: bump OBS_VERSION if the change "
        "is meant, and retrain it with: qriff corpus prior --out engine/models/prior.npz")


def test_fingerprint_is_stable():
    assert prior.observation_fingerprint() == prior.observation_fingerprint()


def test_shipped_prior_prefers_scale_tones():
    """After C-E-G on the beats of a C major bar, an in-scale pitch should be likelier than a chromatic one."""
    model = prior.PriorModel.load()
    seq = [14, 1, 1, 1, 18, 1, 1, 1, 21, 1, 1, 1, 18, 1, 1, 1, 16, 1]
    obs = melody_obs(seq + [1] * (32 - len(seq)), chords=["C", "G"])[len(seq)][None]
    lp = model.log_probs(obs)[0]
    in_scale = [14, 16, 18, 19, 21, 23, 25]
    chromatic = [15, 17, 20, 22, 24]
    assert np.logaddexp.reduce(lp[in_scale]) > np.logaddexp.reduce(lp[chromatic]) + np.log(5)
