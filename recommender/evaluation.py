"""``qriff rec evaluate``: the offline protocol, its baselines and the DQN's ablations, in one run.

Protocol (SQN / Krichene & Rendle): leave-last-out per user by timestamp, ties broken
by :func:`~recommender.dataset.tie_break_key` (a fixed hash of user and item, not item
id order, which would leak); every model ranks **all** items, items the user saw in
training are filtered, and HR / NDCG at 5, 10 and 20 are averaged over users. Sampled
metrics (the held-out item among 100 random unseen items) are printed beside the
full ones only, to show the artefact, never instead of them.

Rows, all trained on the same split in the same run, for each of several seeds (mean
and standard deviation over seeds):

- baselines: most-popular, implicit ALS, item-kNN (implicit's cosine), GRU4Rec over item
  ids, and GRU4Rec given **the DQN's inputs** (content features, ALS item factors and
  the ALS user vector; ALS and item-kNN take no side inputs);
- the DQN and its ablations, same features, same ALS: ``gamma 0`` (the next track's
  reward only), ``no Q-loss`` (the supervised head alone, the DQN's own settings), the
  Q-loss gradient into the shared encoder stopped (``q_encoder_grad`` 0) or in full (1),
  and the same network ranked by its Q head.

With :func:`tune`, every model family first gets the same number of trials on a
validation split (each user's second-to-last event; the test item is never seen), and
the chosen configs are reported beside the table.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from recommender import rewards as rw
from recommender.candidates import CandidateConfig, Candidates
from recommender.dataset import Interactions, leave_last_out
from recommender.families import gru4rec_config

if TYPE_CHECKING:
    from recommender.train import TrainConfig
from recommender.metrics import KS, hit_ndcg, ranks_full, ranks_sampled

log = logging.getLogger(__name__)

MODELS = ("most-popular", "als", "item-knn", "gru4rec", "dqn")
#: What each --models name adds to the table.
ROWS = {"most-popular": ("most-popular",), "als": ("als",), "item-knn": ("item-knn",),
        "gru4rec": ("gru4rec (ids)", "gru4rec (DQN's inputs)"),
        "dqn": ("dqn", "dqn, gamma 0", "dqn, no Q-loss", "dqn, Q gradient stopped at the encoder",
                "dqn, full Q gradient into the encoder", "dqn, ranked by Q")}
#: The DQN's tuning grid: the share of the Q-loss gradient reaching the shared encoder.
Q_ENCODER_GRADS = (0.0, 0.1, 0.3, 1.0)


def default_dqn_config() -> TrainConfig:
    from recommender.train import TrainConfig

    return TrainConfig()


@dataclass
class Tuned:
    """Configs chosen on the validation split (None: not tuned, defaults used)."""

    als: CandidateConfig | None = None
    knn: CandidateConfig | None = None
    gru4rec: TrainConfig | None = None
    dqn: TrainConfig | None = None
    trials: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: (asdict(v) if v is not None else None)
                               for k, v in (("als", self.als), ("item-knn", self.knn), ("gru4rec", self.gru4rec),
                                            ("dqn", self.dqn))}
        out["trials"] = self.trials
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tuned:
        """The inverse of :meth:`to_dict` (a tuning run saved as JSON, reused)."""
        from recommender.train import TrainConfig

        cand = {k: CandidateConfig(**d[k]) if d.get(k) else None for k in ("als", "item-knn")}
        net = {k: TrainConfig(**d[k]) if d.get(k) else None for k in ("gru4rec", "dqn")}
        return cls(cand["als"], cand["item-knn"], net["gru4rec"], net["dqn"], dict(d.get("trials", {})))


@dataclass
class EvalResult:
    """Metrics per row: ``full`` / ``sampled`` (means over seeds), ``full_std``, ``per_seed``
    (full NDCG@10 of each seed), ``seconds`` (fit + score, mean)."""

    dataset: str
    users: int
    items: int
    events: int
    seeds: list[int] = field(default_factory=list)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    tuned: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "users": self.users, "items": self.items, "events": self.events,
                "seeds": self.seeds, "models": self.rows, "tuned": self.tuned, "notes": self.notes}

    def ndcg10(self, row: str) -> float:
        return float(self.rows[row]["full"]["NDCG@10"])

    def table(self) -> str:
        """Markdown: full-ranking metrics (mean ± std over seeds), then sampled HR@10 / NDCG@10 beside them."""
        head = (["model"] + [f"{m}@{k}" for k in KS for m in ("HR", "NDCG")]
                + ["sampled HR@10", "sampled NDCG@10", "seconds"])
        lines = [f"{self.dataset}: {self.users} users, {self.items} items, {self.events} events; "
                 f"leave-last-out, full ranking, seen items filtered; mean ± std over seeds {self.seeds}",
                 "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, r in self.rows.items():
            f, sd, s = r["full"], r["full_std"], r["sampled"]
            cells = [name] + [f"{f[f'{m}@{k}']:.4f} ± {sd[f'{m}@{k}']:.4f}" for k in KS for m in ("HR", "NDCG")]
            cells += [f"{s['HR@10']:.4f}", f"{s['NDCG@10']:.4f}", f"{r['seconds']:.1f}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines)


def _neural_scores(train: Interactions, cfg: TrainConfig, users: np.ndarray, progress: bool,
                   epochs_at: tuple[int, ...] = ()) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Train ``cfg`` on ``train``; ``{epochs: (scores by cfg.rank_by, Q scores)}`` for the last history of
    every user in ``users`` after each of ``epochs_at`` (default: only ``cfg.epochs``)."""
    from recommender.train import Trainer, score_users

    b = train.bounds
    seqs = [train.item[b[u]:b[u + 1]] for u in users]
    outs = [train.outcome[b[u]:b[u + 1]].astype(np.int64) for u in users]
    uvecs = train.user_features[users] if train.user_features.shape[1] else None
    out = {}
    trainer = Trainer(train, replace(cfg, epochs=min(epochs_at or (cfg.epochs,))), progress=progress)
    for e in sorted(epochs_at or (cfg.epochs,)):
        trainer.config = replace(trainer.config, epochs=e)
        net = trainer.run(resume=False)
        q = score_users(net, replace(cfg, rank_by="q"), seqs, outs, user_vecs=uvecs) if cfg.q_weight > 0 else None
        out[e] = (score_users(net, cfg, seqs, outs, user_vecs=uvecs), q)
    return out


