"""RecSim's interest-evolution environment as a listening world: an adapter.

RecSim (Ie et al. 2019, ``recsim-no-tf==0.2.3``) is the standard third-party simulator
for long-horizon recommendation. In its interest-evolution environment
(``recsim.environments.interest_evolution``):

- a document belongs to one of 20 clusters (its features are the cluster's one-hot);
  14 clusters are "trashy" (quality drawn around -3..0), 6 "nutritious" (0..3);
- a user has an interest in [-1, 1] per cluster and clicks a document of cluster ``c``
  with probability ``(x_c + 1) / (x_c + 1 + no_click_mass + 1)`` (RecSim's
  multinomial-proportional choice model with ``min_normalizer = -1``, slate of one);
- a click spends the video's length (4 minutes) of the user's time budget and gives
  back ``0.9 / 3.4 * 4 * quality`` minutes; no click costs 0.5 minutes; the session
  ends when the budget is spent. A click also moves the interest in that cluster.

So what is recommended now decides how long the listener stays: a myopic policy
(highest click probability) spends the budget on trashy items, a long-horizon one
trades a little click probability for quality and a longer session.

This module maps that world onto qriff's own data, without touching RecSim's code:

- a **fixed document pool** (``pool`` documents drawn once by RecSim's
  ``UtilityModelVideoSampler``); each step RecSim's environment draws ``candidates``
  distinct documents from it through :class:`PoolSampler`, so a document is a stable
  track id (``recsim-<pool index>``) with its cluster as its tag;
- **slate size 1**: one track is one action;
- a **click is a completed play**, no click a skip;
- the **end of the time budget ends the session**: one episode is one listener's
  history, so its last event is the session end.

:func:`episodes_csv` writes episodes in qriff's CSV ingest format; ``qriff rec ingest``
and ``qriff rec train`` read them exactly as a user's export.

RecSim draws clicks and interest updates from numpy's *global* random state; every
episode here seeds it from ``(seed, stream, episode)`` and the caller's state is
restored afterwards, so the same episode numbers give the same listeners to every
policy (common random numbers), and runs are reproducible.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from recommender.errors import ConfigError

#: How many documents each RecSim cluster has features for (IEvVideo.NUM_FEATURES).
N_CLUSTERS = 20
#: Seconds between logged plays of one session in the CSV (below every sensible --session-gap).
STEP_SECONDS = 60
#: Seconds between the starts of two logged episodes (each is its own listener anyway).
EPISODE_SECONDS = 10 * 86_400
#: Unix time of the first logged event (2024-01-01).
T0 = 1_704_067_200
#: Independent random streams: logged episodes, evaluation users, tuning users, online rollouts.
STREAMS = {"logs": 1, "eval": 2, "tune": 3, "online": 4}


def _import_recsim():
    import contextlib

    try:
        # RecSim imports the old gym (only for its spaces), which prints an "unmaintained" notice on
        # stderr at import: nothing a qriff user can act on, so it is kept off their terminal
        with contextlib.redirect_stderr(io.StringIO()):
            from recsim import choice_model, document
            from recsim.environments import interest_evolution as iev
            from recsim.simulator import environment
    except ImportError as exc:
        raise ConfigError(f"--env recsim needs RecSim ({exc}): pip install 'qriff[recsim]' "
                          "(recsim-no-tf==0.2.3 and six)") from None
    return choice_model, document, iev, environment


@dataclass
class RecSimConfig:
    """One RecSim world: the document pool, the candidates per step and the listeners' budget."""

    candidates: int = 10
    """Documents offered each step (drawn from the pool, no repeats within a step)."""
    pool: int = 200
    """Documents in the fixed pool (the catalog's tracks)."""
    time_budget: float = 60.0
    """Each listener's session budget in minutes (RecSim's utility-model users have 200; 60 keeps a
    session near 30 steps, which gamma 0.99 spans)."""
    quality_affects_budget: bool = True
    """False switches RecSim's long-horizon mechanism off (document_quality_factor 0: a good
    item gives no time back), the negative control."""
    seed: int = 0
    """Seeds the pool, the users and the clicks."""

    def __post_init__(self) -> None:
        if not 2 <= int(self.candidates) <= 1000:
            raise ConfigError(f"--candidates {self.candidates} is out of range (allowed: 2-1000)")
        if not int(self.candidates) <= int(self.pool) <= 100_000:
            raise ConfigError(f"pool {self.pool} is out of range (allowed: candidates ({self.candidates}) to 100000)")
        if not 1.0 <= float(self.time_budget) <= 10_000.0:
            raise ConfigError(f"--time-budget {self.time_budget} is out of range (allowed: 1-10000 minutes)")


