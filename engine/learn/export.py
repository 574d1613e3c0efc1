"""Export a trained Q-network to one self-contained ONNX file, and check it.

The file has one input ``obs`` float32 ``[batch, D]`` and one output ``q_values``
float32 ``[batch, 38]`` with a dynamic batch axis, and the metadata_props described
in ``docs/onnx-metadata.md`` (``qriff_model``, ``model_id``, ``obs_version``,
``obs_layout``, ``actions``, ``style_terms``, ``roles``, ``scales``, ``model_config``,
``train_config``, ``train_metrics``, ``train_command``, ``created``).

:func:`parity_check` compares torch and onnxruntime on random and real observations
(max absolute difference of the Q-values) and on whole greedy melodies (identical
token sequences); :func:`export_model` refuses to write a file that fails it.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import logging
import os
import pickle
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.base.errors import ModelError
from engine.base.files import atomic_write
from engine.learn.model import ModelConfig, QNetwork
from engine.mdp import observation, styles
from engine.music import theory, tokens
from engine.runtime import MODEL_FORMAT, Policy, has_qriff_metadata

log = logging.getLogger(__name__)

#: Largest acceptable max |Q_torch - Q_onnx| per unit of max |Q| (at least 1): float32
#: arithmetic in a different order, so the error grows with the size of the Q-values.
PARITY_TOLERANCE = 1e-4


@dataclass
class ParityReport:
    """Result of :func:`parity_check`."""

    max_abs_diff: float
    n_obs: int
    greedy_identical: bool
    n_sequences: int
    q_scale: float = 1.0

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= PARITY_TOLERANCE * max(1.0, self.q_scale) and self.greedy_identical

    def to_dict(self) -> dict[str, Any]:
        return {"max_abs_diff": self.max_abs_diff, "n_obs": self.n_obs, "greedy_identical": self.greedy_identical,
                "n_sequences": self.n_sequences, "q_scale": self.q_scale}


def onnx_bytes(net: QNetwork) -> bytes:
    """The network as ONNX bytes (opset 17, dynamic batch), without qriff metadata."""
    net = net.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export, which takes
        # ~10 s instead of ~0.1 s here and yields the same Gemm/Relu graph for an MLP.
        warnings.simplefilter("ignore")
        # a file object works as well as a path (torch's stub names only paths)
        torch.onnx.export(net, (torch.zeros(2, net.config.obs_dim),), buf, input_names=["obs"],  # type: ignore[arg-type]
                          output_names=["q_values"], dynamic_axes={"obs": {0: "batch"}, "q_values": {0: "batch"}},
                          opset_version=17, dynamo=False)
    return buf.getvalue()


def build_metadata(net: QNetwork, style_terms: tuple[str, ...] | list[str], *, train_config: dict[str, Any],
                   train_metrics: dict[str, Any], model_id: str, train_command: str = "",
                   roles: tuple[str, ...] = tokens.ROLES) -> dict[str, str]:
    """The metadata_props of a feed-forward qriff model (all values are strings; lists and dicts as JSON)."""
    return model_metadata(net.config.obs_dim, net.config.to_dict(), style_terms, train_config=train_config,
                          train_metrics=train_metrics, model_id=model_id, train_command=train_command, roles=roles)


def model_metadata(obs_dim: int, model_config: dict[str, Any], style_terms: tuple[str, ...] | list[str], *,
                   train_config: dict[str, Any], train_metrics: dict[str, Any], model_id: str,
                   train_command: str = "", roles: tuple[str, ...] = tokens.ROLES,
                   fmt: str = MODEL_FORMAT, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The metadata_props of a qriff model reading ``obs_dim`` columns, with its provenance:
    the code's git commit (``git_commit``), the style presets it was trained with
    (``style_presets``) and the command that reproduces it (``train_command``)."""
    n_style = len(style_terms)
    if observation.obs_dim(n_style) != obs_dim:
        raise ModelError(f"network reads {obs_dim} observation columns, but {n_style} style terms give "
                         f"{observation.obs_dim(n_style)}: export with the style terms it was trained on")
    meta = {
        "qriff_model": fmt, "model_id": model_id, "obs_version": str(observation.OBS_VERSION),
        "obs_layout": observation.layout_string(n_style), "actions": json.dumps(tokens.action_names()),
        "style_terms": json.dumps(list(style_terms)), "roles": json.dumps(list(roles)),
        "scales": json.dumps(list(theory.SCALE_NAMES)), "train_config": json.dumps(train_config, sort_keys=True),
        "train_metrics": json.dumps(train_metrics, sort_keys=True), "train_command": train_command,
        "model_config": json.dumps(model_config),
        "git_commit": git_commit(), "style_presets": json.dumps(styles.PRESETS, sort_keys=True),
        "created": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
    }
    meta.update(extra or {})
    return meta


