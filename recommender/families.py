"""The recommender's model families behind one interface (implicit's ``RecommenderBase`` idiom).

Every family the offline protocol compares is a :class:`ModelFamily`:

    model = family.fit(train)     # train: Interactions, the training events (users x items, time-ordered)
    scores = model.score(users)   # float64 [len(users), n_items + 1] after each user's training history;
                                  # column 0 (padding) is -inf, higher is better
    family.name, family.config    # the table row, and the dataclass that decides the fit

``tests/recommender/test_families.py`` runs one contract test against every family of
:func:`families`. The neural ones take ``inputs="dqn"``: content features, the ALS item
factors and the ALS user vector (the DQN's inputs, from an ALS fitted in :meth:`fit`
with ``als``), or ``inputs="ids"``: item ids and outcomes only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from recommender.candidates import CandidateConfig, Candidates
from recommender.dataset import Interactions

if TYPE_CHECKING:
    from recommender.train import TrainConfig

INPUTS = ("dqn", "ids")


T = TypeVar("T")

class ModelFamily(ABC):
    """A model family: ``name`` (its table row), ``config`` (a dataclass), :meth:`fit`, :meth:`score`."""

    name: str
    config: Any

    @abstractmethod
    def fit(self, train: Interactions) -> ModelFamily:
        """Fit on ``train``; returns self."""

    @abstractmethod
    def score(self, users: np.ndarray) -> np.ndarray:
        """float64 ``[len(users), n_items + 1]`` scores of every item after each user's training history
        (column 0 is -inf). Only after :meth:`fit`."""

    def _need_fit(self, fitted: T | None) -> T:
        """``fitted`` (what :meth:`fit` made), or RuntimeError before ``fit``."""
        if fitted is None:
            raise RuntimeError(f"{self.name}: score() before fit(); call fit(train) first")
        return fitted


@dataclass(frozen=True)
class PopularityConfig:
    """Most-popular has nothing to tune: every user gets the training plays' counts."""


class MostPopular(ModelFamily):
    """Every item scored by how often it was played in training."""

    def __init__(self, name: str = "most-popular", config: PopularityConfig = PopularityConfig()) -> None:
        self.name, self.config = name, config
        self._counts: np.ndarray | None = None

    def fit(self, train: Interactions) -> MostPopular:
        self._counts = np.bincount(train.item, minlength=train.n_items + 1).astype(np.float64)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        out = np.tile(self._need_fit(self._counts), (len(users), 1))
        out[:, 0] = -np.inf
        return out


class Implicit(ModelFamily):
    """implicit's ALS (``kind="als"``) or item-kNN (``kind="cosine"``) on the play counts."""

    def __init__(self, name: str, config: CandidateConfig) -> None:
        self.name, self.config = name, config
        self.model: Candidates | None = None
        self._ui: Any = None

    def fit(self, train: Interactions) -> Implicit:
        self._ui = train.user_items()
        self.model = Candidates(self.config).fit(self._ui)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        out = np.asarray(self._need_fit(self.model).score_all(users, self._ui), np.float64)
        out[:, 0] = -np.inf
        return out


