"""Render a clip to sample-aligned audio stems, a mix and a piano roll.

:func:`render_clip` is the one entry point that ``qriff render``, ``qriff generate
--render`` and the OSC bridge call. For each track it plays the notes on an instrument
(:mod:`engine.audio.instruments`), runs the stem's effect chain from the preset
(:mod:`engine.audio.effects`), pans it, and writes ``DIR/<role>.wav``; the stems' sum (the
pre-master mix) goes through the master chain, optional loudness normalisation and a
brick-wall limiter at -1 dBFS into ``DIR/mix.wav``.

Every stem and the mix start at beat 0 of the clip and have the same length: the clip
plus the longest tail (instrument releases and effect tails), rounded up to a whole
beat. Files are staged under temporary names and renamed into place only when all of
them are written, so a failed or interrupted render leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.audio.effects import Preset, StemSettings, build_chain, chain_tail_seconds, load_preset
from engine.audio.instruments import Instrument, default_instrument, parse_instrument_arg, resolve_instrument
from engine.base.errors import EngineError
from engine.base.files import StagedFiles
from engine.music import limits
from engine.music.clip import Clip, Note, Track
from engine.music.request import OptionError, RenderRequest

log = logging.getLogger(__name__)

#: Peak ceiling of the mix, in dBFS.
CEILING_DB = -1.0
#: Length of the fade at the very end of every file, in seconds (a cut tail never clicks).
END_FADE_SECONDS = 0.02
#: Effects that make a stereo image (or may insist on a stereo bus): stems pass them in stereo.
STEREO_EFFECTS = ("Reverb", "Convolution", "vst3")
#: Longest audio a render may produce, in seconds (memory: ~1.5 MB per stereo second per buffer).
MAX_SECONDS = 20 * 60
#: File names the renderer writes besides the stems.
MIX_NAME, PIANOROLL_NAME = "mix", "pianoroll.png"


class RenderError(EngineError, ValueError):
    """Bad render input: sample rate, format, bit depth, output folder, instrument roles."""


@dataclass
class RenderedAudio:
    """Audio of one render, in memory. Arrays are float32 ``(2, samples)``.

    ``stems`` maps stem names (the track roles, made unique) to audio; it is empty when
    the stems were handed to a callback instead. ``premaster`` is the sum of the stems
    (before the master chain), None when not kept; ``mix`` the final master.
    """

    sample_rate: int
    clip_samples: int
    stems: dict[str, np.ndarray]
    premaster: np.ndarray | None
    mix: np.ndarray
    loudness_lufs: float
    peak_dbfs: float
    instruments: dict[str, str]
    tracks: list[Track]

    @property
    def samples(self) -> int:
        """Length of every stem and of the mix, in samples."""
        return int(self.mix.shape[1])


@dataclass
class RenderResult:
    """What :func:`render_clip` wrote and measured.

    Durations in seconds; ``loudness_lufs`` is the mix's integrated loudness (ITU-R
    BS.1770-4, -inf for silence); ``peak_dbfs`` its sample peak.
    """

    stems: dict[str, Path]
    mix: Path
    pianoroll: Path | None
    loudness_lufs: float
    peak_dbfs: float
    clip_seconds: float
    duration_seconds: float
    sample_rate: int
    samples: int
    preset: str
    instruments: dict[str, str] = field(default_factory=dict)

    @property
    def tail_seconds(self) -> float:
        """How much longer than the clip the files are (the kept tails), in seconds."""
        return self.duration_seconds - self.clip_seconds

    def summary(self) -> str:
        """A few human-readable lines: files, length, loudness, instruments."""
        lines = [f"stems: {', '.join(str(p) for p in self.stems.values())}",
                 f"mix: {self.mix} ({self.duration_seconds:.2f} s = clip {self.clip_seconds:.2f} s + tail "
                 f"{self.tail_seconds:.2f} s, {self.sample_rate} Hz)",
                 f"loudness: {self.loudness_lufs:.1f} LUFS integrated, peak {self.peak_dbfs:.1f} dBFS "
                 f"(preset {self.preset})",
                 "instruments: " + ", ".join(f"{r}={i}" for r, i in self.instruments.items())]
        if self.pianoroll is not None:
            lines.append(f"piano roll: {self.pianoroll}")
        return "\n".join(lines)


# --------------------------------------------------------------------- chord pad

#: MIDI range of the generated pad (F3..C5), below and around a lead's home octave.
PAD_RANGE = (53, 72)


def voice_chord(pitch_classes: Sequence[int], previous: Sequence[int] | None,
                low: int = PAD_RANGE[0], high: int = PAD_RANGE[1]) -> list[int]:
    """A voicing (sorted MIDI notes in ``[low, high]``) of up to four chord tones.

    Chooses, among close voicings (span <= 14 semitones), the one that moves least from
    ``previous`` (sum of each note's distance to the nearest previous note), so common
    tones stay and the other voices step: voice leading. The first chord centres on
    the middle of the range. Five-note chords drop the fifth, then the root.
    """
    pcs = list(dict.fromkeys(int(p) % 12 for p in pitch_classes))
    while len(pcs) > 4:
        fifth = (pcs[0] + 7) % 12
        pcs.remove(fifth if fifth in pcs[1:] else pcs[1])
    options = [[m for m in range(low, high + 1) if m % 12 == pc] for pc in pcs]
    best: tuple[float, list[int]] | None = None
    centre = (low + high) / 2.0
    for combo in itertools.product(*options):
        notes = sorted(combo)
        if notes[-1] - notes[0] > 14:
            continue
        cost: float
        if previous:
            cost = sum(min(abs(n - p) for p in previous) for n in notes)
            cost += 0.1 * abs(float(np.mean(notes)) - float(np.mean(previous)))
        else:
            cost = abs(float(np.mean(notes)) - centre)
        cost += 0.01 * (notes[-1] - notes[0])  # tie-break towards close position
        if best is None or cost < best[0]:
            best = (cost, notes)
    if best is None:  # span too wide for the range: stack upwards from the lowest options
        return sorted(o[0] for o in options)
    return best[1]


def chord_pad(clip: Clip, role: str = "pad", velocity: int = 70) -> Track:
    """A voice-led chord pad track: the clip's progression, one chord a bar, for all its bars.

    Notes shared by consecutive chords are tied into one long note, so the pad
    breathes only where the harmony moves. GM program 89 (warm pad).
    """
    chords = clip.progression()
    bar = clip.beats_per_bar
    sounding: dict[int, Note] = {}
    notes: list[Note] = []
    previous: list[int] | None = None
    for b in range(int(clip.bars)):
        voicing = voice_chord(chords[b % len(chords)].pitch_classes, previous)
        start = b * bar
        for pitch in list(sounding):
            if pitch not in voicing:
                notes.append(sounding.pop(pitch))
        for pitch in voicing:
            if pitch in sounding:
                sounding[pitch].duration += bar
            else:
                sounding[pitch] = Note(pitch=pitch, start=start, duration=bar, velocity=velocity)
        previous = voicing
    notes.extend(sounding.values())
    notes.sort(key=lambda n: (n.start, n.pitch))
    return Track(role=role, program=89, notes=notes)


# ---------------------------------------------------------------------- loudness

def _k_weighting_sos(sample_rate: int) -> np.ndarray:
    """ITU-R BS.1770-4 K-weighting (high shelf + high-pass) as second-order sections.

    The analogue prototypes' parameters reproduce the standard's 48 kHz coefficients
    exactly and give the same curve at any other rate.
    """
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / sample_rate)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh ** 0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf = [(vh + vb * k / q + k * k) / a0, 2.0 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0,
             1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / sample_rate)
    a0 = 1.0 + k / q + k * k
    highpass = [1.0, -2.0, 1.0, 1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]
    return np.array([shelf, highpass])


def integrated_loudness(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4) of ``audio`` shaped ``(channels, samples)``.

    K-weighting, 400 ms blocks with 75 % overlap, absolute gate -70 LUFS, relative gate
    -10 LU; channels weighted 1 (mono or stereo). Returns -inf for silence or audio
    shorter than one block. Works in 10 s chunks, so memory stays small.
    """
    from scipy.signal import sosfilt, sosfilt_zi

    audio = np.atleast_2d(audio)
    hop = int(round(0.1 * sample_rate))
    n_hops = audio.shape[1] // hop
    if n_hops < 4:
        return float("-inf")
    sos = _k_weighting_sos(sample_rate)
    energy = np.zeros(n_hops)
    for ch in audio:
        zi = sosfilt_zi(sos) * 0.0
        for h0 in range(0, n_hops, 100):
            h1 = min(n_hops, h0 + 100)
            y, zi = sosfilt(sos, ch[h0 * hop:h1 * hop], zi=zi)
            y = y.reshape(h1 - h0, hop)
            energy[h0:h1] += np.einsum("ij,ij->i", y, y)
    block = np.convolve(energy, np.ones(4), mode="valid") / (4 * hop)  # mean square per 400 ms block
    with np.errstate(divide="ignore"):
        lk = -0.691 + 10.0 * np.log10(block)
    gated = block[lk > -70.0]
    if gated.size == 0:
        return float("-inf")
    rel = -0.691 + 10.0 * np.log10(gated.mean()) - 10.0
    final = block[(lk > -70.0) & (lk > rel)]
    return float(-0.691 + 10.0 * np.log10(final.mean()))


def _db(x: float) -> float:
    return 20.0 * math.log10(x) if x > 0 else float("-inf")


# ---------------------------------------------------------------------- rendering

def _options(**values: Any) -> RenderRequest:
    """The render options checked by :class:`RenderRequest` (the one check every front end
    shares); a value it refuses becomes a RenderError with the same message."""
    try:
        return RenderRequest.from_mapping(values)
    except OptionError as exc:
        raise RenderError(str(exc)) from None


def stem_names(tracks: Sequence[Track]) -> list[str]:
    """One file-safe, unique name per track, from its role (``lead``, ``lead-2``...).

    Characters other than letters, digits, ``-`` and ``_`` become ``-``; ``mix`` and
    ``pianoroll`` are reserved for the renderer's own files.
    """
    names: list[str] = []
    for t in tracks:
        base = re.sub(r"[^A-Za-z0-9_-]+", "-", t.role).strip("-") or "track"
        name, i = base, 1
        while name in names or name in (MIX_NAME, "pianoroll"):
            i += 1
            name = f"{base}-{i}"
        names.append(name)
    return names


def _normalise_instruments(instruments: Mapping[str, str | Instrument] | Sequence[str] | None) \
        -> dict[str, str | Instrument]:
    if instruments is None:
        return {}
    if isinstance(instruments, Mapping):
        return dict(instruments)
    if isinstance(instruments, str):
        instruments = [instruments]
    out: dict[str, str | Instrument] = {}
    for item in instruments:
        role, spec = parse_instrument_arg(item)
        out[role] = spec
    return out


def _pan(audio: np.ndarray, pan: float, gain: float) -> np.ndarray:
    """Stereo float32 ``(2, n)`` from mono or stereo ``audio``: constant-power pan, then gain.

    Stereo input is reused in place (it is the chain's own output buffer).
    """
    theta = (pan + 1.0) * math.pi / 4.0
    if audio.shape[0] == 1:
        gl, gr = math.cos(theta), math.sin(theta)
        out = np.empty((2, audio.shape[1]), dtype=np.float32)
        np.multiply(audio[0], np.float32(gl * gain), out=out[0])
        np.multiply(audio[0], np.float32(gr * gain), out=out[1])
        return out
    gl, gr = min(1.0, math.sqrt(2) * math.cos(theta)), min(1.0, math.sqrt(2) * math.sin(theta))
    out = audio if audio.dtype == np.float32 and audio.flags.writeable else audio.astype(np.float32)
    if gl * gain != 1.0:
        out[0] *= np.float32(gl * gain)
    if gr * gain != 1.0:
        out[1] *= np.float32(gr * gain)
    return out


def _fade_end(audio: np.ndarray, sample_rate: int) -> None:
    n = min(audio.shape[1], int(END_FADE_SECONDS * sample_rate))
    if n > 0:
        audio[:, -n:] *= np.linspace(1.0, 0.0, n, dtype=np.float32)


def render_audio(clip: Clip, *, preset: str | Preset = limits.DEFAULT_PRESET,
                 instruments: Mapping[str, str | Instrument] | Sequence[str] | None = None,
                 sample_rate: int = limits.DEFAULT_SAMPLE_RATE, pad: bool = False, quiet: bool = True,
                 on_stem: Callable[[str, np.ndarray], None] | None = None,
                 keep_premaster: bool = True) -> RenderedAudio:
    """Render ``clip`` to stems and a mix in memory (no files); see :func:`render_clip`.

    ``on_stem(name, audio)``, when given, receives each finished stem (float32
    ``(2, samples)``) and the stem is not kept in the result; with ``keep_premaster``
    False the master works in place on the stems' sum. Together they keep a long
    clip's memory to about three stereo buffers, not one per track.
    """
    sample_rate = _options(sample_rate=sample_rate).sample_rate
    if not limits.MIN_FILE_TEMPO <= float(clip.tempo) <= limits.MAX_FILE_TEMPO:
        raise RenderError(f"clip tempo {clip.tempo} bpm is out of range: allowed "
                          f"{limits.MIN_FILE_TEMPO:g}-{limits.MAX_FILE_TEMPO:g}")
    chosen = _normalise_instruments(instruments)
    preset_obj = preset if isinstance(preset, Preset) else load_preset(preset)
    tracks = list(clip.tracks)
    if pad:
        if any(t.role == "pad" for t in tracks):
            raise RenderError("clip already has a 'pad' track: drop --pad, or rename that track's role")
        tracks.append(chord_pad(clip))
    if not tracks:
        raise RenderError("clip has no tracks to render: add notes, or use --pad for a chord pad from its chords")
    roles = {t.role for t in tracks}
    for role in chosen:
        if role not in roles:
            raise RenderError(f"--instrument names role {role!r}, but the clip has "
                              f"{', '.join(sorted(roles))}" + ("" if pad else " (add --pad for a 'pad' track)"))
    names = stem_names(tracks)

    # Resolve everything before rendering anything: a bad spec fails fast.
    plan: list[tuple[str, Track, Instrument, StemSettings]] = []
    for name, track in zip(names, tracks):
        settings = preset_obj.stem(track.role)
        spec = chosen.get(track.role, settings.instrument)
        inst = resolve_instrument(spec) if spec is not None else default_instrument(track.role)
        plan.append((name, track, inst, settings))

    seconds_per_beat = 60.0 / clip.tempo
    end_beats = max([clip.length_beats] + [t.end_beat for t in tracks])
    tail = max(inst.tail_for(track, sample_rate) + chain_tail_seconds(s.effects, clip.tempo)
               for _, track, inst, s in plan)
    tail += chain_tail_seconds(preset_obj.master.effects, clip.tempo)
    total_beats = math.ceil(end_beats + tail / seconds_per_beat - 1e-9)
    n_total = int(round(total_beats * seconds_per_beat * sample_rate))
    if n_total > MAX_SECONDS * sample_rate:
        raise RenderError(f"clip would render to {n_total / sample_rate / 60:.1f} minutes of audio: the limit is "
                          f"{MAX_SECONDS // 60} minutes (fewer bars, a faster tempo, or a shorter tail)")
    clip_samples = int(round(clip.length_beats * seconds_per_beat * sample_rate))

    premaster = np.zeros((2, n_total), dtype=np.float32)
    stems: dict[str, np.ndarray] = {}
    progress = _progress(len(plan), quiet)
    for name, track, inst, settings in plan:
        log.debug("rendering %s with %s", name, inst.label)
        dry = inst.render(track, clip.tempo, sample_rate, n_total)
        effects = settings.effects
        gain = 10.0 ** (settings.gain_db / 20.0)
        if effects and any(e.type in STEREO_EFFECTS for e in effects):
            # like a stereo insert on a mono channel: pan first, so the effect can widen it
            dry = build_chain(effects, clip.tempo)(_pan(dry, settings.pan, gain), float(sample_rate), reset=True)
            stem = _pan(dry, 0.0, 1.0)
        else:  # mono-safe effects run before the pan, on half the samples
            if effects:
                dry = build_chain(effects, clip.tempo)(dry, float(sample_rate), reset=True)
            stem = _pan(dry, settings.pan, gain)
        del dry
        _fade_end(stem, sample_rate)
        premaster += stem
        if on_stem is not None:
            on_stem(name, stem)
        else:
            stems[name] = stem
        del stem
        if progress is not None:
            progress.update(1)
    if progress is not None:
        progress.close()

    master = preset_obj.master
    if master.effects:
        mix = build_chain(master.effects, clip.tempo)(premaster, float(sample_rate), reset=True)
    elif keep_premaster:
        mix = premaster.copy()
    else:
        mix = premaster
    kept = premaster if keep_premaster else None
    del premaster  # with keep_premaster False, the master chain's input can be freed now
    gain_db = master.gain_db
    measured = None
    if master.target_lufs is not None:
        measured = integrated_loudness(mix, sample_rate)
        if math.isfinite(measured):
            gain_db = min(36.0, master.target_lufs - measured)
    if gain_db != 0.0:
        mix *= np.float32(10.0 ** (gain_db / 20.0))
    ceiling = np.float32(10.0 ** (CEILING_DB / 20.0))
    if mix.size and float(np.abs(mix).max()) > ceiling:
        import pedalboard

        limiter = pedalboard.BrickwallLimiter(ceiling_db=CEILING_DB, release_ms=100.0)
        mix = limiter(mix, float(sample_rate), reset=True)
        loudness = integrated_loudness(mix, sample_rate)
    elif measured is not None and math.isfinite(measured):
        loudness = measured + gain_db  # the limiter had nothing to do: only the gain changed it
    else:
        loudness = integrated_loudness(mix, sample_rate)
    _fade_end(mix, sample_rate)
    np.clip(mix, -ceiling, ceiling, out=mix)
    peak = float(np.abs(mix).max()) if mix.size else 0.0
    return RenderedAudio(sample_rate=sample_rate, clip_samples=clip_samples, stems=stems,
                         premaster=kept,
                         mix=mix, loudness_lufs=loudness, peak_dbfs=_db(peak),
                         instruments={n: i.label for n, _, i, _ in plan}, tracks=tracks)


def _progress(total: int, quiet: bool) -> Any:  # a tqdm bar, or None
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="render", unit="stem", leave=False)


