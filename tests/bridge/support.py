"""Test helpers for the OSC bridge: a deterministic clip source and a python-osc peer.

The clip source is for tests only; ``qriff serve`` always uses the real policy.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from bridge.errors import BridgeError
from bridge.server import Server, ServerConfig
from engine.mdp import styles
from engine.music import theory, tokens
from engine.music.clip import Clip, Note, Track
from engine.music.request import GenerateRequest


class WalkSource:
    """Deterministic clips: eighth and quarter notes walking the scale, chosen by ``seed``.

    Validates its arguments with the engine's parsers, so bad input raises the same
    EngineError subclasses as the real policy. ``delay`` (seconds) simulates inference.
    """

    model_id = "test-walk"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[dict[str, Any]] = []

    def models(self) -> list[str]:
        return [self.model_id]

    def style_terms(self, model: str) -> tuple[str, ...]:
        self.select(model)
        return styles.BUILTIN_TERMS

    def select(self, model: str) -> str:
        """One model only: any other id is refused as PolicySource refuses an unknown one."""
        if model != self.model_id:
            raise BridgeError(f"model {model!r} is not known: allowed are {self.model_id} (see /qriff/list/models)",
                              code="not_found")
        return model

    def generate(self, request: GenerateRequest | None = None, /, *, model: str | None = None,
                 **options: Any) -> list[Clip]:
        """As :meth:`Policy.generate`: a request, or keyword options that build one (checked alike)."""
        if model is not None:
            self.select(model)
        r = GenerateRequest.from_mapping(options, fill_from_primer=False) if request is None else request
        if options and request is not None:
            raise TypeError("generate() takes a GenerateRequest or keyword options, not both")
        key, scale, bars, count, seed, chords, style, roles, tempo, time_signature = (
            r.key, r.scale, r.bars, r.count, r.seed, r.chords, r.style, r.roles, r.tempo, r.time_signature)
        if seed is None:  # as the policy does: a new seed, recorded in the clips
            seed = int(np.random.SeedSequence().entropy % 2**30)
        self.calls.append(dict(key=key, scale=scale, bars=bars, count=count, seed=seed, temperature=r.temperature,
                               chords=chords, style=style, roles=roles, tempo=tempo,
                               time_signature=time_signature, primer=r.primer))
        tonic = theory.parse_key(key)
        steps = theory.SCALES[theory.parse_scale(scale)]
        weights = styles.parse_style(style)
        prog = theory.parse_progression(chords, tonic, scale) if chords else theory.default_progression(scale)
        if self.delay:
            time.sleep(self.delay)
        ts = theory.parse_time_signature(time_signature)
        beats_per_bar = ts[0] * 4.0 / ts[1]
        clips = []
        for v in range(count):
            rng = np.random.default_rng(seed + v)
            tracks = []
            for role in roles:
                home = tokens.home_tonic(tonic, role)
                notes, t, degree = [], 0.0, 0
                while t < bars * beats_per_bar - 1e-9:
                    dur = float(rng.choice([0.5, 0.5, 1.0]))
                    dur = min(dur, bars * beats_per_bar - t)
                    degree = int(np.clip(degree + rng.integers(-2, 3), -3, 9))
                    octave, idx = divmod(degree, len(steps))
                    notes.append(Note(pitch=home + 12 * octave + steps[idx], start=t, duration=dur,
                                      velocity=int(rng.integers(70, 110))))
                    t += dur
                tracks.append(Track(role=role, program=tokens.ROLE_PROGRAMS[role], notes=notes))
            clips.append(Clip(key=key, scale=theory.parse_scale(scale), tempo=tempo, time_signature=ts, bars=bars,
                              seed=seed + v, model=self.model_id, style=weights, chords=[c.symbol for c in prog],
                              tracks=tracks))
        return clips


def osc(address: str, *args: Any) -> bytes:
    """Encode a message with python-osc (an independent codec from the server's)."""
    b = OscMessageBuilder(address)
    for a in args:
        b.add_arg(a)
    return b.build().dgram


class Peer:
    """A UDP client on a free loopback port that sends requests and collects replies."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def send(self, address: str, *args: Any) -> None:
        self.sock.sendto(osc(address, *args), self.server)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendto(data, self.server)

    def recv(self, timeout: float = 5.0) -> tuple[str, list[Any], bytes]:
        """The next reply as (address, params, raw datagram); TimeoutError if none comes."""
        self.sock.settimeout(timeout)
        data, _ = self.sock.recvfrom(65536)
        msg = OscMessage(data)
        return msg.address, list(msg.params), data

    def request(self, address: str, *args: Any, until: str | None = None, timeout: float = 5.0,
                count: int = 1) -> list[tuple[str, list[Any]]]:
        """Send, then collect replies until ``count`` replies on ``until`` (default: the first reply) or an error."""
        self.send(address, *args)
        out: list[tuple[str, list[Any]]] = []
        seen = 0
        deadline = time.monotonic() + timeout
        while True:
            addr, params, _ = self.recv(max(0.01, deadline - time.monotonic()))
            out.append((addr, params))
            if addr == "/qriff/error" or until is None:
                return out
            if addr == until:
                seen += 1
                if seen >= count:
                    return out

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def running_server(tmp_path: Path, source: Any = None, **config: Any) -> Iterator[Server]:
    """A started server on a free loopback port writing into ``tmp_path / 'out'`` (unless ``out_dir`` is given),
    recording verdicts in ``tmp_path / 'feedback.sqlite'``."""
    config.setdefault("feedback_store", tmp_path / "feedback.sqlite")
    config.setdefault("out_dir", tmp_path / "out")
    cfg = ServerConfig(port=0, **config)
    server = Server(cfg, source if source is not None else WalkSource())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def free_udp_port() -> int:
    """A UDP port that was free a moment ago on loopback."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class OscDump:
    """liblo's ``oscdump`` listening on a free port; :meth:`lines` returns what it printed.

    Each line is ``<timetag> <address> <types> <values...>``.
    """

    def __init__(self, exe: str) -> None:
        import subprocess
        import threading

        self.port = free_udp_port()
        self.proc = subprocess.Popen([exe, "-L", str(self.port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        # oscdump prints nothing when ready: probe until a message shows up
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        deadline = time.monotonic() + 10
        while not any("/oscdump/ready" in x for x in self._lines):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"oscdump did not start on port {self.port}: {self._lines}")
            probe.sendto(osc("/oscdump/ready"), ("127.0.0.1", self.port))
            time.sleep(0.05)
        probe.close()
        time.sleep(0.05)
        self._lines.clear()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.append(line.rstrip("\n"))

    def lines(self, until: str | None = None, count: int = 1, timeout: float = 5.0) -> list[str]:
        """Lines printed so far; with ``until``, first wait for ``count`` lines containing it."""
        deadline = time.monotonic() + timeout
        while until is not None and sum(until in x for x in self._lines) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"oscdump never printed {until!r} x{count}; got {self._lines}")
            time.sleep(0.01)
        return list(self._lines)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except Exception:
            self.proc.kill()
            self.proc.wait()


def parse_oscdump(line: str) -> tuple[str, str, list[str]]:
    """(address, types, value texts) of one oscdump line; strings keep their quotes removed."""
    import shlex

    parts = shlex.split(line)
    _, address = parts[0], parts[1]
    if len(parts) == 2:
        return address, "", []
    return address, parts[2], parts[3:]