def _with_inputs(train: Interactions, als: Candidates) -> Interactions:
    """A copy of ``train`` with the DQN's inputs: content features + ALS item factors, ALS user vectors."""
    from recommender.train import prepare_features

    part = replace(train)
    prepare_features(part, als)
    return part


def _one_seed(train: Interactions, users: np.ndarray, targets: np.ndarray, rows: tuple[str, ...], seed: int,
              tuned: Tuned, dqn_config: TrainConfig | None, progress: bool) -> dict[str, tuple[dict, dict, float]]:
    """``{row: (full metrics, sampled metrics, seconds)}`` of one seed: each row a
    :class:`~recommender.families.ModelFamily`, fitted on ``train`` and scored for ``users``. Rows
    that train the same network (same :meth:`~recommender.families.Neural.training_key`) share it."""
    from recommender.families import Neural, families

    seen = train.user_items()[users]
    dqn = replace(tuned.dqn or dqn_config or default_dqn_config(), seed=seed)
    fams = families(dqn, replace(tuned.als or CandidateConfig(), seed=seed),
                    replace(tuned.knn or CandidateConfig(kind="cosine"), seed=seed),
                    replace(tuned.gru4rec, seed=seed) if tuned.gru4rec else None, progress=progress)
    trained: dict[str, Neural] = {}
    out: dict[str, tuple[dict, dict, float]] = {}
    for row in rows:
        fam = fams[row]
        t0 = time.perf_counter()
        if isinstance(fam, Neural) and fam.training_key() in trained:
            fam.sharing(trained[fam.training_key()])
        else:
            fam.fit(train)
            if isinstance(fam, Neural):
                trained[fam.training_key()] = fam
        scores = fam.score(users)
        out[row] = (hit_ndcg(ranks_full(scores, targets, seen)), hit_ndcg(ranks_sampled(scores, targets, seen,
                                                                                        seed=seed)),
                    time.perf_counter() - t0)
        log.info("seed %d %s: NDCG@10 %.4f", seed, row, out[row][0]["NDCG@10"])
    return out


