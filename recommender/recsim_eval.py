"""``qriff rec evaluate --env recsim``: the DQN against RecSim's interest-evolution world.

Per seed (a fresh document pool, fresh listeners):

1. a behaviour policy (random, myopic or mixed) plays ``logged_episodes`` sessions;
   :mod:`recommender.recsim_env` writes them as a qriff CSV export;
2. ``qriff rec ingest`` and ``qriff rec train`` (:func:`~recommender.ingest.ingest_files`,
   :func:`~recommender.train.train_database`) learn from that file exactly as from a
   listener's export;
3. every policy plays the **same** ``episodes`` evaluation listeners (another random
   stream than the logs'); the trained models pick, each step, the candidate with the
   highest Q-value (:meth:`~recommender.api.Recommender.q_values`).

Rows: random; myopic (RecSim's true choice model); the behaviour policy; rank by the
logs' completion rate (no RL, no personalisation); the DQN (logs only); its ablations
gamma 0, no Q-loss (the supervised head ranks) and with online rollouts (the DQN plays
``online_episodes`` more sessions with epsilon-greedy exploration, they are ingested
and it is trained again); the known-model reference (a planner that knows the choice
model, each document's quality and the budget rule, its one price tuned on other
listeners). Each row is the mean over seeds of the mean return (minutes watched) per
listener, with the standard deviation over seeds; ratios to myopic are per seed.

The negative control runs the same with ``quality_affects_budget=False``: RecSim's
long-horizon mechanism off, so there is nothing for the horizon to win.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from recommender import rewards as rw
from recommender.errors import ConfigError
from recommender.recsim_env import (
    Context,
    Episode,
    Policy,
    RecSimConfig,
    RecSimWorld,
    calibrate_clicks,
    completion_rate_policy,
    episodes_csv,
    mixed_policy,
    myopic_policy,
    planner_policy,
    random_policy,
    track_key,
)

log = logging.getLogger(__name__)

BEHAVIOURS = ("random", "myopic", "mixed")
#: Prices (minutes of future watching per minute of budget) the known-model planner tries.
PLANNER_PRICES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
ROWS = ("random", "myopic", "behaviour", "completion rate", "dqn", "dqn, gamma 0", "dqn, no Q-loss",
        "dqn + online rollouts", "known-model planner")


#: Epochs of the DQN's training on the logged sessions (with ``tau`` 0.05; on tuning seeds 100-102,
#: 50 epochs at ``tau`` 0.03 or 150 at 0.01 were no better, see docs/recommender.md).
EPOCHS = 30


def default_train_config(gamma: float = 0.99, epochs: int = EPOCHS, candidates: int = 10) -> Any:
    """The DQN's settings for RecSim: reward 1 a completed play (RecSim's return is 4 minutes a
    click), no bonus for staying (a skip costs budget too), Q ranks. gamma 0.99 spans a session of
    about 30 steps (a 60-minute budget). Two settings fit the world rather than a listener's export:

    - the bootstrap's argmax at the next state is over ``candidates`` random tracks
      (``next_candidates``), the tracks RecSim will offer, not the whole pool: over the pool, Q
      credits every state with a pick the listener never gets, and read 39 clicks at a session's
      start where sessions hold 12;
    - no taste vector (``user_taste=False``): a RecSim listener's log is one session, so the ALS
      factor of the whole log tells the training state where the session goes, which play (folding
      in the history so far) cannot know.

    No dropout: on tuning seeds 100-102 it read 1.33x myopic on average against 1.28x with
    dropout 0.2 / id dropout 0.1 (docs/recommender.md has both 5-seed runs).
    """
    from recommender.model import NetConfig
    from recommender.rewards import RewardConfig
    from recommender.train import TrainConfig

    return TrainConfig(net=NetConfig(dim=32, max_history=30, dropout=0.0, id_dropout=0.0), reward=RewardConfig(1.0, 0.0, 0.5), epochs=epochs,
                       batch_size=64, gamma=gamma, continue_bonus=0.0, rank_by="q", lr=2e-3, tau=0.05,
                       next_candidates=candidates, user_taste=False)


@dataclass
class RecSimEvalConfig:
    """One ``--env recsim`` run."""

    world: RecSimConfig = field(default_factory=RecSimConfig)
    """The world (its seed is the first seed)."""
    logged_episodes: int = 1000
    """Sessions the behaviour policy logs per seed (the DQN's training data)."""
    behaviour: str = "mixed"
    """random, myopic or mixed (myopic with half the steps uniform)."""
    episodes: int = 100
    """Evaluation listeners per seed, the same for every policy."""
    seeds: int = 5
    online_episodes: int = 300
    """Sessions the DQN plays online (epsilon 0.1) for the rollouts row (0: no such row)."""
    tune_episodes: int = 20
    """Listeners (another stream) per price when tuning the planner."""
    train: Any = None
    """TrainConfig of the DQN (default: :func:`default_train_config`)."""
    factors: int = 16
    """ALS factors of the candidate model (the taste vector folded into the state)."""
    ablations: bool = True
    """False: only gamma 0 beside the DQN (no 'no Q-loss', no online rollouts), e.g. for the control."""

    def __post_init__(self) -> None:
        if self.behaviour not in BEHAVIOURS:
            raise ConfigError(f"--behaviour {self.behaviour!r} is not known (allowed: {', '.join(BEHAVIOURS)})")
        for name, lo, hi in (("logged_episodes", 2, 1_000_000), ("episodes", 1, 1_000_000), ("seeds", 1, 100),
                             ("online_episodes", 0, 1_000_000), ("tune_episodes", 1, 100_000)):
            v = getattr(self, name)
            if not lo <= v <= hi:
                raise ConfigError(f"--{name.replace('_', '-')} {v} is out of range (allowed: {lo}-{hi})")
        if self.train is None:
            self.train = default_train_config(candidates=self.world.candidates)


@dataclass
class RecSimResult:
    """Per row, the mean return per listener of each seed; and how it was run."""

    config: dict[str, Any]
    returns: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seeds: dict[str, list[int]] = field(default_factory=dict)
    """Per row, the seed of each value in ``returns`` (rows may cover different seeds after a merge)."""

    def add(self, row: str, seed: int, value: float) -> None:
        self.returns.setdefault(row, []).append(value)
        self.seeds.setdefault(row, []).append(seed)

    def mean(self, row: str) -> float:
        return float(np.mean(self.returns[row]))

    def ratio(self, row: str, base: str = "myopic") -> tuple[float, float]:
        """Mean and std over seeds of ``row / base`` (per seed, on the seeds both rows have)."""
        b = dict(zip(self.seeds[base], self.returns[base]))
        r = np.array([v / b[s] for s, v in zip(self.seeds[row], self.returns[row]) if s in b])
        return float(r.mean()), float(r.std())

    def to_dict(self) -> dict[str, Any]:
        rows = {k: {"mean": self.mean(k), "std": float(np.std(v)), "per_seed": v, "seeds": self.seeds[k],
                    "vs_myopic": self.ratio(k)[0], "vs_myopic_std": self.ratio(k)[1]}
                for k, v in self.returns.items()}
        return {"config": self.config, "rows": rows, "notes": self.notes}

    def table(self, title: str = "RecSim interest evolution") -> str:
        lines = [f"{title}: return = minutes watched per listener, mean ± std over seeds", "",
                 "| policy | return | vs myopic | seeds |", "|---|---|---|---|"]
        for k, v in self.returns.items():
            m, s = self.ratio(k)
            lines.append(f"| {k} | {np.mean(v):.1f} ± {np.std(v):.1f} | {m:.3f}x ± {s:.3f} | "
                         f"{', '.join(map(str, self.seeds[k]))} |")
        return "\n".join(lines + [""] + self.notes)


class QPolicy:
    """A trained model playing RecSim: each step, the candidate with the highest Q-value after
    this session's history (or, ``epsilon`` of the time, a uniform one)."""

    def __init__(self, db: Path, model: Path, pool: int, epsilon: float = 0.0, seed: int = 0,
                 by: str = "q") -> None:
        from recommender.api import Recommender
        from recommender.catalog import resolve_tracks

        self.rec = Recommender(db, model)
        ids, unknown = resolve_tracks(self.rec.conn, [track_key(i) for i in range(pool)])
        known = {track_key(i) for i in range(pool)} - {"i:" + u for u in unknown} - set(unknown)
        # pool documents the logs never played have no catalog entry and nothing to be scored from
        self.catalog = np.full(pool, -1, np.int64)
        it = iter(ids)
        for i in range(pool):
            if track_key(i) in known:
                self.catalog[i] = next(it)
        self.epsilon, self.by = epsilon, by
        self.rng = np.random.default_rng(seed)

    def close(self) -> None:
        self.rec.close()

    def __call__(self, ctx: Context) -> int:
        if self.epsilon and self.rng.random() < self.epsilon:
            return int(self.rng.integers(len(ctx.candidates)))
        cand = self.catalog[ctx.candidates]
        ok = cand >= 0
        if not ok.any():
            return int(self.rng.integers(len(ctx.candidates)))
        hist = [(int(self.catalog[t]), rw.COMPLETED if c else rw.SKIPPED) for t, c in ctx.history
                if self.catalog[t] >= 0]
        items, outs = [h for h, _ in hist], [o for _, o in hist]
        score = self.rec.candidate_scores(items, outs, [int(c) for c in cand[ok]], head=self.by)
        full = np.full(len(cand), -np.inf)
        full[ok] = score
        return int(np.argmax(full))


def _train(db: Path, model: Path, cfg: Any, factors: int, seed: int) -> None:
    from recommender.candidates import CandidateConfig
    from recommender.train import train_database

    train_database(db, model, replace(cfg, seed=seed), CandidateConfig(kind="als", factors=factors, seed=seed),
                   progress=False, resume=False)


def _ingest(db: Path, path: Path, text: str) -> None:
    from recommender.ingest import ingest_files

    path.write_text(text)
    (report,) = ingest_files(db, [path], fmt="csv", progress=False)
    if report.rejected:
        raise ConfigError(f"{report.rejected} logged RecSim rows were rejected on ingest: {report.summary()}")


def _returns(world: RecSimWorld, policy: Policy, n: int) -> float:
    return float(np.mean([ep.watch_time for ep in world.episodes(policy, n, "eval")]))


def run_seed(cfg: RecSimEvalConfig, seed: int, workdir: Path, progress: bool = False) -> dict[str, Any]:
    """Every row's mean return over the evaluation listeners of one seed (see the module doc)."""
    world = RecSimWorld(replace(cfg.world, seed=seed))
    behaviour: Policy = {"random": lambda: random_policy(seed), "myopic": lambda: myopic_policy(world),
                         "mixed": lambda: mixed_policy(world, seed)}[cfg.behaviour]()
    logged: list[Episode] = list(world.episodes(behaviour, cfg.logged_episodes, "logs", progress=progress))
    out: dict[str, Any] = {}
    n = cfg.episodes
    out["random"] = _returns(world, random_policy(seed + 1), n)
    out["myopic"] = _returns(world, myopic_policy(world), n)
    out["behaviour"] = _returns(world, {"random": lambda: random_policy(seed + 1),
                                        "myopic": lambda: myopic_policy(world),
                                        "mixed": lambda: mixed_policy(world, seed + 1)}[cfg.behaviour](), n)
    out["completion rate"] = _returns(world, completion_rate_policy(world, logged), n)

    csv_text = episodes_csv(world, logged)
    variants = {"dqn": cfg.train, "dqn, gamma 0": replace(cfg.train, gamma=0.0)}
    if cfg.ablations:
        variants["dqn, no Q-loss"] = replace(cfg.train, q_weight=0.0, rank_by="sqn")
    online_episodes = cfg.online_episodes if cfg.ablations else 0
    for name, tc in variants.items():
        d = workdir / f"s{seed}-{name.replace(', ', '-').replace(' ', '-')}"
        d.mkdir(parents=True, exist_ok=True)
        db, model = d / "logs.db", d / "logs.model.npz"
        _ingest(db, d / "logs.csv", csv_text)
        _train(db, model, tc, cfg.factors, seed)
        pol = QPolicy(db, model, world.config.pool, by="q" if tc.q_weight > 0 else "rank")
        try:
            out[name] = _returns(world, pol, n)
            if name == "dqn" and online_episodes:
                explore = QPolicy(db, model, world.config.pool, epsilon=0.1, seed=seed)
                try:
                    online = list(world.episodes(explore, online_episodes, "online", progress=progress,
                                                 prefix="recsim-online"))
                finally:
                    explore.close()
                online_text = episodes_csv(world, online, first=cfg.logged_episodes)
        finally:
            pol.close()
        if name == "dqn" and online_episodes:
            _ingest(db, d / "online.csv", online_text)
            model2 = d / "online.model.npz"
            _train(db, model2, tc, cfg.factors, seed)
            pol = QPolicy(db, model2, world.config.pool)
            try:
                out["dqn + online rollouts"] = _returns(world, pol, n)
            finally:
                pol.close()

    tune_world = world  # other listeners (the tune stream), same pool
    best = max(PLANNER_PRICES, key=lambda p: np.mean([e.watch_time for e in tune_world.episodes(
        planner_policy(world, p), cfg.tune_episodes, "tune")]))
    out["known-model planner"] = _returns(world, planner_policy(world, best), n)
    out["planner price"] = best
    cal = calibrate_clicks(world, world.click_probability, random_policy(seed + 2), episodes=cfg.tune_episodes)
    out["calibration"] = cal.summary()
    return out


def evaluate_recsim(cfg: RecSimEvalConfig, progress: bool = False) -> RecSimResult:
    """All rows over ``cfg.seeds`` seeds (see the module doc)."""
    from tqdm import tqdm

    res = RecSimResult({"world": asdict(cfg.world), "logged_episodes": cfg.logged_episodes,
                        "behaviour": cfg.behaviour, "episodes": cfg.episodes, "seeds": cfg.seeds,
                        "online_episodes": cfg.online_episodes if cfg.ablations else 0, "train": asdict(cfg.train),
                        "factors": cfg.factors})
    prices = []
    with tempfile.TemporaryDirectory(prefix="qriff-recsim-") as tmp:
        for k in tqdm(range(cfg.seeds), disable=not progress, unit="seed", desc="recsim"):
            out = run_seed(cfg, cfg.world.seed + k, Path(tmp), progress=progress)
            prices.append(out.pop("planner price"))
            res.notes.append(f"seed {cfg.world.seed + k}: the known model's {out.pop('calibration')}")
            log.info("seed %d: %s", cfg.world.seed + k, {r: round(v, 2) for r, v in out.items()})
            for row in ROWS:
                if row in out:
                    res.add(row, cfg.world.seed + k, out[row])
    res.notes.append(f"planner price per seed (tuned on {cfg.tune_episodes} other listeners a price): {prices}")
    res.notes.append(f"behaviour policy: {cfg.behaviour}; {cfg.logged_episodes} logged sessions a seed; "
                     f"{cfg.episodes} evaluation listeners a seed; DQN gamma {cfg.train.gamma}, "
                     f"{cfg.train.epochs} epochs")
    return res
