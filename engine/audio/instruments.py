"""Instruments that turn a track's notes into audio: built-in voices, SoundFonts, VST3.

One interface (:class:`Instrument`): ``render(track, tempo, sample_rate, n_samples)``
returns float32 audio of shape ``(channels, n_samples)`` (1 or 2 channels) whose
sample 0 is beat 0 of the clip. Three implementations:

- :class:`VoiceInstrument`: a built-in numpy voice (``lead-saw``, ``pluck``...), mono.
- :class:`SoundFontInstrument`: a General MIDI SoundFont through FluidSynth
  (pyfluidsynth + Debian's libfluidsynth3), stereo; ``gm`` is the small GM SoundFont
  that pretty_midi bundles (TimGM6mb.sf2).
- :class:`Vst3Instrument`: a VST3 instrument hosted by ``pedalboard.load_plugin``.

:func:`resolve_instrument` reads the spec users type after ``--instrument ROLE=``::

    lead-saw                       a built-in voice
    gm | gm:program=81             the bundled GM SoundFont (program defaults to the track's)
    /path/piano.sf2[:program=0,bank=0]
    /path/synth.vst3[:cutoff=0.4,preset=/path/x.vstpreset,tail=2.0]
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib.util
import io
import logging
import os
import re
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from engine.audio.voices import DEFAULT_VOICE, ROLE_VOICES, VOICES, Voice, get_voice
from engine.base.errors import EngineError
from engine.music.clip import Note, Track

log = logging.getLogger(__name__)

#: GM programs a role gets from a SoundFont when the track says 0 and the role implies better.
ROLE_GM_PROGRAMS = {"pad": 89}
#: Spec name of the General MIDI SoundFont bundled with pretty_midi.
BUNDLED_SOUNDFONT_NAME = "gm"
#: Longest release a SoundFont or plugin note may ring after its note-off, in seconds.
MAX_TAIL_SECONDS = 10.0


class InstrumentError(EngineError, ValueError):
    """An instrument spec, SoundFont or plugin that cannot be used."""


def bundled_soundfont() -> Path:
    """Path of pretty_midi's bundled General MIDI SoundFont (TimGM6mb.sf2, 6 MB).

    Found without importing pretty_midi (which imports pyfluidsynth); InstrumentError when
    pretty_midi is not installed (``pip install 'qriff[soundfont]'``).
    """
    spec = importlib.util.find_spec("pretty_midi")
    if spec is None or spec.origin is None:
        raise InstrumentError(f"the bundled SoundFont '{BUNDLED_SOUNDFONT_NAME}' comes with pretty_midi, which is not "
                              "installed: pip install 'qriff[soundfont]', or give the path of a .sf2 file")
    return Path(spec.origin).parent / "TimGM6mb.sf2"


def note_samples(track: Track, tempo: float, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Notes of ``track`` on the sample grid: (starts, gate lengths, pitches, velocities).

    A note at ``b`` beats starts at sample ``round(b * 60 / tempo * sample_rate)``, so
    every instrument places onsets identically. Arrays are int64, sorted by start.
    """
    samples_per_beat = 60.0 / float(tempo) * sample_rate
    notes = sorted(track.notes, key=lambda n: (n.start, n.pitch))
    starts = np.array([int(round(n.start * samples_per_beat)) for n in notes], dtype=np.int64)
    ends = np.array([int(round((n.start + n.duration) * samples_per_beat)) for n in notes], dtype=np.int64)
    pitches = np.array([n.pitch for n in notes], dtype=np.int64)
    vels = np.array([n.velocity for n in notes], dtype=np.int64)
    return starts, np.maximum(1, ends - starts), pitches, vels


class Instrument(ABC):
    """Something that plays a track's notes. Subclasses say how."""

    #: Short description for logs and the render summary (``voice lead-saw``, ``sf2 gm program 81``).
    label: str = "instrument"

    @property
    @abstractmethod
    def tail_seconds(self) -> float:
        """Upper bound of how long sound continues after the last note-off, in seconds."""

    def tail_for(self, track: Track, sample_rate: int = 44100) -> float:
        """How long ``track``'s notes ring after their note-off on this instrument, in seconds.

        Defaults to :attr:`tail_seconds`; instruments that can measure it per track do.
        """
        return self.tail_seconds

    @abstractmethod
    def render(self, track: Track, tempo: float, sample_rate: int, n_samples: int) -> np.ndarray:
        """Audio of ``track``: float32 ``(channels, n_samples)``, channels 1 or 2, sample 0 = beat 0.

        Sound past ``n_samples`` is cut; notes starting after it are skipped.
        """