def evaluate(data: Interactions, name: str, dqn_config: TrainConfig | None = None, cand_config: CandidateConfig | None = None,
             models: tuple[str, ...] = MODELS, progress: bool = False, seed: int = 0, seeds: int = 1,
             tuned: Tuned | None = None, skip_rows: tuple[str, ...] = ()) -> EvalResult:
    """Run the protocol on ``data`` for ``models`` with seeds ``seed .. seed + seeds - 1`` (see the module doc).

    ``tuned`` (from :func:`tune`) sets each family's config; otherwise the defaults (and
    ``cand_config`` for ALS) are used. ``skip_rows`` leaves rows of those families out (by name).
    """
    split = leave_last_out(data)
    tuned = tuned or Tuned(als=cand_config)
    unknown = set(skip_rows) - {r for m in models for r in ROWS[m]}
    if unknown:
        raise ValueError(f"skip_rows {sorted(unknown)} are not rows of models {models}")
    rows = tuple(r for m in models for r in ROWS[m] if r not in skip_rows)
    res = EvalResult(name, data.n_users, data.n_items, len(data), list(range(seed, seed + seeds)))
    res.notes.append("ties in time broken by a fixed hash of (user, item); HR/NDCG over "
                     f"{len(split.test_users)} users with >= 2 events")
    per_seed = [_one_seed(split.train, split.test_users, split.test_items, rows, s, tuned, dqn_config, progress)
                for s in res.seeds]
    for row in rows:
        fulls = [p[row][0] for p in per_seed]
        res.rows[row] = {
            "full": {k: float(np.mean([f[k] for f in fulls])) for k in fulls[0]},
            "full_std": {k: float(np.std([f[k] for f in fulls])) for k in fulls[0]},
            "sampled": {k: float(np.mean([p[row][1][k] for p in per_seed])) for k in fulls[0]},
            "per_seed": [round(f["NDCG@10"], 5) for f in fulls],
            "seconds": float(np.mean([p[row][2] for p in per_seed]))}
    a, b = res.rows.get("gru4rec (DQN's inputs)"), res.rows.get("dqn, no Q-loss")
    if a and b and a["per_seed"] == b["per_seed"]:
        res.notes.append("gru4rec (DQN's inputs) and dqn, no Q-loss have the same config here: one model, two rows")
    if tuned.trials:
        res.tuned = tuned.to_dict()
        for fam, trials in tuned.trials.items():
            best = max(trials, key=lambda t: t["ndcg10"])
            res.notes.append(f"tuned {fam}: {json_line(best['config'])} (validation NDCG@10 {best['ndcg10']:.4f}, "
                             f"best of {len(trials)} scored points)")
    return res


# ---------------------------------------------------------------- tuning on a validation split

