"""The OSC server behind ``qriff serve``: the receive loop and its wiring.

The server is three parts:

* this module: the UDP socket and one thread running a blocking receive loop. Each
  datagram is checked against the allow list, decoded (:mod:`bridge.datagrams`:
  python-osc under a strict layer) and each message routed by the dispatcher built
  from the address table (:mod:`bridge.dispatch`). Quick requests (ping, get, set,
  list) are answered inline, so a slow request never delays a ping.
* :mod:`bridge.jobs` and :mod:`bridge.workers`: generate, render and Live pushes wait
  in a bounded queue for worker threads; beyond ``queue_size`` waiting jobs a request is refused at once with
  ``/qriff/error id busy ...``, so a flood never grows memory. (python-osc's
  ThreadingOSCUDPServer starts a thread per datagram, which costs milliseconds at the
  tail; this design costs none.)
* :mod:`bridge.delivery`: clip files (in a :class:`~bridge.clipfiles.ClipFolder`), reply
  bursts, Live pushes and error replies.

Replies go to the sender's host: to the sender's port, or to ``reply_port`` (a
request option, a session default, or ``--reply-port``), because Max's ``[udpsend]``
and Pd's ``[netsend]`` send from an ephemeral port while ``[udpreceive]`` /
``[netreceive]`` listen on a fixed one. Replies never go to another host.

Malformed datagrams never stop the server: each is answered with
``/qriff/error -1 malformed ...`` and logged (rate-limited). Nothing from the network
chooses a file path: clips are written as ``<out>/<request number>-<variation>.mid``,
request numbers continuing after the highest already in the folder (a restart never
writes over an earlier session's clips), and a clip named in a request must be a plain
file name inside the output folder.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge import dispatch, protocol
from bridge.ableton import LIVE_PORT, LIVE_REPLY_PORT, LiveClient
from bridge.clipfiles import ClipFolder
from bridge.datagrams import Message, decode
from bridge.delivery import Delivery, Timing
from bridge.errors import BridgeError, ConfigError, FailureLog, MalformedDatagram
from bridge.jobs import Job, JobQueue
from bridge.protocol import Request
from bridge.source import ClipSource
from bridge.verdicts import PendingVerdict, VerdictWriter
from bridge.workers import Workers
from engine import __version__
from engine.base.errors import EngineError

log = logging.getLogger(__name__)

Address = tuple[str, int]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK_NETWORKS: tuple[IPNetwork, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
__all__ = ["LOOPBACK_NETWORKS", "Server", "ServerConfig", "Timing", "default_out_dir"]


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
    """Where AbletonOSC's replies arrive. AbletonOSC always answers on 11001: only tests change this."""
    live_timeout: float = 1.0
    """Seconds to wait for each AbletonOSC answer."""
    live_create_scenes: bool = True
    """Add a scene when the target track has no empty clip slot from the requested one."""
    feedback_store: Path | None = None
    """The keep/discard store (None: ``$QRIFF_FEEDBACK_DB``, else the user data folder); opened on first use."""