def git_commit() -> str:
    """The commit of the qriff source tree this runs from (``+dirty`` with uncommitted changes),
    or ``unknown`` outside a git checkout."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def export_model(net: QNetwork, path: str | os.PathLike[str], style_terms: tuple[str, ...] | list[str], *,
                 train_config: dict[str, Any] | None = None, train_metrics: dict[str, Any] | None = None,
                 model_id: str | None = None, train_command: str = "", check: bool = True) -> ParityReport | None:
    """Write ``net`` as a qriff ONNX model at ``path`` (atomically); returns the parity report.

    With ``check`` (default) the parity check runs first and a failing model is not
    written (ModelError with the figures).
    """
    import onnx

    path = Path(path)
    raw = onnx_bytes(net)
    model = onnx.load_from_string(raw)
    meta = build_metadata(net, style_terms, train_config=train_config or {}, train_metrics=train_metrics or {},
                          model_id=model_id or path.stem, train_command=train_command)
    return write_checked_model(model, meta, path, "qriff melody Q-network: obs float32 [batch, D] -> q_values "
                               "float32 [batch, 38]", (lambda data: parity_check(net, data, style_terms)) if check else None)


def write_checked_model(model: Any, meta: dict[str, str], path: Path, doc: str,
                        parity: Callable[[bytes], ParityReport] | None) -> ParityReport | None:
    """Set ``meta`` and ``doc`` on the ONNX ``model``, check it, run ``parity`` on its bytes (when
    given) and write it atomically to ``path``; ModelError (nothing written) when parity fails."""
    import onnx

    del model.metadata_props[:]
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    model.producer_name = "qriff"
    model.doc_string = doc
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    report = None
    if parity is not None:
        report = parity(data)
        if not report.ok:
            raise ModelError(f"export parity check failed: max |torch - onnx| = {report.max_abs_diff:.2e} "
                             f"(allowed {PARITY_TOLERANCE:g} x max |output| {max(1.0, report.q_scale):.3g}), "
                             f"greedy melodies identical: {report.greedy_identical}")
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    log.info("exported %s (%d bytes)%s", path, len(data), f", parity {report.to_dict()}" if report else "")
    return report


def load_checkpoint_network(checkpoint: str | os.PathLike[str]) -> tuple[QNetwork, dict[str, Any]]:
    """The online Q-network of a training checkpoint (``.pt``) and the checkpoint dict."""
    p = Path(checkpoint)
    if not p.is_file():
        raise ModelError(f"checkpoint {str(p)!r} does not exist: give a .pt file written by 'qriff train'")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=False)
        net = QNetwork(ModelConfig.from_dict(ckpt["model_config"]))
        net.load_state_dict(ckpt["q_net"])
    except (KeyError, RuntimeError, ValueError, TypeError, EOFError, OSError, pickle.UnpicklingError) as exc:
        raise ModelError(f"checkpoint {str(p)!r} is not a qriff training checkpoint ({exc}): "
                         "give a .pt file written by 'qriff train'") from None
    return net.eval(), ckpt


# ---------------------------------------------------------------------- parity

def parity_contexts(style_terms: tuple[str, ...] | list[str]) -> list[observation.MelodyContext]:
    """A spread of musical contexts (keys, scales, metres, roles, styles) for parity checks."""
    cases = [("C", "major", 2, (4, 4), None, "lead", None), ("A", "natural_minor", 4, (4, 4), "Am F C G", "lead", "hook"),
             ("D", "dorian", 2, (3, 4), None, "bass", None), ("Eb", "major", 2, (6, 8), "I IV V I", "lead", "ambient")]
    out = []
    for key, scale, bars, ts, chords, role, style in cases:
        weights = styles.parse_style(style, style_terms) if style is None or style in styles.PRESETS else {}
        out.append(observation.MelodyContext.from_music(key=key, scale=scale, bars=bars, time_signature=ts,
                                                        chords=chords, role=role,
                                                        style=styles.style_vector(weights, style_terms)))
    return out


def torch_rollout(net: QNetwork, contexts: list[observation.MelodyContext]) -> np.ndarray:
    """Greedy melodies ``int64 [B, T]`` from the torch network, step by step with ``observe``.

    Rows shorter than the longest context are padded with rests after their end.
    """
    return _torch_rollout(net, contexts)[0]


def _torch_rollout(net: QNetwork, contexts: list[observation.MelodyContext]) -> tuple[np.ndarray, list[np.ndarray]]:
    """:func:`torch_rollout`'s melodies and the observation batch of every step."""
    batch = observation.MelodyBatch.create(contexts)
    t = int(batch.n_steps.max())
    out = np.zeros((batch.size, t), np.int64)
    seen = []
    with torch.no_grad():
        for s in range(t):
            seen.append(observation.observe(batch))
            q = net(torch.from_numpy(seen[-1])).numpy()
            act = q.argmax(axis=1)
            active = batch.step < batch.n_steps
            out[active, s] = act[active]
            batch.append(act, active)
    return out, seen