def tune(data: Interactions, budget: int = 4, seed: int = 0, progress: bool = False,
         dqn_config: TrainConfig | None = None, families: tuple[str, ...] = ("als", "item-knn", "gru4rec", "dqn"),
         epochs_at: tuple[int, ...] = (10, 20, 30)) -> Tuned:
    """Pick each family's config by NDCG@10 on a validation split, ``budget`` trials each.

    The split: the test item (each user's last) is removed, then each user's second-to-last
    item is held out and ranked as in the protocol. Trials are drawn without replacement
    from a fixed grid per family (seeded), the same number for each family:

    - ALS: factors, regularization, alpha, iterations;
    - item-kNN: K (neighbours);
    - GRU4Rec: dropout, id dropout, width, each trial scored after every epoch count of
      ``epochs_at`` (one run, read at those epochs), so epochs are tuned too;
    - the DQN: the same network as GRU4Rec's choice plus the Q-loss, so its trials go to
      what the Q-loss adds: the share of its gradient that reaches the shared encoder
      (:data:`Q_ENCODER_GRADS`), at every epoch count of ``epochs_at``. Without a tuned
      GRU4Rec, the DQN draws its width and dropouts from the same grid as well.
    """
    split = leave_last_out(data)
    val = leave_last_out(split.train)
    train, users, targets = val.train, val.test_users, val.test_items
    ui = train.user_items()
    seen = ui[users]
    rng = np.random.default_rng(seed)
    out = Tuned()
    base = dqn_config or default_dqn_config()

    def score(s: np.ndarray) -> float:
        s = np.asarray(s, np.float64)
        s[:, 0] = -np.inf
        return hit_ndcg(ranks_full(s, targets, seen), ks=(10,))["NDCG@10"]

    def draw(grid: list[Any]) -> list[Any]:
        return [grid[i] for i in rng.permutation(len(grid))[:budget]]

    als_grid = [CandidateConfig(factors=f, regularization=r, alpha=a, iterations=i, seed=seed)
                for f in (32, 64, 128) for r in (0.01, 0.1, 1.0, 10.0) for a in (1.0, 5.0, 20.0) for i in (15, 30)]
    best_als = None
    if "als" in families or "gru4rec" in families or "dqn" in families:
        trials = []
        for c in draw(als_grid):
            m = Candidates(c).fit(ui)
            trials.append({"config": {"factors": c.factors, "regularization": c.regularization, "alpha": c.alpha,
                                      "iterations": c.iterations}, "ndcg10": score(m.score_all(users, ui))})
            if best_als is None or trials[-1]["ndcg10"] > best_als[0]:
                best_als = (trials[-1]["ndcg10"], c, m)
        out.als, out.trials["als"] = best_als[1], trials
    if "item-knn" in families:
        trials, best = [], None
        for k in draw([5, 10, 20, 50, 100, 200, 400, 800]):
            c = CandidateConfig(kind="cosine", neighbours=k, seed=seed)
            trials.append({"config": {"K": k}, "ndcg10": score(Candidates(c).fit(ui).score_all(users, ui))})
            if best is None or trials[-1]["ndcg10"] > best[0]:
                best = (trials[-1]["ndcg10"], c)
        out.knn, out.trials["item-knn"] = best[1], trials
    from recommender.model import NetConfig

    net_grid = [(d, p, i) for d in (64, 128) for p in (0.0, 0.2, 0.4) for i in (0.0, 0.1)]
    base_net = base.net if isinstance(base.net, NetConfig) else NetConfig()
    for fam in ("gru4rec", "dqn"):
        if fam not in families:
            continue
        part = _with_inputs(train, best_als[2])
        if fam == "dqn" and out.gru4rec is not None:
            g = out.gru4rec.net
            points = [(g.dim, g.dropout, g.id_dropout, q) for q in draw(list(Q_ENCODER_GRADS))]
        else:
            points = [(d, p, i, base.q_encoder_grad) for d, p, i in draw(net_grid)]
        trials, best = [], None
        for dim, drop, idrop, qg in points:
            cfg = replace(base, net=replace(base_net, dim=dim, dropout=drop, id_dropout=idrop), seed=seed,
                          q_encoder_grad=qg)
            if fam == "gru4rec":
                cfg = gru4rec_config(cfg)
            for e, (s, _q) in _neural_scores(part, replace(cfg, epochs=max(epochs_at)), users, progress,
                                             epochs_at).items():
                point = {"dim": dim, "dropout": drop, "id_dropout": idrop, "epochs": e}
                trials.append({"config": point | ({"q_encoder_grad": qg} if fam == "dqn" else {}),
                               "ndcg10": score(s)})
                if best is None or trials[-1]["ndcg10"] > best[0]:
                    best = (trials[-1]["ndcg10"], replace(cfg, epochs=e))
        setattr(out, fam, best[1])
        out.trials[fam] = trials
    return out


# ---------------------------------------------------------------- online: the simulator

