"""Exceptions raised by qriff.

Every error qriff raises on bad input derives from :class:`QriffError`: the engine's
from :class:`EngineError`, the OSC bridge's from ``bridge.errors.BridgeError``, the
recommender's from ``recommender.errors.RecommenderError``. The CLI catches the one
class and shows the message as is: each message names the value received, what is
allowed and, where useful, a hint.
"""

from __future__ import annotations


class QriffError(Exception):
    """Base class of every error qriff raises on bad input (engine, bridge, recommender)."""


class EngineError(QriffError):
    """Base class of every error raised by the qriff engine."""


class TheoryError(EngineError, ValueError):
    """A key, scale, chord, roman numeral or time signature could not be parsed."""


class StyleError(EngineError, ValueError):
    """A style preset, term name or weight is not valid."""


class ClipError(EngineError, ValueError):
    """A clip file (JSON or MIDI) could not be read or is not a melody."""


class ModelError(EngineError):
    """A model file is missing, corrupt or does not match this version of qriff."""


class CorpusError(EngineError):
    """The melody corpus could not be extracted or loaded."""
