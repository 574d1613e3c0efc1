"""Effect presets: the shipped ones, user TOML/JSON files, and errors that name the file,
the key and what is allowed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.audio.effects import (
    EFFECT_TYPES,
    PRESET_DIR,
    PresetError,
    build_chain,
    build_effect,
    chain_tail_seconds,
    effect_parameters,
    list_presets,
    load_preset,
)
from engine.audio.render import render_audio
from engine.music.clip import Clip, Note, Track

SHIPPED = ("ambient", "dry", "lofi", "studio")


def test_shipped_presets_load_and_describe_themselves():
    presets = list_presets()
    assert tuple(presets) == SHIPPED
    assert all(len(desc) > 20 for desc in presets.values())
    for name in SHIPPED:
        preset = load_preset(name)
        assert preset.path.parent == PRESET_DIR
        for settings in [*preset.stems.values(), preset.master]:
            assert len(build_chain(settings.effects, 120.0)) == len(settings.effects)


def test_stem_settings_fall_back_to_default():
    studio = load_preset("studio")
    assert studio.stem("lead").instrument == "lead-saw"
    assert studio.stem("melody2") is studio.stems["default"]
    assert load_preset("dry").stem("lead").effects == []


def test_delay_in_beats_follows_the_tempo():
    spec = load_preset("studio").stem("lead").effects[1]
    assert spec.type == "Delay" and spec.params["delay_beats"] == 0.75
    assert build_effect(spec, tempo=120.0).delay_seconds == pytest.approx(0.375)
    assert build_effect(spec, tempo=90.0).delay_seconds == pytest.approx(0.5)


def test_tail_estimates():
    ambient = load_preset("ambient")
    assert chain_tail_seconds(ambient.stem("lead").effects, 120.0) > 3.0  # long echoes into a hall
    assert chain_tail_seconds(load_preset("dry").stem("lead").effects, 120.0) == 0.0
    assert chain_tail_seconds(load_preset("studio").stem("bass").effects, 120.0) == 0.0


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_user_preset_files(tmp_path, suffix):
    data = {"description": "mine", "master": {"gain_db": -3.0},
            "stems": {"lead": {"instrument": "bell", "pan": -0.5, "gain_db": -2.0,
                               "effects": [{"type": "LadderFilter", "mode": "HPF12", "cutoff_hz": 300.0}]}}}
    path = tmp_path / f"mine{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(data))
    else:
        path.write_text('description = "mine"\n[master]\ngain_db = -3.0\n[stems.lead]\ninstrument = "bell"\n'
                        'pan = -0.5\ngain_db = -2.0\neffects = [{ type = "LadderFilter", mode = "HPF12", '
                        'cutoff_hz = 300.0 }]\n')
    preset = load_preset(path)
    assert preset.name == "mine" and preset.stem("lead").pan == -0.5
    plugin = build_chain(preset.stem("lead").effects, 120.0)[0]
    assert plugin.cutoff_hz == pytest.approx(300.0) and "HPF12" in str(plugin.mode)
    clip = Clip(bars=1, tracks=[Track("lead", 0, [Note(72, 0, 1)])])
    audio = render_audio(clip, preset=str(path))
    assert audio.instruments == {"lead": "voice bell"}
    left, right = np.abs(audio.stems["lead"]).max(axis=1)
    assert left > 2 * right, "pan -0.5 puts the lead left"
    override = render_audio(clip, preset=str(path), instruments={"lead": "organ"})
    assert override.instruments == {"lead": "voice organ"}, "--instrument beats the preset"


@pytest.mark.parametrize("text, match", [
    ('colour = "red"', r"bad.toml: top level: key 'colour' is not known: allowed are description, master, stems"),
    ("[master]\nlimiter = true", r"bad.toml: master: key 'limiter' is not known: allowed are effects, gain_db"),
    ("[master]\ntarget_lufs = 3", r"bad.toml: master.target_lufs = 3 is not allowed: expected a number from -40 to -3"),
    ("[stems.lead]\npan = 2", r"bad.toml: stems.lead.pan = 2 is not allowed: expected a number from -1 to 1"),
    ("[stems.lead]\nvolume = 1", r"bad.toml: stems.lead: key 'volume' is not known: allowed are instrument, gain_db"),
    ("[stems.lead]\ninstrument = 3", r"bad.toml: stems.lead.instrument must be a string"),
    ("[stems.lead]\neffects = [{ type = \"Flanger\" }]",
     r"bad.toml: stems.lead.effects\[0\]: effect type 'Flanger' is not known: allowed are Bitcrush, Chorus"),
    ("[stems.lead]\neffects = [{ type = \"reverb\" }]", r"did you mean 'Reverb'\?"),
    ("[stems.lead]\neffects = [{ type = \"Reverb\", size = 1 }]",
     r"stems.lead.effects\[0\]: Reverb has no parameter 'size': allowed are damping, dry_level, freeze_mode"),
    ("[stems.lead]\neffects = [{ type = \"Reverb\", room_size = \"big\" }]",
     r"stems.lead.effects\[0\]: room_size = 'big' is not allowed"),
    ("[stems.lead]\neffects = [{ type = \"LadderFilter\", mode = \"LPF48\" }]",
     r"mode = 'LPF48' is not allowed: expected one of LPF12, HPF12"),
    ("[stems.lead]\neffects = [{ type = \"Delay\", delay_beats = 1, delay_seconds = 1 }]",
     r"give delay_beats or delay_seconds, not both"),
    ("[stems.lead]\neffects = [{ type = \"Delay\", delay_beats = 0 }]", r"delay_beats = 0 is not allowed"),
    ("[stems.lead]\neffects = [{ room_size = 1 }]", r"stems.lead.effects\[0\] must be a table with a 'type' key"),
    ("[stems.lead]\neffects = { type = \"Gain\" }", r"stems.lead.effects must be a list of effect tables"),
    ("[stems.lead]\neffects = [{ type = \"vst3\" }]", r"vst3 effect needs path"),
    ("[stems.lead]\neffects = [{ type = \"vst3\", path = \"none.vst3\" }]", r"none.vst3' does not exist"),
    ("[stems.lead]\neffects = [{ type = \"Convolution\" }]", r"Convolution needs impulse_response_filename"),
    ("[stems\nlead", r"bad.toml is not valid TOML"),
])
def test_preset_errors_name_file_key_and_allowed(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    with pytest.raises(PresetError, match=match):
        load_preset(path)


def test_unknown_preset_names_and_missing_files(tmp_path):
    with pytest.raises(PresetError, match="preset 'loud' is not known: shipped presets are ambient, dry, lofi, studio"):
        load_preset("loud")
    with pytest.raises(PresetError, match="preset file .*missing.toml' does not exist"):
        load_preset(tmp_path / "missing.toml")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(PresetError, match="list.json: the top level must be a table"):
        load_preset(tmp_path / "list.json")


@pytest.mark.parametrize("name", [t for t in EFFECT_TYPES if t != "Convolution"])
def test_every_effect_type_builds_from_its_defaults(name, tmp_path):
    params = effect_parameters(name)
    assert params or name in ("Invert", "GSMFullRateCompressor"), f"{name} has no settable parameters"
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"stems": {"lead": {"effects": [{"type": name}]}}}))
    assert load_preset(path).stem("lead").effects[0].type == name
