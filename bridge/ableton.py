"""Clips into Ableton Live's Session view through AbletonOSC.

AbletonOSC (a Live control surface script) listens on UDP 11000 and sends replies
and ``/live/error`` to the sender's host on port 11001. A push is:

1. ``/live/clip_slot/get/has_clip track slot`` for slot, slot+1, ... until an empty
   slot answers ``False`` (Magenta Studio also fills consecutive empty slots);
2. ``/live/clip_slot/create_clip track slot length_beats``;
3. ``/live/clip/add/notes track slot (pitch start duration velocity mute)*`` in chunks
   of :data:`NOTES_PER_LIVE_CHUNK` notes, because AbletonOSC does not chunk and a long
   note list overflows a datagram ("Message too long");
4. ``/live/clip/set/name track slot name``;
5. ``/live/clip/get/name track slot``, whose answer confirms that Live has the clip.

Any ``/live/error`` that arrives meanwhile, or silence past the timeout, fails the
push with :class:`~bridge.errors.LiveError`, which the server reports to the requester.
Ints are sent as OSC ``i`` (AbletonOSC's clip slot handlers do not cast floats),
times as ``f`` in beats, mute as ``F``.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from dataclasses import dataclass

from bridge.datagrams import MAX_DATAGRAM, Message, chunks, decode, encode
from bridge.errors import BridgeError, LiveError
from engine.music.clip import Clip, Note

log = logging.getLogger(__name__)

LIVE_PORT = 11000
LIVE_REPLY_PORT = 11001
#: Notes per ``/live/clip/add/notes`` message: 32 * 5 values + track/slot stay under MAX_DATAGRAM.
NOTES_PER_LIVE_CHUNK = 32
#: How many slots after the requested one are tried before giving up on finding an empty one.
MAX_SLOT_SEARCH = 64


@dataclass(frozen=True)
class PushResult:
    """Where a clip landed: ``track`` and ``slot`` indices (0-based), its name and note count."""

    track: int
    slot: int
    name: str
    notes: int


def clip_name(clip: Clip, variation: int, variations: int, role: str | None = None) -> str:
    """A Magenta-Studio-style clip name: ``"2/4 QRIFF D dorian"`` (plus the role for a second track)."""
    name = f"{variation + 1}/{variations} QRIFF {clip.key} {clip.scale}"
    return f"{name} {role}" if role and role != "lead" else name


def add_notes_messages(track: int, slot: int, notes: list[Note]) -> list[bytes]:
    """The ``/live/clip/add/notes`` datagrams for ``notes`` (each at most MAX_DATAGRAM bytes)."""
    out = []
    for part in chunks(notes, NOTES_PER_LIVE_CHUNK):
        args: list[object] = [track, slot]
        tags = "ii"
        for n in part:
            args += [int(n.pitch), float(n.start), float(n.duration), int(n.velocity), False]
            tags += "iffiF"
        data = encode("/live/clip/add/notes", args, tags)
        assert len(data) <= MAX_DATAGRAM, len(data)
        out.append(data)
    return out


class LiveClient:
    """Talks to AbletonOSC at ``host:port`` and listens for its replies on ``listen_port``.

    The listening socket is opened on the first push, so a server that never pushes
    never holds port 11001. ``timeout`` (seconds) bounds each wait for an answer.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = LIVE_PORT, listen_port: int = LIVE_REPLY_PORT,
                 timeout: float = 1.0) -> None:
        self.host, self.port, self.listen_port, self.timeout = host, port, listen_port, timeout
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ socket
    def _socket(self) -> socket.socket:
        if self._sock is None:
            try:
                loopback = ipaddress.ip_address(socket.gethostbyname(self.host)).is_loopback
            except (OSError, ValueError):
                loopback = False
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind(("127.0.0.1" if loopback else "0.0.0.0", self.listen_port))
            except OSError as exc:
                sock.close()
                raise LiveError(f"cannot listen on UDP port {self.listen_port} for AbletonOSC replies: {exc.strerror} "
                                "(another AbletonOSC client may hold it; use --live-reply-port)") from None
            self._sock = sock
        return self._sock

    def close(self) -> None:
        """Release the listening socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _send(self, address: str, args: list[object], tags: str) -> None:
        self._socket().sendto(encode(address, args, tags), (self.host, self.port))

    def _drain(self) -> None:
        sock = self._socket()
        sock.setblocking(False)
        try:
            while True:
                sock.recvfrom(65536)
        except (BlockingIOError, InterruptedError):
            pass
        finally:
            sock.setblocking(True)

    def _wait(self, address: str, prefix: tuple[int, ...], what: str) -> Message:
        """The next reply on ``address`` whose first args equal ``prefix``; LiveError on /live/error or timeout."""
        sock = self._socket()
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LiveError(f"AbletonOSC at {self.host}:{self.port} did not answer {what} within {self.timeout:g} s "
                                f"(is Live running with the AbletonOSC control surface, replying to port "
                                f"{self.listen_port}?)")
            sock.settimeout(left)
            try:
                data, _ = sock.recvfrom(65536)
            except TimeoutError:
                continue
            try:
                messages = decode(data)
            except BridgeError as exc:
                log.warning("unreadable datagram from AbletonOSC ignored: %s", exc)
                continue
            for msg in messages:
                if msg.address == "/live/error":
                    text = " ".join(str(a) for a in msg.args if a != "log") or "unspecified error"
                    raise LiveError(f"Live reported an error during {what}: {text}")
                if msg.address == address and tuple(msg.args[:len(prefix)]) == prefix:
                    return msg

    # -------------------------------------------------------------------- push
    def push(self, clip: Clip, track: int, slot: int, name: str, role: str | None = None) -> PushResult:
        """Create the clip (one track of it: ``role``, default the first) in the first empty slot from ``slot``."""
        part = clip.track(role) if role else clip.tracks[0]
        with self._lock:
            self._drain()
            chosen = None
            for s in range(slot, slot + MAX_SLOT_SEARCH):
                self._send("/live/clip_slot/get/has_clip", [track, s], "ii")
                reply = self._wait("/live/clip_slot/get/has_clip", (track, s), f"has_clip of track {track} slot {s}")
                if len(reply.args) >= 3 and not reply.args[2]:
                    chosen = s
                    break
            if chosen is None:
                raise LiveError(f"track {track} has no empty clip slot in {slot}..{slot + MAX_SLOT_SEARCH - 1}: "
                                "delete a clip or choose another slot")
            self._send("/live/clip_slot/create_clip", [track, chosen, float(clip.length_beats)], "iif")
            for data in add_notes_messages(track, chosen, part.notes):
                self._socket().sendto(data, (self.host, self.port))
            self._send("/live/clip/set/name", [track, chosen, name], "iis")
            self._send("/live/clip/get/name", [track, chosen], "ii")
            reply = self._wait("/live/clip/get/name", (track, chosen), "the clip check")
            got = reply.args[2] if len(reply.args) >= 3 else None
            if got != name:
                raise LiveError(f"Live holds a clip named {got!r} in track {track} slot {chosen}, expected {name!r}")
            return PushResult(track=track, slot=chosen, name=name, notes=len(part.notes))
