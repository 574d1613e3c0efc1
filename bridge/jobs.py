"""The bridge's slow work, waiting: a bounded queue of jobs.

Generate, render and Live push requests become :class:`Job` s in a :class:`JobQueue`;
beyond ``size`` waiting jobs a request is refused at once (``busy``), so a flood
never grows memory. The worker threads (:mod:`bridge.workers`) take jobs one at a time,
except that generate requests with server-chosen seeds and equal options queued back to
back come out together (a batch, at most :data:`MAX_BATCH` clips) to share one policy call.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from bridge.errors import BridgeError

Address = tuple[str, int]
#: Most clips one batched policy call makes (requests with default seeds queued back to back).
MAX_BATCH = 32
_BATCH_FIELDS = ("model", "key", "scale", "bars", "tempo", "time_signature", "chords", "style", "temperature",
                 "roles", "valence", "arousal")


@dataclass
class Job:
    """A queued request: what to do (``generate``, ``render``, ``push``), whom to answer, the resolved options."""

    kind: str
    rid: Any
    rtag: str
    dest: Address
    params: dict[str, Any]
    received: float
    generate_s: float = 0.0
    started: float = 0.0


#: What :meth:`JobQueue.close` queues for each worker thread: stop taking jobs.
STOP = object()


def batch_key(job: Any) -> tuple[Any, ...] | None:
    """Jobs with equal keys can share one policy call; None for jobs that cannot be batched."""
    if not isinstance(job, Job) or job.kind != "generate":
        return None
    p = job.params
    if p["seed"] >= 0 or p.get("primer"):
        return None  # an explicit seed must give exactly the clip that seed gives alone
    return tuple(p.get(name) for name in _BATCH_FIELDS)


class JobQueue:
    """A bounded FIFO of jobs shared by the receive loop (``put``) and the workers (``take``)."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._jobs: deque[Any] = deque()
        self._cv = threading.Condition()

    def __len__(self) -> int:
        return len(self._jobs)

    def put(self, job: Job) -> None:
        """Queue ``job``; BridgeError ``busy`` when ``size`` jobs already wait."""
        with self._cv:
            if len(self._jobs) >= self.size:
                raise BridgeError(f"{self.size} requests are already waiting: retry when some clips have arrived "
                                  "(or start the server with a larger --queue)", code="busy")
            self._jobs.append(job)
            self._cv.notify()

    def take(self) -> list[Any]:
        """The next job, plus the compatible generate jobs queued right behind it (one batch)."""
        with self._cv:
            while not self._jobs:
                self._cv.wait()
            first = self._jobs.popleft()
            batch = [first]
            key = batch_key(first)
            if key is not None:
                total = first.params["variations"]
                while self._jobs and batch_key(self._jobs[0]) == key \
                        and total + self._jobs[0].params["variations"] <= MAX_BATCH:
                    job = self._jobs.popleft()
                    total += job.params["variations"]
                    batch.append(job)
            return batch

    def idle(self) -> bool:
        """True when no job waits."""
        return not self._jobs

    def close(self, workers: int) -> list[Job]:
        """Empty the queue, tell ``workers`` threads to stop; the jobs that were waiting."""
        with self._cv:
            pending = [job for job in self._jobs if isinstance(job, Job)]
            self._jobs.clear()
            self._jobs.extend([STOP] * workers)
            self._cv.notify_all()
        return pending
