"""Offline training of the recommender DQN on logged listening sessions.

One flat loop, CleanRL style. Every user's history is cut into windows of
``max_history + 1`` events; one forward pass of the encoder gives the state after
each event, so each window yields ``max_history`` transitions at once:

    s_t = the history up to event t,  a_t = the track of event t+1,
    r_t = reward(outcome of a_t) + continue_bonus * [the session goes on after a_t],
    done_t = [the session ends after a_t]   (a gap over ``session_gap`` seconds, or the log's end)

and the loss is

    sqn_weight * CE(sqn_logits(s_t), a_t)                                          (SQN's supervised head)
  + q_weight  * [ TD(Q(s_t, a_t), r_t + gamma * (1 - done_t) * Q_tgt(s_{t+1}, argmax_a Q(s_{t+1}, a)))  (double DQN)
                + unshown_weight * (logsumexp_{a in {a_t} + K drawn} Q(s_t, a) - Q(s_t, a_t)) ]           (CQL)

``q_encoder_grad`` scales the Q-loss gradient that reaches the encoder and the item
vectors (the parts the two heads share): at 0 the supervised head ranks exactly as
without the Q-loss, and the Q head learns on top of its representation.

Sessions have ends, so the discounted return is what a session still holds: more
completed tracks and a listener who stays. A *skipped* track is a logged action with
its own (low) reward in the TD term. A track that was simply *not shown* has no
outcome at all: it gets no TD target, only the conservative term of CQL (Kumar et
al. 2020), which keeps Q of actions the logs never tried below the ones they did
without claiming the listener would have disliked them.

The target network follows the online one by Polyak averaging (``tau``). Catalogs
larger than ``max_full_actions`` use a sampled action set per batch (every target of
the batch plus ``sampled_actions`` uniform tracks) for the softmax and the argmax.

Public pieces, for wrappers (e.g. data-parallel training): :class:`TrainConfig`,
:func:`build_net`, :func:`batch_loss` (the loss of one batch, no optimiser),
:func:`train` (data + config -> trained network) and :class:`Trainer` (the loop with
checkpoints). Seeded (torch, numpy), checkpointed after every epoch (resumable),
with a tqdm bar.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engine.base import rl
from engine.base.files import atomic_write
from recommender.dataset import Interactions
from recommender.errors import ConfigError
from recommender.model import NetConfig, SeqQNet
from recommender.rewards import RewardConfig

log = logging.getLogger(__name__)

RANK_BY = ("q", "sqn", "blend")


@dataclass
class TrainConfig:
    """Everything that decides a training run (saved beside every checkpoint)."""

    net: NetConfig = field(default_factory=NetConfig)
    """Network shape."""
    reward: RewardConfig = field(default_factory=RewardConfig)
    """Reward per outcome."""
    epochs: int = 10
    """Passes over every user's history (10 train MovieLens-100K in a few CPU minutes)."""
    batch_size: int = 128
    """Windows per gradient step."""
    lr: float = 2e-3
    """Adam learning rate (at 1e-3, 10 epochs leave the GRU4Rec baseline at popularity level)."""
    weight_decay: float = 0.0
    """Adam weight decay."""
    gamma: float = 0.8
    """Discount of future rewards within a session (0: the next track's reward only)."""
    q_weight: float = 1.0
    """Weight of the Q-learning loss; 0 trains the supervised head only (GRU4Rec-style baseline)."""
    q_encoder_grad: float = 1.0
    """Share of the Q-loss gradient that reaches what the heads share (the encoder and the item
    vectors): 1 trains them on both losses (SQN), 0 stops it there, so the Q head learns on the
    supervised representation and next-item ranking is exactly the supervised model's. Forward
    values are the same either way."""
    sqn_weight: float = 1.0
    """Weight of the supervised next-item cross-entropy."""
    unshown_weight: float = 0.1
    """Weight of the conservative (CQL) term that keeps Q of tracks the logs never tried in a
    state below the logged one (0: off). Not-shown tracks get no TD target."""
    unshown_samples: int = 256
    """Tracks drawn per batch for the conservative term's log-sum-exp (besides the logged one)."""
    continue_bonus: float = 0.5
    """Reward added to a step after which the listener stays in the session."""
    session_gap: float = 1800.0
    """Seconds between two events that end a session (terminal flag, no bootstrap past it)."""
    tau: float = 0.01
    """Polyak rate of the target network per step."""
    grad_clip: float = 5.0
    """Gradient norm clip."""
    max_full_actions: int = 8192
    """Catalogs up to this size use every track in the softmax and the argmax."""
    sampled_actions: int = 4096
    """Above it: uniform tracks added to the batch's targets to form the action set."""
    rank_by: str = "sqn"
    """What ranks ``next`` and the offline evaluation: ``sqn`` (the supervised head, shaped by
    Q-learning on the shared encoder, as SQN ranks), ``q`` or ``blend``. Playlists and search
    re-ranking always use Q."""
    blend: float = 1.0
    """In ``blend``: score = sqn logit + blend * Q."""
    next_candidates: int = 0
    """Tracks the bootstrap's argmax at the next state chooses among: 0, every track (a player that
    may play anything next); ``K``, ``K`` drawn at random per transition, for a world that offers
    only ``K`` candidates a step (RecSim): a max over the whole catalog credits every state with a
    pick the listener is never offered, and over a session that adds up to a Q far above any
    return (seen: 39 clicks where sessions hold 12)."""
    user_taste: bool = True
    """Add the listener's long-term taste (the candidate model's user factor) to the state. The
    factor is fitted on the listener's whole log, so in training it knows where each session is
    going; that is the point where a listener has a long past, and a leak where one log is one
    session (RecSim's listeners, scored from the history so far): there, False."""
    seed: int = 0
    """Seeds torch and numpy: the same data and config give the same model."""

    def __post_init__(self) -> None:
        if isinstance(self.net, dict):
            self.net = NetConfig(**self.net)
        if isinstance(self.reward, dict):
            self.reward = RewardConfig(**self.reward)
        checks = [("epochs", 1, 10_000), ("batch_size", 1, 65_536), ("unshown_samples", 1, 65_536),
                  ("sampled_actions", 1, 1_000_000), ("max_full_actions", 1, 10_000_000),
                  ("next_candidates", 0, 10_000_000)]
        for name, lo, hi in checks:
            v = getattr(self, name)
            if not lo <= v <= hi:
                raise ConfigError(f"{name} {v} is out of range (allowed: {lo}-{hi})")
        if not 0.0 <= self.gamma < 1.0:
            raise ConfigError(f"gamma {self.gamma} is out of range (allowed: 0 <= gamma < 1)")
        if not 0.0 < self.tau <= 1.0:
            raise ConfigError(f"tau {self.tau} is out of range (allowed: 0 < tau <= 1)")
        if not 0.0 <= self.unshown_weight <= 100.0:
            raise ConfigError(f"unshown_weight {self.unshown_weight} is out of range (allowed: 0-100)")
        if not -100.0 <= self.continue_bonus <= 100.0:
            raise ConfigError(f"continue_bonus {self.continue_bonus} is out of range (allowed: -100 to 100)")
        if not self.session_gap > 0:
            raise ConfigError(f"session_gap {self.session_gap} is out of range (allowed: > 0 seconds)")
        if not 0.0 <= self.q_encoder_grad <= 1.0:
            raise ConfigError(f"q_encoder_grad {self.q_encoder_grad} is out of range (allowed: 0-1)")
        if not self.lr > 0:
            raise ConfigError(f"lr {self.lr} is out of range (allowed: > 0)")
        if self.rank_by not in RANK_BY:
            raise ConfigError(f"rank_by {self.rank_by!r} is not known (allowed: {', '.join(RANK_BY)})")
        if self.q_weight == 0 and self.rank_by != "sqn":
            self.rank_by = "sqn"  # an untrained Q head cannot rank

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in json.loads(text).items() if k in known})


