"""``/qriff/feedback`` verdicts on their way into the feedback store (:mod:`engine.feedback`).

The receive loop checks a verdict (clip name, keep/discard, stars) and hands it to a
:class:`VerdictWriter`, whose thread reads the clip file and stores it. Verdicts that
queue up while the writer commits are stored together in one transaction (a group
commit: one disk write for many), and each is acknowledged with
``/qriff/feedback/stored`` only once its transaction committed, so an acknowledged
verdict is never lost. The queue is bounded: beyond ``size`` waiting verdicts a
request is refused with ``busy``, so a flood never grows memory. On shutdown every
verdict still queued is stored and answered before the thread ends.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.errors import BridgeError
from bridge.protocol import PREFIX
from engine.feedback import FeedbackError, FeedbackStore, Judgement, load_judged_clip

if TYPE_CHECKING:
    from bridge.delivery import Delivery

log = logging.getLogger(__name__)

Address = tuple[str, int]
#: Most verdicts stored in one transaction.
MAX_GROUP = 256


@dataclass(frozen=True)
class PendingVerdict:
    """A checked verdict waiting to be stored: whom to answer, the clip file and what was said of it."""

    dest: Address
    rid: Any
    rtag: str
    clip: str
    path: Path
    verdict: str
    stars: int | None
    source: str


class VerdictWriter:
    """One thread storing verdicts in the store at ``store_path`` (None: the default), answering through ``delivery``."""

    def __init__(self, store_path: Path | None, delivery: Delivery, size: int = 4096) -> None:
        self.store_path = store_path
        self.delivery = delivery
        self.size = size
        self._queue: deque[PendingVerdict] = deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._store: FeedbackStore | None = None
        self._thread: threading.Thread | None = None

    def submit(self, pending: PendingVerdict) -> None:
        """Queue a verdict; BridgeError ``busy`` when ``size`` already wait."""
        with self._cv:
            if self._stopping:
                raise BridgeError("the server is stopping: the verdict was not recorded, send it again later",
                                  code="shutdown")
            if len(self._queue) >= self.size:
                raise BridgeError(f"{self.size} verdicts are already waiting to be stored: retry in a moment",
                                  code="busy")
            self._queue.append(pending)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="qriff-verdicts", daemon=True)
                self._thread.start()
            self._cv.notify()

    def stop(self) -> None:
        """Store and answer what is queued, then end the thread and close the store."""
        with self._cv:
            self._stopping = True
            self._cv.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=60)
        if self._store is not None:
            self._store.close()
            self._store = None

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stopping:
                    self._cv.wait()
                if not self._queue:
                    return
                group = [self._queue.popleft() for _ in range(min(MAX_GROUP, len(self._queue)))]
            try:
                self._store_group(group)
            except Exception as exc:  # a bug: each sender hears about it, the thread lives on
                self.delivery.failures.record("storing verdicts", exc)
                for p in group:
                    self.delivery.error(p.dest, p.rid, p.rtag, "internal",
                                        f"unexpected {type(exc).__name__} while storing the verdict (see the "
                                        "server log)")

    def _store_group(self, group: list[PendingVerdict]) -> None:
        ready: list[tuple[PendingVerdict, Judgement]] = []
        for p in group:
            try:
                clip, where = load_judged_clip(p.path)
            except FeedbackError as exc:
                self.delivery.error(p.dest, p.rid, p.rtag, "bad_value", str(exc))
                continue
            ready.append((p, Judgement(clip, p.verdict, p.stars, p.source, str(where))))
        if not ready:
            return
        try:
            if self._store is None:
                self._store = FeedbackStore(self.store_path)
            self._store.record_many([j for _, j in ready])
        except FeedbackError as exc:
            for p, _ in ready:
                self.delivery.error(p.dest, p.rid, p.rtag, "store", str(exc))
            return
        for p, _ in ready:
            self.delivery.reply(p.dest, f"{PREFIX}/feedback/stored", p.rid, p.rtag, p.clip, p.verdict, p.stars or 0,
                                tags="ssi")
