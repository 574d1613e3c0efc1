"""A test peer that behaves like AbletonOSC inside Live, for the Live push tests.

Modelled on AbletonOSC's own source (ideoforms/AbletonOSC, November 2025:
``abletonosc/osc_server.py``, ``manager.py``, ``handler.py``, ``clip_slot.py``,
``clip.py``, ``track.py``, ``song.py``), with a small Live set behind it:

* Live calls the script every 100 ms (:data:`TICK`). Each tick reads every queued
  datagram in order; the first handler that raises ends the tick, and AbletonOSC's
  error log handler sends ``/live/error`` with one string, ``"Error handling OSC
  message: <exception>"``. The messages still queued wait for the next tick, where
  each later failure gives its own error.
* Replies go to the sender's host on the response port (11001 in AbletonOSC; tests
  give a free port so that runs do not collide); ``/live/error`` and ``/live/test``'s
  ``ok`` go to the last sender's host on that port.
* An unknown address is logged as an error (so ``/live/error "Unknown OSC address:
  ..."``) without ending the tick.
* Track and clip indices go through ``int()`` (TouchOSC sends floats); a bad index is
  Python's ``IndexError: list index out of range``; a clip handler on an empty slot
  works on ``None`` (``'NoneType' object has no attribute 'add_new_notes'``).
* A track has one clip slot per scene; ``create_scene`` adds a slot to every track.
  ``create_clip`` works only on a MIDI track in an empty slot; ``add/notes`` appends.
* Datagrams are read with ``recvfrom(65536)``: up to 64 KB.

The messages Live itself raises (creating a clip on an audio track or a filled slot)
are our wording: Live's own text is not in AbletonOSC's source.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage, ParseError
from pythonosc.osc_message_builder import OscMessageBuilder

TICK = 0.1


@dataclass
class LiveClip:
    """A MIDI clip: name, length in beats, looping, and its notes as (pitch, start, duration, velocity, mute)."""

    length: float
    name: str = ""
    looping: bool = True
    notes: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def loop_end(self) -> float:
        return self.length

    def add_new_notes(self, notes: tuple[tuple[Any, ...], ...]) -> None:
        self.notes.extend(notes)


@dataclass
class ClipSlot:
    track: LiveTrack
    clip: LiveClip | None = None

    @property
    def has_clip(self) -> bool:
        return self.clip is not None

    def create_clip(self, length: float) -> None:
        if not self.track.midi:
            raise RuntimeError("Clips can only be created in MIDI tracks")
        if self.clip is not None:
            raise RuntimeError("Clip slot already has a clip")
        if not length > 0:
            raise RuntimeError("Invalid clip length")
        self.clip = LiveClip(float(length))

    def delete_clip(self) -> None:
        self.clip = None


@dataclass
class LiveTrack:
    name: str
    midi: bool = True
    clip_slots: list[ClipSlot] = field(default_factory=list)

    @property
    def has_midi_input(self) -> bool:
        return self.midi


class LiveSet:
    """Tracks (``"midi"`` or ``"audio"``) times scenes; ``clips`` places existing clips at (track, slot)."""

    def __init__(self, tracks: list[str], scenes: int = 8, clips: dict[tuple[int, int], LiveClip] | None = None):
        self.tracks = [LiveTrack(f"{i + 1}-{kind}", kind == "midi") for i, kind in enumerate(tracks)]
        self.scenes = scenes
        for t in self.tracks:
            t.clip_slots = [ClipSlot(t) for _ in range(scenes)]
        for (ti, si), clip in (clips or {}).items():
            self.tracks[ti].clip_slots[si].clip = clip

    def create_scene(self, index: int) -> None:
        if index == -1:
            index = self.scenes
        if not 0 <= index <= self.scenes:
            raise IndexError("Index out of range")
        self.scenes += 1
        for t in self.tracks:
            t.clip_slots.insert(index, ClipSlot(t))

    def clip(self, track: int, slot: int) -> LiveClip | None:
        return self.tracks[track].clip_slots[slot].clip


class AbletonOSCPeer:
    """AbletonOSC on a free loopback port, ticking every :data:`TICK` seconds over ``live_set``.

    ``received`` logs ``(tick, address, params)`` of every message handled, ``sent``
    ``(tick, address, params)`` of everything sent back. ``before[address]`` is called
    with the set just before a message on that address is handled (a user acting in
    Live between two ticks). ``mirror``: a loopback port that gets a copy of every
    datagram received (for liblo's ``oscdump``).
    """

    def __init__(self, live_set: LiveSet, response_port: int, mirror: int | None = None) -> None:
        self.live = live_set
        self.mirror = mirror
        self.response_port = response_port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.remote = ("127.0.0.1", response_port)
        self.handlers: dict[str, Callable[[list[Any]], tuple[Any, ...] | None]] = {}
        self.before: dict[str, Callable[[LiveSet], None]] = {}
        self.received: list[tuple[int, str, tuple[Any, ...]]] = []
        self.sent: list[tuple[int, str, tuple[Any, ...]]] = []
        self.tick_count = 0
        self.tick_started: dict[int, float] = {}  # tick number -> time.monotonic() when it began
        self._lock = threading.Lock()
        self._install()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ the API
    def _install(self) -> None:
        live = self.live
        h = self.handlers
        h["/live/test"] = lambda params: self.send("/live/test", ("ok",))
        h["/live/song/get/num_tracks"] = lambda params: (len(live.tracks),)
        h["/live/song/get/num_scenes"] = lambda params: (live.scenes,)
        h["/live/song/create_scene"] = lambda params: live.create_scene(*params)

        def track_cb(func: Callable[[LiveTrack, tuple[Any, ...]], Any]) -> Callable[[list[Any]], Any]:
            def callback(params: list[Any]) -> Any:
                index = int(params[0])
                rv = func(live.tracks[index], tuple(params[1:]))
                return None if rv is None else (index, *rv)
            return callback

        def slot_cb(func: Callable[[ClipSlot, tuple[Any, ...]], Any]) -> Callable[[list[Any]], Any]:
            def callback(params: list[Any]) -> Any:
                ti, si = int(params[0]), int(params[1])
                rv = func(live.tracks[ti].clip_slots[si], tuple(params[2:]))
                return None if rv is None else (ti, si, *rv)
            return callback

        def clip_cb(func: Callable[[Any, tuple[Any, ...]], Any]) -> Callable[[list[Any]], Any]:
            def callback(params: list[Any]) -> Any:
                ti, si = int(params[0]), int(params[1])
                clip = live.tracks[ti].clip_slots[si].clip  # None for an empty slot: the handler fails on it
                rv = func(clip, tuple(params[2:]))
                return None if rv is None else (ti, si, *rv)
            return callback

        def getter(prop: str) -> Callable[[Any, tuple[Any, ...]], tuple[Any]]:
            return lambda target, params: (getattr(target, prop),)

        def setter(prop: str) -> Callable[[Any, tuple[Any, ...]], None]:
            return lambda target, params: setattr(target, prop, params[0])

        def method(name: str) -> Callable[[Any, tuple[Any, ...]], None]:
            return lambda target, params: getattr(target, name)(*params)

        for prop in ("has_midi_input", "name"):
            h[f"/live/track/get/{prop}"] = track_cb(getter(prop))
        for name in ("create_clip", "delete_clip"):
            h[f"/live/clip_slot/{name}"] = slot_cb(method(name))
        h["/live/clip_slot/get/has_clip"] = slot_cb(getter("has_clip"))
        for prop in ("name", "length", "looping", "loop_end"):
            h[f"/live/clip/get/{prop}"] = clip_cb(getter(prop))
        h["/live/clip/set/name"] = clip_cb(setter("name"))

        def add_notes(clip: Any, params: tuple[Any, ...]) -> None:
            notes = tuple(tuple(params[i:i + 5]) for i in range(0, len(params), 5))
            clip.add_new_notes(notes)

        def get_notes(clip: Any, params: tuple[Any, ...]) -> tuple[Any, ...]:
            return tuple(v for note in sorted(clip.notes, key=lambda n: (n[0], n[1])) for v in note)

        h["/live/clip/add/notes"] = clip_cb(add_notes)
        h["/live/clip/get/notes"] = clip_cb(get_notes)

    # ------------------------------------------------------------ sending
    def send(self, address: str, params: tuple[Any, ...] = (), remote: tuple[str, int] | None = None) -> None:
        builder = OscMessageBuilder(address)
        for p in params:
            builder.add_arg(p)
        # recorded before it goes out: a test that reads sent after its listener got the reply sees it
        self.sent.append((self.tick_count, address, tuple(params)))
        self.sock.sendto(builder.build().dgram, remote or self.remote)

    def _error(self, text: str) -> None:
        # manager.py's error log handler: the log line minus its "AbletonOSC: " prefix, to the last sender
        self.send("/live/error", (text,))

    # ------------------------------------------------------------ the tick
    def _run(self) -> None:
        while not self._stop.wait(TICK):
            with self._lock:
                self.tick_count += 1
                self.tick_started[self.tick_count] = time.monotonic()
                self.process()

    def process(self) -> None:
        """One tick: handle queued datagrams until none is left or a handler raises."""
        try:
            while True:
                try:
                    data, remote = self.sock.recvfrom(65536)
                except BlockingIOError:
                    return
                self.remote = (remote[0], self.response_port)
                if self.mirror:
                    self.sock.sendto(data, ("127.0.0.1", self.mirror))
                if OscBundle.dgram_is_bundle(data):
                    try:
                        for content in OscBundle(data):
                            self._message(content, remote)
                    except ParseError as exc:
                        self._error(f"Error parsing OSC bundle: {exc}")
                else:
                    try:
                        message = OscMessage(data)
                    except ParseError as exc:
                        self._error(f"Error parsing OSC message: {exc}")
                        continue
                    self._message(message, remote)
        except Exception as exc:  # ends this tick; the queue waits for the next one
            self._error(f"Error handling OSC message: {exc}")

    def _message(self, message: OscMessage, remote: tuple[str, int]) -> None:
        params = list(message.params)
        self.received.append((self.tick_count, message.address, tuple(params)))
        handler = self.handlers.get(message.address)
        if handler is None:
            self._error(f"Unknown OSC address: {message.address}")
            return
        hook = self.before.pop(message.address, None)
        if hook is not None:
            hook(self.live)
        rv = handler(params)
        if rv is not None:
            self.send(message.address, rv, (remote[0], self.response_port))

    def errors(self) -> list[tuple[int, str]]:
        """``(tick, text)`` of every /live/error sent."""
        return [(tick, params[0]) for tick, address, params in self.sent if address == "/live/error"]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def wait_quiet(peer: AbletonOSCPeer, ticks: int = 3) -> None:
    """Wait until the peer has handled everything queued and ``ticks`` more ticks passed."""
    start = peer.tick_count
    while peer.tick_count < start + ticks:
        time.sleep(TICK / 4)
