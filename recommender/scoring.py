"""Run-time scoring of the recommender DQN: the state through onnxruntime, the heads in numpy (no torch).

:func:`export_weights` (training side, needs torch) turns a trained
:class:`~recommender.model.SeqQNet` into plain arrays plus one ONNX graph, the encoder:
(item vectors, padding mask, outcomes, taste vector) of a left-padded ``max_history``
window -> the state ``h``. :class:`Scorer` runs that graph with onnxruntime, as the
melody engine serves its policies, then scores candidates with two small numpy
products (Q-values, supervised logits). Item vectors of the trained catalog are
precomputed; a track added later gets its vector from its features alone
(``W_f @ features``), which is what lets the catalog grow without retraining.

Why onnxruntime for the state: a GRU over 50 events is 50 dependent steps, and numpy
pays its per-call overhead at every one (0.30 ms for the state, measured in
``bench/bench_recommender.py``'s setting) where onnxruntime's GRU kernel runs the whole
window in one call (0.07 ms). The heads stay numpy: they are one matrix-vector product
each over the candidates, no faster as a graph call.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np

from engine.base.sessions import single_thread_session
from recommender.errors import ModelMissingError

#: 2: the encoder ships as an ONNX graph (``state_onnx``); 1 had numpy weights only.
FORMAT_VERSION = 2


def state_onnx(net: Any) -> bytes:
    """The encoder of ``net`` (eval mode) as ONNX bytes: inputs ``vecs`` float32 ``[B, L, dim]``,
    ``real`` bool ``[B, L]``, ``outcomes`` int64 ``[B, L]`` (and ``users`` float32 ``[B, user_dim]``
    when the net takes a taste vector); output ``state`` float32 ``[B, dim]`` after the last event."""
    import torch

    class StateGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, vecs: torch.Tensor, real: torch.Tensor, outcomes: torch.Tensor,
                    users: torch.Tensor | None = None) -> torch.Tensor:
            return self.net.encode_vectors(vecs, real, outcomes, users)[:, -1]

    net.eval()
    L, d = net.config.max_history, net.config.dim
    args: tuple[torch.Tensor, ...] = (torch.zeros(1, L, d), torch.ones(1, L, dtype=torch.bool),
                                      torch.zeros(1, L, dtype=torch.long))
    names = ["vecs", "real", "outcomes"]
    if net.user_dim:
        args += (torch.zeros(1, net.user_dim),)
        names.append("users")
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and GRU batch-size notes
        # torch.onnx.export documents a file-like f; its type stub names paths only
        torch.onnx.export(StateGraph().eval(), args, buf, input_names=names, output_names=["state"],  # type: ignore[arg-type]
                          dynamic_axes={n: {0: "batch"} for n in names + ["state"]}, opset_version=17,
                          dynamo=False)
    return buf.getvalue()


def export_weights(net: Any, config_json: str) -> dict[str, np.ndarray]:
    """Arrays of a trained ``SeqQNet`` (eval mode) for :class:`Scorer`; ``config_json`` is the TrainConfig."""
    import torch

    net.eval()
    with torch.no_grad():
        sd = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
        vecs = net.item_vectors().cpu().numpy()
    out = {"format": np.array(FORMAT_VERSION), "config": np.array(config_json), "item_vectors": vecs,
           "state_onnx": np.frombuffer(state_onnx(net), np.uint8)}
    out.update({f"w.{k}": v for k, v in sd.items() if k != "features"})
    return out


def _session(data: bytes) -> Any:
    """An onnxruntime session on one thread (small graphs run fastest that way)."""
    return single_thread_session(data)


class Scorer:
    """The state (onnxruntime) and the heads (numpy) of an exported network.

    ``weights`` is the dict of :func:`export_weights` (or an ``np.load`` of it).
    Item indices are the training catalog's dense indices ``1..n_items``.
    """

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        import json

        if int(weights["format"]) != FORMAT_VERSION:
            raise ModelMissingError(f"model format {int(weights['format'])} is not {FORMAT_VERSION}: retrain with "
                                    "'qriff rec train'")
        self.config = json.loads(str(weights["config"]))
        net = self.config["net"]
        self.encoder, self.L, self.dim = net["encoder"], int(net["max_history"]), int(net["dim"])
        self.w = {k[2:]: np.asarray(v, np.float32) for k, v in weights.items() if k.startswith("w.")}
        self.item_vectors = np.asarray(weights["item_vectors"], np.float32)
        self.n_items = self.item_vectors.shape[0] - 1
        self.rank_by, self.blend = self.config["rank_by"], float(self.config["blend"])
        self._graph = _session(np.asarray(weights["state_onnx"], np.uint8).tobytes())

    # --------------------------------------------------------------- item vectors
    def feature_vectors(self, features: np.ndarray) -> np.ndarray:
        """float32 ``[K, dim]`` vectors of tracks known only by their features ``[K, F]``."""
        wf = self.w.get("feat.weight")
        if wf is None or features.shape[1] == 0:
            return np.zeros((len(features), self.dim), np.float32)
        return np.asarray(features, np.float32) @ wf.T

    # --------------------------------------------------------------- the state
    @property
    def user_dim(self) -> int:
        """Width of the taste vector the state takes (0: none)."""
        w = self.w.get("user_proj.weight")
        return 0 if w is None else int(w.shape[1])

    def state(self, vecs: np.ndarray, outcomes: np.ndarray, user_vec: np.ndarray | None = None) -> np.ndarray:
        """The state ``[dim]`` after a history of ``m`` events: item vectors ``[m, dim]``, outcomes int ``[m]``,
        and the listener's taste vector ``[user_dim]`` (zeros when None).

        Only the last ``max_history`` events count, left-padded to that window, as in training.
        """
        vecs, outcomes = vecs[-self.L:], np.asarray(outcomes[-self.L:], np.int64)
        m, L = len(vecs), self.L
        x = np.zeros((1, L, self.dim), np.float32)
        real = np.zeros((1, L), bool)
        outs = np.zeros((1, L), np.int64)
        if m:
            x[0, L - m:] = vecs
            real[0, L - m:] = True
            outs[0, L - m:] = outcomes
        feed = {"vecs": x, "real": real, "outcomes": outs}
        if self.user_dim:
            feed["users"] = (np.zeros((1, self.user_dim), np.float32) if user_vec is None
                             else np.asarray(user_vec, np.float32).reshape(1, -1))
        return self._graph.run(None, feed)[0][0]

    # --------------------------------------------------------------- heads
    def q_values(self, h: np.ndarray, vecs: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """Q ``[K]`` of state ``h [dim]`` for candidates with vectors ``[K, dim]`` and Q biases ``[K]``."""
        return (h @ self.w["q_proj.weight"].T + self.w["q_proj.bias"]) @ vecs.T + bias

    def sqn_logits(self, h: np.ndarray, vecs: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """Supervised next-item logits ``[K]`` (same arguments as :meth:`q_values`, SQN biases)."""
        return (h @ self.w["s_proj.weight"].T + self.w["s_proj.bias"]) @ vecs.T + bias

    def rank_scores(self, h: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """The ranking scores ``[K]`` of :meth:`scores` alone (Q-values only computed when they rank)."""
        if self.rank_by != "sqn":
            return self.scores(h, idx)[0]
        return self.sqn_logits(h, self.item_vectors[idx], self.w["s_bias"][idx])

    def scores(self, h: np.ndarray, idx: np.ndarray, extra_vecs: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """``(rank_scores [K], q [K])`` for trained-catalog indices ``idx [K]`` (plus ``extra_vecs [E, dim]``
        of tracks newer than the model, appended with zero biases)."""
        vecs, qb, sb = self.item_vectors[idx], self.w["q_bias"][idx], self.w["s_bias"][idx]
        if extra_vecs is not None and len(extra_vecs):
            vecs = np.concatenate([vecs, extra_vecs])
            zeros = np.zeros(len(extra_vecs), np.float32)
            qb, sb = np.concatenate([qb, zeros]), np.concatenate([sb, zeros])
        q = self.q_values(h, vecs, qb)
        if self.rank_by == "q":
            return q, q
        s = self.sqn_logits(h, vecs, sb)
        return (s if self.rank_by == "sqn" else s + self.blend * q), q
