"""Built-in voices: measured pitch, exact onsets, envelopes, silence, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest

from engine.audio.voices import VOICES, Envelope, Oscillator, Voice, VoiceError, _adsr, _oscillator, get_voice

SR = 44100


def fundamental_cents(audio: np.ndarray, sr: int, midi: float, start_s: float = 0.05, end_s: float = 0.55) -> float:
    """Measured fundamental of a note, in cents from ``midi`` (equal temperament, A4 = 440 Hz).

    The estimator does not use ``midi`` to find the pitch: it takes the lowest spectral
    peak within 20 dB of the strongest one (Hann window, 2**20-point FFT, parabolic
    interpolation), then the power-weighted centre of the spectrum within 50 cents of
    it, which is the perceived pitch of detuned unison oscillators.
    """
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=0)
    seg = x[int(start_s * sr):int(end_s * sr)]
    seg = seg * np.hanning(len(seg))
    n = 1 << 20
    mag = np.abs(np.fft.rfft(seg, n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    mag[freqs < 25.0] = 0.0
    thr = mag.max() * 0.1
    peaks = np.nonzero((mag[1:-1] > thr) & (mag[1:-1] >= mag[:-2]) & (mag[1:-1] > mag[2:]))[0] + 1
    i = int(peaks[0])
    a, b, c = np.log(mag[i - 1:i + 2])
    f = (i + 0.5 * (a - c) / (a - 2 * b + c)) * sr / n
    band = (freqs > f * 2 ** (-50 / 1200)) & (freqs < f * 2 ** (50 / 1200))
    f = float(np.sum(freqs[band] * mag[band] ** 2) / np.sum(mag[band] ** 2))
    return 1200.0 * np.log2(f / (440.0 * 2 ** ((midi - 69) / 12)))


def single_note(voice: Voice, pitch: int, seconds: float = 0.7, total: float = 1.5, velocity: int = 100) -> np.ndarray:
    return voice.render([0], [int(seconds * SR)], [pitch], [velocity], int(total * SR), SR)


@pytest.mark.parametrize("name", list(VOICES))
@pytest.mark.parametrize("pitch", [45, 57, 69])
def test_every_voice_plays_in_tune(name, pitch):
    cents = fundamental_cents(single_note(VOICES[name], pitch), SR, pitch)
    assert abs(cents) < 10.0, f"{name} at MIDI {pitch}: {cents:+.2f} cents"


@pytest.mark.parametrize("name", list(VOICES))
def test_onset_is_exact_and_release_ends_in_silence(name):
    voice = VOICES[name]
    start, gate = 12345, int(0.3 * SR)
    x = voice.render([start], [gate], [60], [100], 3 * SR, SR)
    assert not x[:start + 1].any(), "sound before the note-on sample"
    assert np.abs(x[start + 1:start + 10]).max() > 0, "no sound right after the note-on"
    end = start + gate + int(round(voice.envelope.release * SR))
    assert not x[end:].any(), "sound after the release ended"
    assert voice.tail_seconds == voice.envelope.release


@pytest.mark.parametrize("name", list(VOICES))
def test_level_headroom_and_velocity(name):
    voice = VOICES[name]
    loud, soft = single_note(voice, 60, velocity=127), single_note(voice, 60, velocity=40)
    assert 0.03 < np.abs(loud).max() < 0.5, "a single note should peak between -30 and -6 dBFS"
    assert np.abs(soft).max() < 0.5 * np.abs(loud).max()


def test_render_is_deterministic_and_notes_add_up():
    voice = get_voice("pluck")  # has a noise oscillator
    starts, gates, pitches, vels = [0, 5000, 5000], [4000, 8000, 8000], [60, 64, 67], [90, 100, 110]
    a = voice.render(starts, gates, pitches, vels, SR, SR)
    b = voice.render(starts, gates, pitches, vels, SR, SR)
    np.testing.assert_array_equal(a, b)
    parts = sum(voice.render([s], [g], [p], [v], SR, SR) for s, g, p, v in zip(starts, gates, pitches, vels))
    np.testing.assert_allclose(a, parts, atol=1e-6)


def test_notes_past_the_buffer_are_cut_or_skipped():
    voice = get_voice("organ")
    x = voice.render([900, 5000], [500, 10], [60, 60], [100, 100], 1000, SR)
    assert x.shape == (1000,) and x[900:].any()


@pytest.mark.parametrize("wave", ["saw", "square", "triangle", "sine"])
def test_oscillators_are_bounded_and_start_from_the_phase_origin(wave):
    x = _oscillator(wave, SR, 1000.5 / SR)
    assert np.abs(x).max() < 1.15  # PolyBLEP overshoots slightly at the edges
    if wave in ("triangle", "sine"):
        assert abs(x[0]) < 1e-6
    # band-limited: energy far above the fundamental's harmonics near Nyquist stays small
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    assert spec[21000:].max() < spec.max() * 0.05


def test_adsr_shape():
    env = Envelope(attack=0.01, decay=0.1, sustain=0.5, release=0.2)
    e = _adsr(env, gate=int(0.5 * SR), total=int(0.8 * SR), sr=SR)
    assert e[0] == 0 and e[int(0.01 * SR)] == pytest.approx(1.0, abs=1e-3)
    assert e[int(0.3 * SR)] == pytest.approx(0.5)
    assert e[-1] == pytest.approx(0.0, abs=1e-6)
    assert np.all(np.diff(e[int(0.5 * SR):]) <= 1e-7), "release must only fall"
    short = _adsr(env, gate=100, total=int(0.3 * SR), sr=SR)  # released during the attack
    assert short.max() <= 100 / (0.01 * SR) + 1e-6


@pytest.mark.parametrize("bad, match", [
    (lambda: Oscillator("pulse"), "wave 'pulse' is not known: allowed are sine, saw"),
    (lambda: Oscillator("saw", ratio=0), "ratio 0 must be > 0"),
    (lambda: Envelope(attack=-1), "attack -1 s is out of range"),
    (lambda: Envelope(sustain=2), "sustain 2 is out of range"),
    (lambda: Voice("x", "", ()), "has no oscillators"),
    (lambda: Voice("x", "", (Oscillator("saw"),), cutoff_hz=5), "cutoff 5 Hz is out of range"),
    (lambda: Voice("x", "", (Oscillator("saw"),), filter_mode="LPF48"), "filter mode 'LPF48' is not known"),
    (lambda: get_voice("kazoo"), "voice 'kazoo' is not known: allowed are sine, lead-saw"),
])
def test_bad_voice_definitions_name_the_value(bad, match):
    with pytest.raises(VoiceError, match=match):
        bad()
