"""The recommender's networks (torch; training only, the runtime scorer is numpy).

:class:`SeqQNet` is the DQN: the *state* is the recent listening history, each event
an item vector plus an embedding of its outcome (completed / skipped / unknown), run
through a sequence encoder (a GRU, or causal self-attention as in SASRec); the
*action* is the next track, scored against item vectors:

    item(i)   = id_embedding[i] + W_f @ features[i]          (features: ALS factors, tags)
    Q(s, i)   = <W_q h(s), item(i)> + b_q[i]
    sqn(s, i) = <W_s h(s), item(i)> + b_s[i]                  (SQN's supervised head)

Because a new track has features before it has plays, a track added to the catalog
after training gets a usable vector from its features alone (the id embedding and
bias start at 0); training drops id embeddings at random (``id_dropout``) so the
feature path learns to stand on its own.

The same class with ``q_weight = 0`` and no features is the supervised GRU4Rec-style
baseline of the evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from recommender.errors import ConfigError

ENCODERS = ("gru", "attention")
N_OUTCOMES = 3  # rewards.SKIPPED, COMPLETED, UNKNOWN


@dataclass
class NetConfig:
    """Shape of the network."""

    dim: int = 64
    """Width of item vectors and of the state."""
    encoder: str = "gru"
    """``gru`` (GRU4Rec-style) or ``attention`` (causal self-attention, SASRec-style)."""
    layers: int = 1
    """Recurrent or attention layers."""
    heads: int = 2
    """Attention heads (``attention`` only; ``dim`` must divide by it)."""
    max_history: int = 50
    """Events of history the state sees (older ones are dropped)."""
    dropout: float = 0.2
    """Dropout on inputs and inside the encoder."""
    id_dropout: float = 0.1
    """Probability of dropping an item's id embedding in training (keeps the feature path useful)."""
    use_outcomes: bool = True
    """Feed each history event's outcome (completed/skipped/unknown) to the encoder."""

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ConfigError(f"encoder {self.encoder!r} is not known (allowed: {', '.join(ENCODERS)})")
        if not 4 <= self.dim <= 1024:
            raise ConfigError(f"dim {self.dim} is out of range (allowed: 4-1024)")
        if self.encoder == "attention" and self.dim % self.heads:
            raise ConfigError(f"dim {self.dim} does not divide by heads {self.heads}: pick heads dividing dim")
        if not 1 <= self.max_history <= 1000:
            raise ConfigError(f"max_history {self.max_history} is out of range (allowed: 1-1000)")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.id_dropout < 1.0:
            raise ConfigError(f"dropout {self.dropout} / id_dropout {self.id_dropout} out of range (allowed: 0 <= p < 1)")