class VoiceInstrument(Instrument):
    """A built-in :class:`engine.audio.voices.Voice` (mono output)."""

    def __init__(self, voice: Voice | str):
        self.voice = get_voice(voice) if isinstance(voice, str) else voice
        self.label = f"voice {self.voice.name}"

    @property
    def tail_seconds(self) -> float:
        return self.voice.tail_seconds

    def render(self, track: Track, tempo: float, sample_rate: int, n_samples: int) -> np.ndarray:
        starts, gates, pitches, vels = note_samples(track, tempo, sample_rate)
        return self.voice.render(starts, gates, pitches, vels, n_samples, sample_rate)[None, :]


# ------------------------------------------------------------------ SoundFont

# FluidSynth renders in blocks of 64 samples and applies an event at the start of the
# next block. While the synth is silent the renderer can shift its timeline freely (it
# writes the zeros itself), so a note after a rest starts on its exact sample; while
# notes sound, an event goes to the nearest block boundary: at most 32 samples
# (0.73 ms at 44.1 kHz) from its exact time. A release that has faded below -100 dBFS
# counts as silence.
_FLUID_BLOCK = 64
_SILENT = 1e-5


def import_fluidsynth() -> Any:
    """pyfluidsynth, imported quietly.

    Under ``CI`` pyfluidsynth prints where it found libfluidsynth to stdout, which would
    corrupt qriff's own output there (``qriff generate --format json``, OSC logs).
    """
    if "fluidsynth" in sys.modules or not os.environ.get("CI"):
        import fluidsynth
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            import fluidsynth
    return fluidsynth


def fluid_write_float() -> Any:
    """libfluidsynth's ``fluid_synth_write_float``, typed: the one private name of pyfluidsynth qriff uses.

    pyfluidsynth's public API renders only 16-bit integers (``Synth.get_samples``:
    ``fluid_synth_write_s16``); the renderer mixes float32 and must not add 16-bit
    quantisation noise under quiet notes, so it calls the float writer of the library
    pyfluidsynth loaded (``fluidsynth._fl``, a ``ctypes.CDLL``) on ``Synth.synth``. Call
    :func:`import_fluidsynth` first.
    ``tests/engine/audio/test_fluidsynth_write.py`` fails if either name goes away.
    """
    import fluidsynth  # imported quietly by import_fluidsynth() before

    try:
        write = fluidsynth._fl.fluid_synth_write_float
    except AttributeError:
        raise InstrumentError(f"pyfluidsynth {getattr(fluidsynth, '__version__', '?')} no longer exposes "
                              "libfluidsynth (fluidsynth._fl.fluid_synth_write_float): pip install "
                              "'pyfluidsynth==1.4.0', or use a built-in voice") from None
    write.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                      ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    write.restype = ctypes.c_int
    return write


@functools.lru_cache(maxsize=8)
def _fluid_synth(path: str, mtime: float, sample_rate: int) -> tuple[Any, int, Any]:
    """A FluidSynth synth with ``path`` loaded: (synth, soundfont id, write_float function)."""
    try:
        fluidsynth = import_fluidsynth()
    except (ImportError, OSError) as exc:
        raise InstrumentError(f"SoundFont {path!r} needs FluidSynth, which could not be loaded ({exc}): install "
                              "Debian's libfluidsynth3 and pip install 'qriff[soundfont]', or use a built-in voice") \
            from None
    # Reverb and chorus off: effects come from the preset, and silence stays exact.
    synth = fluidsynth.Synth(gain=0.6, samplerate=float(sample_rate),
                             **{"synth.reverb.active": 0, "synth.chorus.active": 0, "synth.polyphony": 256})
    sfid = synth.sfload(path)
    if sfid < 0:
        synth.delete()
        raise InstrumentError(f"SoundFont {path!r} could not be loaded by FluidSynth: is it a valid .sf2 file?")
    return synth, sfid, fluid_write_float()


