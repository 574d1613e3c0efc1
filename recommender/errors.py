"""Exceptions raised by the recommender.

Every error the recommender raises on bad input derives from :class:`RecommenderError`
(itself a :class:`engine.base.errors.QriffError`), so the CLI (and the OSC bridge) can catch one class and print the message as is: each
message names the value received, what is allowed and, where useful, a hint.
"""

from __future__ import annotations

from engine.base.errors import QriffError


class RecommenderError(QriffError):
    """Base class of every error raised by the qriff recommender."""


class DatabaseError(RecommenderError):
    """The database could not be opened, is locked by another process, or is too new."""


class IngestError(RecommenderError, ValueError):
    """A listening-history file could not be read (unknown format, unreadable file)."""


class ModelMissingError(RecommenderError):
    """No trained model exists for this database, or the model file is corrupt."""


class ConfigError(RecommenderError, ValueError):
    """A training, reward, simulator or query parameter is out of range."""


class DatasetError(RecommenderError):
    """An evaluation data set is missing or too small."""