@dataclass
class SimResult:
    """Completed tracks per simulated session (at most ``steps``) per policy: mean and std over seeds
    (``per_seed`` holds each seed's mean over users), mean session length, and the simulator's fit."""

    steps: int
    users: int
    seeds: list[int] = field(default_factory=list)
    rewards: dict[str, dict[str, Any]] = field(default_factory=dict)
    simulator: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "users": self.users, "seeds": self.seeds, "policies": self.rewards,
                "simulator": self.simulator, "notes": self.notes}

    def mean(self, policy: str) -> float:
        return float(self.rewards[policy]["mean"])

    def table(self) -> str:
        base = self.rewards.get("greedy ALS", {}).get("mean", float("nan"))
        top = self.rewards.get(CEILING, {}).get("mean", float("nan"))
        cal = self.simulator.get("calibration", {})
        lines = [f"simulator fit on {self.simulator.get('train_users', 0)} training users, played by "
                 f"{self.users} held-out users (tastes folded in from their history), sessions of at most "
                 f"{self.steps} tracks (the listener may leave), tracks they already heard filtered; completed "
                 f"tracks per session, mean ± std over seeds {self.seeds}",
                 "", "| policy | completed | x greedy ALS | share of the ceiling | session length |",
                 "|---|---|---|---|---|"]
        for k, r in self.rewards.items():
            lines.append(f"| {k} | {r['mean']:.3f} ± {r['std']:.3f} | {r['mean'] / base:.3f} | {r['mean'] / top:.3f} "
                         f"| {r['length']:.2f} |")
        lines += ["", f"simulator: {json_line(self.simulator.get('coefficients', {}))}; re-listening in the logs: "
                      f"{self.simulator.get('relisten')}",
                  f"calibration on the {cal.get('held_out_sessions', 0)} sessions of {cal.get('held_out_users', 0)} "
                  f"held-out users (tastes from their other sessions): skip rate real {cal.get('skip_rate_real')} / simulated {cal.get('skip_rate_sim')} "
                  f"(z {cal.get('skip_rate_z')}), Hosmer-Lemeshow {cal.get('skip_hosmer_lemeshow')} (critical "
                  f"{cal.get('skip_hosmer_lemeshow_critical')}), per-session skip rate KS {cal.get('skip_rate_ks')} "
                  f"(critical {cal.get('skip_rate_ks_critical')}): {'passed' if cal.get('skip_passed') else 'FAILED'}; "
                  f"session length untruncated, real {cal.get('session_length_real')} / simulated "
                  f"{cal.get('session_length_sim')} (medians {cal.get('session_length_median_real')} / "
                  f"{cal.get('session_length_median_sim')}), KS {cal.get('session_length_ks')} (critical "
                  f"{cal.get('session_length_ks_critical')}): {'passed' if cal.get('length_passed') else 'FAILED'}"]
        lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines)


#: The reference ceiling's row: a planner that knows the simulator.
CEILING = "planner (knows the simulator; ceiling)"


def json_line(d: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items())


def simulator_rollouts(sim: Any, data: Interactions, als_top: np.ndarray, sessions: int, steps: int,
                       seed: int, users: np.ndarray | None = None) -> Interactions:
    """``data`` plus ``sessions`` simulated sessions per user of ``users`` (default: all) under an
    exploring behaviour policy (half the picks with odds decaying exponentially down ALS's ranking
    of the user's candidates, half uniform among them), a day apart after the user's last event;
    the simulator decides outcomes and leaving."""
    rng = np.random.default_rng(seed + 77)
    b = data.bounds
    users_l, items, ts, outs = [data.user], [data.item], [data.ts], [data.outcome]
    k = als_top.shape[1]
    rank_p = np.exp(-np.arange(k) / (k / 8.0))
    rank_p /= rank_p.sum()

    def behaviour(u: int, _items: np.ndarray, _outs: np.ndarray, played: list[int]) -> int:
        cand = als_top[u]
        for _ in range(20):
            pick = int(cand[rng.choice(k, p=rank_p)] if rng.random() < 0.5 else cand[rng.integers(k)])
            if pick not in played:
                return pick
        return pick

    for r in range(sessions):
        for u in (range(data.n_users) if users is None else users):
            t0 = (data.ts[b[u + 1] - 1] if b[u + 1] > b[u] else 0.0) + 86_400.0 * (r + 1)
            picks, results = sim.play_session(behaviour, int(u), list(data.item[b[u]:b[u + 1]]),
                                              list(data.outcome[b[u]:b[u + 1]].astype(np.int64)), steps, rng)
            users_l.append(np.full(len(picks), u))
            items.append(np.array(picks, np.int64))
            ts.append(t0 + 60.0 * np.arange(len(picks)))
            outs.append(np.array(results, np.int8))
    return Interactions(data.n_users, data.n_items, np.concatenate(users_l), np.concatenate(items),
                        np.concatenate(ts), np.concatenate(outs).astype(np.int8), data.item_features,
                        data.user_names, data.item_names, data.user_features)


