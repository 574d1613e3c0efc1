"""The OSC server behind ``qriff serve``.

One thread runs a blocking UDP receive loop and answers the quick requests (ping,
get, set, list) inline; generate, render and Live pushes go through a bounded queue
to worker threads, so a slow request never delays a ping and a flood of requests
never grows memory: beyond ``queue_size`` waiting jobs a request is refused at once
with ``/qriff/error id busy ...``. (python-osc's ThreadingOSCUDPServer starts a thread
per datagram, which costs milliseconds at the tail; this design costs none.)

Replies go to the sender's host: to the sender's port, or to ``reply_port`` (a
request option, a session default, or ``--reply-port``), because Max's ``[udpsend]``
and Pd's ``[netsend]`` send from an ephemeral port while ``[udpreceive]`` /
``[netreceive]`` listen on a fixed one. Replies never go to another host.

Malformed datagrams never stop the server: each is answered with
``/qriff/error -1 malformed ...`` and logged (rate-limited). Nothing from the network
chooses a file path: clips are written as ``<out>/<request number>-<variation>.mid``
and a clip named in a request must be a plain file name inside the output folder.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import os
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge import protocol
from bridge.ableton import LIVE_PORT, LIVE_REPLY_PORT, LiveClient, clip_name
from bridge.clipfiles import write_clip_json
from bridge.datagrams import MAX_DATAGRAM, NOTES_PER_CHUNK, Message, chunks, decode, encode
from bridge.errors import BridgeError, ConfigError, MalformedDatagram, RequestError
from bridge.protocol import PREFIX
from bridge.smf import write_smf
from bridge.source import ClipSource
from bridge.transport import send_burst
from engine import __version__
from engine.errors import EngineError, ModelError
from engine.music.clip import Clip, load_clip

log = logging.getLogger(__name__)

Address = tuple[str, int]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK_NETWORKS: tuple[IPNetwork, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def default_out_dir() -> Path:
    """Where clips go unless ``--out`` says otherwise: the user's data folder (platformdirs)."""
    from platformdirs import user_data_path

    return user_data_path("qriff", appauthor=False) / "clips"


@dataclass
class ServerConfig:
    """Everything ``qriff serve`` can set. Ports are UDP; times in seconds."""

    host: str = "127.0.0.1"
    """Interface to bind. Anything but loopback exposes the server to the network."""
    port: int = 9000
    """Port to listen on (0 picks a free one; see :attr:`Server.address`)."""
    reply_port: int = 0
    """Default port for replies on the sender's host; 0 replies to the sender's own port."""
    out_dir: Path = field(default_factory=default_out_dir)
    """Folder for the .mid/.json clips and rendered stems."""
    allow: tuple[IPNetwork, ...] = ()
    """Sender networks accepted; empty = loopback only when bound to loopback, else everyone."""
    queue_size: int = 64
    """Generate/render/push jobs that may wait; more are refused with ``busy``."""
    workers: int = 1
    """Threads running jobs (onnxruntime runs each on one core)."""
    writers: int = 4
    """Threads writing clip files and their replies while the workers generate the next ones."""
    live_host: str = "127.0.0.1"
    """Host running Ableton Live with AbletonOSC."""
    live_port: int = LIVE_PORT
    """AbletonOSC's listening port."""
    live_reply_port: int = LIVE_REPLY_PORT
    """Port where AbletonOSC sends replies and /live/error."""
    live_timeout: float = 1.0
    """Seconds to wait for each AbletonOSC answer."""


@dataclass
class Job:
    """A queued request: what to do, whom to answer and the resolved options."""

    kind: str
    rid: Any
    rtag: str
    dest: Address
    params: dict[str, Any]
    received: float
    generate_s: float = 0.0
    started: float = 0.0


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


_STOP = object()
#: Most clips one batched policy call makes (requests with default seeds queued back to back).
MAX_BATCH = 32