class Server:
    """The OSC bridge. ``start()`` runs it in a background thread; ``serve_forever()`` in the caller's.

    It is the :class:`~bridge.protocol.Context` its request handlers work with.
    """

    def __init__(self, config: ServerConfig, source: ClipSource, live: LiveClient | None = None) -> None:
        self.config = config
        self.source = source
        self.out_dir = Path(config.out_dir).expanduser().resolve()
        live = live or LiveClient(config.live_host, config.live_port, config.live_reply_port, config.live_timeout,
                                  config.live_create_scenes)
        self.folder = ClipFolder(self.out_dir)
        self.delivery = Delivery(self.folder, live, config.writers)
        self.queue = JobQueue(config.queue_size)
        self.workers = Workers(self.queue, source, self.delivery, self.folder, config.workers)
        self.dispatcher = dispatch.from_table()
        self.session: dict[str, Any] = protocol.defaults()
        self.session["reply_port"] = config.reply_port
        self._sock: socket.socket | None = None
        self.verdicts = VerdictWriter(config.feedback_store, self.delivery)
        self._stopping = threading.Event()
        self._loop_thread: threading.Thread | None = None
        self._served = 0
        self._malformed = 0
        #: Unexpected failures (bugs): counted, logged with one traceback a minute at most.
        self.failures = FailureLog(log)
        self.delivery.failures = self.failures
        self._allow = tuple(config.allow)
        if not self._allow and self.binds_loopback():
            self._allow = LOOPBACK_NETWORKS

    @property
    def timings(self) -> deque[Timing]:
        """Timings of the most recent generate requests, newest last."""
        return self.delivery.timings

    # --------------------------------------------------------------- lifecycle
    def binds_loopback(self) -> bool:
        """True when the configured host is a loopback address (only this machine can reach it)."""
        try:
            infos = socket.getaddrinfo(self.config.host, None, type=socket.SOCK_DGRAM)
            return bool(infos) and all(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback for i in infos)
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
        self.folder.continue_numbering()
        sock.settimeout(0.2)
        self._sock = sock
        self.delivery.sock = sock
        return self.address

    @property
    def address(self) -> Address:
        """The bound (host, port)."""
        if self._sock is None:
            raise BridgeError("the server is not bound yet: call bind() or start() first")
        host, port = self._sock.getsockname()[:2]
        return host, port

    def serve_forever(self) -> None:
        """Receive and answer datagrams until :meth:`stop` (or a signal handler calling it)."""
        self.bind()
        if not self.workers.started:
            self.workers.start()
        log.info("qriff serve listening on %s:%d, clips in %s", *self.address, self.out_dir)
        try:
            self._loop()
        finally:
            self._shutdown()

    def start(self) -> Server:
        """Bind and serve in a background thread (tests, benchmarks, embedding)."""
        self.bind()
        self.workers.start()
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
        for job in self.workers.stop():
            self.delivery.error(job.dest, job.rid, job.rtag, "shutdown", "the server stopped before this request ran")
        self.verdicts.stop()  # every queued verdict is stored and answered first
        self.delivery.close()
        self.delivery.sock = None
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
            except Exception as exc:  # the loop must survive anything a datagram triggers
                self.failures.record(f"datagram from {addr[0]}:{addr[1]}", exc)
                self.delivery.error(self._dest(addr, None), -1, "i", "internal",
                                    f"unexpected {type(exc).__name__} inside qriff while reading the datagram; "
                                    "nothing was done (see the server log)")

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

    def _dest(self, addr: Address, reply_port: int | None) -> Address:
        return addr[0], int(reply_port or self.session.get("reply_port") or addr[1])

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
            self.delivery.error(self._dest(addr, None), -1, "i", exc.code, str(exc))
            return
        for msg in messages:
            self._on_message(msg, addr)

    def _on_message(self, msg: Message, addr: Address) -> None:
        reply_port = dispatch.reply_port_of(msg)
        rid: Any = -1
        rtag = "i"
        try:
            rid, rtag, args = dispatch.split_request(msg)
            route = self.dispatcher.route(msg.address)
            options = dispatch.options_of(msg.address, args)
            route(self, Request(msg.address, rid, rtag, tuple(args), options, addr, reply_port))
            self._served += 1
        except BridgeError as exc:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s from %s: %s %s", msg.address, addr[0], exc.code, exc)
            self.delivery.error(self._dest(addr, reply_port), rid, rtag, exc.code, str(exc))
        except Exception as exc:  # a bug: the sender still hears about it, and the loop goes on
            self.failures.record(f"{msg.address} from {addr[0]}:{addr[1]}", exc)
            self.delivery.error(self._dest(addr, reply_port), rid, rtag, "internal",
                                f"{msg.address}: unexpected {type(exc).__name__} inside qriff; the request was not "
                                "carried out (see the server log)")

    # ---------------------------------------------------------------- context
    def reply(self, request: Request, address: str, *args: Any) -> None:
        """Answer ``request`` on ``address`` with its id and ``args``."""
        self.delivery.reply(self._dest(request.sender, request.reply_port), address, request.rid, request.rtag, *args)

    def read(self, name: str) -> Any:
        """The value of a property the server holds (the read-only ones and ``model``)."""
        values = {"version": lambda: __version__, "model": lambda: self.source.model_id,
                  "out": lambda: str(self.out_dir), "port": lambda: self.address[1], "queue": lambda: len(self.queue),
                  "served": lambda: self._served, "malformed": lambda: self._malformed}
        return values[name]()

    def write(self, name: str, value: Any) -> Any:
        """Switch the current model (the only writable property the server holds)."""
        if name != "model":
            raise KeyError(name)
        return self.source.select(value)

    def models(self) -> list[str]:
        try:
            return list(self.source.models())
        except EngineError as exc:
            log.warning("cannot list models: %s", exc)
            return []

    def style_terms(self, model: str) -> tuple[str, ...]:
        return tuple(self.source.style_terms(model))

    def judge(self, request: Request, clip: str, verdict: str, stars: int | None, source: str) -> None:
        """Queue a checked verdict on the clip file ``clip`` for the verdict writer, which stores and answers it."""
        path = self.folder.clip_path(clip)
        self.verdicts.submit(PendingVerdict(self._dest(request.sender, request.reply_port), request.rid,
                                            request.rtag, clip, path, verdict, stars, source))

    def enqueue(self, kind: str, request: Request, params: dict[str, Any]) -> None:
        dest = self._dest(request.sender, request.reply_port)
        self.queue.put(Job(kind, request.rid, request.rtag, dest, params, time.perf_counter()))
