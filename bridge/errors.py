"""Exceptions raised by the OSC bridge.

Every error the bridge raises derives from :class:`BridgeError` (itself a
:class:`engine.base.errors.QriffError`, which the ``qriff`` CLI catches). A request handler
turns one into the ``/qriff/error id code message`` reply, so each error carries a
short machine-readable ``code`` (see :data:`ERROR_CODES`) besides its message, which
names the value received, what is allowed and, where useful, a hint.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from engine.base.errors import QriffError

#: Every code a ``/qriff/error`` reply can carry, with what it means.
ERROR_CODES: dict[str, str] = {
    "malformed": "the datagram is not valid OSC (truncated, bad padding, unknown type tag, oversized)",
    "unknown_address": "no method or property has this address",
    "bad_request": "wrong arguments: missing request id, odd key/value list, unknown option, wrong count",
    "bad_value": "a value is of the wrong kind or out of range (key, scale, bars, chords, style...)",
    "not_found": "a named clip or model does not exist in the output folder or model list",
    "busy": "the generate/render queue is full: retry later",
    "model": "the model could not be loaded or does not match this version of qriff",
    "render": "rendering the clip to audio failed",
    "live": "Ableton Live (AbletonOSC) reported an error or did not answer",
    "shutdown": "the server stopped before the request ran",
    "store": "the feedback store could not be opened or written (see the message)",
    "internal": "an unexpected failure inside qriff (see the server log)",
}


class BridgeError(QriffError):
    """Base class of every error raised by the qriff OSC bridge.

    ``code`` is one of :data:`ERROR_CODES`; ``str(error)`` is the human message.
    """

    code = "internal"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            if code not in ERROR_CODES:
                raise ValueError(f"error code {code!r} is not one of {', '.join(ERROR_CODES)}")
            self.code = code


class MalformedDatagram(BridgeError, ValueError):
    """A datagram that is not valid OSC 1.0."""

    code = "malformed"


class RequestError(BridgeError, ValueError):
    """A well-formed OSC message whose address or arguments are not acceptable."""

    code = "bad_request"


class ConfigError(BridgeError, ValueError):
    """A server option (host, port, allow list, output folder) that cannot be used."""

    code = "bad_value"


class LiveError(BridgeError):
    """Ableton Live, through AbletonOSC, reported an error or did not answer in time."""

    code = "live"


class FailureLog:
    """Logs unexpected failures with at most one traceback per ``interval`` seconds.

    A failure that a datagram can trigger could otherwise be repeated by the sender as
    fast as the network allows, and each full traceback costs about a kilobyte of log.
    Between tracebacks failures are only counted; the next traceback line says how many
    were not shown. ``clock`` (seconds, monotonic) is for tests.
    """

    def __init__(self, logger: logging.Logger, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger, self.interval, self.clock = logger, interval, clock
        self.total = 0
        self._hidden = 0
        self._last: float | None = None
        self._lock = threading.Lock()

    def record(self, what: str, exc: BaseException) -> None:
        """Count ``exc``; log it with its traceback unless one was logged in the last ``interval`` s."""
        with self._lock:
            self.total += 1
            now = self.clock()
            if self._last is not None and now - self._last < self.interval:
                self._hidden += 1
                return
            hidden, self._hidden, self._last = self._hidden, 0, now
        note = f" ({hidden} more unexpected failures since the last traceback)" if hidden else ""
        self.logger.error("%s: unexpected %s%s", what, type(exc).__name__, note, exc_info=exc)
