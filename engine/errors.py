"""Exceptions raised by the engine.

Every error the engine raises on bad input derives from :class:`EngineError`, so a
caller (the CLI, the OSC bridge) can catch one class and show the message as is: each
message names the value received, what is allowed and, where useful, a hint.
"""

from __future__ import annotations


class EngineError(Exception):
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