class Server:
    """The OSC bridge. ``start()`` runs it in a background thread; ``serve_forever()`` in the caller's."""

    def __init__(self, config: ServerConfig, source: ClipSource, live: LiveClient | None = None) -> None:
        self.config = config
        self.source = source
        self.live = live or LiveClient(config.live_host, config.live_port, config.live_reply_port,
                                       config.live_timeout)
        self.out_dir = Path(config.out_dir).expanduser().resolve()
        self.session: dict[str, Any] = protocol.defaults()
        self.session["reply_port"] = config.reply_port
        self._sock: socket.socket | None = None
        self._jobs: deque[Any] = deque()
        self._jobs_cv = threading.Condition()
        self._queue_size = max(1, config.queue_size)
        #: Timings of the most recent generate requests, newest last.
        self.timings: deque[Timing] = deque(maxlen=4096)
        self._writers = ThreadPoolExecutor(max_workers=max(1, config.writers), thread_name_prefix="qriff-write")
        self._json_writers = ThreadPoolExecutor(max_workers=max(1, config.writers), thread_name_prefix="qriff-json")
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._loop_thread: threading.Thread | None = None
        self._counter = itertools.count(1)
        self._rng = random.Random()
        self._last_clips: list[str] = []
        self._served = 0
        self._malformed = 0
        self._allow = tuple(config.allow)
        if not self._allow and self.binds_loopback():
            self._allow = LOOPBACK_NETWORKS

    # --------------------------------------------------------------- lifecycle
    def binds_loopback(self) -> bool:
        """True when the configured host is a loopback address (only this machine can reach it)."""
        try:
            infos = socket.getaddrinfo(self.config.host, None, type=socket.SOCK_DGRAM)
            return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)
        except (OSError, ValueError):
            return False

    def bind(self) -> Address:
        """Open the UDP socket; returns the (host, port) actually bound."""
        if self._sock is not None:
            return self.address
        try:
            infos = socket.getaddrinfo(self.config.host, self.config.port, type=socket.SOCK_DGRAM)
        except socket.gaierror as exc:
            raise ConfigError(f"--host {self.config.host!r} cannot be resolved: {exc.strerror}") from None
        family, _, _, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.bind(sockaddr)
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot listen on {self.config.host}:{self.config.port}: {exc.strerror} "
                              "(is another qriff serve running? pick another --port)") from None
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if not os.access(self.out_dir, os.W_OK):
                raise PermissionError(13, "not writable")
        except OSError as exc:
            sock.close()
            raise ConfigError(f"--out {str(self.out_dir)!r} cannot hold clips: {exc.strerror or exc} "
                              "(give a writable folder)") from None
        sock.settimeout(0.2)
        self._sock = sock
        return self.address

    @property
    def address(self) -> Address:
        """The bound (host, port)."""
        if self._sock is None:
            raise BridgeError("the server is not bound yet: call bind() or start() first")
        host, port = self._sock.getsockname()[:2]
        return host, port

    def _start_workers(self) -> None:
        for i in range(max(1, self.config.workers)):
            t = threading.Thread(target=self._worker, name=f"qriff-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def serve_forever(self) -> None:
        """Receive and answer datagrams until :meth:`stop` (or a signal handler calling it)."""
        self.bind()
        if not self._threads:
            self._start_workers()
        log.info("qriff serve listening on %s:%d, clips in %s", *self.address, self.out_dir)
        try:
            self._loop()
        finally:
            self._shutdown()

    def start(self) -> Server:
        """Bind and serve in a background thread (tests, benchmarks, embedding)."""
        self.bind()
        self._start_workers()
        self._loop_thread = threading.Thread(target=self._run_background, name="qriff-serve", daemon=True)
        self._loop_thread.start()
        return self

    def _run_background(self) -> None:
        try:
            self._loop()
        finally:
            self._shutdown()

    def stop(self, wait: bool = True) -> None:
        """Ask the server to stop; with ``wait``, until its threads have finished."""
        self._stopping.set()
        self._wake()
        if wait and self._loop_thread is not None and self._loop_thread is not threading.current_thread():
            self._loop_thread.join(timeout=10)

    def _wake(self) -> None:
        """Send an empty datagram to the receive loop so it sees the stop flag at once."""
        sock = self._sock
        if sock is None:
            return
        try:
            host, port = sock.getsockname()[:2]
            host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
            with socket.socket(sock.family, socket.SOCK_DGRAM) as poke:
                poke.sendto(b"", (host, port))
        except OSError:
            pass  # the loop still notices the flag within its 0.2 s receive timeout

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _shutdown(self) -> None:
        # Answer what is still queued, then let the workers finish their current job.
        with self._jobs_cv:
            pending = [job for job in self._jobs if isinstance(job, Job)]
            self._jobs.clear()
            self._jobs.extend([_STOP] * len(self._threads))
            self._jobs_cv.notify_all()
        for job in pending:
            self._error(job.dest, job.rid, job.rtag, "shutdown", "the server stopped before this request ran")
        for t in self._threads:
            t.join(timeout=30)
        self._threads.clear()
        self._writers.shutdown(wait=True)
        self._json_writers.shutdown(wait=True)
        self.live.close()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        log.info("qriff serve stopped after %d requests (%d malformed datagrams)", self._served, self._malformed)

    # ------------------------------------------------------------ receive loop
    def _loop(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._stopping.is_set():
            try:
                data, addr = sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError as exc:
                if self._stopping.is_set():
                    break
                log.warning("receive failed: %s", exc)  # e.g. ICMP port unreachable echoed back
                continue
            if self._stopping.is_set():
                break
            try:
                self._on_datagram(data, addr)
            except Exception:  # the loop must survive anything a datagram triggers
                log.exception("unexpected failure handling a datagram from %s:%d", addr[0], addr[1])

    def _allowed(self, host: str) -> bool:
        if not self._allow:
            return True
        try:
            ip = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self._allow)

    def _on_datagram(self, data: bytes, addr: Address) -> None:
        if not self._allowed(addr[0]):
            log.debug("datagram from %s refused by the allow list", addr[0])
            return
        try:
            messages = decode(data)
        except MalformedDatagram as exc:
            self._malformed += 1
            if self._malformed <= 10 or self._malformed % 1000 == 0:
                log.warning("malformed datagram #%d (%d bytes) from %s:%d: %s", self._malformed, len(data),
                            addr[0], addr[1], exc)
            self._error(self._dest(addr, {}), -1, "i", exc.code, str(exc))
            return
        for msg in messages:
            self._on_message(msg, addr)

    def _dest(self, addr: Address, options: dict[str, Any]) -> Address:
        port = options.get("reply_port") or self.session.get("reply_port") or addr[1]
        return addr[0], int(port)

    def _on_message(self, msg: Message, addr: Address) -> None:
        args, tags = list(msg.args), msg.tags
        rid: Any = -1
        rtag = "i"
        options: dict[str, Any] = {}
        try:
            # reply_port is honoured before anything else can fail, so errors reach a Max/Pd listener too.
            method = protocol.method(msg.address)
            if method is not None and method.options:
                options.update(_find_reply_port(args[1:]))
            elif len(args) >= 3 and isinstance(args[-2], str) and args[-2].strip().lower() == "reply_port" \
                    and not msg.address.startswith(f"{PREFIX}/set/"):
                options["reply_port"] = protocol.as_int("reply_port", args[-1], 1, 65535)
                args, tags = args[:-2], tags[:-2]
            rid, rtag = protocol.check_request_id(msg.address, args, tags)
            if method is not None:
                options.update(protocol.parse_options(msg.address, args[1:], method.options))
            self._route(msg.address, rid, rtag, args[1:], addr, options)
        except BridgeError as exc:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s from %s: %s %s", msg.address, addr[0], exc.code, exc)
            self._error(self._dest(addr, options), rid, rtag, exc.code, str(exc))

    def _route(self, address: str, rid: Any, rtag: str, args: list[Any], addr: Address,
               options: dict[str, Any]) -> None:
        if address == f"{PREFIX}/ping":
            self._reply(self._dest(addr, options), f"{PREFIX}/pong", rid, rtag, __version__)
        elif address == f"{PREFIX}/generate":
            params = protocol.resolve(options, self.session)
            self._check_chords(params)
            self._enqueue(Job("generate", rid, rtag, self._dest(addr, options), params, time.perf_counter()))
        elif address in (f"{PREFIX}/render", f"{PREFIX}/live/push"):
            params = protocol.resolve(options, self.session)
            kind = "render" if address.endswith("render") else "push"
            self._enqueue(Job(kind, rid, rtag, self._dest(addr, options), params, time.perf_counter()))
        elif address.startswith(f"{PREFIX}/get/"):
            self._expect_no_args(address, args)
            name = address[len(PREFIX) + 5:]
            self._reply(self._dest(addr, options), address, rid, rtag, self._get(name, address))
        elif address.startswith(f"{PREFIX}/set/"):
            name = address[len(PREFIX) + 5:]
            prop = protocol.PROPERTIES.get(name)
            if prop is None or not prop.writable:
                known = ", ".join(p.name for p in protocol.PROPERTIES_RW)
                hint = " is read-only" if prop is not None else " is not a property"
                raise RequestError(f"{address}: {name!r}{hint}; writable: {known}", code="unknown_address")
            if len(args) != 1:
                raise RequestError(f"{address} takes the id and one value, got {len(args)} values after the id "
                                   f"(e.g. {address} 1 {prop.default})")
            assert prop.parse is not None
            value = prop.parse(args[0])
            if name == "chords":
                self._check_chords({**self.session, "chords": value})
            self.session[name] = value
            self._reply(self._dest(addr, options), address, rid, rtag, value)
        elif address.startswith(f"{PREFIX}/list/"):
            self._expect_no_args(address, args)
            items = protocol.list_items(address[len(PREFIX) + 6:], self._models())
            self._reply(self._dest(addr, options), address, rid, rtag, *items)
        else:
            raise RequestError(f"address {address!r} is not known: see /qriff/list/properties and the README's "
                               f"address table (methods: {', '.join(m.address for m in protocol.METHODS)})",
                               code="unknown_address")
        self._served += 1

    @staticmethod
    def _expect_no_args(address: str, args: Sequence[Any]) -> None:
        if args:
            raise RequestError(f"{address} takes only the request id (and optionally reply_port N), "
                               f"got {len(args)} more values")

    @staticmethod
    def _check_chords(params: dict[str, Any]) -> None:
        if params.get("chords"):
            from engine.music import theory

            try:
                theory.parse_progression(params["chords"], params["key"], params["scale"])
            except EngineError as exc:
                raise RequestError(f"chords: {exc}", code="bad_value") from None

    def _models(self) -> list[str]:
        try:
            return list(self.source.models())
        except EngineError as exc:
            log.warning("cannot list models: %s", exc)
            return []

    def _get(self, name: str, address: str) -> Any:
        if name in self.session:
            return self.session[name]
        if name == "version":
            return __version__
        if name == "model":
            return self.source.model_id
        if name == "out":
            return str(self.out_dir)
        if name == "port":
            return self.address[1]
        if name == "queue":
            return len(self._jobs)
        if name == "served":
            return self._served
        if name == "malformed":
            return self._malformed
        raise RequestError(f"{address}: {name!r} is not a property; properties are {', '.join(protocol.PROPERTIES)}",
                           code="unknown_address")

    def _enqueue(self, job: Job) -> None:
        with self._jobs_cv:
            if len(self._jobs) >= self._queue_size:
                raise BridgeError(f"{self._queue_size} requests are already waiting: retry when some clips have "
                                  "arrived (or start the server with a larger --queue)", code="busy")
            self._jobs.append(job)
            self._jobs_cv.notify()

    # -------------------------------------------------------------------- send
    def _reply(self, dest: Address, address: str, rid: Any, rtag: str, *args: Any, tags: str | None = None) -> None:
        if tags is None:
            tags = "".join(_tag(a) for a in args)
        data = encode(address, (rid, *args), rtag + tags)
        self._sendto(data, dest)

    def _sendto(self, data: bytes, dest: Address) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            sock.sendto(data, dest)
        except OSError as exc:  # an unreachable requester must not take the server down
            log.warning("cannot send %d bytes to %s:%d: %s", len(data), dest[0], dest[1], exc)

    def _error(self, dest: Address, rid: Any, rtag: str, code: str, message: str) -> None:
        # Keep the message short enough for Max/Pd: one datagram at most MAX_DATAGRAM bytes.
        budget = MAX_DATAGRAM - 96
        raw = message.encode("utf-8")
        if len(raw) > budget:
            message = raw[:budget - 3].decode("utf-8", "ignore") + "..."
        self._reply(dest, f"{PREFIX}/error", rid, rtag, code, message)

    # ------------------------------------------------------------------ workers
    def _take(self) -> list[Any]:
        """The next job, plus the compatible generate jobs queued right behind it (one batch)."""
        with self._jobs_cv:
            while not self._jobs:
                self._jobs_cv.wait()
            first = self._jobs.popleft()
            batch = [first]
            key = _batch_key(first)
            if key is not None:
                total = first.params["variations"]
                while self._jobs and _batch_key(self._jobs[0]) == key \
                        and total + self._jobs[0].params["variations"] <= MAX_BATCH:
                    job = self._jobs.popleft()
                    total += job.params["variations"]
                    batch.append(job)
            return batch

    def _worker(self) -> None:
        while True:
            batch = self._take()
            if batch[0] is _STOP:
                return
            try:
                if len(batch) > 1:
                    self._run_generate_batch(batch)
                elif batch[0].kind == "generate":
                    self._run_generate(batch[0])
                elif batch[0].kind == "render":
                    self._run_render(batch[0])
                else:
                    self._run_push(batch[0])
            except Exception as exc:  # every failure becomes an error reply; the worker lives on
                self._fail(batch, exc)

    def _fail(self, batch: list[Job], exc: Exception) -> None:
        """Answer every job of ``batch`` with the error reply ``exc`` maps to."""
        if isinstance(exc, BridgeError):
            code = exc.code
        elif isinstance(exc, ModelError):
            code = "model"
        elif isinstance(exc, EngineError):
            code = "render" if batch[0].kind == "render" else "bad_value"
        else:
            log.error("%s request %r failed", batch[0].kind, batch[0].rid, exc_info=exc)
            code = "internal"
        message = str(exc) if code != "internal" else f"{type(exc).__name__}: {exc} (see the server log)"
        for job in batch:
            self._error(job.dest, job.rid, job.rtag, code, message)


    def _clip_path(self, name: str) -> Path:
        path = (self.out_dir / name).resolve()
        if path.parent != self.out_dir:
            raise RequestError(f"clip {name!r} is not a file of the output folder {self.out_dir}", code="bad_value")
        if not path.is_file():
            raise RequestError(f"clip {name!r} does not exist in {self.out_dir} (use a name from a "
                               "/qriff/clip/end reply)", code="not_found")
        return path

    def _new_seed(self, count: int) -> int:
        # Variation i of a request uses seed + i, so leave room for the whole batch below MAX_SEED.
        return self._rng.randrange(protocol.MAX_SEED - max(count, MAX_BATCH))

    def _generate(self, p: dict[str, Any], count: int, seed: int) -> list[Clip]:
        primer = load_clip(self._clip_path(p["primer"])) if p.get("primer") else None
        num, den = (int(x) for x in p["time_signature"].split("/"))
        return self.source.generate(
            key=p["key"], scale=p["scale"], bars=p["bars"], count=count, seed=seed,
            temperature=p["temperature"], chords=p["chords"] or None, style=p["style"],
            roles=tuple(p["roles"].split("+")), tempo=p["tempo"], time_signature=(num, den), primer=primer,
            valence=p["valence"], arousal=p["arousal"])

    def _run_generate_batch(self, batch: list[Job]) -> None:
        """Requests that differ only in their (server-chosen) seeds: one policy call, seeds s, s+1, ..."""
        total = sum(job.params["variations"] for job in batch)
        seed = self._new_seed(total)
        t0 = time.perf_counter()
        clips = self._generate(batch[0].params, total, seed)
        for job in batch:
            job.started, job.generate_s = t0, time.perf_counter() - t0
        log.debug("batched %d generate requests (%d clips)", len(batch), total)
        start = 0
        for job in batch:
            n = job.params["variations"]
            self._hand_off(job, clips[start:start + n], seed + start)
            start += n

    def _run_generate(self, job: Job) -> None:
        p = job.params
        seed = p["seed"] if p["seed"] >= 0 else self._new_seed(p["variations"])
        t0 = time.perf_counter()
        job.started = t0
        clips = self._generate(p, p["variations"], seed)
        job.generate_s = time.perf_counter() - t0
        self._hand_off(job, clips, seed)

    def _hand_off(self, job: Job, clips: list[Clip], seed: int) -> None:
        """Deliver now when nothing waits (lowest latency); else let a writer thread do it.

        Delivering means writing a .mid and a .json per clip, which on a busy disk costs
        milliseconds; the writer threads overlap that with the next policy call.
        """
        with self._jobs_cv:
            idle = not self._jobs
        if idle:
            self._deliver_safely(job, clips, seed)
        else:
            self._writers.submit(self._deliver_safely, job, clips, seed)

    def _deliver_safely(self, job: Job, clips: list[Clip], seed: int) -> None:
        try:
            self._deliver(job, clips, seed)
        except Exception as exc:
            self._fail([job], exc)

    def _deliver(self, job: Job, clips: list[Clip], seed: int) -> None:
        p = job.params
        number = next(self._counter)
        names: list[str] = []
        write_s = 0.0
        for v, clip in enumerate(clips):
            name, seconds = self._send_clip(job, clip, v, len(clips), seed, f"{number:06d}-{v}")
            names.append(name)
            write_s += seconds
        end = time.perf_counter()
        with self._jobs_cv:
            self._last_clips = names
            self.timings.append(Timing(job.rid, job.received, job.started, job.generate_s, write_s, end))
        if p.get("live_track", -1) >= 0:
            for v, clip in enumerate(clips):
                self._push(job, clip, v, len(clips), p["live_track"], p["live_slot"] + v)

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
        json_done = self._json_writers.submit(write_clip_json, clip, self.out_dir / f"{stem}.json")
        midi = write_smf(clip, self.out_dir / f"{stem}.mid")
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
        sock = self._sock
        if sock is not None:
            try:
                send_burst(sock, burst, job.dest)
            except OSError as exc:  # an unreachable requester must not take the server down
                log.warning("cannot send %d datagrams to %s:%d: %s", len(burst), job.dest[0], job.dest[1], exc)
        return f"{stem}.json", seconds

    def _default_clip(self, job: Job) -> str:
        name = job.params.get("clip")
        if name:
            return name
        if not self._last_clips:
            raise RequestError("no clip given and none generated yet: send /qriff/generate first or name a clip "
                               "with 'clip NAME'", code="not_found")
        return self._last_clips[0]

    def _run_push(self, job: Job) -> None:
        name = self._default_clip(job)
        clip = load_clip(self._clip_path(name))
        track = job.params.get("track", max(0, job.params.get("live_track", 0)))
        slot = job.params.get("slot", job.params.get("live_slot", 0))
        self._push(job, clip, 0, 1, track, slot)

    def _push(self, job: Job, clip: Clip, variation: int, variations: int, track: int, slot: int) -> None:
        for i, part in enumerate(clip.tracks):
            name = clip_name(clip, variation, variations, part.role)
            result = self.live.push(clip, track + i, slot, name, role=part.role)
            self._reply(job.dest, f"{PREFIX}/live/pushed", job.rid, job.rtag, variation, result.track, result.slot,
                        result.name, result.notes, tags="iiisi")

    def _run_render(self, job: Job) -> None:
        try:
            from engine.audio.render import render_clip
        except ImportError:
            raise BridgeError("rendering is not available in this installation (engine.audio.render is missing)",
                              code="render") from None
        name = self._default_clip(job)
        clip = load_clip(self._clip_path(name))
        stem_dir = self.out_dir / f"{Path(name).stem}-stems"
        p = job.params
        result = render_clip(clip, stem_dir, preset=p["preset"], sample_rate=p["sample_rate"], fmt=p["format"],
                             quiet=True, pianoroll=False)
        files = _rendered_files(result)
        for role, path in files:
            self._reply(job.dest, f"{PREFIX}/render/stem", job.rid, job.rtag, role, str(path), tags="ss")
        self._reply(job.dest, f"{PREFIX}/render/end", job.rid, job.rtag, len(files), name, tags="is")


def _batch_key(job: Any) -> tuple[Any, ...] | None:
    """Jobs with equal keys can share one policy call; None for jobs that cannot be batched."""
    if not isinstance(job, Job) or job.kind != "generate":
        return None
    p = job.params
    if p["seed"] >= 0 or p.get("primer"):
        return None  # an explicit seed must give exactly the clip that seed gives alone
    return tuple(p[name] for name in _BATCH_FIELDS)


_BATCH_FIELDS = ("key", "scale", "bars", "tempo", "time_signature", "chords", "style", "temperature", "roles",
                 "valence", "arousal")


def _find_reply_port(pairs: Sequence[Any]) -> dict[str, int]:
    """``{"reply_port": N}`` when the key/value list holds a valid one, else empty."""
    for i in range(0, len(pairs) - 1, 2):
        name = pairs[i]
        if isinstance(name, str) and name.strip().lower() == "reply_port":
            try:
                return {"reply_port": protocol.as_int("reply_port", pairs[i + 1], 1, 65535)}
            except BridgeError:
                return {}
    return {}


def _rendered_files(result: Any) -> list[tuple[str, str]]:
    """(role, path) pairs from engine.audio.render's result: its stems, then the mix."""
    out: list[tuple[str, str]] = []
    stems = getattr(result, "stems", None)
    if isinstance(result, dict) and stems is None:
        stems = result
    if isinstance(stems, dict):
        out += [(str(role), str(path)) for role, path in stems.items()]
    elif stems is not None:
        out += [(Path(path).stem, str(path)) for path in stems]
    mix = getattr(result, "mix", None)
    if mix is not None and all(str(mix) != p for _, p in out):
        out.append(("mix", str(mix)))
    return out


def _tag(value: Any) -> str:
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, int):
        return "i" if -(2**31) <= value < 2**31 else "h"
    if isinstance(value, float):
        return "f"
    return "s"
