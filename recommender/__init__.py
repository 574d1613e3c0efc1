"""qriff's recommender: listening history as state, playlist steps as actions.

Ingest listening exports into SQLite (:mod:`recommender.ingest`), train a DQN over
ALS candidates (:mod:`recommender.train`, needs torch), and serve ``next``,
``playlist`` and ``search`` with numpy and SQLite only (:class:`Recommender`).
The names below are imported on first use, so ``qriff --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from recommender.errors import RecommenderError

if TYPE_CHECKING:  # pragma: no cover
    from recommender.api import Recommendation, Recommender

__all__ = ["Recommendation", "Recommender", "RecommenderError"]


def __getattr__(name: str) -> Any:
    if name in ("Recommendation", "Recommender"):
        from recommender import api

        return getattr(api, name)
    raise AttributeError(f"module 'recommender' has no attribute {name!r}")