class SoundFontInstrument(Instrument):
    """A SoundFont (.sf2) preset played by FluidSynth (stereo output).

    ``program`` None plays the track's General MIDI program; ``bank`` 128 is the GM
    drum kit in most SoundFonts. ``tail`` (seconds) is how long notes may ring after
    their note-off; None measures the preset's release once per process (a probe note,
    until it has fallen 60 dB).
    """

    def __init__(self, path: str | os.PathLike[str], program: int | None = None, bank: int = 0,
                 tail: float | None = None):
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise InstrumentError(f"SoundFont {str(self.path)!r} does not exist: give the path of a .sf2 file, "
                                  f"or '{BUNDLED_SOUNDFONT_NAME}' for the bundled General MIDI SoundFont")
        if program is not None and not 0 <= program <= 127:
            raise InstrumentError(f"SoundFont program {program} is out of range (allowed: 0-127, General MIDI numbering)")
        if not 0 <= bank <= 128:
            raise InstrumentError(f"SoundFont bank {bank} is out of range (allowed: 0-128; 128 = drum kits)")
        if tail is not None and not 0 <= tail <= MAX_TAIL_SECONDS:
            raise InstrumentError(f"SoundFont tail {tail} s is out of range (allowed: 0-{MAX_TAIL_SECONDS:g})")
        self.program, self.bank = program, int(bank)
        self.tail = None if tail is None else float(tail)
        name = BUNDLED_SOUNDFONT_NAME if self.path == bundled_soundfont() else self.path.name
        self.label = f"sf2 {name}" + (f" program {program}" if program is not None else "")
        self._synth(44100)  # fail now, not halfway through a render

    def _synth(self, sample_rate: int) -> tuple[Any, int, Any]:
        p = self.path.resolve()
        return _fluid_synth(str(p), p.stat().st_mtime, int(sample_rate))

    @property
    def tail_seconds(self) -> float:
        return MAX_TAIL_SECONDS if self.tail is None else self.tail

    def tail_for(self, track: Track, sample_rate: int = 44100) -> float:
        if self.tail is not None:
            return self.tail
        program = self.program if self.program is not None else _track_program(track)
        p = self.path.resolve()
        return _release_seconds(str(p), p.stat().st_mtime, self.bank, program)

    def render(self, track: Track, tempo: float, sample_rate: int, n_samples: int) -> np.ndarray:
        synth, sfid, write = self._synth(sample_rate)
        program = self.program if self.program is not None else _track_program(track)
        if synth.program_select(0, sfid, self.bank, program) != 0:
            raise InstrumentError(f"SoundFont {self.path.name!r} has no preset bank {self.bank} program {program}: "
                                  "choose another with ':program=N' (General MIDI 0-127)")
        out = np.zeros((2, n_samples), dtype=np.float32)
        starts, gates, pitches, vels = note_samples(track, tempo, sample_rate)
        events = sorted([(int(st), 1, int(p), int(v)) for st, p, v in zip(starts, pitches, vels)]
                        + [(int(st + g), 0, int(p), 0) for st, g, p in zip(starts, gates, pitches)])
        pos = 0  # samples of ``out`` written so far; the synth's block cursor is always aligned here

        def run(n: int) -> None:
            nonlocal pos
            end = min(n_samples, pos + n)
            if end > pos:
                seg = out[:, pos:end]
                write(synth.synth, end - pos, seg[0].ctypes.data, 0, 1, seg[1].ctypes.data, 0, 1)
            if n > end - pos:  # past the buffer: keep the synth's block cursor aligned
                scratch = np.zeros((2, n - (end - pos)), dtype=np.float32)
                write(synth.synth, scratch.shape[1], scratch[0].ctypes.data, 0, 1, scratch[1].ctypes.data, 0, 1)
            pos += n

        def flush() -> None:
            synth.all_sounds_off(0)
            scratch = np.zeros((2, _FLUID_BLOCK * 4), dtype=np.float32)
            write(synth.synth, scratch.shape[1], scratch[0].ctypes.data, 0, 1, scratch[1].ctypes.data, 0, 1)

        try:
            for when, kind, pitch, vel in events:
                if when >= n_samples:
                    break
                if when > pos and synth.get_active_voice_count() > 0:
                    run(_FLUID_BLOCK * ((when - pos) // _FLUID_BLOCK))
                    if pos > 0 and float(np.abs(out[:, max(0, pos - _FLUID_BLOCK):pos]).max()) < _SILENT:
                        flush()  # only a release far below hearing is left: end it
                if when > pos:
                    if synth.get_active_voice_count() == 0:
                        pos = when  # silence: jump there exactly (the zeros are already in ``out``)
                    elif when - pos > _FLUID_BLOCK // 2:
                        run(_FLUID_BLOCK)  # the nearer block boundary is the next one
                if kind:
                    synth.noteon(0, pitch, vel)
                else:
                    synth.noteoff(0, pitch)
            while pos < n_samples and synth.get_active_voice_count() > 0:
                run(min(4096, _FLUID_BLOCK * -(-(n_samples - pos) // _FLUID_BLOCK)))
        finally:
            flush()  # leave the shared synth silent for the next track
        return out


@functools.lru_cache(maxsize=256)
def _release_seconds(path: str, mtime: float, bank: int, program: int) -> float:
    """Measured release of a SoundFont preset: seconds from note-off until -60 dB (plus 50 ms).

    A probe plays middle C for half a second at 44.1 kHz; sustained, looping presets
    are measured the same way, decaying ones ring at most this long after a short note.
    """
    sr = 44100
    probe = SoundFontInstrument(path, program=program, bank=bank, tail=MAX_TAIL_SECONDS)
    audio = probe.render(Track("probe", program, [Note(60, 0.0, 1.0, 100)]), 120.0, sr,
                         int((0.5 + MAX_TAIL_SECONDS) * sr))
    env = np.abs(audio).max(axis=0)
    if not env.any():
        return 0.0
    loud = np.nonzero(env > env.max() * 1e-3)[0]
    return float(min(MAX_TAIL_SECONDS, max(0.0, (loud[-1] - sr // 2) / sr) + 0.05))


def _track_program(track: Track) -> int:
    program = int(track.program) % 128
    if program == 0 and track.role in ROLE_GM_PROGRAMS:
        return ROLE_GM_PROGRAMS[track.role]
    return program


# ----------------------------------------------------------------------- VST3

@functools.lru_cache(maxsize=8)
def load_vst3(path: str, mtime: float) -> Any:
    """Load a VST3 plugin once per process (a plugin with MIDI input can take ~30 s to load).

    ``mtime`` is part of the cache key, so a rebuilt plugin is loaded again.
    """
    import pedalboard

    log.info("loading VST3 plugin %s", path)
    _quiet_plugin_teardown()
    try:
        with midi_cc_parameters_hidden():
            return pedalboard.load_plugin(path)
    except Exception as exc:  # pedalboard raises ImportError or RuntimeError with JUCE's reason
        raise InstrumentError(f"VST3 plugin {path!r} could not be loaded: {str(exc).splitlines()[0]}") from None


#: The per-channel MIDI CC parameters DPF-built plugins expose (``MIDI Ch. 1 CC 0`` ...).
MIDI_CC_PARAMETER = re.compile(r"MIDI Ch\. \d+ CC \d+$")
#: pedalboard's module-level set of parameter-name patterns it does not wrap (0.9.x).
PEDALBOARD_IGNORE_LIST = "PARAMETER_NAME_REGEXES_TO_IGNORE"
_IGNORE_LOCK = threading.RLock()


@contextlib.contextmanager
def midi_cc_parameters_hidden() -> Iterator[None]:
    """Inside the block, pedalboard does not wrap DPF's 16 x 130 MIDI CC parameters.

    VST3 instruments built with DPF (JUCE and others do the same) report every MIDI CC
    of every channel as a parameter. pedalboard wraps each parameter of a plugin in a
    Python object, probing its values, the first time the parameters are listed: for
    these 2,080 that takes ~30 s; without them, about a second. pedalboard 0.9 has no
    public option for this (``load_plugin`` takes a path, initial values, a plugin name
    and a timeout); it skips names matching the patterns in the module-level set
    ``pedalboard._pedalboard.PARAMETER_NAME_REGEXES_TO_IGNORE``, which holds JUCE's
    ``MIDI CC`` but not DPF's form. So qriff adds its pattern to that set for the
    duration of a load or a parameter change, and takes it out again, so that other
    pedalboard users in the process see the set as pedalboard left it. qriff never sets
    a MIDI CC through a parameter, so nothing is lost. If pedalboard renames the set,
    loading still works (slowly), a warning says so, and
    ``tests/engine/audio/test_pedalboard_workaround.py`` fails.
    """
    from pedalboard import _pedalboard

    ignored = getattr(_pedalboard, PEDALBOARD_IGNORE_LIST, None)
    if not isinstance(ignored, set):
        log.warning("pedalboard %s has no %s: plugins with MIDI CC parameters load slowly",
                    getattr(_pedalboard, "__version__", ""), PEDALBOARD_IGNORE_LIST)
        yield
        return
    with _IGNORE_LOCK:
        added = MIDI_CC_PARAMETER not in ignored
        ignored.add(MIDI_CC_PARAMETER)
        try:
            yield
        finally:
            if added:
                ignored.discard(MIDI_CC_PARAMETER)


@functools.cache
def _quiet_plugin_teardown() -> None:
    """Unload plugins before interpreter shutdown with the C-level stderr muted.

    Some plugins (DPF ones among them) print warnings when the host destroys them
    without deactivating first; after a command has printed its result (or its one
    error line) that is only noise.
    """
    import atexit
    import gc

    def unload() -> None:
        try:
            saved = os.dup(2)
        except OSError:
            return
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 2)
                load_vst3.cache_clear()
                gc.collect()
        finally:
            os.dup2(saved, 2)
            os.close(saved)

    atexit.register(unload)


def check_vst3_path(path: str | os.PathLike[str]) -> Path:
    """The plugin path, expanded; InstrumentError if it does not exist or is not a .vst3."""
    p = Path(path).expanduser()
    if p.suffix.lower() != ".vst3":
        raise InstrumentError(f"plugin path {str(p)!r} is not a .vst3 bundle: on Linux pedalboard hosts VST3 only")
    if not p.exists():
        raise InstrumentError(f"VST3 plugin {str(p)!r} does not exist: give the path of a .vst3 bundle")
    return p


def set_plugin_parameters(plugin: Any, params: dict[str, Any], what: str) -> None:
    """Set plugin parameters by pedalboard's snake_case names; InstrumentError naming the bad one."""
    with midi_cc_parameters_hidden():
        names = list(plugin.parameters)
        for name, value in params.items():
            if name not in names:
                shown = names[:24]
                raise InstrumentError(f"{what} has no parameter {name!r}: it has {', '.join(shown) or 'none'}"
                                      + (" ..." if len(shown) < len(names) else ""))
            try:
                setattr(plugin, name, value)
            except (ValueError, TypeError) as exc:
                raise InstrumentError(f"{what}: parameter {name} = {value!r} is not allowed: {exc}") from None


class Vst3Instrument(Instrument):
    """A VST3 instrument (stereo output), with parameters by name and an optional preset file."""

    def __init__(self, path: str | os.PathLike[str], params: dict[str, Any] | None = None,
                 preset: str | os.PathLike[str] | None = None, tail: float = 1.0):
        self.path = check_vst3_path(path)
        self.params = dict(params or {})
        self.preset = Path(preset).expanduser() if preset else None
        if self.preset is not None and not self.preset.is_file():
            raise InstrumentError(f"VST3 preset file {str(self.preset)!r} does not exist")
        if not 0 <= tail <= MAX_TAIL_SECONDS:
            raise InstrumentError(f"VST3 tail {tail} s is out of range (allowed: 0-{MAX_TAIL_SECONDS:g})")
        self.tail = float(tail)
        self.label = f"vst3 {self.path.name}"
        self.plugin = load_vst3(str(self.path.resolve()), self.path.stat().st_mtime)
        if not self.plugin.is_instrument:
            raise InstrumentError(f"VST3 plugin {str(self.path)!r} is an effect, not an instrument: use it in a "
                                  "preset's effects list, or give an instrument plugin")
        self._configure()

    def _configure(self) -> None:
        if self.preset is not None:
            try:
                self.plugin.load_preset(str(self.preset))
            except Exception as exc:
                raise InstrumentError(f"VST3 preset {str(self.preset)!r} could not be loaded into "
                                      f"{self.path.name}: {exc}") from None
        set_plugin_parameters(self.plugin, self.params, f"VST3 plugin {self.path.name!r}")

    @property
    def tail_seconds(self) -> float:
        return self.tail

    def render(self, track: Track, tempo: float, sample_rate: int, n_samples: int) -> np.ndarray:
        self._configure()  # the plugin object is shared: another spec may have changed it
        starts, gates, pitches, vels = note_samples(track, tempo, sample_rate)
        events: list[tuple[int, int, bytes]] = []
        for s, g, p, v in zip(starts, gates, pitches, vels):
            if s < n_samples:
                events.append((int(s), 1, bytes([0x90, int(p), int(v)])))
                events.append((int(s + g), 0, bytes([0x80, int(p), 0])))
        events.sort(key=lambda e: (e[0], e[1]))  # note-offs before note-ons on the same sample
        msgs = [(data, s / sample_rate) for s, _, data in events if s < n_samples]
        audio = self.plugin(msgs, duration=n_samples / sample_rate, sample_rate=float(sample_rate),
                            num_channels=2, reset=True)
        audio = np.asarray(audio, dtype=np.float32)
        if audio.shape[1] < n_samples:
            audio = np.pad(audio, ((0, 0), (0, n_samples - audio.shape[1])))
        return audio[:, :n_samples]


# ------------------------------------------------------------------ resolver

def _options(text: str, spec: str, allowed: tuple[str, ...] | None) -> dict[str, str]:
    opts: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise InstrumentError(f"instrument option {part!r} in {spec!r} is not NAME=VALUE: write e.g. "
                                  "'gm:program=81' or 'synth.vst3:cutoff=0.5,preset=x.vstpreset'")
        k, v = (x.strip() for x in part.split("=", 1))
        if allowed is not None and k not in allowed:
            raise InstrumentError(f"instrument option {k!r} in {spec!r} is not known: allowed are {', '.join(allowed)}")
        opts[k] = v
    return opts


def _number(opts: dict[str, str], key: str, default: float | None, spec: str, integer: bool = False) -> Any:
    if key not in opts:
        return default
    try:
        return int(opts[key]) if integer else float(opts[key])
    except ValueError:
        raise InstrumentError(f"instrument option {key}={opts[key]!r} in {spec!r} is not "
                              f"{'an integer' if integer else 'a number'}") from None


def _value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "on", "yes"):
        return True
    if low in ("false", "off", "no"):
        return False
    try:
        return float(text)
    except ValueError:
        return text


def resolve_instrument(spec: str | Instrument, base_dir: str | os.PathLike[str] | None = None) -> Instrument:
    """The instrument a spec names: a voice, ``gm``, a ``.sf2`` or a ``.vst3`` path, with options.

    Relative paths are taken from ``base_dir`` (a preset file's folder) when given.
    Raises InstrumentError with the spec and what is allowed.
    """
    if isinstance(spec, Instrument):
        return spec
    text = str(spec).strip()
    if not text:
        raise InstrumentError("instrument spec is empty: give a voice name "
                              f"({', '.join(VOICES)}), '{BUNDLED_SOUNDFONT_NAME}', PATH.sf2 or PATH.vst3")
    low = text.lower()
    for ext in (".sf2", ".vst3"):
        idx = low.rfind(ext)
        if idx >= 0 and (idx + len(ext) == len(text) or text[idx + len(ext)] == ":"):
            path, opt_text = text[:idx + len(ext)], text[idx + len(ext) + 1:]
            p = Path(path).expanduser()
            if base_dir is not None and not p.is_absolute():
                p = Path(base_dir) / p
            if ext == ".sf2":
                opts = _options(opt_text, text, ("program", "bank", "tail"))
                return SoundFontInstrument(p, _number(opts, "program", None, text, True),
                                           _number(opts, "bank", 0, text, True), _number(opts, "tail", None, text))
            opts = _options(opt_text, text, None)
            preset = opts.pop("preset", None)
            if preset and base_dir is not None and not Path(preset).expanduser().is_absolute():
                preset = str(Path(base_dir) / preset)
            tail = _number(opts, "tail", 1.0, text)
            opts.pop("tail", None)
            return Vst3Instrument(p, {k: _value(v) for k, v in opts.items()}, preset, tail)
    name, _, opt_text = text.partition(":")
    if name.lower() == BUNDLED_SOUNDFONT_NAME:
        opts = _options(opt_text, text, ("program", "bank", "tail"))
        return SoundFontInstrument(bundled_soundfont(), _number(opts, "program", None, text, True),
                                   _number(opts, "bank", 0, text, True), _number(opts, "tail", None, text))
    if opt_text:
        raise InstrumentError(f"instrument {text!r}: built-in voices take no options (got {opt_text!r})")
    if name not in VOICES and ("/" in name or "." in name):
        raise InstrumentError(f"instrument {text!r} is neither a built-in voice nor a .sf2 or .vst3 path: "
                              f"voices are {', '.join(VOICES)}")
    return VoiceInstrument(name)


def default_instrument(role: str) -> Instrument:
    """The built-in voice a role gets when nothing else is chosen."""
    return VoiceInstrument(ROLE_VOICES.get(role, DEFAULT_VOICE))


def parse_instrument_arg(text: str) -> tuple[str, str]:
    """Split ``ROLE=SPEC`` (the ``--instrument`` flag) into (role, spec); InstrumentError if malformed."""
    role, sep, spec = str(text).partition("=")
    role, spec = role.strip(), spec.strip()
    if not sep or not role or not spec:
        raise InstrumentError(f"instrument {text!r} is not ROLE=SPEC: write e.g. lead=pluck, bass=gm:program=33, "
                              "pad=/path/strings.sf2 or lead=/path/synth.vst3")
    return role, spec
