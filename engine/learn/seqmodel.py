"""The recurrent sequence network shared by the corpus prior and the KL-controlled Q-network.

One architecture, :class:`SeqNet`, reads the engine's observation one step at a time
(``engine.mdp.observation.observe``: the last 16 tokens, look-backs, key-relative
scale, chords, metre, position, role and, for the Q-network, the style weights) and
carries a GRU state over the whole clip, so what happened 8 or 16 bars ago can matter::

    x_t  = relu(W_in obs_t)                      [B, embed]
    h_t  = GRU(x_t, h_{t-1})                     [B, hidden]
    out  = W_out relu(W_mid [x_t, h_t])          [B, 38]

The skip from ``x_t`` to the head lets the feed-forward features act at once while the
GRU learns what to remember. The corpus prior is a :class:`SeqNet` over the style-free
columns (``obs[..., :obs_dim(0)]``) whose output are next-token logits. The Q-network of
KL control (:class:`KLPolicyNet`) pairs that frozen prior with a second :class:`SeqNet`
``G`` over the whole observation, initialised from the prior's weights with a zero
output layer, and acts by ``log p_prior(a|s) + G(s, a)`` (G-learning: with ``G = 0`` it
*is* the prior). :class:`StepModule` is the one-step form exported to ONNX, with the
recurrent state as an explicit input and output.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from engine.mdp import observation
from engine.music import tokens


@dataclass(frozen=True)
class SeqConfig:
    """Sizes of a :class:`SeqNet` (saved with every model that holds one)."""

    obs_dim: int
    """Observation columns read: ``obs_dim(0)`` for the prior, ``obs_dim(n_style)`` for G."""
    embed: int = 256
    """Width of the input projection (ReLU)."""
    hidden: int = 128
    """GRU units: the recurrent state carried from step to step."""
    head: int = 256
    """Width of the hidden layer of the output head (ReLU)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SeqConfig:
        return cls(**{k: int(v) for k, v in d.items() if k in cls.__dataclass_fields__})


class SeqNet(nn.Module):
    """Observation sequence -> 38 outputs per step, with a GRU state (see the module docstring)."""

    def __init__(self, config: SeqConfig) -> None:
        super().__init__()
        self.config = config
        self.inp = nn.Linear(config.obs_dim, config.embed)
        self.gru = nn.GRU(config.embed, config.hidden, batch_first=True)
        self.mid = nn.Linear(config.embed + config.hidden, config.head)
        self.out = nn.Linear(config.head, tokens.N_ACTIONS)

    @property
    def state_size(self) -> int:
        return self.config.hidden

    def forward(self, obs: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``obs`` float32 ``[B, T, obs_dim]`` (extra columns are ignored), ``h0`` ``[B, hidden]``
        or None (zeros) -> (outputs ``[B, T, 38]``, final state ``[B, hidden]``)."""
        x = torch.relu(self.inp(obs[..., : self.config.obs_dim]))
        h, hn = self.gru(x, None if h0 is None else h0.unsqueeze(0))
        y = self.out(torch.relu(self.mid(torch.cat([x, h], dim=-1))))
        return y, hn.squeeze(0)

    def step(self, obs: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: ``obs`` ``[B, obs_dim+]``, ``h`` ``[B, hidden]`` -> (``[B, 38]``, ``[B, hidden]``)."""
        y, hn = self.forward(obs.unsqueeze(1), h)
        return y.squeeze(1), hn

    def zero_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, self.config.hidden)


def g_network_from_prior(prior: SeqNet, obs_dim: int) -> SeqNet:
    """A G-network of the prior's shape reading ``obs_dim`` columns (the prior's plus the
    style weights): the prior's weights, zero weights on the extra columns, and a zero
    output layer, so ``G == 0`` everywhere and the KL policy starts as the prior."""
    pc = prior.config
    if obs_dim < pc.obs_dim:
        raise ValueError(f"G reads {obs_dim} columns, fewer than the prior's {pc.obs_dim}")
    g = SeqNet(SeqConfig(obs_dim=obs_dim, embed=pc.embed, hidden=pc.hidden, head=pc.head))
    with torch.no_grad():
        state = {k: v.clone() for k, v in prior.state_dict().items()}
        w = torch.zeros(pc.embed, obs_dim)
        w[:, : pc.obs_dim] = state.pop("inp.weight")
        state["inp.weight"] = w
        state["out.weight"] = torch.zeros_like(state["out.weight"])
        state["out.bias"] = torch.zeros_like(state["out.bias"])
        g.load_state_dict(state)
    return g


