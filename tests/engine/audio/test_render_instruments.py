"""The three instrument types (built-in voice, SoundFont, VST3) measured the same way:
fundamental within 10 cents, onsets within 1 ms of the tempo grid, silence where no note
sounds; plus what is particular to SoundFonts and VST3 plugins, and the spec resolver.

The VST3 fixtures (tests/fixtures/vst3: a gain effect and a sine instrument, DPF
sources) are built once per session with cmake into tests/fixtures/vst3/build, and the
instrument is loaded once per session (DPF instruments expose 2,080 MIDI-CC
parameters; engine.audio.instruments hides them, which takes the load from ~30 s to ~1 s).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from engine.audio.effects import PresetError, load_preset
from engine.audio.instruments import (
    InstrumentError,
    SoundFontInstrument,
    VoiceInstrument,
    Vst3Instrument,
    bundled_soundfont,
    parse_instrument_arg,
    resolve_instrument,
)
from engine.audio.render import render_audio
from engine.music.clip import Clip, Note, Track
from tests.conftest import ROOT, missing
from tests.engine.audio.test_voices import fundamental_cents

pytestmark = pytest.mark.slow  # builds the VST3 fixtures with cmake on first use

SR = 44100
VST3_DIR = ROOT / "tests" / "fixtures" / "vst3"


@pytest.fixture(scope="session")
def vst3_plugins() -> dict[str, Path]:
    """Build (or update) the fixture plugins; {'effect': gain.vst3, 'instrument': sine.vst3}."""
    if not Path("/usr/share/dpf/cmake/DPF-plugin.cmake").exists():
        missing("Debian package dpf-source (/usr/share/dpf)")
    for tool in ("cmake", "make"):
        if not shutil.which(tool):
            missing(f"tool {tool!r}")
    if not (shutil.which("c++") or shutil.which("g++")):
        missing("a C++ compiler (g++)")
    r = subprocess.run(["bash", str(VST3_DIR / "build.sh"), str(VST3_DIR / "build")], capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, f"building the VST3 fixtures failed:\n{r.stderr}"
    gain, sine = (Path(p) for p in r.stdout.split())
    return {"effect": gain, "instrument": sine}


@pytest.fixture(scope="session")
def sine_vst3(vst3_plugins) -> Path:
    Vst3Instrument(vst3_plugins["instrument"])  # load once: later resolves hit the cache
    return vst3_plugins["instrument"]


def _fluidsynth_or_skip() -> None:
    try:
        import fluidsynth  # noqa: F401
    except (ImportError, OSError):
        missing("FluidSynth (Debian libfluidsynth3 + pyfluidsynth)")


@pytest.fixture(params=["voice", "sf2", "vst3"])
def spec(request) -> str:
    """An instrument spec of each type, all with a clean, quick attack."""
    if request.param == "voice":
        return "lead-saw"
    if request.param == "sf2":
        _fluidsynth_or_skip()
        return "gm:program=81"
    return str(request.getfixturevalue("sine_vst3"))


def lead_clip(notes: list[Note], tempo: float = 120.0, bars: int = 2) -> Clip:
    return Clip(tempo=tempo, bars=bars, tracks=[Track("lead", 0, notes)])


# ----------------------------------------------------------- the shared contract

@pytest.mark.parametrize("pitch", [57, 69])
def test_fundamental_within_10_cents(spec, pitch):
    audio = render_audio(lead_clip([Note(pitch, 0.0, 2.0, 100)], tempo=120.0), preset="dry",
                         instruments={"lead": spec})
    cents = fundamental_cents(audio.stems["lead"], SR, pitch, 0.1, 0.9)
    assert abs(cents) < 10.0, f"{spec} at MIDI {pitch}: {cents:+.2f} cents"


def test_onsets_within_1ms_and_silence_between_notes(spec):
    tempo = 97.0
    beats = [0.0, 1.37, 3.0, 4.62, 6.25]
    audio = render_audio(lead_clip([Note(69, b, 0.3, 100) for b in beats], tempo=tempo), preset="dry",
                         instruments={"lead": spec})
    x = np.abs(audio.stems["lead"]).max(axis=0)
    samples_per_beat = 60.0 / tempo * SR
    assert not x[:int(round(beats[0] * samples_per_beat))].any()
    for i, b in enumerate(beats):
        expected = int(round(b * samples_per_beat))
        assert x[max(0, expected - int(0.05 * SR)):expected].max(initial=0) < 1e-4, f"sound before note {i}"
        onset = expected + int(np.argmax(x[expected:] > 1e-3 * x.max()))
        assert abs(onset - expected) / SR <= 0.001, f"note {i} starts {1000 * (onset - expected) / SR:.2f} ms off"
        if i + 1 < len(beats):
            quiet = x[int(round((b + 0.3) * samples_per_beat + 0.3 * SR)):int(round(beats[i + 1] * samples_per_beat))]
            assert quiet.max() < 1e-4, f"not silent between note {i} and the next"


def test_mixed_instrument_types_give_equal_stems(spec):
    clip = Clip(tempo=110, bars=2, tracks=[Track("lead", 0, [Note(72, 0, 1), Note(74, 2, 1)]),
                                           Track("bass", 33, [Note(40, 0, 2), Note(43, 4, 2)])])
    audio = render_audio(clip, preset="studio", instruments={"lead": spec}, pad=True)
    assert {a.shape for a in audio.stems.values()} == {(2, audio.samples)}
    np.testing.assert_array_equal(audio.premaster, sum(audio.stems.values()))


# ------------------------------------------------------------------- SoundFonts

def test_soundfont_plays_the_track_program_unless_told_otherwise():
    _fluidsynth_or_skip()
    notes = [Note(60, 0, 1.0, 100)]
    piano = Clip(bars=1, tracks=[Track("lead", 0, notes)])
    organ = Clip(bars=1, tracks=[Track("lead", 19, notes)])
    a = render_audio(piano, preset="dry", instruments={"lead": "gm"}).stems["lead"]
    b = render_audio(organ, preset="dry", instruments={"lead": "gm"}).stems["lead"]
    c = render_audio(piano, preset="dry", instruments={"lead": "gm:program=19"}).stems["lead"]
    n = min(a.shape[1], b.shape[1])
    assert not np.allclose(a[:, :n], b[:, :n])
    np.testing.assert_allclose(b, c, atol=1e-6)


def test_soundfont_tail_is_measured_per_program():
    _fluidsynth_or_skip()
    inst = resolve_instrument("gm")
    bass, pad = inst.tail_for(Track("bass", 38)), inst.tail_for(Track("pad", 89))
    assert 0.0 < bass < pad < 10.0, "a synth bass stops quickly, a warm pad rings on"
    assert resolve_instrument("gm:tail=2.5").tail_for(Track("pad", 89)) == 2.5
    clip = Clip(bars=1, tracks=[Track("pad", 89, [Note(60, 0, 4.0)])])
    x = np.abs(render_audio(clip, preset="dry", instruments={"pad": "gm"}).stems["pad"]).max(axis=0)
    assert x[-int(0.05 * SR):].max() < 1e-3 * x.max(), "the measured tail lets the release fade out"


def test_soundfont_errors(tmp_path):
    _fluidsynth_or_skip()
    bad = tmp_path / "broken.sf2"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00nope")
    with pytest.raises(InstrumentError, match="could not be loaded by FluidSynth"):
        SoundFontInstrument(bad)
    with pytest.raises(InstrumentError, match="program 200 is out of range"):
        resolve_instrument("gm:program=200")
    inst = resolve_instrument("gm:bank=100")
    with pytest.raises(InstrumentError, match="has no preset bank 100"):
        inst.render(Track("lead", 0, [Note(60, 0, 1)]), 120, SR, SR)
    assert isinstance(resolve_instrument(str(bundled_soundfont())), SoundFontInstrument)


# ------------------------------------------------------------------------ VST3

def test_vst3_effect_in_a_preset_changes_the_level_exactly(tmp_path, vst3_plugins):
    preset = tmp_path / "fx.toml"
    preset.write_text(f'[stems.default]\ninstrument = "organ"\neffects = [{{ type = "vst3", path = '
                      f'"{vst3_plugins["effect"]}", params = {{ gain_db = -6.0 }}, tail = 0.0 }}]\n')
    clip = lead_clip([Note(60, 0, 1.0)])
    dry = render_audio(clip, preset="dry", instruments={"lead": "organ"}).stems["lead"]
    wet = render_audio(clip, preset=str(preset)).stems["lead"]
    n = min(dry.shape[1], wet.shape[1]) - int(0.05 * SR)
    np.testing.assert_allclose(wet[:, :n], dry[:, :n] * 10 ** (-6 / 20), atol=1e-5)


def test_vst3_instrument_hides_dpf_midi_cc_parameters_while_qriff_uses_it(vst3_plugins):
    from engine.audio.instruments import InstrumentError, load_vst3, midi_cc_parameters_hidden, set_plugin_parameters

    path = vst3_plugins["instrument"].resolve()
    plugin = load_vst3.__wrapped__(str(path), path.stat().st_mtime)  # a fresh load, not the cached one
    with midi_cc_parameters_hidden():
        assert sorted(plugin.parameters) == ["level", "release_ms"], "the 2,080 'MIDI Ch. N CC M' are hidden"
    with pytest.raises(InstrumentError, match=r"no parameter 'midi_ch_1_cc_7': it has level, release_ms$"):
        set_plugin_parameters(plugin, {"midi_ch_1_cc_7": 1.0}, "plugin")


def test_vst3_instrument_parameters_by_name(sine_vst3):
    clip = lead_clip([Note(69, 0, 1.0)])
    full = render_audio(clip, preset="dry", instruments={"lead": f"{sine_vst3}:level=0.5"}).stems["lead"]
    half = render_audio(clip, preset="dry", instruments={"lead": f"{sine_vst3}:level=0.25"}).stems["lead"]
    assert np.abs(half).max() / np.abs(full).max() == pytest.approx(0.5, rel=1e-3)
    with pytest.raises(InstrumentError, match="has no parameter 'cutoff': it has level, release"):
        resolve_instrument(f"{sine_vst3}:cutoff=0.3")


def test_vst3_wrong_kind_of_plugin(tmp_path, vst3_plugins, sine_vst3):
    with pytest.raises(InstrumentError, match="is an effect, not an instrument"):
        resolve_instrument(str(vst3_plugins["effect"]))
    preset = tmp_path / "wrong.json"
    preset.write_text(json.dumps({"stems": {"lead": {"effects": [{"type": "vst3", "path": str(sine_vst3)}]}}}))
    with pytest.raises(PresetError, match=r"wrong.json: stems.lead.effects\[0\]: .* is an instrument, not an effect"):
        load_preset(preset)
    with pytest.raises(InstrumentError, match="is not a .vst3 bundle"):
        Vst3Instrument(tmp_path / "plugin.so")


def test_cli_refuses_an_effect_as_instrument(tmp_path, qriff, vst3_plugins):
    lead_clip([Note(60, 0, 1)]).write_json(tmp_path / "c.json")
    r = qriff("render", str(tmp_path / "c.json"), "--out", str(tmp_path / "out"), "--instrument",
              f"lead={vst3_plugins['effect']}")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "is an effect, not an instrument" in r.stderr
    assert not (tmp_path / "out").exists()


# -------------------------------------------------------------------- resolver

@pytest.mark.parametrize("text, kind", [("pluck", VoiceInstrument), ("gm", SoundFontInstrument),
                                        ("gm:program=33,bank=0", SoundFontInstrument)])
def test_resolver_kinds(text, kind):
    if kind is SoundFontInstrument:
        _fluidsynth_or_skip()
    assert isinstance(resolve_instrument(text), kind)


@pytest.mark.parametrize("text, match", [
    ("", "instrument spec is empty"),
    ("lead-saw:cutoff=1", "built-in voices take no options"),
    ("gm:volume=3", "option 'volume' in 'gm:volume=3' is not known: allowed are program, bank, tail"),
    ("gm:program=x", "is not an integer"),
    ("gm:program", "is not NAME=VALUE"),
    ("sounds/piano", "neither a built-in voice nor a .sf2 or .vst3 path"),
    ("/no/such.sf2", "SoundFont '/no/such.sf2' does not exist"),
    ("/no/such.vst3:gain=1", "VST3 plugin '/no/such.vst3' does not exist"),
])
def test_resolver_errors(text, match):
    if text.startswith("gm"):
        _fluidsynth_or_skip()
    with pytest.raises(InstrumentError, match=match):
        resolve_instrument(text)


@pytest.mark.parametrize("text, expected", [("lead=pluck", ("lead", "pluck")),
                                            ("pad = /x/strings.sf2:program=48", ("pad", "/x/strings.sf2:program=48"))])
def test_parse_instrument_arg(text, expected):
    assert parse_instrument_arg(text) == expected


@pytest.mark.parametrize("text", ["lead", "=pluck", "lead="])
def test_parse_instrument_arg_errors(text):
    with pytest.raises(InstrumentError, match="is not ROLE=SPEC"):
        parse_instrument_arg(text)