# ------------------------------------------------------------------------ output

class _OutputFolder(StagedFiles):
    """The render's output folder: files staged in it appear together; on abort, a folder
    this render created is removed again."""

    def __init__(self, folder: Path):
        super().__init__(folder)
        self.created = False

    def prepare(self) -> None:
        if self.folder.exists() and not self.folder.is_dir():
            raise RenderError(f"output folder {str(self.folder)!r} is a file: give a folder for the stems")
        if not self.folder.exists():
            try:
                self.folder.mkdir(parents=True)
            except OSError as exc:
                raise RenderError(f"output folder {str(self.folder)!r} cannot be created: {exc.strerror}") from None
            self.created = True
        if not os.access(self.folder, os.W_OK | os.X_OK):
            self.abort()
            raise RenderError(f"output folder {str(self.folder)!r} is not writable: choose another with --out")

    def abort(self) -> None:
        super().abort()
        if self.created:
            shutil.rmtree(self.folder, ignore_errors=True)


def write_audio(path: str | os.PathLike[str], audio: np.ndarray, sample_rate: int,
                fmt: str = limits.DEFAULT_AUDIO_FORMAT, bit_depth: str = limits.DEFAULT_BIT_DEPTH) -> None:
    """Write float32 ``(channels, samples)`` audio as WAV/FLAC (16/24-bit PCM or 32-bit float WAV).

    Writes to exactly ``path`` (the format comes from ``fmt``, not the file name); long
    audio goes in 30-second slices so no full-length integer copy is made.
    """
    from pedalboard.io import AudioFile

    req = _options(sample_rate=sample_rate, fmt=fmt, bit_depth=bit_depth)
    fmt, bit_depth = req.fmt, req.bit_depth
    depth = 32 if bit_depth == "32f" else int(bit_depth)
    step = 30 * int(sample_rate)
    with open(path, "wb") as fh, AudioFile(fh, "w", float(sample_rate), int(audio.shape[0]), bit_depth=depth,
                                           format=fmt) as f:
        if audio.shape[1] <= 2 * step:
            f.write(np.ascontiguousarray(audio))
        else:
            for i in range(0, audio.shape[1], step):
                f.write(np.ascontiguousarray(audio[:, i:i + step]))


