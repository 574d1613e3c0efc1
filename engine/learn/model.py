"""The Q-network (torch): shared by training, ONNX export and the tests.

``QNetwork`` maps an observation ``float32 [B, D]`` (:func:`engine.mdp.observation.observe`)
to Q-values ``float32 [B, 38]``, one per token. It is a small MLP with a dueling head
(Wang et al. 2016: ``Q = V + A - mean(A)``), which learns state values faster when
many actions are nearly equivalent, as tokens often are.

Optionally the network carries a frozen *prior branch* (Sequence Tutor's idea in
residual form): ``Q(s, a) = w(s) * log p(a | s) + MLP(s)[a]`` where ``log p(a | s)``
comes from the corpus prior on the style-free part of the observation
(``obs[:, :prior_dim]``) and ``w(s)`` is the style's own ``prior`` weight, read from the
observation's style segment (column ``prior_weight_col``; ``prior_scale`` when there is
none). The reward holds the same ``w * log p`` term, so the MLP learns only what the
rest of the style adds, and the corpus prior can never be forgotten. The MLP's last
layers start at zero, so before training ``softmax(Q)`` is the prior tempered by ``w``.
The prior branch is part of the exported ONNX graph: the runtime needs nothing but the
file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, cast

import torch
from torch import nn

from engine.music import tokens


@dataclass
class ModelConfig:
    """Shape of a :class:`QNetwork`; stored with checkpoints and in the ONNX metadata."""

    obs_dim: int
    """Observation width D (``engine.mdp.observation.obs_dim(n_style_terms)``)."""
    n_actions: int = tokens.N_ACTIONS
    """Number of actions (38 tokens)."""
    hidden: tuple[int, ...] = (256, 256)
    """Widths of the hidden layers of the MLP torso."""
    dueling: bool = True
    """Use a dueling head (separate value and advantage streams)."""
    prior_dim: int = 0
    """Width of the style-free observation the prior branch reads (0 = no prior branch)."""
    prior_hidden: tuple[int, ...] = field(default_factory=tuple)
    """Hidden widths of the prior branch MLP (must match the prior's weights)."""
    prior_scale: float = 1.0
    """Multiplier of ``log p(a|s)`` inside Q (times the style weight when ``prior_weight_col`` is set)."""
    prior_weight_col: int = -1
    """Observation column holding the style's ``prior`` weight / ``weight_scale`` (-1: none)."""
    weight_scale: float = 5.0
    """Scale of the style segment (``engine.mdp.styles.MAX_WEIGHT``): column value x scale = weight."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        d["prior_hidden"] = list(self.prior_hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        d = dict(d)
        d["hidden"] = tuple(d.get("hidden", (256, 256)))
        d["prior_hidden"] = tuple(d.get("prior_hidden", ()))
        return cls(**d)


class PriorBranch(nn.Module):
    """Frozen MLP ``obs[:, :prior_dim] -> log_softmax(logits)`` ``[B, A]`` (the corpus prior).

    Weights come from :meth:`load_numpy` (a list of ``(W [out, in], b [out])`` pairs, ReLU
    between layers), matching :class:`engine.corpus.prior.PriorModel`'s numpy network.
    """

    def __init__(self, prior_dim: int, hidden: tuple[int, ...], n_actions: int) -> None:
        super().__init__()
        dims = [prior_dim, *hidden, n_actions]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return torch.log_softmax(x, dim=-1)

    def load_numpy(self, weights: list[tuple[Any, Any]]) -> None:
        """Copy ``[(W [out, in], b [out]), ...]`` numpy arrays into the layers."""
        if len(weights) != len(self.layers):
            raise ValueError(f"prior has {len(weights)} layers, the branch {len(self.layers)}")
        with torch.no_grad():
            for layer, (w, b) in zip(self.layers, weights):
                linear = cast(nn.Linear, layer)
                linear.weight.copy_(torch.as_tensor(w, dtype=torch.float32))
                linear.bias.copy_(torch.as_tensor(b, dtype=torch.float32))


class QNetwork(nn.Module):
    """Observation ``float32 [B, D]`` -> Q-values ``float32 [B, n_actions]``."""

    prior_scale: torch.Tensor  # a buffer (saved with the weights): how much the prior's log-probabilities count

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        width = config.obs_dim
        for h in config.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.torso = nn.Sequential(*layers)
        self.advantage = nn.Linear(width, config.n_actions)
        self.value = nn.Linear(width, 1) if config.dueling else None
        self.prior = (PriorBranch(config.prior_dim, config.prior_hidden, config.n_actions)
                      if config.prior_dim else None)
        self.register_buffer("prior_scale", torch.tensor(float(config.prior_scale)))
        if self.prior is not None:
            # Start exactly at the prior: the learned part outputs 0 until trained.
            for head in (self.advantage, self.value):
                if head is not None:
                    nn.init.zeros_(head.weight)
                    nn.init.zeros_(head.bias)

    def forward(self, obs: torch.Tensor, prior_log_probs: torch.Tensor | None = None) -> torch.Tensor:
        """Q-values ``[B, A]``. ``prior_log_probs`` ``[B, A]`` (optional) replaces the prior
        branch's own computation (training caches them; the result is the same)."""
        z = self.torso(obs)
        adv = self.advantage(z)
        if self.value is not None:
            q = self.value(z) + adv - adv.mean(dim=1, keepdim=True)
        else:
            q = adv
        if self.prior is not None:
            logp = prior_log_probs if prior_log_probs is not None else self.prior(obs[:, : self.config.prior_dim])
            col = self.config.prior_weight_col
            if col >= 0:
                w = obs[:, col:col + 1] * (self.config.weight_scale * self.prior_scale)
                q = q + w * logp
            else:
                q = q + self.prior_scale * logp
        return q

    def n_params(self, trainable_only: bool = True) -> int:
        """Number of (trainable) parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)