def evaluate_simulator(data: Interactions, dqn_config: TrainConfig | None = None, steps: int = 20, eval_users: int = 200,
                       candidates: int = 100, seeds: int = 1, seed: int = 0, rollout_sessions: int = 2,
                       fit_config: Any = None, tuned: Tuned | None = None, progress: bool = False) -> SimResult:
    """Fit a simulator on ``data``'s training users, train every policy on those users' logs, then
    play a session of at most ``steps`` tracks for up to ``eval_users`` **held-out** users, per seed.

    Nothing is fit on the held-out users: the simulator folds their tastes in from their
    history, the policies' ALS does the same, and the neural policies read their history as
    the state. Every policy skips tracks the user already heard.

    Policies: greedy ALS (its top unheard track), ranking ALS's top ``candidates`` by the
    training logs' completion rate (no RL, no personalisation beyond the candidates),
    GRU4Rec with the DQN's inputs re-ranking the same candidates, the DQN by Q over them
    (trained on the logs plus ``rollout_sessions`` simulated sessions per training user),
    its ablations (gamma 0; no Q-loss, by its supervised head; logs only), random
    candidates, greedy on the simulator's own odds, and :data:`CEILING`, a planner that
    knows the simulator (:meth:`~recommender.simulator.LogSimulator.plan`).
    """
    from recommender.simulator import FitConfig, fit_simulator

    sim = fit_simulator(data, fit_config or FitConfig())
    pool = sim.eval_users
    users = np.sort(np.random.default_rng(12345).permutation(pool)[:min(eval_users, len(pool))])
    res = SimResult(steps, len(users), list(range(seed, seed + seeds)), simulator=sim.summary())
    per: dict[str, list[tuple[float, float]]] = {}
    for s in res.seeds:
        for name, v in _sim_one_seed(sim, data, users, s, steps, candidates, rollout_sessions, tuned or Tuned(),
                                     dqn_config, progress).items():
            per.setdefault(name, []).append(v)
    for name, vals in per.items():
        m = np.array(vals)
        res.rewards[name] = {"mean": float(m[:, 0].mean()), "std": float(m[:, 0].std()),
                             "per_seed": [round(v, 4) for v in m[:, 0]], "length": float(m[:, 1].mean())}
    res.notes.append(f"{len(users)} held-out users; candidates: ALS top {candidates} unheard tracks; the DQN rows "
                     f"train on the training users' logs plus {rollout_sessions} simulated sessions per training "
                     "user of an exploring policy; the ceiling plans over every unheard track")
    return res


