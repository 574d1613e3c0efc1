"""Run-time scoring of the recommender DQN in numpy (no torch on the serving path).

:func:`export_weights` (training side, needs torch) flattens a trained
:class:`~recommender.model.SeqQNet` into plain arrays; :class:`Scorer` loads them and
computes, for a history, the state ``h`` and then Q-values / supervised logits for any
set of candidate tracks. Item vectors of the trained catalog are precomputed; a track
added later gets its vector from its features alone (``W_f @ features``), which is
what lets the catalog grow without retraining.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import erf, expit

from recommender.errors import ModelMissingError

FORMAT_VERSION = 1


def export_weights(net: Any, config_json: str) -> dict[str, np.ndarray]:
    """Arrays of a trained ``SeqQNet`` (eval mode) for :class:`Scorer`; ``config_json`` is the TrainConfig."""
    import torch

    net.eval()
    with torch.no_grad():
        sd = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
        vecs = net.item_vectors().cpu().numpy()
    out = {"format": np.array(FORMAT_VERSION), "config": np.array(config_json), "item_vectors": vecs}
    out.update({f"w.{k}": v for k, v in sd.items() if k != "features"})
    return out


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


class Scorer:
    """Numpy forward pass of an exported network.

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
        self.layers, self.heads = int(net["layers"]), int(net["heads"])
        self.w = {k[2:]: np.asarray(v, np.float32) for k, v in weights.items() if k.startswith("w.")}
        self.item_vectors = np.asarray(weights["item_vectors"], np.float32)
        self.n_items = self.item_vectors.shape[0] - 1
        self.rank_by, self.blend = self.config["rank_by"], float(self.config["blend"])
        self._pad_states: np.ndarray | None = None
        if self.encoder == "gru":
            self._whh_t = [np.ascontiguousarray(self.w[f"gru.weight_hh_l{i}"].T) for i in range(self.layers)]
            self._pad_states = self._gru_pad_states()

    # --------------------------------------------------------------- item vectors
    def feature_vectors(self, features: np.ndarray) -> np.ndarray:
        """float32 ``[K, dim]`` vectors of tracks known only by their features ``[K, F]``."""
        wf = self.w.get("feat.weight")
        if wf is None or features.shape[1] == 0:
            return np.zeros((len(features), self.dim), np.float32)
        return np.asarray(features, np.float32) @ wf.T

    # --------------------------------------------------------------- encoders
    def _gru_step_inputs(self, x: np.ndarray, layer: int) -> np.ndarray:
        return x @ self.w[f"gru.weight_ih_l{layer}"].T + self.w[f"gru.bias_ih_l{layer}"]

    def _gru_run(self, gi: np.ndarray, h: np.ndarray, layer: int) -> np.ndarray:
        """Hidden states ``[T, d]`` for precomputed input gates ``gi [T, 3d]`` from ``h [d]``."""
        whh, bhh, d = self._whh_t[layer], self.w[f"gru.bias_hh_l{layer}"], self.dim
        out = np.empty((len(gi), d), np.float32)
        # r, z = sigmoid(gi_rz + h @ W_hrz + b_hrz); n = tanh(gi_n + r * (h @ W_hn + b_hn)); h = n + z * (h - n),
        # written into buffers allocated once: per step the cost is numpy's call overhead, not arithmetic,
        # so each step is as few calls as it can be
        gh, rz, n = np.empty(3 * d, np.float32), np.empty(2 * d, np.float32), np.empty(d, np.float32)
        gh_rz, gh_n, r, z = gh[:2 * d], gh[2 * d:], rz[:d], rz[d:]
        gi_rz, gi_n = gi[:, :2 * d], gi[:, 2 * d:]
        tanh, add, mul, sub, dot = np.tanh, np.add, np.multiply, np.subtract, np.dot
        prev = h
        for t in range(len(gi)):
            dot(prev, whh, out=gh)
            add(gh, bhh, out=gh)
            add(gi_rz[t], gh_rz, out=rz)
            expit(rz, out=rz)  # sigmoid of r and z at once
            mul(r, gh_n, out=n)
            add(gi_n[t], n, out=n)
            tanh(n, out=n)
            h = out[t]
            sub(prev, n, out=h)
            mul(z, h, out=h)
            add(n, h, out=h)
            prev = h
        return out

    def _gru_pad_states(self) -> np.ndarray:
        """Per layer, the hidden state after ``k`` padding steps, ``[layers, L + 1, d]`` (k = 0..L)."""
        states = np.zeros((self.layers, self.L + 1, self.dim), np.float32)
        x = np.zeros((self.L, self.dim), np.float32)
        for layer in range(self.layers):
            hs = self._gru_run(self._gru_step_inputs(x, layer), np.zeros(self.dim, np.float32), layer)
            states[layer, 1:] = hs
            x = hs
        return states

    def _inputs(self, vecs: np.ndarray, outcomes: np.ndarray) -> np.ndarray:
        x = vecs
        if "outcome_emb.weight" in self.w:
            x = x + self.w["outcome_emb.weight"][outcomes]
        return x

    @property
    def user_dim(self) -> int:
        """Width of the taste vector the state takes (0: none)."""
        w = self.w.get("user_proj.weight")
        return 0 if w is None else int(w.shape[1])

    def state(self, vecs: np.ndarray, outcomes: np.ndarray, user_vec: np.ndarray | None = None) -> np.ndarray:
        """The state ``[dim]`` after a history of ``m`` events: item vectors ``[m, dim]``, outcomes int ``[m]``,
        and the listener's taste vector ``[user_dim]`` (zeros when None).

        Only the last ``max_history`` events count, as in training.
        """
        h = self._state(vecs, outcomes)
        if "user_proj.weight" in self.w:
            h = h + self.w["user_proj.bias"]
            if user_vec is not None:
                h = h + np.asarray(user_vec, np.float32) @ self.w["user_proj.weight"].T
        return h

    def _state(self, vecs: np.ndarray, outcomes: np.ndarray) -> np.ndarray:
        vecs, outcomes = vecs[-self.L:], np.asarray(outcomes[-self.L:], np.int64)
        m = len(vecs)
        x = self._inputs(np.asarray(vecs, np.float32), outcomes)
        if self.encoder == "gru":
            assert self._pad_states is not None
            pad = self.L - m
            if m == 0:
                return self._pad_states[-1, pad]
            for layer in range(self.layers):
                x = self._gru_run(self._gru_step_inputs(x, layer), self._pad_states[layer, pad], layer)
            return x[-1]
        return self._attention_state(x)

    def _attention_state(self, x: np.ndarray) -> np.ndarray:
        m, d, H = len(x), self.dim, self.heads
        if m == 0:  # training saw all-padding only at the first position; one padding item stands in
            x = np.zeros((1, d), np.float32)
            m = 1
        x = x * np.sqrt(d) + self.w["pos.weight"][-m:]
        for i in range(self.layers):
            p = f"blocks.{i}."
            y = _layer_norm(x, self.w[p + "norm1.weight"], self.w[p + "norm1.bias"])
            qkv = y @ self.w[p + "attn.in_proj_weight"].T + self.w[p + "attn.in_proj_bias"]
            q, k, v = qkv[:, :d], qkv[:, d:2 * d], qkv[:, 2 * d:]
            hd = d // H
            q, k, v = (a.reshape(m, H, hd).transpose(1, 0, 2) for a in (q, k, v))
            att = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
            att = att + np.triu(np.full((m, m), -np.inf, np.float32), 1)
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            o = (att @ v).transpose(1, 0, 2).reshape(m, d)
            x = x + o @ self.w[p + "attn.out_proj.weight"].T + self.w[p + "attn.out_proj.bias"]
            y = _layer_norm(x, self.w[p + "norm2.weight"], self.w[p + "norm2.bias"])
            y = y @ self.w[p + "ff.0.weight"].T + self.w[p + "ff.0.bias"]
            y = 0.5 * y * (1.0 + erf(y / np.sqrt(2.0)))
            x = x + y @ self.w[p + "ff.3.weight"].T + self.w[p + "ff.3.bias"]
        return _layer_norm(x, self.w["out_norm.weight"], self.w["out_norm.bias"])[-1]

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
