"""engine.learn.train and ``qriff train``: tiny real runs (2 envs, a few hundred steps)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine.base.errors import EngineError  # noqa: E402
from engine.learn.model import ModelConfig, QNetwork  # noqa: E402
from engine.learn.train import TrainConfig, TrainError, init_from_prior, preset_config, train  # noqa: E402
from engine.mdp import observation, styles  # noqa: E402
from engine.runtime import Policy  # noqa: E402

FAST = {"eval_corpus": False, "quiet": True}


def tiny(tmp_path, name="run", **kw):
    return preset_config("tiny", out_dir=str(tmp_path / name), **{**FAST, **kw})


@pytest.mark.slow  # a real training run
def test_tiny_run_writes_everything(tmp_path):
    cfg = tiny(tmp_path)
    result = train(cfg)
    out = tmp_path / "run"
    for name in ("config.json", "checkpoint.pt", "replay.npz", "train_log.csv", "eval_log.csv", "curves.png",
                 "metrics.json", "model.onnx"):
        assert (out / name).is_file(), name
    assert result.env_steps >= cfg.total_steps and result.grad_steps > 0 and not result.interrupted
    rows = list(csv.DictReader(open(out / "train_log.csv")))
    assert len(rows) == cfg.total_steps // cfg.log_every
    assert all(float(r["loss"]) >= 0 for r in rows if r["loss"] not in ("", "nan"))
    evals = list(csv.DictReader(open(out / "eval_log.csv")))
    assert {r["style"] for r in evals} == set(cfg.eval_styles)
    assert json.loads((out / "config.json").read_text()) == cfg.to_dict()
    policy = Policy.load(out / "model.onnx")
    assert policy.info.train_config == cfg.to_dict()
    assert policy.info.train_metrics["env_steps"] == result.env_steps
    assert len(policy.generate(bars=1, count=2, seed=0)) == 2
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow  # a real training run
def test_same_seed_same_network(tmp_path):
    kw = {"eval_clips": 0, "export": False, "save_replay": False, "total_steps": 200}
    a = train(tiny(tmp_path, "a", **kw))
    b = train(tiny(tmp_path, "b", **kw))
    c = train(tiny(tmp_path, "c", seed=1, **kw))
    sa, sb, sc = (torch.load(r.checkpoint, weights_only=False)["q_net"] for r in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.slow  # a real training run
def test_resume_continues_counters_and_log(tmp_path):
    first = train(tiny(tmp_path, total_steps=200, eval_clips=0, export=False))
    assert first.env_steps == 200
    resumed = train(tiny(tmp_path, total_steps=400, eval_clips=0, export=False, resume=True))
    assert resumed.env_steps == 400 and resumed.grad_steps > first.grad_steps
    rows = list(csv.DictReader(open(tmp_path / "run" / "train_log.csv")))
    assert [int(r["env_steps"]) for r in rows] == [100, 200, 300, 400]
    with pytest.raises(TrainError, match="gamma"):
        train(tiny(tmp_path, total_steps=600, eval_clips=0, export=False, resume=True, gamma=0.5))


@pytest.mark.slow  # a real training run
def test_ctrl_c_writes_a_checkpoint(tmp_path, monkeypatch):
    import engine.learn.train as tr

    real = tr.make_env

    def make_env(cfg, seed):
        env = real(cfg, seed)
        step, calls = env.step, {"n": 0}

        def interrupting(actions, **kw):
            calls["n"] += 1
            if calls["n"] == 60:
                raise KeyboardInterrupt
            return step(actions, **kw)

        env.step = interrupting
        return env

    monkeypatch.setattr(tr, "make_env", make_env)
    result = train(tiny(tmp_path))
    assert result.interrupted and result.model is None
    ck = torch.load(result.checkpoint, weights_only=False)
    assert ck["counters"]["env_steps"] == 59 * 2


@pytest.mark.parametrize("field,value,message", [
    ("gamma", 1.5, "gamma=1.5"), ("n_envs", 0, "n_envs=0"), ("exploration", "ucb", "exploration='ucb'"),
    ("tau", 0.0, "tau=0.0"), ("hidden", (), "hidden=()"), ("theory_scale", 0, "theory_scale=0"),
    ("eval_styles", ("nope",), "style 'nope'"),
])
def test_config_validation_names_the_field(field, value, message):
    with pytest.raises(EngineError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig(**{field: value}).validate()


def test_unknown_fields_and_presets(tmp_path):
    with pytest.raises(TrainError, match="unknown train config field"):
        TrainConfig.from_dict({"gama": 0.9})
    with pytest.raises(TrainError, match="preset 'huge'"):
        preset_config("huge")
    with pytest.raises(TrainError, match="env has unknown field"):
        train(preset_config("tiny", env={"barz": 2}, out_dir=str(tmp_path / "bad"), **FAST))
    assert not (tmp_path / "bad").exists(), "a bad config is refused before anything is written"


def test_init_from_prior_makes_softmax_q_the_prior():
    terms = styles.BUILTIN_TERMS
    d, d0 = observation.obs_dim(len(terms)), observation.obs_dim(0)
    rng = np.random.default_rng(0)
    weights = [(rng.normal(size=(16, d0)).astype(np.float32), rng.normal(size=16).astype(np.float32)),
               (rng.normal(size=(38, 16)).astype(np.float32), rng.normal(size=38).astype(np.float32))]
    net = QNetwork(ModelConfig(obs_dim=d, hidden=(16,)))
    assert init_from_prior(net, weights)
    obs = rng.random((5, d)).astype(np.float32)
    logits = np.maximum(obs[:, :d0] @ weights[0][0].T + weights[0][1], 0) @ weights[1][0].T + weights[1][1]
    q = net(torch.from_numpy(obs)).detach().numpy()
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(q), 1).numpy(),
                               torch.softmax(torch.from_numpy(logits), 1).numpy(), atol=1e-5)
    # style columns start with zero weight: the style does not change Q before training
    obs2 = obs.copy()
    obs2[:, d0:] = 0.7
    np.testing.assert_allclose(net(torch.from_numpy(obs2)).detach().numpy(), q, atol=1e-5)
    assert not init_from_prior(QNetwork(ModelConfig(obs_dim=d, hidden=(8,))), weights)


@pytest.mark.slow  # a real training run
def test_cli_train_and_export(tmp_path, capsys):
    from engine.cli import main

    out = tmp_path / "cli"
    code = main(["train", "--preset", "tiny", "--out", str(out), "--steps", "200", "--set", "eval_clips=0",
                 "--set", "eval_corpus=false", "--seed", "3"])
    assert code == 0
    text = capsys.readouterr().out
    assert "trained 200 env steps" in text and str(out / "model.onnx") in text
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["seed"] == 3
    assert cfg["command"] == (f"qriff train --preset tiny --set eval_clips=0 --set eval_corpus=false --out {out} "
                              "--steps 200 --seed 3")
    code = main(["export", str(out / "checkpoint.pt"), "--out", str(tmp_path / "e.onnx")])
    assert code == 0
    assert "greedy melodies identical" in capsys.readouterr().out
    assert Policy.load(tmp_path / "e.onnx").info.train_config["seed"] == 3
    assert main(["train", "--set", "gamma=2", "--out", str(tmp_path / "bad")]) == 2
    assert "gamma=2" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing.pt")]) == 2


def _fake_prior(hidden=8, seed=0):
    from engine.corpus.prior import PriorModel

    d0 = observation.obs_dim(0)
    rng = np.random.default_rng(seed)
    weights = [(rng.normal(scale=0.1, size=(d0, hidden)).astype(np.float32), np.zeros(hidden, np.float32)),
               (rng.normal(size=(hidden, 38)).astype(np.float32), rng.normal(size=38).astype(np.float32))]
    return PriorModel(weights, {"format": 1})


@pytest.mark.slow  # a real training run
def test_prior_branch_run_uses_the_style_prior_weight(tmp_path, monkeypatch):
    import engine.learn.train as tr

    prior = _fake_prior()
    monkeypatch.setattr(tr, "load_prior", lambda: prior)
    result = train(tiny(tmp_path, eval_clips=0, total_steps=200, prior_branch=True))
    ck = torch.load(result.checkpoint, weights_only=False)
    cfg = ModelConfig.from_dict(ck["model_config"])
    terms = ck["style_terms"]
    assert cfg.prior_dim == observation.obs_dim(0)
    assert cfg.prior_weight_col == observation.obs_dim(len(terms)) - len(terms) + terms.index("prior")
    net = QNetwork(cfg)
    net.load_state_dict(ck["q_net"])
    # the branch is the numpy prior, scaled by the prior weight in the observation
    rng = np.random.default_rng(1)
    obs = (rng.random((4, cfg.obs_dim)) < 0.1).astype(np.float32)
    d0 = cfg.prior_dim
    lp = prior.log_probs(obs[:, :d0])
    base = net(torch.from_numpy(obs)).detach().numpy()
    obs2 = obs.copy()
    obs2[:, cfg.prior_weight_col] += 0.2  # +1 in style weight units
    bumped = net(torch.from_numpy(obs2)).detach().numpy()
    mlp_shift = (net(torch.from_numpy(obs2), torch.zeros(4, 38)) - net(torch.from_numpy(obs), torch.zeros(4, 38)))
    np.testing.assert_allclose(bumped - base - mlp_shift.detach().numpy(), lp, atol=1e-4)
    # and the exported model carries the branch (parity was checked at export)
    assert Policy.load(result.model).info.metadata["model_config"].count(f"\"prior_dim\": {d0}") == 1