def _sim_one_seed(sim: Any, data: Interactions, users: np.ndarray, s: int, steps: int, candidates: int,
                  rollout_sessions: int, tuned: Tuned, dqn_config: Any, progress: bool
                  ) -> dict[str, tuple[float, float]]:
    """``{policy: (mean completed tracks, mean session length)}`` of one seed."""
    from recommender.features import normalised
    from recommender.scoring import Scorer, export_weights
    from recommender.train import train

    out: dict[str, tuple[float, float]] = {}
    cfg0 = dqn_config or default_dqn_config()
    weights = np.maximum(cfg0.reward.rewards(data.outcome), 0.0)
    fit = np.isin(data.user, sim.train_users)
    logs_train = data.subset(fit)
    ui_all = data.user_items(weights)
    ui_all.eliminate_zeros()
    ui_train = logs_train.user_items(weights[fit])
    ui_train.eliminate_zeros()
    als = Candidates(replace(tuned.als or CandidateConfig(), seed=s)).fit(ui_train)
    uf = np.array(als.user_factors, np.float32)
    uf[users] = als.fold_in(ui_all[users])  # held-out users: folded in, never fit
    als_raw = uf @ als.item_factors.T
    als_raw[:, 0] = -np.inf
    # tracks the user already heard go last (a catalog smaller than a history still fills the list)
    als_scores = als_raw - np.where(data.user_items().toarray() > 0, 1e6, 0.0)
    top = np.argsort(-als_scores[:, 1:], axis=1)[:, :candidates] + 1  # column 0 is padding
    dqn = replace(tuned.dqn or cfg0, seed=s)
    gru = replace(tuned.gru4rec or gru4rec_config(dqn), seed=s)

    def inputs(part: Interactions) -> Interactions:
        part = _with_inputs(part, als)
        part.user_features = np.array(part.user_features, np.float32)
        part.user_features[users] = normalised(uf[users])
        return part

    logs = inputs(logs_train)
    mixed = inputs(simulator_rollouts(sim, logs_train, top, rollout_sessions, steps, s, users=sim.train_users)) \
        if rollout_sessions else logs
    # the logs' completion rate per track, training users only (smoothed log-odds)
    known = logs_train.outcome != rw.UNKNOWN
    y = (logs_train.outcome == rw.COMPLETED).astype(float)
    prior = float(y[known].mean()) if known.any() else 0.5
    comp = np.bincount(logs_train.item[known], weights=y[known], minlength=data.n_items + 1)
    tot = np.bincount(logs_train.item[known], minlength=data.n_items + 1)
    rate = np.log((comp + 5 * prior) / (tot - comp + 5 * (1 - prior)))
    rng = np.random.default_rng(s)

    def run(name: str, policy: Any) -> None:
        r, length = sim.rollout(policy, data, steps, users, seed=1000 + s)
        out[name] = (float(r.mean()), float(length.mean()))
        log.info("seed %d simulator %s: %.3f", s, name, r.mean())

    def greedy_als(u: int, items: np.ndarray, outs: np.ndarray, played: list[int]) -> int:
        sc = als_scores[u].copy()
        sc[played] = -np.inf
        return int(np.argmax(sc))

    def by_rate(u: int, items: np.ndarray, outs: np.ndarray, played: list[int]) -> int:
        cand = _unplayed(top[u], played)
        return int(cand[np.argmax(rate[cand])])

    def reranker(net: Any, cfg: Any, by_q: bool) -> Any:
        scorer = Scorer(export_weights(net, cfg.to_json()))

        def pick(u: int, items: np.ndarray, outs: np.ndarray, played: list[int]) -> int:
            cand = _unplayed(top[u], played)
            h = scorer.state(scorer.item_vectors[items], outs, logs.user_features[u] if scorer.user_dim else None)
            rank, q = scorer.scores(h, cand)
            return int(cand[np.argmax(q if by_q else rank)])

        return pick

    def random_candidate(u: int, items: np.ndarray, outs: np.ndarray, played: list[int]) -> int:
        cand = _unplayed(top[u], played)
        return int(cand[rng.integers(len(cand))])

    run("greedy ALS", greedy_als)
    run("completion rate in the training logs, ALS candidates", by_rate)
    gru_policy = reranker(train(mixed, gru, progress=progress, resume=False), gru, by_q=False)
    run("GRU4Rec (DQN's inputs), re-ranking ALS candidates", gru_policy)
    run("dqn, by Q on ALS candidates", reranker(train(mixed, dqn, progress=progress, resume=False), dqn, True))
    g0 = replace(dqn, gamma=0.0)
    run("dqn, gamma 0", reranker(train(mixed, g0, progress=progress, resume=False), g0, True))
    noq = replace(dqn, q_weight=0.0, rank_by="sqn")
    same = replace(noq, net=replace(noq.net, encoder="gru")).to_json() == gru.to_json()
    run("dqn, no Q-loss (supervised head)",
        gru_policy if same else reranker(train(mixed, noq, progress=progress, resume=False), noq, False))
    if rollout_sessions:
        run("dqn, logs only (no simulator rollouts)",
            reranker(train(logs, dqn, progress=progress, resume=False), dqn, True))
    run("random ALS candidate", random_candidate)
    run("greedy on the simulator's odds", _greedy_true(sim, data))
    run(CEILING, _planner(sim, data, steps))
    return out


def _unplayed(cand: np.ndarray, played: list[int]) -> np.ndarray:
    """The candidates not played in this session (all of them again once every one was)."""
    left = cand[~np.isin(cand, played)]
    return left if len(left) else cand


def _greedy_true(sim: Any, data: Interactions) -> Any:
    """Greedy on the simulator's true completion odds now (fatigue included), unheard tracks only."""
    d, b = sim.config.fatigue_decay, data.bounds

    def pick(u: int, items: np.ndarray, outs: np.ndarray, played: list[int]) -> int:
        fatigue = np.zeros(sim.sim_vecs.shape[1])
        for t in played:
            fatigue = d * fatigue + sim.sim_vecs[t]
        p = sim.completion_odds(sim.static_logit(u), fatigue, played, data.item[b[u]:b[u + 1]])
        p[0] = -1.0
        return int(np.argmax(p))

    return pick


def _planner(sim: Any, data: Interactions, steps: int) -> Any:
    """The simulator's own plan for each user (beam search over exact expected completions), played in order."""
    b = data.bounds
    plans: dict[int, list[int]] = {}

    def pick(u: int, items: np.ndarray, outs: np.ndarray, played: list[int]) -> int:
        if not played:
            plans[u] = sim.plan(u, data.item[b[u]:b[u + 1]], steps)
        return plans[u][len(played)]

    return pick
