"""What goes back: clip files, reply datagrams, Live pushes and error replies.

:class:`Delivery` writes into the output folder (:class:`~bridge.clipfiles.ClipFolder`) and owns
the sending side of the server's socket.
A generated clip is written as ``<out>/<request number>-<variation>.mid`` and ``.json``
(names never come from the network), then its replies go out as one burst
(``/qriff/clip/begin``, per track ``/qriff/clip/track`` and ``/qriff/clip/notes`` in
chunks of :data:`~bridge.datagrams.NOTES_PER_CHUNK` notes, ``/qriff/clip/end``). When
workers are busy, writer threads do this while the next clips are generated.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bridge.ableton import LiveClient, clip_name
from bridge.clipfiles import ClipFolder, write_clip_json
from bridge.datagrams import MAX_DATAGRAM, NOTES_PER_CHUNK, chunks, encode
from bridge.errors import BridgeError, FailureLog
from bridge.jobs import Job
from bridge.protocol import PREFIX
from bridge.transport import send_burst
from engine.base.errors import EngineError, ModelError
from engine.music.clip import Clip
from engine.music.midi import write_midi

log = logging.getLogger(__name__)

Address = tuple[str, int]


@dataclass(frozen=True)
class Timing:
    """Where the time of one generate request went (seconds, ``time.perf_counter`` clock).

    ``received``: the datagram was read; ``started``: its policy call began;
    ``generate_s``: the policy call (shared by a batch); ``write_s``: writing its
    .mid/.json files; ``finished``: its last reply was sent.
    """

    rid: Any
    received: float
    started: float
    generate_s: float
    write_s: float
    finished: float


def tag_of(value: Any) -> str:
    """The OSC type tag a reply value is sent with."""
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, int):
        return "i" if -(2**31) <= value < 2**31 else "h"
    if isinstance(value, float):
        return "f"
    return "s"


class Delivery:
    """Writes clips into ``folder`` and sends replies from the server's socket (set by the server once bound)."""

    def __init__(self, folder: ClipFolder, live: LiveClient, writers: int = 4) -> None:
        self.folder = folder
        self.live = live
        self.sock: socket.socket | None = None
        #: Timings of the most recent generate requests, newest last.
        self.timings: deque[Timing] = deque(maxlen=4096)
        self._writers = ThreadPoolExecutor(max_workers=max(1, writers), thread_name_prefix="qriff-write")
        self._json_writers = ThreadPoolExecutor(max_workers=max(1, writers), thread_name_prefix="qriff-json")
        self._lock = threading.Lock()
        #: Where unexpected failures of jobs are logged (the server shares its own).
        self.failures = FailureLog(log)

    def close(self) -> None:
        self._writers.shutdown(wait=True)
        self._json_writers.shutdown(wait=True)
        self.live.close()

    # ------------------------------------------------------------------ replies
    def reply(self, dest: Address, address: str, rid: Any, rtag: str, *args: Any, tags: str | None = None) -> None:
        """Send ``address rid args...``; the id keeps the OSC type it arrived with."""
        if tags is None:
            tags = "".join(tag_of(a) for a in args)
        self.send([encode(address, (rid, *args), rtag + tags)], dest)

    def send(self, datagrams: list[bytes], dest: Address) -> None:
        """Send ``datagrams`` to ``dest`` back to back (:func:`~bridge.transport.send_burst`); failures are logged."""
        sock = self.sock
        if sock is None:
            return
        try:
            send_burst(sock, datagrams, dest)
        except OSError as exc:  # an unreachable requester must not take the server down
            log.warning("cannot send %d datagrams (%d bytes) to %s:%d: %s", len(datagrams),
                        sum(map(len, datagrams)), dest[0], dest[1], exc)

    def error(self, dest: Address, rid: Any, rtag: str, code: str, message: str) -> None:
        """``/qriff/error id code message``, the message cut to fit one datagram of MAX_DATAGRAM bytes."""
        budget = MAX_DATAGRAM - 96
        raw = message.encode("utf-8")
        if len(raw) > budget:
            message = raw[:budget - 3].decode("utf-8", "ignore") + "..."
        self.reply(dest, f"{PREFIX}/error", rid, rtag, code, message)

    def fail(self, batch: list[Job], exc: Exception) -> None:
        """Answer every job of ``batch`` with the error reply ``exc`` maps to."""
        if isinstance(exc, BridgeError):
            code = exc.code
        elif isinstance(exc, ModelError):
            code = "model"
        elif isinstance(exc, EngineError):
            code = "render" if batch[0].kind == "render" else "bad_value"
        else:
            self.failures.record(f"{batch[0].kind} request {batch[0].rid!r}", exc)
            code = "internal"
        message = str(exc) if code != "internal" else f"{type(exc).__name__}: {exc} (see the server log)"
        for job in batch:
            self.error(job.dest, job.rid, job.rtag, code, message)

    # ------------------------------------------------------------------ clips
    def hand_off(self, job: Job, clips: list[Clip], seed: int, idle: bool) -> None:
        """Deliver now when nothing waits (lowest latency); else let a writer thread do it.

        Delivering means writing a .mid and a .json per clip, which on a busy disk costs
        milliseconds; the writer threads overlap that with the next policy call.
        """
        if idle:
            self._deliver_safely(job, clips, seed)
        else:
            self._writers.submit(self._deliver_safely, job, clips, seed)

    def _deliver_safely(self, job: Job, clips: list[Clip], seed: int) -> None:
        try:
            self._deliver(job, clips, seed)
        except Exception as exc:
            self.fail([job], exc)

    def _deliver(self, job: Job, clips: list[Clip], seed: int) -> None:
        p = job.params
        number = self.folder.next_number()
        names: list[str] = []
        write_s = 0.0
        for v, clip in enumerate(clips):
            name, seconds = self._send_clip(job, clip, v, len(clips), seed, f"{number:06d}-{v}")
            names.append(name)
            write_s += seconds
        end = time.perf_counter()
        self.folder.remember(names)
        with self._lock:
            self.timings.append(Timing(job.rid, job.received, job.started, job.generate_s, write_s, end))
        if p.get("live_track", -1) >= 0:
            for v, clip in enumerate(clips):
                self.push(job, clip, v, len(clips), p["live_track"], p["live_slot"] + v)

    def _send_clip(self, job: Job, clip: Clip, variation: int, variations: int, seed: int,
                   stem: str) -> tuple[str, float]:
        """Write one clip's files, then send begin/track/notes/end back to back; (json name, write seconds).

        The replies go out as one burst after the files exist: on a loaded machine, waking the
        requester with a first datagram can cost the sender its CPU for a while, so nothing
        slow sits between the first reply and the last.
        """
        t0 = time.perf_counter()
        # The two files are written at the same time: on a busy disk each costs milliseconds.
        # (A separate pool: its tasks never wait on anything, so no delivery can deadlock on it.)
        json_done = self._json_writers.submit(write_clip_json, clip, self.folder.path / f"{stem}.json")
        midi = write_midi(clip, self.folder.path / f"{stem}.mid")
        data = json_done.result()
        seconds = time.perf_counter() - t0
        total = sum(len(t.notes) for t in clip.tracks)
        rid, rtag = job.rid, job.rtag
        burst = [encode(f"{PREFIX}/clip/begin", (rid, variation, variations, int(clip.bars), float(clip.tempo),
                                                 clip.key, clip.scale,
                                                 int(clip.seed if clip.seed is not None else seed), total,
                                                 clip_name(clip, variation, variations),
                                                 float(clip.length_beats)), rtag + "iiifssiisf")]
        for track in clip.tracks:
            burst.append(encode(f"{PREFIX}/clip/track", (rid, variation, track.role, int(track.program),
                                                         len(track.notes)), rtag + "isii"))
            for part in chunks(track.notes, NOTES_PER_CHUNK):
                flat: list[Any] = [rid]
                for n in part:
                    flat += (int(n.pitch), float(n.start), float(n.duration), int(n.velocity))
                burst.append(encode(f"{PREFIX}/clip/notes", flat, rtag + "iffi" * len(part)))
        burst.append(encode(f"{PREFIX}/clip/end", (rid, variation, total, str(midi), str(data)), rtag + "iiss"))
        self.send(burst, job.dest)
        return f"{stem}.json", seconds

    # ------------------------------------------------------------ Live, render
    def push(self, job: Job, clip: Clip, variation: int, variations: int, track: int, slot: int) -> None:
        """Each track of ``clip`` into consecutive Live tracks from ``track``; one pushed reply per track."""
        for i, part in enumerate(clip.tracks):
            name = clip_name(clip, variation, variations, part.role)
            result = self.live.push(clip, track + i, slot, name, role=part.role)
            self.reply(job.dest, f"{PREFIX}/live/pushed", job.rid, job.rtag, variation, result.track, result.slot,
                       result.name, result.notes, tags="iiisi")

    def rendered(self, job: Job, name: str, result: Any) -> None:
        """The stems, then the mix, of an :class:`engine.audio.render.RenderResult`; then ``/qriff/render/end``."""
        files = [(str(role), str(path)) for role, path in result.stems.items()] + [("mix", str(result.mix))]
        for role, path in files:
            self.reply(job.dest, f"{PREFIX}/render/stem", job.rid, job.rtag, role, path, tags="ss")
        self.reply(job.dest, f"{PREFIX}/render/end", job.rid, job.rtag, len(files), name, tags="is")
