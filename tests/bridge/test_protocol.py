"""The address table: one definition, consistent with the engine's limits and with the docs page
(docs/osc-and-live.md) that shows it."""

from __future__ import annotations

import math
import re

import pytest

from bridge import protocol
from bridge.errors import ERROR_CODES, BridgeError, RequestError
from engine import limits
from engine.mdp import styles
from engine.music import theory
from tests.conftest import IN_CI, ROOT

TABLE_BEGIN = "<!-- qriff:osc-table:begin -->"
TABLE_END = "<!-- qriff:osc-table:end -->"


def test_limits_are_the_engines():
    """The clip and render limits are the engine's: each bound accepted, one step past it refused."""
    bounds = {"bars": (1, limits.MAX_BARS, 1), "tempo": (limits.MIN_TEMPO, limits.MAX_TEMPO, 0.5),
              "temperature": (0.0, limits.MAX_TEMPERATURE, 0.1)}
    for name, (lo, hi, step) in bounds.items():
        parse = protocol.PROPERTIES[name].parse
        assert parse(lo) == lo and parse(hi) == hi
        for bad in (lo - step, hi + step):
            with pytest.raises(RequestError):
                parse(bad)
    assert [protocol.PROPERTIES["sample_rate"].parse(r) for r in limits.SAMPLE_RATES] == list(limits.SAMPLE_RATES)
    assert [protocol.PROPERTIES["format"].parse(f) for f in limits.AUDIO_FORMATS] == list(limits.AUDIO_FORMATS)
    defaults = protocol.defaults()
    assert (defaults["bars"], defaults["tempo"], defaults["temperature"], defaults["key"], defaults["scale"]) == \
        (limits.DEFAULT_BARS, limits.DEFAULT_TEMPO, limits.DEFAULT_TEMPERATURE, limits.DEFAULT_KEY,
         limits.DEFAULT_SCALE)
    assert protocol.MAX_VARIATIONS <= limits.MAX_COUNT


@pytest.mark.parametrize("prop", [p for p in protocol.PROPERTIES_RW if p.in_session], ids=lambda p: p.name)
def test_every_writable_default_passes_its_own_check(prop):
    assert prop.parse(prop.default) == prop.default


def test_the_model_is_the_servers_not_a_session_default():
    """/qriff/set/model switches the server's model: no session default, no per-request option."""
    prop = protocol.PROPERTIES["model"]
    assert prop.writable and prop.server and not prop.option and "model" not in protocol.defaults()
    assert "model" not in protocol.METHODS[1].options


def test_addresses_are_unique_and_namespaced():
    table = protocol.request_addresses()
    assert all(a.startswith("/qriff/") for a in table)
    assert len(protocol.PROPERTIES) == len(protocol.PROPERTIES_R) + len(protocol.PROPERTIES_RW)
    assert not set(table) & set(protocol.REPLY_ADDRESSES)


@pytest.mark.parametrize("value,expect", [(3, 3), (3.0, 3), ("3", 3), (" 16 ", 16), (1, 1)])
def test_as_int_accepts(value, expect):
    assert protocol.as_int("bars", value, 1, 16) == expect


@pytest.mark.parametrize("value", [0, 17, 3.5, math.nan, math.inf, -math.inf, "x", True, None, b"3", "1e400"])
def test_as_int_refuses_with_name_value_and_range(value):
    with pytest.raises(RequestError, match=r"bars .* allowed an integer 1\.\.16") as info:
        protocol.as_int("bars", value, 1, 16)
    assert info.value.code == "bad_value"


@pytest.mark.parametrize("value", [math.nan, math.inf, 5.5, -0.1, "hot", False])
def test_as_float_refuses(value):
    with pytest.raises(RequestError, match="temperature"):
        protocol.as_float("temperature", value, 0.0, 5.0)


