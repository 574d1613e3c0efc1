"""engine.learn.model + engine.learn.export: the Q-network, the ONNX file contract and the parity check."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from engine.base.errors import ModelError  # noqa: E402
from engine.learn.export import ParityReport, export_model, load_checkpoint_network, parity_check  # noqa: E402
from engine.learn.model import ModelConfig, QNetwork  # noqa: E402
from engine.mdp import observation, styles  # noqa: E402
from engine.music import tokens  # noqa: E402
from engine.runtime import Policy  # noqa: E402

TERMS = styles.BUILTIN_TERMS
D = observation.obs_dim(len(TERMS))
D0 = observation.obs_dim(0)
REQUIRED_META = ("qriff_model", "obs_version", "obs_layout", "actions", "style_terms", "roles", "scales",
                 "train_config", "train_metrics", "created")


def tiny_net(seed: int = 0, **kw) -> QNetwork:
    torch.manual_seed(seed)
    return QNetwork(ModelConfig(obs_dim=D, hidden=(32, 16), **kw)).eval()


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.mark.parametrize("dueling", [True, False])
def test_forward_shape_and_dueling_identity(dueling):
    net = tiny_net(dueling=dueling)
    q = net(torch.rand(5, D))
    assert q.shape == (5, tokens.N_ACTIONS) and q.dtype == torch.float32
    if dueling:  # Q - V has zero mean over actions
        z = net.torso(torch.rand(3, D))
        adv = net.advantage(z)
        assert torch.allclose((net.value(z) + adv - adv.mean(1, keepdim=True)).mean(1), net.value(z).squeeze(1), atol=1e-6)


def test_prior_branch_starts_at_the_prior():
    net = tiny_net(prior_dim=D0, prior_hidden=(8,))
    rng = np.random.default_rng(0)
    weights = [(rng.normal(size=(8, D0)), rng.normal(size=8)), (rng.normal(size=(38, 8)), rng.normal(size=38))]
    net.prior.load_numpy(weights)
    obs = torch.rand(4, D)
    x = obs[:, :D0].numpy().astype(np.float64)
    logits = np.maximum(x @ weights[0][0].T + weights[0][1], 0) @ weights[1][0].T + weights[1][1]
    logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) - logits.max(1, keepdims=True)
    np.testing.assert_allclose(net(obs).detach().numpy(), logp, atol=1e-4)
    assert all(not p.requires_grad for p in net.prior.parameters())
    assert net.n_params() < net.n_params(trainable_only=False)


@pytest.mark.parametrize("kw", [{}, {"dueling": False}, {"prior_dim": D0, "prior_hidden": (8,)}])
def test_export_contract(tmp_path, kw):
    net = tiny_net(**kw)
    path = tmp_path / "m.onnx"
    report = export_model(net, path, TERMS, train_config={"seed": 3}, train_metrics={"hook": {"x": 1.0}},
                          model_id="unit", train_command="qriff train --preset tiny")
    assert isinstance(report, ParityReport) and report.ok
    assert report.max_abs_diff < 1e-4 and report.greedy_identical and report.n_sequences >= 4
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    for k in REQUIRED_META:
        assert k in meta, k
    assert meta["obs_version"] == str(observation.OBS_VERSION)
    assert meta["obs_layout"] == observation.layout_string(len(TERMS))
    assert json.loads(meta["actions"]) == tokens.action_names()
    assert json.loads(meta["style_terms"]) == list(TERMS)
    assert json.loads(meta["train_config"]) == {"seed": 3}
    assert meta["train_command"] == "qriff train --preset tiny"
    # one self-contained file: no external tensor data
    assert all(init.data_location != onnx.TensorProto.EXTERNAL for init in model.graph.initializer)
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "obs" and out.name == "q_values"
    assert inp.type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    assert inp.type.tensor_type.shape.dim[1].dim_value == D
    # dynamic batch under onnxruntime, equal to torch
    policy = Policy.load(path)
    for b in (1, 7, 64):
        x = np.random.default_rng(b).random((b, D), dtype=np.float32)
        np.testing.assert_allclose(policy.q_values(x), net(torch.from_numpy(x)).detach().numpy(), atol=1e-4)
    assert policy.info.model_id == "unit"


def test_parity_check_detects_a_different_network(tmp_path):
    path = tmp_path / "m.onnx"
    export_model(tiny_net(0), path, TERMS)
    report = parity_check(tiny_net(1), path, TERMS)
    assert report.max_abs_diff > 1e-3 * max(1.0, report.q_scale) and not report.ok


def test_export_refuses_wrong_style_terms(tmp_path):
    with pytest.raises(ModelError, match="style terms"):
        export_model(tiny_net(), tmp_path / "m.onnx", TERMS[:-1])
    assert not (tmp_path / "m.onnx").exists()


def _rewrite(src, dst, *, meta=None, drop=(), rename_input=None):
    model = onnx.load(str(src))
    props = {p.key: p.value for p in model.metadata_props}
    props.update(meta or {})
    for k in drop:
        props.pop(k, None)
    del model.metadata_props[:]
    for k, v in props.items():
        e = model.metadata_props.add()
        e.key, e.value = k, v
    if rename_input:
        old = model.graph.input[0].name
        model.graph.input[0].name = rename_input
        for node in model.graph.node:
            node.input[:] = [rename_input if i == old else i for i in node.input]
    onnx.save(model, str(dst))
    return dst


@pytest.mark.parametrize("change,message", [
    ({"meta": {"obs_version": "99"}}, "observation version 99"),
    ({"meta": {"obs_layout": "history:608"}}, "observation layout"),
    ({"meta": {"qriff_model": "7"}}, "not a qriff model of format"),
    ({"drop": ("qriff_model",)}, "not a qriff model"),
    ({"drop": ("style_terms",)}, "missing or malformed metadata"),
    ({"meta": {"actions": json.dumps(["rest"])}}, "actions"),
    ({"meta": {"roles": json.dumps(["drums"])}}, "roles"),
    ({"rename_input": "x"}, "expected one input 'obs'"),
])
def test_policy_refuses_mismatched_models(tmp_path, change, message):
    good = tmp_path / "good.onnx"
    export_model(tiny_net(), good, TERMS, check=False)
    bad = _rewrite(good, tmp_path / "bad.onnx", **change)
    with pytest.raises(ModelError, match=message) as exc:
        Policy.load(bad)
    assert "bad.onnx" in str(exc.value) and "qriff export" in str(exc.value)


def test_policy_refuses_missing_and_corrupt_files(tmp_path, monkeypatch):
    with pytest.raises(ModelError, match="does not exist"):
        Policy.load(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07not a model at all")
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        Policy.load(junk)
    import engine.runtime.modelfile

    monkeypatch.setattr(engine.runtime.modelfile, "DEFAULT_MODEL_PATH", tmp_path / "default.onnx")
    with pytest.raises(ModelError, match="shipped model"):
        Policy.load()


def test_checkpoint_network_roundtrip(tmp_path):
    net = tiny_net(2)
    path = tmp_path / "c.pt"
    torch.save({"model_config": net.config.to_dict(), "q_net": net.state_dict()}, path)
    loaded, ckpt = load_checkpoint_network(path)
    x = torch.rand(3, D)
    assert torch.equal(loaded(x), net(x))
    (tmp_path / "bad.pt").write_bytes(b"nope")
    with pytest.raises(ModelError, match="not a qriff training checkpoint"):
        load_checkpoint_network(tmp_path / "bad.pt")
    with pytest.raises(ModelError, match="does not exist"):
        load_checkpoint_network(tmp_path / "missing.pt")