def render_clip(clip: Clip, out_dir: str | os.PathLike[str], request: RenderRequest | None = None, /, *,
                quiet: bool = False, **options: Any) -> RenderResult:
    """Render ``clip`` to ``out_dir/<role>.<fmt>`` per track, ``out_dir/mix.<fmt>`` and a piano roll.

    ``request`` is a :class:`~engine.music.request.RenderRequest`; without one, ``options`` are
    its fields as keyword arguments, checked the same way. ``preset``: a shipped preset name
    (``dry``, ``studio``, ``lofi``, ``ambient``), a .toml/.json path or a :class:`Preset`.
    ``instruments``: ``{role: spec}`` or ``["role=spec", ...]``, where spec is a voice name,
    ``gm``, ``PATH.sf2`` or ``PATH.vst3`` (see :func:`engine.audio.instruments.resolve_instrument`);
    roles not named use the preset's instrument, else the role's default voice. ``sample_rate``
    in Hz; ``fmt`` ``wav`` or ``flac``; ``bit_depth`` ``16``, ``24`` or ``32f`` (float, WAV only;
    ``32`` means the same). ``pad`` adds a voice-led chord pad from the clip's chords;
    ``pianoroll`` writes ``pianoroll.png``. ``quiet`` hides the progress bar (shown only on a
    terminal anyway).

    All files are written under temporary names and renamed at the end: on any error
    nothing is left (a folder this call created is removed again). Raises EngineError
    subclasses for bad input.
    """
    if request is None:
        request = _options(**options)
    elif options:
        raise TypeError(f"render_clip() takes a RenderRequest or keyword options, not both ({', '.join(options)})")
    preset, instruments, sample_rate = request.preset, request.instruments, request.sample_rate
    fmt, bit_depth, pad, pianoroll = request.fmt, request.bit_depth, request.pad, request.pianoroll
    preset_obj = preset if isinstance(preset, Preset) else load_preset(preset)
    staging = _OutputFolder(Path(out_dir).expanduser())
    staging.prepare()
    stem_files: dict[str, Path] = {}
    try:
        def write_stem(name: str, audio: np.ndarray) -> None:
            tmp = staging.path(f"{name}.{fmt}")
            write_audio(tmp, audio, sample_rate, fmt, bit_depth)
            stem_files[name] = staging.folder / f"{name}.{fmt}"

        audio = render_audio(clip, preset=preset_obj, instruments=instruments, sample_rate=sample_rate, pad=pad,
                             quiet=quiet, on_stem=write_stem, keep_premaster=False)
        write_audio(staging.path(f"{MIX_NAME}.{fmt}"), audio.mix, sample_rate, fmt, bit_depth)
        roll = None
        if pianoroll:
            from engine.audio.pianoroll import write_pianoroll

            rolled = dataclasses.replace(clip, tracks=audio.tracks)
            write_pianoroll(rolled, staging.path(PIANOROLL_NAME))
            roll = staging.folder / PIANOROLL_NAME
        staging.commit()
    except BaseException:
        staging.abort()
        raise
    sr = int(sample_rate)
    return RenderResult(stems=stem_files, mix=staging.folder / f"{MIX_NAME}.{fmt}", pianoroll=roll,
                        loudness_lufs=audio.loudness_lufs, peak_dbfs=audio.peak_dbfs,
                        clip_seconds=clip.length_seconds, duration_seconds=audio.samples / sr, sample_rate=sr,
                        samples=audio.samples, preset=preset_obj.name, instruments=audio.instruments)