class _Block(nn.Module):
    """Pre-norm causal self-attention block."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        y, _ = self.attn(y, y, y, attn_mask=mask, need_weights=False)
        x = x + self.drop(y)
        return x + self.drop(self.ff(self.norm2(x)))


class SeqQNet(nn.Module):
    """History encoder with a Q head and a supervised next-item head over a catalog of ``n_items``.

    Item indices are ``1..n_items``; 0 is padding. ``features`` float32
    ``[n_items + 1, F]`` (``F`` may be 0) is stored as a buffer, so it travels with the
    checkpoint.
    """

    def __init__(self, n_items: int, features: torch.Tensor, config: NetConfig, user_dim: int = 0) -> None:
        super().__init__()
        self.config, self.n_items, self.user_dim = config, n_items, user_dim
        d = config.dim
        self.register_buffer("features", features.float())
        self.id_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        nn.init.normal_(self.id_emb.weight, std=0.05)
        with torch.no_grad():
            self.id_emb.weight[0].zero_()
        self.feat = nn.Linear(features.shape[1], d, bias=False) if features.shape[1] else None
        self.outcome_emb = nn.Embedding(N_OUTCOMES, d) if config.use_outcomes else None
        if self.outcome_emb is not None:
            nn.init.normal_(self.outcome_emb.weight, std=0.05)
        self.in_drop = nn.Dropout(config.dropout)
        if config.encoder == "gru":
            self.gru = nn.GRU(d, d, num_layers=config.layers, batch_first=True,
                              dropout=config.dropout if config.layers > 1 else 0.0)
        else:
            self.pos = nn.Embedding(config.max_history, d)
            nn.init.normal_(self.pos.weight, std=0.05)
            self.blocks = nn.ModuleList(_Block(d, config.heads, config.dropout) for _ in range(config.layers))
            self.out_norm = nn.LayerNorm(d)
        # long-term taste (the user's ALS factor, folded in for a new history) joins the state
        self.user_proj = nn.Linear(user_dim, d) if user_dim else None
        self.q_proj = nn.Linear(d, d)
        self.s_proj = nn.Linear(d, d)
        self.q_bias = nn.Parameter(torch.zeros(n_items + 1))
        self.s_bias = nn.Parameter(torch.zeros(n_items + 1))

    # ------------------------------------------------------------------ items
    def item_vectors(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        """Item vectors ``[..., dim]`` for ``ids`` (any shape), or all ``[n_items + 1, dim]``."""
        if ids is None:
            ids = torch.arange(self.n_items + 1, device=self.id_emb.weight.device)
        v = self.id_emb(ids)
        if self.training and self.config.id_dropout > 0:
            keep = (torch.rand(ids.shape, device=v.device) >= self.config.id_dropout).unsqueeze(-1)
            v = v * keep
        if self.feat is not None:
            v = v + self.feat(self.features[ids])
        return v

    # ------------------------------------------------------------------ states
    def encode(self, items: torch.Tensor, outcomes: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        """States after each event: ``[B, L, dim]`` for left-padded histories ``items``/``outcomes`` int ``[B, L]``.

        ``h[:, t]`` is the state having heard events ``0..t``; padding (item 0) must be on the left.
        ``users`` float ``[B, user_dim]``: long-term taste vectors (needed when ``user_dim > 0``).
        """
        return self.encode_vectors(self.item_vectors(items), items > 0, outcomes, users)

    def encode_vectors(self, vecs: torch.Tensor, real: torch.Tensor, outcomes: torch.Tensor,
                       users: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`encode` from item vectors ``vecs`` float ``[B, L, dim]`` (so a track newer than the
        model can enter by its feature vector) and ``real`` bool ``[B, L]`` (False: padding)."""
        h = self._encode(vecs, real, outcomes)
        if self.user_proj is not None:
            if users is None:
                users = torch.zeros(vecs.shape[0], self.user_dim)
            h = h + self.user_proj(users).unsqueeze(1)
        return h

    def _encode(self, vecs: torch.Tensor, real: torch.Tensor, outcomes: torch.Tensor) -> torch.Tensor:
        keep = real.unsqueeze(-1).to(vecs.dtype)
        x = vecs * keep  # padding is an exact zero input
        if self.outcome_emb is not None:
            x = x + self.outcome_emb(outcomes) * keep
        x = self.in_drop(x)
        if self.config.encoder == "gru":
            h, _ = self.gru(x)
            return h
        L = vecs.shape[1]
        x = x * math.sqrt(self.config.dim) + self.pos.weight[-L:]
        # causal, and padding keys hidden; every position may see itself, so no row is empty (NaN)
        # (index comparisons rather than triu/eye on bools, which onnxruntime has no kernels for)
        pos = torch.arange(L, device=x.device)
        hidden = (pos.unsqueeze(0) > pos.unsqueeze(1)).unsqueeze(0) | (~real).unsqueeze(1)
        hidden = hidden & (pos.unsqueeze(0) != pos.unsqueeze(1))
        mask = hidden.repeat_interleave(self.config.heads, dim=0)  # [B * heads, L, L]
        for blk in self.blocks:
            x = blk(x, mask)
        return self.out_norm(x)

    # ------------------------------------------------------------------ heads
    def q_values(self, h: torch.Tensor, item_vecs: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Q ``[..., A]`` of states ``h [..., dim]`` for actions with vectors ``[A, dim]`` and indices ``ids [A]``."""
        return self.q_proj(h) @ item_vecs.T + self.q_bias[ids]

    def sqn_logits(self, h: torch.Tensor, item_vecs: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Supervised next-item logits ``[..., A]`` (same shapes as :meth:`q_values`)."""
        return self.s_proj(h) @ item_vecs.T + self.s_bias[ids]
