"""The request schema: one check of every generate and render option, shared by every front end."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from bridge import protocol
from bridge.errors import RequestError
from engine.base.errors import EngineError, TheoryError
from engine.music import limits
from engine.music.clip import Clip, Note, Track
from engine.music.request import GenerateRequest, OptionError, RenderRequest


def test_loose_values_become_canonical_typed_values():
    r = GenerateRequest.from_mapping({"key": 10.0, "scale": "minor", "bars": "8", "variations": 3.0, "seed": "12",
                                      "temperature": 0, "roles": "Bass + lead", "metre": " 6/8 ",
                                      "chords": "none", "tempo": 96})
    assert (r.key, r.scale, r.bars, r.count, r.seed) == ("Bb", "natural_minor", 8, 3, 12)
    assert r.roles == ("bass", "lead") and r.time_signature == (6, 8) and r.chords is None
    assert isinstance(r.temperature, float) and r.tempo == 96.0 and r.tonic == 10 and r.steps_per_bar == 12
    assert GenerateRequest(key="f#", scale=4, roles=["lead"], chords=["Am", "F"]).key == "F#"
    assert GenerateRequest(scale=4).scale == "dorian"
    assert GenerateRequest(chords=["Am", "F"]).chords == "Am F"


def test_a_request_is_frozen_and_replace_checks_again():
    r = GenerateRequest()
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.bars = 8  # type: ignore[misc]
    assert r.replace(bars=8).bars == 8
    with pytest.raises(OptionError, match="bars 99"):
        r.replace(bars=99)


@pytest.mark.parametrize("field,value,message", [
    ("bars", 0, "bars 0 is not valid: allowed an integer 1..16"),
    ("bars", 2.5, "bars 2.5 is not valid: allowed an integer 1..16"),
    ("count", limits.MAX_COUNT + 1, f"count {limits.MAX_COUNT + 1} is not valid: allowed an integer 1..64"),
    ("seed", -1, f"seed -1 is not valid: allowed an integer 0..{limits.MAX_SEED}"),
    ("seed", limits.MAX_SEED + 1, f"seed {limits.MAX_SEED + 1} is not valid"),
    ("temperature", float("nan"), "temperature nan is not valid: allowed a number 0..5"),
    ("tempo", 900, "tempo 900 is not valid: allowed a number 20..300"),
    ("valence", 2, "valence 2 is not valid: allowed a number -1..1"),
    ("roles", "drums", "roles 'drums' is not valid: allowed roles from lead, bass"),
    ("roles", "lead,lead", "roles 'lead,lead' is not valid: allowed each role at most once"),
    ("key", "H", "key 'H' is not valid"),
    ("key", 12, "key 12 is not valid: allowed an integer 0..11"),
    ("scale", "klingon", "scale 'klingon' is not known"),
    ("time_signature", "5/4", "time signature '5/4' is not supported"),
    ("chords", "C Q", "chords: chord 'Q'"),
    ("primer", 3, "primer 3 is not valid"),
])
def test_every_bad_value_is_one_line_naming_the_field_value_and_what_is_allowed(field, value, message):
    with pytest.raises(OptionError) as info:
        GenerateRequest.from_mapping({field: value})
    assert info.value.field == field and str(info.value).startswith(message) and "\n" not in str(info.value)


def test_theory_refusals_are_also_theory_errors():
    with pytest.raises(TheoryError):
        GenerateRequest(key="H")
    with pytest.raises(TheoryError):
        GenerateRequest(chords="C Q")


def test_what_only_the_whole_request_knows_is_checked_too():
    with pytest.raises(OptionError, match=f"seed {limits.MAX_SEED} is not valid: allowed an integer "
                                          f"0..{limits.MAX_SEED - 1} for 2 variations"):
        GenerateRequest(seed=limits.MAX_SEED, count=2)
    assert GenerateRequest(seed=limits.MAX_SEED, count=1).seed == limits.MAX_SEED
    with pytest.raises(OptionError, match="not a known field"):
        GenerateRequest.from_mapping({"bras": 4})


def _primer() -> Clip:
    notes = [Note(pitch=62 + i, start=float(i), duration=1.0, velocity=90) for i in range(4)]
    return Clip(key="D", scale="dorian", tempo=700.0, time_signature=(3, 4), bars=2, seed=0, model="x", style={},
                chords=[], tracks=[Track(role="lead", program=0, notes=notes)])


def test_absent_musical_options_come_from_the_primer_and_given_ones_win():
    primer = _primer()
    r = GenerateRequest.from_mapping({"primer": primer, "key": None, "scale": "major"})
    assert (r.key, r.scale, r.time_signature, r.tempo) == ("D", "major", (3, 4), limits.MAX_TEMPO)  # tempo clamped
    plain = GenerateRequest.from_mapping({"primer": primer}, fill_from_primer=False)
    assert (plain.key, plain.time_signature) == (limits.DEFAULT_KEY, limits.DEFAULT_TIME_SIGNATURE)


def test_render_request_canonical_values_and_refusals():
    r = RenderRequest.from_mapping({"format": "WAV", "bit_depth": 32, "sample_rate": 48000.0, "pad": "yes",
                                    "instruments": "lead=gm"})
    assert (r.fmt, r.bit_depth, r.sample_rate, r.pad, r.instruments) == ("wav", "32f", 48000, True, ("lead=gm",))
    for values, message in [({"sample_rate": 8000}, "sample_rate 8000 is not valid: allowed one of 22050"),
                            ({"format": "mp3"}, "format 'mp3' is not valid: allowed one of wav, flac"),
                            ({"format": "flac", "bit_depth": "32f"}, "allowed for flac, one of 16, 24"),
                            ({"pad": "maybe"}, "pad 'maybe' is not valid: allowed true or false"),
                            ({"preset": 3}, "preset 3 is not valid")]:
        with pytest.raises(OptionError, match=message):
            RenderRequest.from_mapping(values)


def test_for_field_names_the_field_in_each_front_ends_words():
    with pytest.raises(OptionError) as info:
        GenerateRequest(bars=99)
    assert info.value.for_field("--bars") == "--bars 99 is not valid: allowed an integer 1..16"
    with pytest.raises(OptionError) as info:
        GenerateRequest(key="H")
    assert info.value.for_field("setting 2: key").startswith("setting 2: key 'H' is not valid")


# ----------------------------------------------------------- every front end

@pytest.mark.parametrize("option,value,detail", [
    ("tempo", 900, "allowed a number 20..300"),
    ("roles", "drums", "allowed roles from lead, bass"),
    ("key", "H", "key 'H' is not valid"),
])
def test_the_bridge_refuses_with_the_requests_message(option, value, detail):
    with pytest.raises(RequestError) as info:
        protocol.PROPERTIES[option].parse(value)
    assert info.value.code == "bad_value" and detail in str(info.value)
    with pytest.raises(OptionError) as same:
        GenerateRequest.from_mapping({option: value})
    assert str(info.value) == str(same.value)


def test_the_policy_refuses_keyword_options_with_the_requests_message():
    from engine.runtime import Policy

    with pytest.raises(EngineError, match="tempo 900 is not valid: allowed a number 20..300"):
        Policy.load().generate(tempo=900)
    with pytest.raises(TypeError, match="not both"):
        Policy.load().generate(GenerateRequest(), bars=2)


def test_the_cli_refuses_a_whole_request_check_naming_the_flag(tmp_path):
    r = subprocess.run([sys.executable, "-m", "engine.cli", "generate", "--seed", str(limits.MAX_SEED), "--count",
                        "2", "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and f"--seed {limits.MAX_SEED} is not valid" in r.stderr
    assert not (tmp_path / "out").exists()
