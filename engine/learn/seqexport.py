"""Export a recurrent (KL-controlled) model to one ONNX file, with its state in the graph.

The file is a qriff model of format 2 (``docs/onnx-metadata.md``): inputs ``obs``
float32 ``[batch, D]`` and ``state`` float32 ``[batch, S]``, outputs ``q_values``
float32 ``[batch, 38]`` (the action logits ``log p_prior + G``) and ``state_out``
``[batch, S]``; the metadata adds ``state_size``. The runtime feeds zeros as the first
state and each step's ``state_out`` as the next ``state``.

:func:`parity_check` compares torch and onnxruntime on random observations and states
(logits and next state) and on whole greedy melodies run through
:class:`engine.runtime.policy.Policy`; :func:`export_seq_model` refuses to write a
model that fails it.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.base.errors import ModelError
from engine.learn.export import ParityReport, model_metadata, parity_contexts, write_checked_model
from engine.learn.seqmodel import KLPolicyNet, StepModule
from engine.mdp import observation
from engine.runtime import RECURRENT_FORMAT, Policy, open_session

log = logging.getLogger(__name__)


def onnx_bytes(net: KLPolicyNet) -> bytes:
    """The one-step graph as ONNX bytes (opset 17, dynamic batch), without qriff metadata."""
    step = StepModule(net.eval()).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and GRU batch-size notes
        # a file object works as well as a path (torch's stub names only paths)
        torch.onnx.export(step, (torch.zeros(2, net.obs_dim), net.zero_state(2)), buf,  # type: ignore[arg-type]
                          input_names=["obs", "state"], output_names=["q_values", "state_out"],
                          dynamic_axes={"obs": {0: "batch"}, "state": {0: "batch"}, "q_values": {0: "batch"},
                                        "state_out": {0: "batch"}},
                          opset_version=17, dynamo=False)
    return buf.getvalue()


def export_seq_model(net: KLPolicyNet, path: str | os.PathLike[str], style_terms: tuple[str, ...] | list[str], *,
                     train_config: dict[str, Any] | None = None, train_metrics: dict[str, Any] | None = None,
                     model_id: str | None = None, train_command: str = "", check: bool = True,
                     overwrite: bool = True) -> ParityReport | None:
    """Write ``net`` as a recurrent qriff model at ``path`` (atomically); returns the parity report."""
    import onnx

    path = Path(path)
    if path.exists() and not overwrite:
        raise ModelError(f"{str(path)!r} exists: pick another name or pass overwrite=True")
    model = onnx.load_from_string(onnx_bytes(net))
    cfg = {"kind": "kl-seq", "prior": net.prior.config.to_dict(),
           "g": None if net.g is None else net.g.config.to_dict(), "policy": type(net).__name__}
    meta = model_metadata(net.obs_dim, cfg, style_terms, train_config=train_config or {},
                          train_metrics=train_metrics or {}, model_id=model_id or path.stem,
                          train_command=train_command, fmt=RECURRENT_FORMAT,
                          extra={"state_size": str(net.state_size)})
    doc = ("qriff recurrent melody policy: (obs [batch, D], state [batch, S]) -> "
           "(q_values [batch, 38], state_out [batch, S])")
    return write_checked_model(model, meta, path, doc,
                               (lambda data: parity_check(net, data, style_terms)) if check else None)


def torch_greedy(net: KLPolicyNet, contexts: list[observation.MelodyContext]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Greedy melodies ``int64 [B, T]`` from torch, step by step with ``observe``, and each step's observations."""
    batch = observation.MelodyBatch.create(contexts)
    t = int(batch.n_steps.max())
    out = np.zeros((batch.size, t), np.int64)
    seen = []
    state = net.zero_state(batch.size)
    with torch.no_grad():
        for s in range(t):
            seen.append(observation.observe(batch))
            logits, _, state = net.step(torch.from_numpy(seen[-1]), state)
            act = logits.numpy().argmax(axis=1)
            active = batch.step < batch.n_steps
            out[active, s] = act[active]
            batch.append(act, active)
    return out, seen


def parity_check(net: KLPolicyNet, data: bytes, style_terms: tuple[str, ...] | list[str], n_random: int = 128,
                 seed: int = 0) -> ParityReport:
    """torch vs onnxruntime: logits and next state on random inputs, and greedy melodies."""
    sess = open_session(data, "<export>")
    rng = np.random.default_rng(seed)
    d, s = net.obs_dim, net.state_size
    obs = (rng.random((n_random, d)) < 0.1).astype(np.float32) * rng.random((n_random, d), dtype=np.float32)
    state = rng.uniform(-1, 1, (n_random, s)).astype(np.float32)
    contexts = parity_contexts(style_terms)
    seqs, real = torch_greedy(net.eval(), contexts)
    with torch.no_grad():
        q_t, _, s_t = net.step(torch.from_numpy(obs), torch.from_numpy(state))
    q_o, s_o = sess.run(["q_values", "state_out"], {"obs": obs, "state": state})
    diff = max(float(np.abs(q_t.numpy() - q_o).max()), float(np.abs(s_t.numpy() - s_o).max()))
    policy = Policy.from_bytes(data, "<export>")
    identical = all(np.array_equal(policy.greedy_tokens(ctx), seqs[i, : ctx.n_steps]) for i, ctx in enumerate(contexts))
    return ParityReport(max_abs_diff=diff, n_obs=n_random + sum(len(r) for r in real), greedy_identical=identical,
                        n_sequences=len(contexts), q_scale=float(np.abs(q_t.numpy()).max()))


def export_prior_model(prior: Any, path: str | os.PathLike[str], style_terms: tuple[str, ...] | list[str], *,
                       metrics: dict[str, Any] | None = None, train_command: str = "",
                       model_id: str = "qriff-prior") -> ParityReport | None:
    """Write the recurrent prior alone as a model (logits = its log-probabilities): what KL
    training starts from, and the "prior alone" row of every table. It reads the same
    observation as the trained models (style columns included, and ignored)."""
    net = KLPolicyNet(prior, None, obs_dim=observation.obs_dim(len(style_terms)))
    return export_seq_model(net, path, style_terms, train_config={"algo": "prior"}, train_metrics=metrics or {},
                            model_id=model_id, train_command=train_command)
