"""The bridge's slow work: a bounded job queue and the worker threads that run it.

Generate, render and Live push requests become :class:`Job` s in a :class:`JobQueue`;
beyond ``size`` waiting jobs a request is refused at once (``busy``), so a flood
never grows memory. :class:`Workers` take jobs one at a time, except that generate
requests with server-chosen seeds and equal options queued back to back share one
policy call (a batch, at most :data:`MAX_BATCH` clips); each request still gets
exactly the clips its own seeds give. What a job produces is handed to
:class:`bridge.delivery.Delivery`, which writes the files and sends the replies.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge import protocol
from bridge.errors import BridgeError
from bridge.source import ClipSource
from engine.music import limits
from engine.music.clip import Clip, load_clip
from engine.music.request import RenderRequest

if TYPE_CHECKING:
    from bridge.delivery import Delivery

log = logging.getLogger(__name__)

Address = tuple[str, int]
#: Most clips one batched policy call makes (requests with default seeds queued back to back).
MAX_BATCH = 32
_BATCH_FIELDS = ("key", "scale", "bars", "tempo", "time_signature", "chords", "style", "temperature", "roles",
                 "valence", "arousal")


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


_STOP = object()


def batch_key(job: Any) -> tuple[Any, ...] | None:
    """Jobs with equal keys can share one policy call; None for jobs that cannot be batched."""
    if not isinstance(job, Job) or job.kind != "generate":
        return None
    p = job.params
    if p["seed"] >= 0 or p.get("primer"):
        return None  # an explicit seed must give exactly the clip that seed gives alone
    return tuple(p[name] for name in _BATCH_FIELDS)


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
            self._jobs.extend([_STOP] * workers)
            self._cv.notify_all()
        return pending


class Workers:
    """Threads that run jobs: the policy for generate, engine.render for render, the Live client for push."""

    def __init__(self, queue: JobQueue, source: ClipSource, delivery: Delivery, count: int = 1) -> None:
        self.queue, self.source, self.delivery = queue, source, delivery
        self.count = max(1, count)
        self._rng = random.Random()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self.count):
            t = threading.Thread(target=self._run, name=f"qriff-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    @property
    def started(self) -> bool:
        return bool(self._threads)

    def stop(self) -> list[Job]:
        """Stop after the current jobs; returns the jobs that were still waiting (not run)."""
        pending = self.queue.close(len(self._threads))
        for t in self._threads:
            t.join(timeout=30)
        self._threads.clear()
        return pending

    def _run(self) -> None:
        while True:
            batch = self.queue.take()
            if batch[0] is _STOP:
                return
            try:
                if len(batch) > 1:
                    self._generate_batch(batch)
                elif batch[0].kind == "generate":
                    self._generate_one(batch[0])
                elif batch[0].kind == "render":
                    self._render(batch[0])
                else:
                    self._push(batch[0])
            except Exception as exc:  # every failure becomes an error reply; the worker lives on
                self.delivery.fail(batch, exc)

    # ---------------------------------------------------------------- generate
    def _new_seed(self, count: int) -> int:
        # Variation i of a request uses seed + i, so leave room for the whole batch below MAX_SEED.
        return self._rng.randrange(limits.MAX_SEED - max(count, MAX_BATCH))

    def _clips(self, p: dict[str, Any], count: int, seed: int) -> list[Clip]:
        primer = load_clip(self.delivery.clip_path(p["primer"])) if p.get("primer") else None
        return self.source.generate(protocol.generate_request(p, count=count, seed=seed, primer=primer))

    def _generate_batch(self, batch: list[Job]) -> None:
        """Requests that differ only in their (server-chosen) seeds: one policy call, seeds s, s+1, ..."""
        total = sum(job.params["variations"] for job in batch)
        seed = self._new_seed(total)
        t0 = time.perf_counter()
        clips = self._clips(batch[0].params, total, seed)
        generate_s = time.perf_counter() - t0
        for job in batch:
            job.started, job.generate_s = t0, generate_s
        log.debug("batched %d generate requests (%d clips)", len(batch), total)
        start = 0
        for job in batch:
            n = job.params["variations"]
            self.delivery.hand_off(job, clips[start:start + n], seed + start, idle=self.queue.idle())
            start += n

    def _generate_one(self, job: Job) -> None:
        p = job.params
        seed = p["seed"] if p["seed"] >= 0 else self._new_seed(p["variations"])
        t0 = time.perf_counter()
        job.started = t0
        clips = self._clips(p, p["variations"], seed)
        job.generate_s = time.perf_counter() - t0
        self.delivery.hand_off(job, clips, seed, idle=self.queue.idle())

    # ------------------------------------------------------------ render, push
    def _render(self, job: Job) -> None:
        try:
            from engine.audio.render import render_clip
        except ImportError:
            raise BridgeError("rendering is not available in this installation (engine.audio.render is missing)",
                              code="render") from None
        name = self.delivery.default_clip(job)
        clip = load_clip(self.delivery.clip_path(name))
        p = job.params
        options = RenderRequest(preset=p["preset"], sample_rate=p["sample_rate"], fmt=p["format"], pianoroll=False)
        result = render_clip(clip, self.delivery.out_dir / f"{Path(name).stem}-stems", options, quiet=True)
        self.delivery.rendered(job, name, result)

    def _push(self, job: Job) -> None:
        name = self.delivery.default_clip(job)
        clip = load_clip(self.delivery.clip_path(name))
        track = job.params.get("track", max(0, job.params.get("live_track", 0)))
        slot = job.params.get("slot", job.params.get("live_slot", 0))
        self.delivery.push(job, clip, 0, 1, track, slot)