def windows(seqs: list[np.ndarray], outs: list[np.ndarray], length: int, ends: list[np.ndarray] | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cut histories into left-padded windows of ``length`` events.

    Returns ``(items int64 [W, length], outcomes int64 [W, length], user int64 [W],
    ends bool [W, length])`` (``user`` indexes ``seqs``; ``ends`` marks the last event of a
    session, from ``ends`` per history, default: only each history's last event);
    consecutive windows of a user overlap by one event, so every event after a user's first
    is a target once.
    """
    items, outcomes, users, stops = [], [], [], []
    step = length - 1
    for u, (seq, out) in enumerate(zip(seqs, outs)):
        end_flags = ends[u] if ends is not None else np.arange(len(seq)) == len(seq) - 1
        end = len(seq)
        while end >= 2:
            start = max(0, end - length)
            w = np.zeros(length, np.int64)
            o = np.zeros(length, np.int64)
            e = np.zeros(length, bool)
            w[length - (end - start):] = seq[start:end]
            o[length - (end - start):] = out[start:end]
            e[length - (end - start):] = end_flags[start:end]
            items.append(w)
            outcomes.append(o)
            stops.append(e)
            users.append(u)
            end -= step
    if not items:
        raise ConfigError("no user has 2 or more events: nothing to learn a next track from (ingest more history)")
    return np.stack(items), np.stack(outcomes), np.array(users, np.int64), np.stack(stops)


def last_window(seq: np.ndarray, out: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The last ``length`` events of one history, left-padded: ``(items [length], outcomes [length])``."""
    w = np.zeros(length, np.int64)
    o = np.zeros(length, np.int64)
    k = min(len(seq), length)
    if k:
        w[length - k:] = seq[-k:]
        o[length - k:] = out[-k:]
    return w, o


def build_net(data: Interactions, config: TrainConfig) -> SeqQNet:
    """A fresh :class:`SeqQNet` for ``data``'s catalog, item features and taste vectors."""
    feats = torch.from_numpy(np.ascontiguousarray(data.item_features, np.float32))
    return SeqQNet(data.n_items, feats, config.net,
                   user_dim=data.user_features.shape[1] if config.user_taste else 0)


def action_set(n_items: int, targets: torch.Tensor, config: TrainConfig, rng: np.random.Generator
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Action ids ``[A]`` scored in a batch and each target's column (``targets.shape``): every
    track up to ``max_full_actions``, else the batch's targets plus ``sampled_actions`` uniform ones."""
    if n_items <= config.max_full_actions:
        return torch.arange(n_items + 1), targets
    extra = torch.from_numpy(rng.integers(1, n_items + 1, config.sampled_actions))
    ids, inv = torch.unique(torch.cat([torch.zeros(1, dtype=torch.long), targets.flatten(), extra]),
                            return_inverse=True)
    return ids, inv[1:1 + targets.numel()].view_as(targets)


def _offered(shape: tuple[int, ...], k: int, rng: np.random.Generator) -> torch.Tensor | None:
    """bool ``shape`` ``[M, A]``: ``k`` random actions offered per row (None: ``k`` is 0 or all of them)."""
    if not 0 < k < shape[1]:
        return None
    picks = torch.from_numpy(rng.random(shape, dtype=np.float32)).topk(k, dim=1).indices
    return torch.zeros(shape, dtype=torch.bool).scatter_(1, picks, True)


def _scale_grad(x: torch.Tensor, share: float) -> torch.Tensor:
    """``x`` in the forward pass; ``share`` of the gradient flows back through it."""
    if share >= 1.0:
        return x
    if share <= 0.0:
        return x.detach()
    return x * share + x.detach() * (1.0 - share)


def batch_loss(net: SeqQNet, target: SeqQNet, config: TrainConfig, items: torch.Tensor, outcomes: torch.Tensor,
               ends: torch.Tensor, users: torch.Tensor | None, rng: np.random.Generator
               ) -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss of one batch of windows (see the module doc) and its parts.

    ``items`` / ``outcomes`` int64 ``[B, L + 1]``, ``ends`` bool ``[B, L + 1]`` (session ends),
    ``users`` float ``[B, U]`` taste vectors or None. No optimiser step: a wrapper (DDP)
    calls ``backward`` itself.
    """
    c = config
    rewards_table = torch.tensor([c.reward.skipped, c.reward.completed, c.reward.unknown])
    if c.q_weight <= 0 and c.sqn_weight <= 0:
        raise ConfigError("q_weight and sqn_weight are both 0: nothing to train (allowed: either > 0)")
    h = net.encode(items, outcomes, users)  # [B, L+1, d]
    state = h[:, :-1]
    actions = items[:, 1:]  # the track played after each state
    valid = (items[:, :-1] > 0) & (actions > 0)
    ids, cols = action_set(net.n_items, actions, c, rng)
    vecs = net.item_vectors(ids)
    # column 0 of every action set is the padding item: it is sliced off rather than masked (no copies)
    cols = cols[valid] - 1
    logs: dict[str, float] = {}
    loss = torch.zeros(())
    if c.sqn_weight > 0:
        ce = F.cross_entropy(net.sqn_logits(state[valid], vecs, ids)[:, 1:], cols)
        loss = loss + c.sqn_weight * ce
        logs["ce"] = ce.item()
    if c.q_weight > 0:
        # Q with gradients only where the loss needs it: the logged action, and for CQL the logged
        # action against ``unshown_samples`` tracks drawn for the batch; the argmax over every track
        # at the next state needs no gradient (one forward product).
        # what the heads share sees only q_encoder_grad of the Q-loss gradient (forward unchanged)
        hq = net.q_proj(_scale_grad(state[valid], c.q_encoder_grad))  # [M, d]
        qvecs = _scale_grad(vecs, c.q_encoder_grad)
        a_ids = ids[cols + 1]
        q_sa = (hq * qvecs[cols + 1]).sum(-1) + net.q_bias[a_ids]
        done = ends[:, 1:][valid]
        rewards = rewards_table[outcomes[:, 1:][valid]] + c.continue_bonus * (~done).float()
        with torch.no_grad():
            q_next_online = net.q_values(h[:, 1:][valid], vecs, ids)[:, 1:]
            h_t = target.q_proj(target.encode(items, outcomes, users)[:, 1:][valid])

            def target_value(best: torch.Tensor) -> torch.Tensor:  # the target net, only at a'
                a = ids[best.squeeze(1) + 1]
                return (h_t * target.item_vectors(a)).sum(-1) + target.q_bias[a]

            # double DQN (engine.base.rl): the online head picks a', the target head values it; no bootstrap past a session
            y = rl.double_q_targets(q_next_online, target_value, rewards, c.gamma * (~done).float(),
                                    next_mask=_offered(q_next_online.shape, c.next_candidates, rng))
        td = F.smooth_l1_loss(q_sa, y)
        cql = torch.zeros(())
        if c.unshown_weight > 0:
            cols_n = torch.from_numpy(rng.integers(1, len(ids), c.unshown_samples))
            q_n = hq @ qvecs[cols_n].T + net.q_bias[ids[cols_n]]  # [M, K]
            q_n = q_n.masked_fill(cols_n.unsqueeze(0) == (cols + 1).unsqueeze(1), float("-inf"))
            cql = (torch.logsumexp(torch.cat([q_sa.unsqueeze(1), q_n], dim=1), dim=1) - q_sa).mean()
        loss = loss + c.q_weight * (td + c.unshown_weight * cql)
        logs["td"], logs["cql"] = td.item(), cql.item()
    logs["loss"] = loss.item()
    return loss, logs


class Trainer:
    """Trains :class:`SeqQNet` on an :class:`Interactions` log; :meth:`run` does the epochs."""

    def __init__(self, data: Interactions, config: TrainConfig, checkpoint_dir: str | Path | None = None,
                 progress: bool | None = None) -> None:
        torch.set_num_threads(1)
        self.data, self.config = data, config
        self.ckpt = Path(checkpoint_dir) / "checkpoint.pt" if checkpoint_dir else None
        self.progress = sys.stderr.isatty() if progress is None else progress
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.user_feats = torch.from_numpy(np.ascontiguousarray(data.user_features, np.float32))
        self.net = build_net(data, config)
        self.target = build_net(data, config)
        rl.hard_update(self.target, self.net)
        self.target.eval()
        self.opt = torch.optim.Adam(self.net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        b = data.bounds
        ends = data.session_ends(config.session_gap)
        self.seqs = [data.item[b[u]:b[u + 1]] for u in range(data.n_users)]
        self.outs = [data.outcome[b[u]:b[u + 1]].astype(np.int64) for u in range(data.n_users)]
        self.win_items, self.win_outs, self.win_users, self.win_ends = windows(
            self.seqs, self.outs, config.net.max_history + 1, [ends[b[u]:b[u + 1]] for u in range(data.n_users)])

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> None:
        if self.ckpt is None:
            return
        state = {"net": self.net.state_dict(), "target": self.target.state_dict(), "opt": self.opt.state_dict(),
                 "epoch": self.epoch, "history": self.history, "config": self.config.to_json(),
                 "rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state()}
        atomic_write(self.ckpt, lambda p: torch.save(state, p))

    def try_resume(self) -> bool:
        """Load the checkpoint when one exists with the same config; True when resumed."""
        if self.ckpt is None or not self.ckpt.exists():
            return False
        state = torch.load(self.ckpt, weights_only=False)
        if state.get("config") != self.config.to_json():
            log.warning("checkpoint %s was trained with another config: starting afresh", self.ckpt)
            return False
        try:
            self.net.load_state_dict(state["net"])
            self.target.load_state_dict(state["target"])
        except RuntimeError:
            log.warning("checkpoint %s does not match this catalog: starting afresh", self.ckpt)
            return False
        self.opt.load_state_dict(state["opt"])
        self.epoch, self.history = int(state["epoch"]), list(state["history"])
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed from %s at epoch %d", self.ckpt, self.epoch)
        return True

    # ------------------------------------------------------------------ one step
    def step(self, items: torch.Tensor, outcomes: torch.Tensor, ends: torch.Tensor,
             users: torch.Tensor | None = None) -> dict[str, float]:
        """One gradient step on a batch of windows ``[B, L + 1]``; returns the loss parts."""
        loss, logs = batch_loss(self.net, self.target, self.config, items, outcomes, ends, users, self.rng)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.config.grad_clip)
        self.opt.step()
        rl.soft_update(self.target, self.net, self.config.tau)
        return logs

    # ------------------------------------------------------------------ loop
    def run(self, resume: bool = True) -> SeqQNet:
        """Train the remaining epochs; returns the online network (in eval mode)."""
        from tqdm import tqdm

        c = self.config
        if resume:
            self.try_resume()
        n_win = len(self.win_items)
        steps = (n_win + c.batch_size - 1) // c.batch_size
        bar = tqdm(total=(c.epochs - self.epoch) * steps, disable=not self.progress, unit="batch",
                   desc="train", leave=False)
        while self.epoch < c.epochs:
            self.net.train()
            t0 = time.perf_counter()
            order = self.rng.permutation(n_win)
            sums: dict[str, float] = {}
            for s in range(steps):
                idx = order[s * c.batch_size:(s + 1) * c.batch_size]
                logs = self.step(torch.from_numpy(self.win_items[idx]), torch.from_numpy(self.win_outs[idx]),
                                 torch.from_numpy(self.win_ends[idx]), self.user_feats[torch.from_numpy(self.win_users[idx])])
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.update(1)
                bar.set_postfix(epoch=self.epoch + 1, loss=f"{logs['loss']:.3f}")
            self.epoch += 1
            rec = {k: v / steps for k, v in sums.items()} | {"epoch": self.epoch,
                                                             "seconds": time.perf_counter() - t0}
            self.history.append(rec)
            log.info("epoch %d: %s", self.epoch, {k: round(v, 4) for k, v in rec.items()})
            self.save()
        bar.close()
        self.net.eval()
        return self.net


def train(data: Interactions, config: TrainConfig, checkpoint_dir: str | Path | None = None,
          progress: bool | None = None, resume: bool = True) -> SeqQNet:
    """Train a network on ``data`` with ``config``; returns it in eval mode (the public entry point)."""
    return Trainer(data, config, checkpoint_dir, progress=progress).run(resume=resume)


# ---------------------------------------------------------------- torch scoring (evaluation)

@torch.no_grad()
def score_users(net: SeqQNet, config: TrainConfig, seqs: list[np.ndarray], outs: list[np.ndarray],
                batch: int = 256, user_vecs: np.ndarray | None = None) -> np.ndarray:
    """float32 ``[U, n_items + 1]`` ranking scores of every item after each history (column 0 = -inf).

    ``user_vecs`` float ``[U, user_dim]``: each history's taste vector, for a net with ``user_dim > 0``.
    """
    torch.set_num_threads(1)
    net.eval()
    L = config.net.max_history
    vecs = net.item_vectors()
    ids = torch.arange(net.n_items + 1)
    rows = []
    for s in range(0, len(seqs), batch):
        w = [last_window(q, o, L) for q, o in zip(seqs[s:s + batch], outs[s:s + batch])]
        items = torch.from_numpy(np.stack([a for a, _ in w]))
        outcomes = torch.from_numpy(np.stack([b for _, b in w]))
        users = None if user_vecs is None else torch.from_numpy(np.asarray(user_vecs[s:s + batch], np.float32))
        h = net.encode(items, outcomes, users)[:, -1]
        rows.append(combine_scores(config, net.q_values(h, vecs, ids).numpy(), net.sqn_logits(h, vecs, ids).numpy()))
    out = np.concatenate(rows).astype(np.float32)
    out[:, 0] = -np.inf
    return out


def combine_scores(config: TrainConfig, q: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """The ranking score of ``config.rank_by`` from Q-values and supervised logits (same shape)."""
    if config.rank_by == "q":
        return q
    if config.rank_by == "sqn":
        return logits
    return logits + config.blend * q


# ---------------------------------------------------------------- the whole pipeline

def fit_candidates(data: Interactions, cand_config: Any, reward: RewardConfig, progress: bool = False):
    """Fit the retrieval model on users x items weighted by summed rewards (negative = disliked)."""
    from recommender.candidates import Candidates

    ui = data.user_items(reward.rewards(data.outcome))
    ui.eliminate_zeros()
    return Candidates(cand_config).fit(ui, show_progress=progress)


def prepare_features(data: Interactions, candidates: Any) -> None:
    """Append the candidate model's item factors to ``data.item_features`` and set its user
    factors (L2-normalised) as ``data.user_features`` (in place)."""
    from recommender.features import normalised, with_factors

    data.item_features = with_factors(data.item_features, candidates.item_factors)
    if candidates.user_factors is not None:
        data.user_features = normalised(candidates.user_factors)


def train_database(db: str | Path, model_path: str | Path | None = None, config: TrainConfig | None = None,
                   cand_config: Any = None, progress: bool | None = None, resume: bool = True,
                   lock_timeout: float = 10.0, fit: Any = None) -> Any:
    """Train on every event of database ``db`` and write the model file; returns the ModelArtifact.

    The checkpoint (resumable) lives beside the model file, in ``<model>.ckpt/``. ``fit``:
    ``fit(data, config) -> (net, epoch log)`` trains the network instead of this process's
    :class:`Trainer` (the candidates are fitted here either way).
    """
    from datetime import datetime

    from recommender.artifact import ModelArtifact, default_model_path
    from recommender.candidates import CandidateConfig
    from recommender.catalog import load_interactions
    from recommender.schema import connect
    from recommender.scoring import export_weights

    torch.set_num_threads(1)
    config = config or TrainConfig()
    cand_config = cand_config or CandidateConfig()
    if cand_config.kind == "cosine":
        raise ConfigError("candidate model 'cosine' has no factors to serve from (allowed for training: als, bpr); "
                          "item-kNN is an evaluation baseline")
    model_path = Path(model_path) if model_path else default_model_path(db)
    conn = connect(db, timeout=lock_timeout, create=False)
    try:
        data, track_ids = load_interactions(conn)
    finally:
        conn.close()
    t0 = time.perf_counter()
    show = sys.stderr.isatty() if progress is None else progress
    cands = fit_candidates(data, cand_config, config.reward, show)
    prepare_features(data, cands)
    if fit is None:
        trainer = Trainer(data, config, model_path.with_name(model_path.name + ".ckpt"), progress=show)
        net, history = trainer.run(resume=resume), trainer.history
    else:  # e.g. recommender.distributed's data-parallel training on Ray
        net, history = fit(data, config)
    popularity = np.bincount(data.item, minlength=data.n_items + 1).astype(np.float32)
    popularity[0] = 0
    info = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "train_config": asdict(config),
            "users": data.n_users, "tracks": data.n_items, "events": len(data),
            "seconds": round(time.perf_counter() - t0, 2), "history": history}
    art = ModelArtifact(export_weights(net, config.to_json()), track_ids, list(data.user_names),
                        cands.user_factors, cands.item_factors, popularity, asdict(cand_config), info)
    art.save(model_path)
    log.info("model written to %s", model_path)
    return art