class Neural(ModelFamily):
    """:class:`~recommender.model.SeqQNet` trained by :class:`~recommender.train.Trainer` with ``config``
    (a ``TrainConfig``): GRU4Rec when its ``q_weight`` is 0, the DQN otherwise. ``head``: ``"rank"``
    scores by ``config.rank_by``, ``"q"`` by the Q head."""

    def __init__(self, name: str, config: TrainConfig, inputs: str = "dqn", als: CandidateConfig | None = None,
                 head: str = "rank", progress: bool = False) -> None:
        if inputs not in INPUTS:
            raise ValueError(f"inputs {inputs!r} is not known (allowed: {', '.join(INPUTS)})")
        if head not in ("rank", "q"):
            raise ValueError(f"head {head!r} is not known (allowed: rank, q)")
        if head == "q" and config.q_weight <= 0:
            raise ValueError(f"{name}: head 'q' needs a Q-loss (q_weight {config.q_weight}; allowed: > 0)")
        self.name, self.config, self.inputs, self.head, self.progress = name, config, inputs, head, progress
        self.als = als or CandidateConfig(seed=config.seed)
        self.net: Any = None
        self._train: Interactions | None = None

    def training_key(self) -> str:
        """Two families with the same key train the same network (the head and the name do not count;
        without the Q-loss none of its settings does)."""
        cfg = self.config
        if cfg.q_weight == 0:
            cfg = replace(cfg, gamma=0.0, q_encoder_grad=1.0, unshown_weight=0.0, continue_bonus=0.0, tau=0.01,
                          rank_by="sqn")
        als = repr(self.als) if self.inputs == "dqn" else ""
        return f"{self.inputs}|{als}|{cfg.to_json()}"

    def sharing(self, other: Neural) -> Neural:
        """This family, using ``other``'s fitted network (same :meth:`training_key`)."""
        if other.training_key() != self.training_key() or other.net is None:
            raise ValueError(f"{self.name} cannot share {other.name}'s network: it trains another one")
        self.net, self._train = other.net, other._train
        return self

    def fit(self, train: Interactions) -> Neural:
        from recommender.train import Trainer, prepare_features

        if self.inputs == "dqn":
            part = replace(train)
            prepare_features(part, Candidates(self.als).fit(train.user_items()))
        else:
            part = replace(train, item_features=np.zeros((train.n_items + 1, 0), np.float32),
                           user_features=np.zeros((train.n_users, 0), np.float32))
        self._train = part
        self.net = Trainer(part, self.config, progress=self.progress).run(resume=False)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        from recommender.train import score_users

        self._need_fit(self.net)
        assert self._train is not None
        t = self._train
        b = t.bounds
        seqs = [t.item[b[u]:b[u + 1]] for u in users]
        outs = [t.outcome[b[u]:b[u + 1]].astype(np.int64) for u in users]
        uvecs = t.user_features[users] if t.user_features.shape[1] else None
        cfg = replace(self.config, rank_by="q") if self.head == "q" else self.config
        return np.asarray(score_users(self.net, cfg, seqs, outs, user_vecs=uvecs), np.float64)


def gru4rec_config(dqn: TrainConfig) -> TrainConfig:
    """The supervised baseline: a GRU with the DQN's size, budget, regularisation and inputs
    (item ids and each event's outcome), trained by full-softmax cross-entropy alone."""
    return replace(dqn, q_weight=0.0, rank_by="sqn", net=replace(dqn.net, encoder="gru"))


def families(dqn: TrainConfig, als: CandidateConfig, knn: CandidateConfig, gru: TrainConfig | None = None,
             progress: bool = False) -> dict[str, ModelFamily]:
    """Every row of the offline table as a family: baselines, then the DQN and its ablations.

    ``dqn`` is the DQN's ``TrainConfig``, ``gru`` GRU4Rec's (default: :func:`gru4rec_config` of it),
    ``als`` / ``knn`` the implicit configs; the DQN's inputs come from ``als``.
    """
    gru = gru or gru4rec_config(dqn)
    rows: list[ModelFamily] = [
        MostPopular(),
        Implicit("als", replace(als, kind="als")),
        Implicit("item-knn", replace(knn, kind="cosine")),
        Neural("gru4rec (ids)", gru, "ids", als, progress=progress),
        Neural("gru4rec (DQN's inputs)", gru, "dqn", als, progress=progress),
        Neural("dqn", dqn, "dqn", als, progress=progress),
        Neural("dqn, gamma 0", replace(dqn, gamma=0.0), "dqn", als, progress=progress),
        Neural("dqn, no Q-loss", replace(dqn, q_weight=0.0, rank_by="sqn"), "dqn", als, progress=progress),
        Neural("dqn, Q gradient stopped at the encoder", replace(dqn, q_encoder_grad=0.0), "dqn", als,
               progress=progress),
        Neural("dqn, full Q gradient into the encoder", replace(dqn, q_encoder_grad=1.0), "dqn", als,
               progress=progress),
        Neural("dqn, ranked by Q", dqn, "dqn", als, head="q", progress=progress),
    ]
    return {f.name: f for f in rows}