def parity_check(net: QNetwork, onnx_model: bytes | str | os.PathLike[str],
                 style_terms: tuple[str, ...] | list[str], n_random: int = 256, seed: int = 0) -> ParityReport:
    """Compare ``net`` (torch) with the ONNX model under onnxruntime.

    Q-values on ``n_random`` random observations plus every observation of the greedy
    melodies of :func:`parity_contexts`, and the greedy melodies themselves (torch
    rollout vs :class:`engine.runtime.policy.Policy`'s rollout at temperature 0).
    """
    import onnxruntime as ort

    data = onnx_model if isinstance(onnx_model, bytes) else Path(onnx_model).read_bytes()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    d = net.config.obs_dim
    obs = (rng.random((n_random, d)) < 0.1).astype(np.float32) * rng.random((n_random, d), dtype=np.float32)
    contexts = parity_contexts(style_terms)
    seqs, real = _torch_rollout(net.eval(), contexts)
    obs = np.concatenate([obs, *real]).astype(np.float32)
    with torch.no_grad():
        q_torch = net(torch.from_numpy(obs)).numpy()
    q_onnx = sess.run(["q_values"], {"obs": obs})[0]
    diff = float(np.abs(q_torch - q_onnx).max())

    # Greedy melodies through the runtime policy's own rollout (incremental observations).
    policy = Policy.from_bytes(data, "<export>") if has_qriff_metadata(sess) else None
    identical = True
    for i, ctx in enumerate(contexts):
        if policy is not None:
            got = policy.greedy_tokens(ctx)
        else:  # raw export without metadata: plain session + observe
            got = _ort_rollout(sess, ctx)
        identical &= bool(np.array_equal(got, seqs[i, : ctx.n_steps]))
    return ParityReport(max_abs_diff=diff, n_obs=len(obs), greedy_identical=identical, n_sequences=len(contexts),
                        q_scale=float(np.abs(q_torch).max()))


def _ort_rollout(sess: Any, ctx: observation.MelodyContext) -> np.ndarray:
    batch = observation.MelodyBatch.create([ctx])
    out = np.zeros(ctx.n_steps, np.int64)
    for s in range(ctx.n_steps):
        act = sess.run(["q_values"], {"obs": observation.observe(batch)})[0].argmax(axis=1)
        out[s] = act[0]
        batch.append(act)
    return out
