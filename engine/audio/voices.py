"""Built-in synth voices: numpy oscillators, ADSR envelopes and pedalboard's LadderFilter.

A :class:`Voice` needs no system library. Each note is synthesised on its own (phase
reset at the note-on sample, so the onset is exact to the sample) from one or more
band-limited oscillators, run through the voice's own LadderFilter (one filter per
note, as in a polysynth), shaped by the ADSR envelope (OSC -> VCF -> VCA, the classic
subtractive order) and added into a mono track buffer. Notes of the same pitch share
one filtered waveform, synthesised once per render. Frequencies are
equal-tempered from A4 = 440 Hz and computed in float64, so a rendered note's
fundamental is exact to far better than a cent.

Named voices (:data:`VOICES`): ``sine``, ``lead-saw``, ``square-lead``, ``pluck``,
``keys``, ``bell``, ``organ``, ``soft-pad``, ``sub-bass``, ``saw-bass``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from engine.base.errors import EngineError

#: Oscillator waveforms a voice can combine.
WAVEFORMS = ("sine", "saw", "square", "triangle", "noise")
#: LadderFilter modes (pedalboard.LadderFilter.Mode names).
FILTER_MODES = ("LPF12", "LPF24", "HPF12", "HPF24", "BPF12", "BPF24")


class VoiceError(EngineError, ValueError):
    """An unknown voice name or an invalid voice definition."""


@dataclass(frozen=True)
class Oscillator:
    """One oscillator of a voice.

    ``ratio`` multiplies the note frequency (2.0 sounds an octave up); ``detune_cents``
    shifts it; ``level`` is its linear amplitude; ``decay`` (seconds, optional) adds an
    exponential fade reaching -60 dB after that time, on top of the ADSR, so a voice
    can have bright partials that die faster than its body.
    """

    wave: str
    level: float = 1.0
    ratio: float = 1.0
    detune_cents: float = 0.0
    decay: float | None = None

    def __post_init__(self) -> None:
        if self.wave not in WAVEFORMS:
            raise VoiceError(f"oscillator wave {self.wave!r} is not known: allowed are {', '.join(WAVEFORMS)}")
        if not self.ratio > 0:
            raise VoiceError(f"oscillator ratio {self.ratio} must be > 0 (1.0 = the note's frequency)")
        if self.decay is not None and not self.decay > 0:
            raise VoiceError(f"oscillator decay {self.decay} must be > 0 seconds, or None for no extra decay")


@dataclass(frozen=True)
class Envelope:
    """ADSR amplitude envelope: ``attack``, ``decay``, ``release`` in seconds, ``sustain`` 0-1.

    The attack is linear from 0 (so the note starts exactly at its onset sample); decay
    and release follow a quadratic curve, which sounds like an exponential but reaches
    exact silence at the end of the release.
    """

    attack: float = 0.005
    decay: float = 0.1
    sustain: float = 0.8
    release: float = 0.1

    def __post_init__(self) -> None:
        for name in ("attack", "decay", "release"):
            if not 0 <= getattr(self, name) <= 30:
                raise VoiceError(f"envelope {name} {getattr(self, name)} s is out of range (allowed: 0-30 s)")
        if not 0 <= self.sustain <= 1:
            raise VoiceError(f"envelope sustain {self.sustain} is out of range (allowed: 0-1)")


@dataclass(frozen=True)
class Voice:
    """A named synth voice: oscillators + ADSR + an optional LadderFilter.

    Every note has its own filter (like the voices of a polysynth), so overlapping
    notes never modulate each other's filter; ``cutoff_hz`` None means no filter. ``gain`` is the linear peak level of one note
    at velocity 127 before the filter (about -10 dBFS for the shipped voices, so a
    three-track mix has headroom).
    """

    name: str
    description: str
    oscillators: tuple[Oscillator, ...]
    envelope: Envelope = field(default_factory=Envelope)
    cutoff_hz: float | None = None
    resonance: float = 0.0
    filter_mode: str = "LPF24"
    drive: float = 1.0
    gain: float = 0.3

    def __post_init__(self) -> None:
        if not self.oscillators:
            raise VoiceError(f"voice {self.name!r} has no oscillators")
        if self.filter_mode not in FILTER_MODES:
            raise VoiceError(f"voice {self.name!r}: filter mode {self.filter_mode!r} is not known: allowed are "
                             f"{', '.join(FILTER_MODES)}")
        if self.cutoff_hz is not None and not 10 <= self.cutoff_hz <= 20000:
            raise VoiceError(f"voice {self.name!r}: cutoff {self.cutoff_hz} Hz is out of range (allowed: 10-20000)")
        if not 0 <= self.resonance <= 1:
            raise VoiceError(f"voice {self.name!r}: resonance {self.resonance} is out of range (allowed: 0-1)")

    @property
    def tail_seconds(self) -> float:
        """How long a note can sound after its note-off (the release), in seconds."""
        return self.envelope.release

    def render(self, starts: Sequence[int] | np.ndarray, lengths: Sequence[int] | np.ndarray,
               pitches: Sequence[int] | np.ndarray, velocities: Sequence[int] | np.ndarray,
               n_samples: int, sample_rate: int) -> np.ndarray:
        """Render notes into a mono float32 buffer of ``n_samples``.

        ``starts`` and ``lengths`` are note-on sample indices and gate lengths in
        samples (the release sounds after the gate); ``pitches`` are MIDI numbers
        (fractional allowed), ``velocities`` 1-127. Notes starting at or after
        ``n_samples`` are skipped; sound past the buffer end is cut. Returns shape
        ``(n_samples,)``.
        """
        n_samples = int(n_samples)
        out = np.zeros(n_samples, dtype=np.float32)
        release = int(round(self.envelope.release * sample_rate))
        notes = []
        longest: dict[float, int] = {}
        for start, length, pitch, vel in zip(starts, lengths, pitches, velocities):
            start, length = int(start), max(1, int(length))
            if 0 <= start < n_samples:
                total = min(length + release, n_samples - start)
                notes.append((start, length, total, float(pitch), float(vel)))
                longest[float(pitch)] = max(longest.get(float(pitch), 0), total)
        # Oscillators and filter come before the envelope (OSC -> VCF -> VCA), and every
        # note restarts them at phase 0 with a silent filter: so all notes of one pitch
        # share one filtered waveform, computed once for the longest of them.
        tone = {p: self._tone(p, n, sample_rate) for p, n in longest.items()}
        envelopes: dict[tuple[int, int], np.ndarray] = {}
        scratch = np.empty(max((n[2] for n in notes), default=0), dtype=np.float32)
        for start, gate, total, pitch, vel in notes:
            env = envelopes.get((gate, total))
            if env is None:
                env = envelopes[(gate, total)] = _adsr(self.envelope, gate, total, sample_rate)
            note = np.multiply(tone[pitch][:total], env, out=scratch[:total])
            note *= np.float32(self.gain * (vel / 127.0) ** 1.5)
            out[start:start + total] += note
        return out

    # ------------------------------------------------------------------ internals
    def _tone(self, pitch: float, total: int, sr: int) -> np.ndarray:
        """The filtered oscillator mix of one pitch, before the envelope: float32 ``(total,)``."""
        freq = 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)
        sig = np.zeros(total, dtype=np.float32)
        for osc in self.oscillators:
            f = freq * osc.ratio * 2.0 ** (osc.detune_cents / 1200.0)
            if f >= sr / 2:
                continue  # above Nyquist: it would only alias
            wave = _oscillator(osc.wave, total, f / sr, seed=int(pitch * 100) + WAVEFORMS.index(osc.wave))
            if osc.decay is not None:
                wave *= _decay_curve(osc.decay * sr, total)
            if osc.level != 1.0:
                wave *= np.float32(osc.level)
            sig += wave
        if self.cutoff_hz is not None:
            import pedalboard

            filt = pedalboard.LadderFilter(mode=getattr(pedalboard.LadderFilter.Mode, self.filter_mode),
                                           cutoff_hz=float(self.cutoff_hz), resonance=float(self.resonance),
                                           drive=float(self.drive))
            sig = filt(sig[None, :], float(sr), reset=True)[0]
        return sig


_RAMP = np.arange(0, dtype=np.float32)


def _ramp(n: int) -> np.ndarray:
    """``arange(n)`` as float32, from a shared growing buffer (exact up to 2**24 samples)."""
    global _RAMP
    if len(_RAMP) < n:
        _RAMP = np.arange(max(n, 2 * len(_RAMP)), dtype=np.float32)
    return _RAMP[:n]


def _decay_curve(samples_to_60db: float, n: int) -> np.ndarray:
    """``exp(-6.9078 k / samples_to_60db)`` for k < n: falls 60 dB over the given samples."""
    return np.exp(_ramp(n) * np.float32(-6.9078 / samples_to_60db))


def _oscillator(wave: str, n: int, dt: float, seed: int = 0) -> np.ndarray:
    """``n`` float32 samples of a waveform at ``dt`` cycles per sample, phase 0 at sample 0.

    The phase is computed in float32 from the sample index (error < 2.5e-4 of a cycle
    for notes up to 6 s, as noise, never as drift: the frequency stays exact). Saw and
    square are band-limited with PolyBLEP: a two-sample polynomial residual at every
    wrap of the phase, placed at the wrap positions computed from ``dt`` directly.
    """
    if wave == "noise":
        return np.random.default_rng(seed).uniform(-1.0, 1.0, n).astype(np.float32)
    t = _ramp(n) * np.float32(dt)
    if wave == "sine":
        t *= np.float32(2.0 * np.pi)
        return np.sin(t, out=t)
    if wave == "triangle":
        t += np.float32(0.25)  # starts at 0, rising, like the sine
        t -= np.floor(t)
        t -= np.float32(0.5)
        np.abs(t, out=t)
        t *= np.float32(-4.0)
        t += np.float32(1.0)
        return t
    if wave == "saw":
        return _saw(t, dt, 0.0)
    # square = difference of two band-limited saws half a cycle apart
    a = _saw(t.copy(), dt, 0.0)
    a -= _saw(t, dt, 0.5)
    a *= np.float32(0.5)
    return a


def _saw(t: np.ndarray, dt: float, offset: float) -> np.ndarray:
    """Band-limited rising saw in [-1, 1], in place on ``t`` = cycles elapsed (float32).

    ``offset`` shifts the phase by that fraction of a cycle.
    """
    n = len(t)
    if offset:
        t += np.float32(offset)
    t -= np.floor(t)
    t *= np.float32(2.0)
    t -= np.float32(1.0)
    # Wrap m happens between samples floor((m - offset) / dt) and the next one.
    cycles = int((n - 1) * dt + offset)
    if cycles >= 1:
        m = np.arange(1, cycles + 1, dtype=np.float64) - offset
        after = np.ceil(m / dt).astype(np.int64)  # first sample past each wrap
        frac_after = after * dt - m  # phase just after the wrap, in [0, dt)
        ok = after < n
        x = frac_after[ok] / dt
        t[after[ok]] -= (2.0 * x - x * x - 1.0).astype(np.float32)
        before = after - 1
        okb = (before >= 0) & (before < n)
        x = (before[okb] * dt - m[okb]) / dt  # phase before the wrap minus 1, in [-dt, 0)
        t[before[okb]] -= (x * x + 2.0 * x + 1.0).astype(np.float32)
    return t


def _adsr(env: Envelope, gate: int, total: int, sr: int) -> np.ndarray:
    """Envelope of a note held ``gate`` samples, rendered for ``total`` samples (float32)."""
    a = max(1, int(round(env.attack * sr)))
    d = max(1, int(round(env.decay * sr)))
    r = max(1, int(round(env.release * sr)))
    s = np.float32(env.sustain)
    out = np.empty(total, dtype=np.float32)
    held = min(gate, total)
    k = np.arange(held, dtype=np.float32)
    seg = out[:held]
    seg[:] = s
    na = min(a, held)
    seg[:na] = k[:na] / a
    if held > a:
        nd = min(held, a + d) - a
        x = 1.0 - k[a:a + nd] / np.float32(d) + a / np.float32(d)
        seg[a:a + nd] = s + (1.0 - s) * x * x
    # level at the note-off sample, continuing the curve the gate interrupted
    if gate < a:
        level = gate / a
    elif gate < a + d:
        xg = 1.0 - (gate - a) / d
        level = float(s + (1.0 - s) * xg * xg)
    else:
        level = float(s)
    if total > held:
        kr = np.arange(total - held, dtype=np.float32)
        x = np.clip(1.0 - kr / np.float32(r), 0.0, 1.0)
        out[held:] = np.float32(level) * x * x
    return out


def _v(name: str, description: str, oscs: Sequence[Oscillator], env: Envelope, **kw: float | str | None) -> Voice:
    return Voice(name=name, description=description, oscillators=tuple(oscs), envelope=env, **kw)  # type: ignore[arg-type]


#: The built-in voices by name.
VOICES: dict[str, Voice] = {v.name: v for v in (
    _v("sine", "pure sine with a soft start: a clean test tone, or a flute-like lead",
       [Oscillator("sine")], Envelope(0.005, 0.05, 1.0, 0.05), gain=0.32),
    _v("lead-saw", "two detuned saws through a 24 dB ladder low-pass: the classic synth lead",
       [Oscillator("saw", 0.6, detune_cents=-6), Oscillator("saw", 0.6, detune_cents=6)],
       Envelope(0.004, 0.15, 0.75, 0.12), cutoff_hz=3200, resonance=0.25, gain=0.3),
    _v("square-lead", "hollow square lead, gently filtered",
       [Oscillator("square", 0.8), Oscillator("square", 0.35, detune_cents=5)],
       Envelope(0.003, 0.1, 0.8, 0.08), cutoff_hz=4500, resonance=0.1, filter_mode="LPF12", gain=0.3),
    _v("pluck", "plucked string: bright saw attack over a softer triangle body, no sustain",
       [Oscillator("saw", 0.6, decay=0.25), Oscillator("triangle", 1.0, decay=1.2),
        Oscillator("noise", 0.08, decay=0.015)],
       Envelope(0.002, 0.9, 0.0, 0.15), cutoff_hz=2800, resonance=0.15, gain=0.36),
    _v("keys", "electric-piano-like: sine body with a fast-fading bell tine",
       [Oscillator("sine", 1.0, decay=2.0), Oscillator("sine", 0.3, ratio=2.0, decay=0.5),
        Oscillator("sine", 0.12, ratio=3.0, decay=0.2)],
       Envelope(0.002, 1.5, 0.35, 0.25), gain=0.34),
    _v("bell", "glassy bell with inharmonic partials that die before the fundamental",
       [Oscillator("sine", 1.0, decay=2.5), Oscillator("sine", 0.35, ratio=2.76, decay=0.8),
        Oscillator("sine", 0.15, ratio=5.4, decay=0.3)],
       Envelope(0.001, 2.5, 0.0, 0.4), gain=0.32),
    _v("organ", "drawbar organ: harmonics 1, 2, 3, 4, 6 at fixed levels, no decay",
       [Oscillator("sine", 1.0), Oscillator("sine", 0.55, ratio=2.0), Oscillator("sine", 0.35, ratio=3.0),
        Oscillator("sine", 0.25, ratio=4.0), Oscillator("sine", 0.12, ratio=6.0)],
       Envelope(0.008, 0.05, 1.0, 0.06), gain=0.2),
    _v("soft-pad", "slow, warm pad: a triangle with a breath of detuned saw, no filter needed",
       [Oscillator("triangle", 1.0), Oscillator("saw", 0.18, detune_cents=8)],
       Envelope(0.35, 0.6, 0.85, 0.8), gain=0.22),
    _v("sub-bass", "round sine sub bass with a touch of triangle for small speakers",
       [Oscillator("sine", 1.0), Oscillator("triangle", 0.3)],
       Envelope(0.004, 0.2, 0.85, 0.09), gain=0.38),
    _v("saw-bass", "filtered saw bass with a resonant 24 dB ladder low-pass",
       [Oscillator("saw", 0.7), Oscillator("square", 0.35, detune_cents=-5)],
       Envelope(0.003, 0.25, 0.6, 0.08), cutoff_hz=700, resonance=0.35, drive=1.4, gain=0.36),
)}

#: Voice each track role gets when neither the caller nor the preset chooses one.
ROLE_VOICES = {"lead": "lead-saw", "bass": "saw-bass", "pad": "soft-pad"}
#: Voice for roles not listed in :data:`ROLE_VOICES`.
DEFAULT_VOICE = "pluck"


def get_voice(name: str) -> Voice:
    """The built-in voice called ``name``; VoiceError listing the names otherwise."""
    try:
        return VOICES[name]
    except KeyError:
        raise VoiceError(f"voice {name!r} is not known: allowed are {', '.join(VOICES)} "
                         "(or a .sf2 SoundFont or .vst3 plugin path)") from None
