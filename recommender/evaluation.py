"""``qriff rec evaluate``: the offline protocol and its baselines, all in one run.

Protocol (SQN / Krichene & Rendle): leave-last-out per user by timestamp, ties broken
by :func:`~recommender.dataset.tie_break_key` (a fixed hash of user and item, not item
id order, which would leak); every model ranks **all** items, items the user saw in
training are filtered, and HR / NDCG at 5, 10 and 20 are averaged over users. Sampled
metrics (the held-out item among 100 random unseen items) are printed beside the
full ones only, to show the artefact, never instead of them.

Models, trained on the same split in the same run: most-popular, implicit ALS,
item-kNN (implicit's cosine), a supervised GRU4Rec-style model (GRU over item ids,
full-softmax cross-entropy at every position) and the DQN (the same training loop
with the Q head, SQN's supervised head, item features and ALS factors).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from recommender.candidates import CandidateConfig, Candidates
from recommender.dataset import Interactions, leave_last_out
from recommender.metrics import KS, hit_ndcg, ranks_full, ranks_sampled

log = logging.getLogger(__name__)

MODELS = ("most-popular", "als", "item-knn", "gru4rec", "dqn")


def default_dqn_config() -> Any:
    from recommender.train import TrainConfig

    return TrainConfig()


def gru4rec_config(dqn: Any) -> Any:
    """The supervised baseline: a GRU with the DQN's size, budget, regularisation and inputs
    (item ids and each event's outcome), trained by full-softmax cross-entropy alone: no Q
    head, no item features, no taste vector. Without the outcomes it scored NDCG@10 0.054 on
    MovieLens-100K here, below ALS; with them it is the strongest supervised baseline we had."""
    return replace(dqn, q_weight=0.0, rank_by="sqn", net=replace(dqn.net, encoder="gru"))


@dataclass
class EvalResult:
    """Metrics per model: ``full`` (HR/NDCG@k, full ranking), ``sampled`` (HR/NDCG@k among
    100 sampled negatives), ``seconds`` (fit + score)."""

    dataset: str
    users: int
    items: int
    events: int
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "users": self.users, "items": self.items, "events": self.events,
                "models": self.rows, "notes": self.notes}

    def table(self) -> str:
        """Markdown: full-ranking metrics, then the sampled HR@10 / NDCG@10 beside them."""
        head = ["model"] + [f"{m}@{k}" for k in KS for m in ("HR", "NDCG")] + ["sampled HR@10", "sampled NDCG@10",
                                                                              "seconds"]
        lines = [f"{self.dataset}: {self.users} users, {self.items} items, {self.events} events; "
                 "leave-last-out, full ranking, seen items filtered",
                 "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, r in self.rows.items():
            f, s = r["full"], r["sampled"]
            cells = [name] + [f"{f[f'{m}@{k}']:.4f}" for k in KS for m in ("HR", "NDCG")]
            cells += [f"{s['HR@10']:.4f}", f"{s['NDCG@10']:.4f}", f"{r['seconds']:.1f}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines)


def evaluate(data: Interactions, name: str, dqn_config: Any = None, cand_config: CandidateConfig | None = None,
             models: tuple[str, ...] = MODELS, progress: bool = False, seed: int = 0) -> EvalResult:
    """Run the protocol on ``data`` for ``models`` (see the module doc); returns the metrics."""
    split = leave_last_out(data)
    train, users, targets = split.train, split.test_users, split.test_items
    ui = train.user_items()
    seen = ui[users]
    res = EvalResult(name, data.n_users, data.n_items, len(data))
    res.notes.append("ties in time broken by a fixed hash of (user, item); HR/NDCG over "
                     f"{len(users)} users with >= 2 events")
    cand_config = cand_config or CandidateConfig(seed=seed)

    def record(model: str, scores: np.ndarray, t0: float) -> None:
        scores = np.asarray(scores, np.float64)
        scores[:, 0] = -np.inf  # padding column
        full = hit_ndcg(ranks_full(scores, targets, seen))
        sampled = hit_ndcg(ranks_sampled(scores, targets, seen, seed=seed))
        res.rows[model] = {"full": full, "sampled": sampled, "seconds": time.perf_counter() - t0}
        log.info("%s: %s", model, {k: round(v, 4) for k, v in full.items()})

    als = None
    for model in models:
        t0 = time.perf_counter()
        if model == "most-popular":
            pop = np.asarray(ui.sum(axis=0), np.float64).ravel()
            record(model, np.tile(pop, (len(users), 1)), t0)
        elif model in ("als", "item-knn"):
            cfg = cand_config if model == "als" else replace(cand_config, kind="cosine")
            fitted = Candidates(cfg).fit(ui)
            if model == "als":
                als = fitted
            record(model, fitted.score_all(users, ui), t0)
        elif model in ("gru4rec", "dqn"):
            from recommender.train import Trainer, prepare_features, score_users

            cfg = dqn_config or default_dqn_config()
            if model == "gru4rec":
                cfg = gru4rec_config(cfg)
                if train.item_features.shape[1]:  # the same baseline given the content features the DQN sees
                    t1 = time.perf_counter()
                    net = Trainer(replace(train), cfg, progress=progress).run(resume=False)
                    b = train.bounds
                    seqs = [train.item[b[u]:b[u + 1]] for u in users]
                    outs = [train.outcome[b[u]:b[u + 1]].astype(np.int64) for u in users]
                    record("gru4rec + item features", score_users(net, cfg, seqs, outs), t1)
                part = replace(train, item_features=np.zeros((train.n_items + 1, 0), np.float32))
            else:
                part = replace(train)
                if als is None:
                    als = Candidates(cand_config).fit(ui)
                prepare_features(part, als)
            net = Trainer(part, cfg, progress=progress).run(resume=False)
            b = part.bounds
            seqs = [part.item[b[u]:b[u + 1]] for u in users]
            outs = [part.outcome[b[u]:b[u + 1]].astype(np.int64) for u in users]
            uvecs = part.user_features[users] if part.user_features.shape[1] else None
            record(model, score_users(net, cfg, seqs, outs, user_vecs=uvecs), t0)
            if model == "dqn" and cfg.rank_by != "q":  # the same network ranked by its Q head
                record("dqn (Q head)", score_users(net, replace(cfg, rank_by="q"), seqs, outs, user_vecs=uvecs), t0)
        else:
            raise ValueError(f"unknown model {model!r}")
    return res


# ---------------------------------------------------------------- online: the simulator

@dataclass
class SimResult:
    """Mean (and std) cumulative reward of ``steps``-track playlists per policy, over the same users."""

    steps: int
    users: int
    rewards: dict[str, tuple[float, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "users": self.users,
                "policies": {k: {"mean": m, "std": s} for k, (m, s) in self.rewards.items()}}

    def table(self) -> str:
        base = self.rewards.get("greedy-als", (float("nan"), 0.0))[0]
        lines = [f"simulator: {self.users} users, {self.steps}-track playlists, cumulative reward "
                 "(tracks heard to the end)", "", "| policy | mean | std | x greedy ALS |", "|---|---|---|---|"]
        for k, (m, s) in self.rewards.items():
            lines.append(f"| {k} | {m:.2f} | {s:.2f} | {m / base:.2f} |")
        return "\n".join(lines)


def evaluate_simulator(sim_config: Any = None, dqn_config: Any = None, steps: int = 20, eval_users: int = 100,
                       candidates: int = 300, progress: bool = False, oracle: bool = True) -> SimResult:
    """Train on the simulator's logs, then play ``steps``-track playlists online for ``eval_users`` users.

    Policies: greedy ALS (its top unplayed track each step), the supervised GRU4Rec-style
    model (its top track given the playlist so far), the DQN (top rank score among ALS's
    ``candidates``, the run-time path), a uniformly random one and, with ``oracle``, a greedy
    policy that knows every completion probability (an upper reference).
    """
    from recommender.scoring import Scorer, export_weights
    from recommender.simulator import SimConfig, Simulator
    from recommender.train import Trainer, prepare_features

    sim = Simulator(sim_config or SimConfig())
    logs = sim.logged_history()
    users = np.arange(min(eval_users, sim.config.n_users))
    cfg = dqn_config or default_dqn_config()
    weights = cfg.reward.rewards(logs.outcome)
    ui = logs.user_items(weights)
    ui.eliminate_zeros()
    als = Candidates(CandidateConfig(seed=cfg.seed)).fit(ui)
    als_scores = als.score_all(users, ui)
    als_scores[:, 0] = -np.inf
    res = SimResult(steps, len(users))

    def run(name: str, policy: Any) -> None:
        r = sim.rollout(policy, logs, steps, users)
        res.rewards[name] = (float(r.mean()), float(r.std()))
        log.info("simulator %s: %.2f", name, r.mean())

    def greedy_als(u: int, items: np.ndarray, outs: np.ndarray, played: list[int]) -> int:
        s = als_scores[u].copy()
        s[played] = -np.inf
        return int(np.argmax(s))

    run("greedy-als", greedy_als)

    def scorer_policy(scorer: Scorer, use_candidates: bool, user_vecs: np.ndarray | None = None) -> Any:
        top = np.argsort(-als_scores, axis=1)[:, :candidates]

        def pick(u: int, items: np.ndarray, outs: np.ndarray, played: list[int]) -> int:
            cand = top[u] if use_candidates else np.arange(1, sim.config.n_tracks + 1)
            cand = cand[~np.isin(cand, played)]
            h = scorer.state(scorer.item_vectors[items], outs, None if user_vecs is None else user_vecs[u])
            s, q = scorer.scores(h, cand)
            return int(cand[np.argmax(q if playlist_by_q else s)])

        return pick

    sup_cfg = gru4rec_config(cfg)
    part = replace(logs, item_features=np.zeros((logs.n_items + 1, 0), np.float32))
    sup = Trainer(part, sup_cfg, progress=progress).run(resume=False)
    playlist_by_q = False
    run("gru4rec", scorer_policy(Scorer(export_weights(sup, sup_cfg.to_json())), use_candidates=False))

    part = replace(logs)
    prepare_features(part, als)
    playlist_by_q = True  # a playlist is the long-horizon decision: the DQN picks by Q
    net = Trainer(part, cfg, progress=progress).run(resume=False)
    run("dqn", scorer_policy(Scorer(export_weights(net, cfg.to_json())), use_candidates=True,
                             user_vecs=part.user_features))

    rng = np.random.default_rng(0)
    run("random", lambda u, items, outs, played: int(rng.integers(1, sim.config.n_tracks + 1)))
    if oracle:
        res.rewards["oracle (knows P(complete))"] = _oracle(sim, users, steps)
    return res


def _oracle(sim: Any, users: np.ndarray, steps: int) -> tuple[float, float]:
    """Greedy on the true completion probability, fatigue included: a reference ceiling."""
    rng = np.random.default_rng(123)
    totals = []
    for u in users:
        sess = sim.session(int(u), rng)
        total = 0.0
        for _ in range(steps):
            done = sess.play(int(np.argmax(sess.p_complete_all())))
            total += sim.reward.completed if done else sim.reward.skipped
        totals.append(total)
    return float(np.mean(totals)), float(np.std(totals))
