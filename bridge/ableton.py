"""Clips into Ableton Live's Session view through AbletonOSC, without surprises.

What AbletonOSC does (read in its source, ``abletonosc/osc_server.py``, ``manager.py``,
``clip_slot.py``, ``song.py``), and what this client does about it:

* It answers on UDP port 11001 of the sender's host, always; there is no way to ask
  for another port. So this client listens on 11001 (and sends from it).
* Live runs the script about every 100 ms (a "tick"). Each tick handles every queued
  datagram in order until one fails; the failure is reported as ``/live/error`` with
  one string, ``"Error handling OSC message: <exception>"``, which names neither the
  message nor its arguments, and the rest of the queue waits for the next tick, where
  each later failure gives its own error. So one bad push can leave errors arriving
  for several ticks.
* Therefore every exchange here ends with ``/live/test``, whose ``ok`` comes back only
  after everything sent before it was handled: what arrives before that ``ok``
  belongs to this exchange and nothing arrives after it, so a later request never
  sees a stale error. (``ok`` carries no id, so the client counts the tests it sent.)
* A push never writes blind. Per track of a clip it (1) reads the number of tracks
  and scenes and whether the track takes MIDI; (2) asks ``has_clip`` for every slot
  from the requested one to the last scene (a track has one slot per scene); (3) when
  none is empty, adds a scene at the end (unless ``create_scenes`` is off);
  (4) creates the clip and reads its length back; only when no error came back is the
  clip in that slot the one it just created (``create_clip`` fails on a filled slot),
  so (5) it adds the notes, names the clip and reads the name back. A user's clip is
  never written into.
* ``/live/clip/add/notes`` appends and AbletonOSC reads datagrams up to 64 KB (its own
  test sends 381 notes in one message): the notes of one track go in messages of at
  most :data:`NOTES_PER_LIVE_MESSAGE` notes, one message for any clip qriff makes.

Failures raise :class:`~bridge.errors.LiveError` naming the track, the slot and the
reason; the server answers them as ``/qriff/error id live "..."``. Indices are 0-based
as in AbletonOSC (track 0 is the first track, slot 0 the first scene).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bridge.datagrams import Message, chunks, decode, encode
from bridge.errors import BridgeError, LiveError
from engine.music.clip import Clip, Note

log = logging.getLogger(__name__)

#: AbletonOSC listens here.
LIVE_PORT = 11000
#: AbletonOSC sends every reply and /live/error here, on the sender's host (fixed in its source).
LIVE_REPLY_PORT = 11001
#: How often Live runs AbletonOSC (seconds).
LIVE_TICK = 0.1
#: Notes per ``/live/clip/add/notes`` message: 16 bars of 16th notes (about 5.4 KB), one message
#: for any clip qriff makes, well under the 64 KB AbletonOSC reads.
NOTES_PER_LIVE_MESSAGE = 256
#: has_clip queries sent in one exchange (a set may have hundreds of scenes).
SLOTS_PER_QUERY = 64


@dataclass(frozen=True)
class PushResult:
    """Where a clip landed: ``track`` and ``slot`` indices (0-based), its name, note count, scene added."""

    track: int
    slot: int
    name: str
    notes: int
    scene_created: bool = False


@dataclass
class Exchange:
    """What came back for one batch of messages: replies by (address, leading args), errors in order."""

    replies: dict[tuple[Any, ...], Message] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def value(self, address: str, *prefix: Any) -> Any:
        """The first argument after ``prefix`` of the reply on ``address``, or None when it did not come."""
        msg = self.replies.get((address, *prefix))
        if msg is None or len(msg.args) <= len(prefix):
            return None
        return msg.args[len(prefix)]


def clip_name(clip: Clip, variation: int, variations: int, role: str | None = None) -> str:
    """A Magenta-Studio-style clip name: ``"2/4 QRIFF D dorian"`` (plus the role for a second track)."""
    name = f"{variation + 1}/{variations} QRIFF {clip.key} {clip.scale}"
    return f"{name} {role}" if role and role != "lead" else name


def add_notes_messages(track: int, slot: int, notes: Sequence[Note]) -> list[bytes]:
    """The ``/live/clip/add/notes track slot (pitch start duration velocity mute)*`` datagrams for ``notes``."""
    out = []
    for part in chunks(notes, NOTES_PER_LIVE_MESSAGE):
        args: list[object] = [track, slot]
        for n in part:
            args += [int(n.pitch), float(n.start), float(n.duration), int(n.velocity), False]
        out.append(encode("/live/clip/add/notes", args, "ii" + "iffiF" * len(part)))
    return out


def _key(address: str, args: Sequence[Any]) -> tuple[Any, ...]:
    """How a reply is matched to its query: the address and the index arguments it echoes."""
    if address.startswith(("/live/clip/", "/live/clip_slot/")):
        return (address, *args[:2])
    if address.startswith("/live/track/"):
        return (address, *args[:1])
    return (address,)


class LiveClient:
    """Talks to AbletonOSC at ``host:port``; its replies arrive on ``listen_port`` (11001 in real use).

    The socket is opened on the first push, so a server that never pushes never holds
    port 11001. ``timeout`` (seconds) bounds each wait; a wait is extended while Live is
    visibly working through a backlog (each datagram that arrives restarts it), up to
    ten times ``timeout``. ``create_scenes``: add a scene when a track has no empty slot.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = LIVE_PORT, listen_port: int = LIVE_REPLY_PORT,
                 timeout: float = 1.0, create_scenes: bool = True) -> None:
        self.host, self.port, self.listen_port, self.timeout = host, port, listen_port, timeout
        self.create_scenes = create_scenes
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._tests_out = 0  # /live/test sent whose "ok" has not arrived
        self._lost_sync = False  # a wait timed out: late answers may still come

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
                raise LiveError(f"cannot listen on UDP port {self.listen_port} for AbletonOSC's replies: "
                                f"{exc.strerror} (AbletonOSC always answers on that port: close the other "
                                "AbletonOSC client using it, e.g. TouchOSC, a Max patch or a second qriff serve)"
                                ) from None
            self._sock = sock
        return self._sock

    def close(self) -> None:
        """Release the listening socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _send(self, address: str, args: Sequence[Any] = (), tags: str | None = None) -> None:
        self._sendraw(encode(address, args, tags))

    def _sendraw(self, data: bytes) -> None:
        self._socket().sendto(data, (self.host, self.port))

    def _read(self, deadline: float) -> list[Message] | None:
        """The messages of the next datagram, or None at the deadline."""
        sock = self._socket()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            sock.settimeout(left)
            try:
                data, _ = sock.recvfrom(65536)
            except TimeoutError:
                return None
            try:
                return decode(data)
            except BridgeError as exc:
                log.warning("unreadable datagram from AbletonOSC ignored: %s", exc)

    def _drain(self) -> None:
        """Drop what is already waiting; after a timed-out wait, also what comes until Live is quiet."""
        quiet = 3 * LIVE_TICK if self._lost_sync else 0.0
        sock = self._socket()
        while True:
            if quiet:
                sock.settimeout(quiet)
            else:
                sock.setblocking(False)
            try:
                data, _ = sock.recvfrom(65536)
                log.debug("stale datagram from AbletonOSC dropped (%d bytes)", len(data))
            except (BlockingIOError, InterruptedError, TimeoutError):
                break
        sock.setblocking(True)
        if self._lost_sync:
            self._tests_out = 0
            self._lost_sync = False

    # ---------------------------------------------------------------- exchange
    def _exchange(self, messages: Sequence[tuple[str, Sequence[Any], str] | bytes], what: str) -> Exchange:
        """Send ``messages`` and ``/live/test``; collect replies and errors until that test's ``ok``."""
        for m in messages:
            if isinstance(m, bytes):
                self._sendraw(m)
            else:
                self._send(*m)
        self._send("/live/test")
        self._tests_out += 1
        result = Exchange()
        deadline = time.monotonic() + self.timeout
        hard_deadline = time.monotonic() + 10 * self.timeout
        while True:
            msgs = self._read(min(deadline, hard_deadline))
            if msgs is None:
                self._lost_sync = True
                raise LiveError(f"AbletonOSC at {self.host}:{self.port} did not answer while qriff was {what} "
                                f"(waited {self.timeout:g} s; is Live running with AbletonOSC selected as a "
                                "Control Surface? raise --live-timeout if Live is busy)")
            deadline = time.monotonic() + self.timeout  # Live is answering: give it time for its backlog
            for msg in msgs:
                if msg.address == "/live/test":
                    self._tests_out -= 1
                    if self._tests_out <= 0:
                        self._tests_out = 0
                        return result
                    result = Exchange()  # that ok closed an older exchange: what came so far was stale
                elif msg.address == "/live/error":
                    result.errors.append(" ".join(str(a) for a in msg.args) or "unspecified error")
                else:
                    result.replies.setdefault(_key(msg.address, msg.args), msg)

    # -------------------------------------------------------------------- push
    def push(self, clip: Clip, track: int, slot: int, name: str, role: str | None = None) -> PushResult:
        """Put one track of ``clip`` (``role``, default the first) into the first empty slot from ``slot``."""
        part = clip.track(role) if role else clip.tracks[0]
        where = f"track {track} slot {slot}"
        with self._lock:
            self._drain()
            # 1. the set: tracks, scenes, and whether this track takes MIDI (asked last: it fails on a missing track)
            ex = self._exchange([("/live/song/get/num_tracks", (), ""), ("/live/song/get/num_scenes", (), ""),
                                 ("/live/track/get/has_midi_input", (track,), "i")], "reading the Live set")
            num_tracks = ex.value("/live/song/get/num_tracks")
            num_scenes = ex.value("/live/song/get/num_scenes")
            if not isinstance(num_tracks, int) or not isinstance(num_scenes, int):
                raise LiveError(f"{where}: Live did not report its tracks and scenes "
                                f"({'; '.join(ex.errors) or 'no answer'})")
            if track >= num_tracks:
                raise LiveError(f"{where}: there is no track {track}: the set has {num_tracks} tracks "
                                f"(0-based indices 0-{num_tracks - 1}); nothing was created")
            midi = ex.value("/live/track/get/has_midi_input", track)
            if midi is None:
                raise LiveError(f"{where}: Live did not say whether track {track} takes MIDI "
                                f"({'; '.join(ex.errors) or 'no answer'}); nothing was created")
            if not midi:
                raise LiveError(f"{where}: track {track} is not a MIDI track (an audio or group track cannot "
                                "hold a MIDI clip); choose a MIDI track; nothing was created")
            # 2. the first empty slot from `slot` (one slot per scene)
            chosen = self._first_empty(track, slot, num_scenes, where)
            created = False
            if chosen is None:
                past = slot >= num_scenes
                detail = (f"slot {slot} is past the last scene (the set has {num_scenes} scenes)" if past else
                          f"slots {slot}-{num_scenes - 1} all hold clips")
                if not self.create_scenes:
                    raise LiveError(f"{where}: no empty clip slot: {detail}; delete a clip, add a scene, or let "
                                    "qriff add scenes (qriff serve without --no-create-scenes); nothing was created")
                ex = self._exchange([("/live/song/create_scene", (-1,), "i"), ("/live/song/get/num_scenes", (), "")],
                                    "adding a scene")
                now = ex.value("/live/song/get/num_scenes")
                if ex.errors or not isinstance(now, int) or now <= num_scenes:
                    raise LiveError(f"{where}: no empty clip slot ({detail}) and Live did not add a scene "
                                    f"({'; '.join(ex.errors) or f'still {now} scenes'}); nothing was created")
                chosen, created = num_scenes, True
            at = f"track {track} slot {chosen}"
            # 3. create the clip and read its length back: no error means this slot holds our new clip
            length = float(clip.length_beats)
            ex = self._exchange([("/live/clip_slot/create_clip", (track, chosen, length), "iif"),
                                 ("/live/clip/get/length", (track, chosen), "ii")], "creating the clip")
            if ex.errors:
                raise LiveError(f"{at}: Live refused to create the clip ({'; '.join(ex.errors)}); the slot may have "
                                "been filled meanwhile; nothing was written")
            got = ex.value("/live/clip/get/length", track, chosen)
            if not isinstance(got, (int, float)) or not math.isclose(got, length, abs_tol=1e-3):
                raise LiveError(f"{at}: the clip Live holds there is {got!r} beats long, not the {length:g} "
                                "qriff created; nothing was written")
            # 4. notes, name, and the name read back
            ex = self._exchange([*add_notes_messages(track, chosen, part.notes),
                                 ("/live/clip/set/name", (track, chosen, name), "iis"),
                                 ("/live/clip/get/name", (track, chosen), "ii")], "writing the notes")
            if ex.errors:
                raise LiveError(f"{at}: Live reported an error while qriff wrote {len(part.notes)} notes "
                                f"({'; '.join(ex.errors)}); the clip may be incomplete")
            got_name = ex.value("/live/clip/get/name", track, chosen)
            if got_name != name:
                raise LiveError(f"{at}: Live holds a clip named {got_name!r} there, expected {name!r}")
            return PushResult(track=track, slot=chosen, name=name, notes=len(part.notes), scene_created=created)

    def _first_empty(self, track: int, slot: int, num_scenes: int, where: str) -> int | None:
        for start in range(slot, num_scenes, SLOTS_PER_QUERY):
            slots = range(start, min(num_scenes, start + SLOTS_PER_QUERY))
            ex = self._exchange([("/live/clip_slot/get/has_clip", (track, s), "ii") for s in slots],
                                "looking for an empty clip slot")
            if ex.errors:
                raise LiveError(f"{where}: Live reported an error while qriff looked for an empty slot "
                                f"({'; '.join(ex.errors)}); nothing was created")
            for s in slots:
                has = ex.value("/live/clip_slot/get/has_clip", track, s)
                if has is None:
                    raise LiveError(f"{where}: Live did not say whether slot {s} holds a clip; nothing was created")
                if not has:
                    return s
        return None