@dataclass
class Step:
    """One recommendation and the listener's response."""

    track: int
    """Pool index of the document played."""
    clicked: bool
    watch_time: float
    """Minutes watched (0 without a click); the step's reward in RecSim."""


@dataclass
class Episode:
    """One listener's session: the steps in order; the budget ran out after the last."""

    user: str
    steps: list[Step] = field(default_factory=list)

    @property
    def watch_time(self) -> float:
        """RecSim's return: total minutes watched."""
        return float(sum(s.watch_time for s in self.steps))

    @property
    def clicks(self) -> int:
        return sum(s.clicked for s in self.steps)


@dataclass
class Context:
    """What a policy sees before a step."""

    candidates: np.ndarray
    """int64 ``[N]`` pool indices offered now."""
    interests: np.ndarray
    """float ``[20]``: RecSim's user observation (the true interests; only known-model policies read it)."""
    history: list[tuple[int, bool]]
    """This session so far: (pool index, clicked) per step."""


#: A policy returns the position (0..N-1) in ``Context.candidates`` of the track to play.
Policy = Callable[[Context], int]


class RecSimWorld:
    """RecSim's interest-evolution environment over a fixed pool, slate size 1.

    ``pool_clusters`` int ``[P]`` and ``pool_quality`` float ``[P]`` describe the pool
    (the quality is hidden from learned policies; the known-model reference reads it).
    """

    def __init__(self, config: RecSimConfig) -> None:
        choice_model, document, iev, environment = _import_recsim()
        self.config = config
        self.iev = iev
        videos = iev.UtilityModelVideoSampler(doc_ctor=iev.IEvVideo, seed=config.seed)
        self.pool = [videos.sample_document() for _ in range(config.pool)]
        # RecSim numbers a sampler's documents 0, 1, ...: the doc id is the pool index, the track's identity
        assert [d.doc_id() for d in self.pool] == list(range(config.pool))
        self.pool_clusters = np.array([d.cluster_id for d in self.pool], np.int64)
        self.pool_quality = np.array([d.quality for d in self.pool], np.float64)
        self.pool_length = np.array([d.video_length for d in self.pool], np.float64)
        self._sampler_cls = _pool_sampler(document)
        self._iev_user = _user_model(iev)
        self._choice = choice_model.MultinomialProportionalChoiceModel
        self._environment = environment.Environment
        self._env = None
        self.no_click_mass = 1.0
        self.min_normalizer = -1.0

    def click_probability(self, interests: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """The true click probability ``[N]`` of each candidate shown alone (RecSim's choice model)."""
        s = interests[self.pool_clusters[candidates]] - self.min_normalizer
        return s / (s + self.no_click_mass - self.min_normalizer)

    def budget_change(self, candidates: np.ndarray, clicked: bool = True) -> np.ndarray:
        """Minutes the budget changes by ``[N]`` when a candidate is (or is not) clicked (RecSim's update)."""
        if not clicked:
            return np.full(len(candidates), -0.5)
        length = self.pool_length[candidates]
        gain = (0.9 / 3.4) * length * self.pool_quality[candidates] if self.config.quality_affects_budget else 0.0
        return gain - length

    def episodes(self, policy: Policy, n: int, stream: str, start: int = 0, progress: bool = False,
                 prefix: str = "recsim") -> Iterator[Episode]:
        """Play ``n`` episodes (listeners ``start..start+n-1`` of ``stream``) with ``policy``."""
        from tqdm import tqdm

        if stream not in STREAMS:
            raise ConfigError(f"stream {stream!r} is not known (allowed: {', '.join(STREAMS)})")
        for k in tqdm(range(start, start + n), disable=not progress, unit="episode", desc=stream, leave=False):
            yield self.episode(policy, stream, k, prefix)

    def episode(self, policy: Policy, stream: str, k: int, prefix: str = "recsim") -> Episode:
        """Listener ``k`` of ``stream`` (the same listener, whatever the policy) for one session."""
        c = self.config
        seed = [c.seed, STREAMS[stream], k]
        sampler = self._sampler_cls(self.pool, c.candidates, np.random.SeedSequence(seed + [0]))
        users = self._iev_user(slate_size=1, choice_model_ctor=self._choice, response_model_ctor=self.iev.IEvResponse,
                               user_state_ctor=self.iev.IEvUserState, no_click_mass=self.no_click_mass,
                               seed=int(np.random.SeedSequence(seed + [1]).generate_state(1)[0]),
                               time_budget=c.time_budget, quality_factor=1.0 if c.quality_affects_budget else 0.0)
        env = self._environment(users, sampler, c.candidates, 1, resample_documents=True)
        ep = Episode(f"{prefix}-s{c.seed}-{stream}-{k}")
        with _global_numpy_seed(seed + [2]):
            user_obs, docs = env.reset()
            done = False
            while not done:
                cands = np.fromiter((int(d) for d in docs), np.int64, len(docs))
                ctx = Context(cands, np.asarray(user_obs, np.float64), [(s.track, s.clicked) for s in ep.steps])
                j = int(policy(ctx))
                if not 0 <= j < len(cands):
                    raise ConfigError(f"policy chose position {j} (allowed: 0-{len(cands) - 1})")
                user_obs, docs, responses, done = env.step([j])
                r = responses[0]
                ep.steps.append(Step(int(cands[j]), bool(r.clicked), float(r.watch_time)))
        return ep


def _pool_sampler(document):
    class PoolSampler(document.AbstractDocumentSampler):
        """RecSim document sampler over a fixed pool: each block of ``n`` draws (one candidate set,
        as ``Environment`` asks for them) is ``n`` distinct pool documents."""

        def __init__(self, pool: Sequence, n: int, seed: np.random.SeedSequence) -> None:
            self._pool, self._n, self._block = list(pool), n, []
            self._gen = np.random.default_rng(seed)
            super().__init__(doc_ctor=type(pool[0]), seed=0)

        def sample_document(self):
            if not self._block:
                self._block = list(self._gen.choice(len(self._pool), self._n, replace=False)[::-1])
            return self._pool[int(self._block.pop())]

    return PoolSampler


def _user_model(iev):
    class BudgetUserModel(iev.IEvUserModel):
        """RecSim's interest-evolution user with the session budget and the quality factor set
        (RecSim's utility-model user sampler fixes them at 200 minutes and 1)."""

        def __init__(self, *args, time_budget: float, quality_factor: float, **kwargs) -> None:
            self._budget, self._quality_factor = float(time_budget), float(quality_factor)
            super().__init__(*args, **kwargs)
            self._configure()

        def _configure(self) -> None:
            self._user_state.time_budget = self._budget
            self._user_state.document_quality_factor = self._quality_factor

        def reset(self) -> None:
            super().reset()
            self._configure()

    return BudgetUserModel


@contextmanager
def _global_numpy_seed(seed: list[int]):
    """RecSim draws from ``np.random``'s global state: seed it, and give the caller's state back."""
    saved = np.random.get_state()
    np.random.seed(np.random.SeedSequence(seed).generate_state(1)[0])
    try:
        yield
    finally:
        np.random.set_state(saved)


# ---------------------------------------------------------------- logs in qriff's CSV format

CSV_HEADER = ("user", "item", "timestamp", "ms_played", "duration_ms", "skipped", "title", "artist", "tags")


def track_key(index: int) -> str:
    """The CSV ``item`` of pool document ``index``."""
    return f"recsim-{int(index)}"


def cluster_tag(cluster: int) -> str:
    return f"cluster-{int(cluster)}"


def episode_rows(world: RecSimWorld, episodes: Sequence[Episode], first: int = 0) -> Iterator[tuple]:
    """CSV rows (see :data:`CSV_HEADER`) of ``episodes``; the ``k``-th starts ``first + k`` episode slots after T0."""
    for k, ep in enumerate(episodes):
        t = T0 + (first + k) * EPISODE_SECONDS
        for i, s in enumerate(ep.steps):
            length_ms = int(round(world.pool_length[s.track] * 60_000))
            cl = int(world.pool_clusters[s.track])
            yield (ep.user, track_key(s.track), t + i * STEP_SECONDS, int(round(s.watch_time * 60_000)), length_ms,
                   "false" if s.clicked else "true", f"RecSim document {s.track}", f"RecSim cluster {cl}",
                   cluster_tag(cl))


def episodes_csv(world: RecSimWorld, episodes: Sequence[Episode], first: int = 0) -> str:
    """``episodes`` as a qriff CSV export (header included): one listener per episode, a click a
    completed play (``skipped=false``), no click a skip, the budget's end the session's end."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    w.writerows(episode_rows(world, episodes, first))
    return buf.getvalue()


# ---------------------------------------------------------------- reference policies

def random_policy(seed: int) -> Policy:
    """Uniform over the candidates."""
    rng = np.random.default_rng(seed)
    return lambda ctx: int(rng.integers(len(ctx.candidates)))


def myopic_policy(world: RecSimWorld) -> Policy:
    """The highest true click probability now (RecSim's own choice model and the true interests)."""
    return lambda ctx: int(np.argmax(world.click_probability(ctx.interests, ctx.candidates)))


def mixed_policy(world: RecSimWorld, seed: int, explore: float = 0.5) -> Policy:
    """Myopic, but a uniform candidate with probability ``explore`` (a logging policy with coverage)."""
    rng = np.random.default_rng(seed)
    my = myopic_policy(world)
    return lambda ctx: int(rng.integers(len(ctx.candidates))) if rng.random() < explore else my(ctx)


def planner_policy(world: RecSimWorld, price: float) -> Policy:
    """The known-model reference: knows the click probabilities, each document's quality and what a
    click costs the budget, and maximises ``expected minutes watched now + price * expected budget
    change`` (``price``: minutes of future watching one minute of budget is worth). A session's
    return is budget times watch rate, so the best fixed-price rule is the best stationary policy
    of this renewal problem (Dinkelbach); ``price`` is tuned on other listeners. ``price = 0`` is myopic."""

    def choose(ctx: Context) -> int:
        p = world.click_probability(ctx.interests, ctx.candidates)
        watch = world.pool_length[ctx.candidates]
        value = p * watch + price * (p * world.budget_change(ctx.candidates, True)
                                     + (1 - p) * world.budget_change(ctx.candidates, False))
        return int(np.argmax(value))

    return choose


def completion_rate_policy(world: RecSimWorld, episodes: Sequence[Episode], prior: float = 2.0) -> Policy:
    """No RL, no personalisation: each track's completion rate in the logs (smoothed towards the
    logs' mean by ``prior`` pseudo-plays), best first."""
    shown = np.zeros(world.config.pool)
    done = np.zeros(world.config.pool)
    for ep in episodes:
        for s in ep.steps:
            shown[s.track] += 1
            done[s.track] += s.clicked
    mean = done.sum() / max(shown.sum(), 1.0)
    rate = (done + prior * mean) / (shown + prior)
    return lambda ctx: int(np.argmax(rate[ctx.candidates]))


# ---------------------------------------------------------------- calibration

@dataclass
class Calibration:
    """Predicted against observed click rates on held-out listeners, by bin of predicted probability."""

    predicted: list[float]
    observed: list[float]
    count: list[int]
    z: list[float]
    """Per bin, (observed - predicted) / binomial standard error."""
    limit: float

    @property
    def passed(self) -> bool:
        return bool(max(abs(z) for z in self.z) <= self.limit)

    def summary(self) -> str:
        bins = ", ".join(f"{p:.3f}->{o:.3f} (n={n})" for p, o, n in zip(self.predicted, self.observed, self.count))
        return f"click calibration {'passed' if self.passed else 'FAILED'} (max |z| {max(map(abs, self.z)):.1f}, " \
               f"limit {self.limit:g}): predicted->observed {bins}"


def calibrate_clicks(world: RecSimWorld, model: Callable[[np.ndarray, np.ndarray], np.ndarray], policy: Policy,
                     episodes: int = 20, bins: int = 5, limit: float = 4.0) -> Calibration:
    """Check a click model ``model(interests [20], candidates [N]) -> p [N]`` against what RecSim's
    listeners do (the ``tune`` stream, listeners no policy was trained or tuned on).

    Each step's predicted probability of the played track is binned by quantile; a bin fails when
    its observed click rate is more than ``limit`` binomial standard errors from the mean
    prediction. It can fail: a wrong model (e.g. another no-click mass) does.
    """
    preds: list[float] = []

    def spy(ctx: Context) -> int:
        j = policy(ctx)
        preds.append(float(model(ctx.interests, ctx.candidates[j:j + 1])[0]))
        return j

    clicks = [s.clicked for ep in world.episodes(spy, episodes, "tune") for s in ep.steps]
    p, c = np.asarray(preds), np.asarray(clicks, np.float64)
    edges = np.quantile(p, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    out = Calibration([], [], [], [], limit)
    for b in range(bins):
        m = which == b
        if not m.any():
            continue
        pm, om, n = float(p[m].mean()), float(c[m].mean()), int(m.sum())
        se = max(np.sqrt(pm * (1 - pm) / n), 1e-9)
        out.predicted.append(pm)
        out.observed.append(om)
        out.count.append(n)
        out.z.append((om - pm) / se)
    return out