@pytest.mark.parametrize("name,value,expect", [
    ("key", "f#", "F#"), ("key", 10, "Bb"), ("key", 3.0, "Eb"), ("scale", "Dorian", "dorian"),
    ("scale", "minor", "natural_minor"), ("scale", 11, "blues"), ("style", 1, "hook"),
    ("style", "hook,prior=0.5", "hook,prior=0.5"), ("chords", "C|G|Am|F", "C|G|Am|F"), ("chords", "none", ""),
    ("time_signature", " 6/8 ", (6, 8)), ("roles", "Lead + bass", ("lead", "bass")),
    ("roles", "bass,lead", ("bass", "lead")),
    ("temperature", 0, 0.0), ("seed", -1, -1), ("format", "FLAC", "flac"),
])
def test_property_parsers(name, value, expect):
    assert protocol.PROPERTIES[name].parse(value) == expect


@pytest.mark.parametrize("name,value,fragment", [
    ("key", 12, "0..11"), ("key", "H", "key 'H'"), ("scale", 12, "0..11"), ("style", "polka", "presets are"),
    ("chords", "C Q", "chords"), ("roles", "lead+lead", "each role at most once"), ("time_signature", "5/4", "5/4"),
    ("format", "mp3", "wav, flac"),
])
def test_property_parsers_refuse_with_hints(name, value, fragment):
    with pytest.raises(BridgeError, match=re.escape(fragment)):
        protocol.PROPERTIES[name].parse(value)


def test_parse_options_names_are_case_insensitive_with_aliases():
    m = protocol.method("/qriff/generate")
    got = protocol.parse_options(m.address, ["KEY", "D", "count", 3, "time-signature", "3/4"], m.options)
    assert got == {"key": "D", "variations": 3, "time_signature": (3, 4)}


@pytest.mark.parametrize("name", ["../x.mid", "/etc/passwd", "a/b.json", ".hidden", "x" * 200, "", "a\\b.mid",
                                  "clip..json"])
def test_clip_names_cannot_leave_the_folder(name):
    with pytest.raises(RequestError):
        protocol.parse_clip_name(name)


def test_lists_follow_the_engine():
    assert protocol.list_items("styles") == list(styles.PRESETS)
    assert protocol.list_items("scales") == list(theory.SCALE_NAMES)
    assert protocol.list_items("properties") == list(protocol.PROPERTIES)
    assert protocol.list_items("models", ["m1"]) == ["m1"]


def test_markdown_table_lists_every_address_and_error_code():
    md = protocol.address_table_markdown()
    rows = [ln for ln in md.splitlines() if ln.startswith("| /qriff/")]
    assert len(rows) == len(protocol.address_table())
    for m in protocol.METHODS:
        assert f"| {m.address} |" in md
    for r in protocol.REPLIES:
        assert f"| {r.address} |" in md
    for code in ERROR_CODES:
        assert f"`{code}`" in md
    assert all(row.count(" | ") == 3 for row in rows), "a cell contains an unescaped |"


def test_docs_table_is_the_generated_one():
    page = (ROOT / "docs" / "osc-and-live.md").read_text()
    if TABLE_BEGIN not in page:
        msg = f"docs/osc-and-live.md has no OSC address table between {TABLE_BEGIN} and {TABLE_END}"
        if IN_CI:
            pytest.fail(msg + " (paste the output of 'qriff serve --address-table')")
        pytest.skip(msg)
    table = page.split(TABLE_BEGIN, 1)[1].split(TABLE_END, 1)[0]
    assert table.strip() == protocol.address_table_markdown().strip(), \
        "docs/osc-and-live.md's OSC table is stale: replace it with the output of 'qriff serve --address-table'"


def test_dispatcher_routes_exactly_the_address_table():
    from bridge import dispatch

    d = dispatch.from_table()
    assert sorted(d.addresses) == sorted(protocol.request_addresses())
    for m in protocol.METHODS:
        assert d.route(m.address).handler is m.handler
    assert d.route("/qriff/set/key").args == (protocol.PROPERTIES["key"],)
    for pattern in ("/qriff/set/*", "/qriff/get/{key,bars}", "/qriff/pin?"):  # no pattern fans out
        with pytest.raises(RequestError) as info:
            d.route(pattern)
        assert info.value.code == "unknown_address"
    with pytest.raises(ValueError, match="already mapped"):
        d.map("/qriff/ping", protocol.ping)
