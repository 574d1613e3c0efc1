"""qriff's recommender: listening history as state, playlist steps as actions.

Ingest listening exports into SQLite (:mod:`recommender.ingest`), train a DQN over
ALS candidates (:mod:`recommender.train`, needs torch), and serve ``next``,
``playlist`` and ``search`` with numpy and SQLite only (:class:`Recommender`).
"""

from recommender.api import Recommendation, Recommender
from recommender.errors import RecommenderError

__all__ = ["Recommendation", "Recommender", "RecommenderError"]