class KLPolicyNet(nn.Module):
    """Frozen prior + G-network: action logits ``log p_prior(a|s) + G(s, a)``.

    ``g=None`` gives the prior alone (its log-probabilities). The recurrent state of the
    pair is one flat vector ``[B, prior.hidden + g.hidden]``.
    """

    def __init__(self, prior: SeqNet, g: SeqNet | None, obs_dim: int | None = None) -> None:
        super().__init__()
        self.prior = prior
        self.g = g
        # the prior alone may still be handed whole observations (style columns it ignores)
        self._obs_dim = obs_dim
        for p in self.prior.parameters():
            p.requires_grad_(False)

    @property
    def obs_dim(self) -> int:
        if self.g is not None:
            return self.g.config.obs_dim
        return self._obs_dim or self.prior.config.obs_dim

    @property
    def state_size(self) -> int:
        return self.prior.state_size + (self.g.state_size if self.g is not None else 0)

    def zero_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, self.state_size)

    def step(self, obs: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step: (logits ``[B, 38]``, prior log-probs ``[B, 38]``, next state)."""
        hp = self.prior.state_size
        lp, sp = self.prior.step(obs, state[:, :hp])
        lp = torch.log_softmax(lp, dim=-1)
        if self.g is None:
            return lp, lp, sp
        g, sg = self.g.step(obs, state[:, hp:])
        return lp + g, lp, torch.cat([sp, sg], dim=-1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Whole sequences: ``obs`` ``[B, T, D]`` -> logits ``[B, T, 38]`` from zero states."""
        lp = torch.log_softmax(self.prior(obs)[0], dim=-1)
        return lp if self.g is None else lp + self.g(obs)[0]


class StepModule(nn.Module):
    """The exported form: ``(obs [B, D], state [B, S]) -> (q_values [B, 38], state_out [B, S])``."""

    def __init__(self, net: KLPolicyNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, obs: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, _, nxt = self.net.step(obs, state)
        return logits, nxt


def prior_obs_dim() -> int:
    """Observation columns the prior reads (no style weights)."""
    return observation.obs_dim(0)


def save_policy(net: KLPolicyNet, path: Any, meta: dict[str, Any] | None = None) -> None:
    """The torch weights of a KL policy (prior and G, with their sizes) as one ``.pt`` file:
    what later fine-tuning and the speed bench start from (the ONNX file cannot be read back
    into torch)."""
    from pathlib import Path

    from engine.base.files import atomic_write

    blob = {"kind": type(net).__name__, "prior_config": net.prior.config.to_dict(), "prior": net.prior.state_dict(),
            "g_config": None if net.g is None else net.g.config.to_dict(),
            "g": None if net.g is None else net.g.state_dict(), "obs_dim": net.obs_dim, "meta": meta or {}}
    atomic_write(Path(path), lambda tmp: torch.save(blob, tmp))


def load_policy(path: Any) -> KLPolicyNet:
    """A policy written by :func:`save_policy`."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    prior = SeqNet(SeqConfig.from_dict(blob["prior_config"]))
    prior.load_state_dict(blob["prior"])
    g = None
    if blob["g_config"] is not None:
        g = SeqNet(SeqConfig.from_dict(blob["g_config"]))
        g.load_state_dict(blob["g"])
    cls = {"KLPolicyNet": KLPolicyNet, "QOnlyPolicyNet": QOnlyPolicyNet}[blob["kind"]]
    return cls(prior.eval(), g.eval() if g is not None else None, obs_dim=int(blob["obs_dim"])).eval()


class QOnlyPolicyNet(KLPolicyNet):
    """The no-KL ablation's policy: ``softmax(Q)`` with no prior term (the prior's state is still
    carried, so every exported recurrent model has the same two-part state)."""

    def step(self, obs: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        assert self.g is not None
        hp = self.prior.state_size
        lp, sp = self.prior.step(obs, state[:, :hp])
        q, sg = self.g.step(obs, state[:, hp:])
        return q, torch.log_softmax(lp, -1), torch.cat([sp, sg], dim=-1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        assert self.g is not None
        return self.g(obs)[0]
