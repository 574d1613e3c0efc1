"""The bridge's slow work, running: worker threads that take jobs from the queue.

:class:`Workers` take jobs from a :class:`~bridge.jobs.JobQueue` one at a time, except
that generate requests with server-chosen seeds and equal options queued back to back
share one policy call (a batch); each request still gets exactly the clips its own seeds
give. What a job produces is handed to :class:`bridge.delivery.Delivery`, which writes
the files and sends the replies; clips named in requests are looked up in the
:class:`~bridge.clipfiles.ClipFolder`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from pathlib import Path
from typing import Any

from bridge import protocol
from bridge.clipfiles import ClipFolder
from bridge.delivery import Delivery
from bridge.errors import BridgeError
from bridge.jobs import MAX_BATCH, STOP, Job, JobQueue
from bridge.source import ClipSource
from engine.music import limits
from engine.music.clip import Clip
from engine.music.clipfile import load_clip
from engine.music.request import RenderRequest

log = logging.getLogger(__name__)


class Workers:
    """Threads that run jobs: the policy for generate, engine.audio.render for render, the Live client for push."""

    def __init__(self, queue: JobQueue, source: ClipSource, delivery: Delivery, folder: ClipFolder,
                 count: int = 1) -> None:
        self.queue, self.source, self.delivery, self.folder = queue, source, delivery, folder
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
            if batch[0] is STOP:
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
        primer = load_clip(self.folder.clip_path(p["primer"])) if p.get("primer") else None
        # the model current when the request was queued, not whichever is current now
        return self.source.generate(protocol.generate_request(p, count=count, seed=seed, primer=primer),
                                    model=p.get("model"))

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
        name = self.folder.default_clip(job.params.get("clip"))
        clip = load_clip(self.folder.clip_path(name))
        p = job.params
        options = RenderRequest(preset=p["preset"], sample_rate=p["sample_rate"], fmt=p["format"], pianoroll=False)
        result = render_clip(clip, self.folder.path / f"{Path(name).stem}-stems", options, quiet=True)
        self.delivery.rendered(job, name, result)

    def _push(self, job: Job) -> None:
        name = self.folder.default_clip(job.params.get("clip"))
        clip = load_clip(self.folder.clip_path(name))
        track = job.params.get("track", max(0, job.params.get("live_track", 0)))
        slot = job.params.get("slot", job.params.get("live_slot", 0))
        self.delivery.push(job, clip, 0, 1, track, slot)
