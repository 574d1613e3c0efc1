"""The bridge's OSC codec: round trips against python-osc, every defect rejected, fuzzed."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from bridge.datagrams import (
    MAX_DATAGRAM,
    MAX_INCOMING,
    NOTES_PER_CHUNK,
    chunks,
    decode,
    decode_message,
    encode,
)
from bridge.errors import MalformedDatagram
from tests.bridge.support import osc


@pytest.mark.parametrize("args", [
    (), (7,), (7, "key", "D", "bars", 4), (1.5, -2, "é✓", b"\x00\x01\x02"), (True, False, None),
    (2**40,), (0.1, 3.25e10),
])
def test_decode_matches_python_osc(args):
    data = osc("/qriff/generate", *args)
    msg = decode_message(data)
    assert msg.address == "/qriff/generate"
    ref = OscMessage(data).params
    assert len(msg.args) == len(ref) == len(msg.tags)
    for got, want in zip(msg.args, ref):
        if isinstance(want, float):
            assert got == pytest.approx(want, rel=1e-6)
        else:
            assert got == want


#: One argument of every payload type, with its python-osc value.
_PAYLOADS = [(7, "i"), (2.5, "f"), ("text", "s"), (b"\x01\x02\x03", "b"), (2**40, "h")]


@pytest.mark.parametrize("flag", [True, False, None], ids=["T", "F", "N"])
@pytest.mark.parametrize("position", range(len(_PAYLOADS) + 1))
def test_true_false_nil_take_their_place_anywhere(flag, position):
    """T, F and N carry no bytes but a value: a string or blob after them is still read right."""
    args = [v for v, _ in _PAYLOADS]
    args.insert(position, flag)
    data = osc("/qriff/generate", *args)
    msg = decode_message(data)
    assert list(msg.args) == list(OscMessage(data).params) == args
    assert msg.tags[position] == {True: "T", False: "F", None: "N"}[flag]


@pytest.mark.parametrize("tags", ["TTs", "NbF", "FsNsT", "NNNb"])
def test_runs_of_flags_before_strings_and_blobs(tags):
    values = {"T": True, "F": False, "N": None, "s": "abc", "b": b"xyz12"}
    b = OscMessageBuilder("/qriff/ping")
    b.add_arg(1)
    for tag in tags:
        b.add_arg(values[tag], tag)
    msg = decode_message(b.build().dgram)
    assert msg.args == (1, *(values[t] for t in tags)) and msg.tags == "i" + tags


def test_flags_inside_an_array_before_a_string():
    # ,iT[sN]b by hand (python-osc builds arrays only from Python lists of guessed types)
    tagstr = b",iT[sN]b\x00"
    tagstr += b"\x00" * (-len(tagstr) % 4)
    data = b"/qriff/ping\x00" + tagstr + b"\x00\x00\x00\x01" + b"abc\x00" + b"\x00\x00\x00\x05xyz12\x00\x00\x00"
    msg = decode_message(data)
    assert msg.args == (1, True, ["abc", None], b"xyz12") and msg.tags == "iT[b"


def test_tags_naming_more_values_than_the_datagram_holds_are_refused():
    data = encode("/qriff/ping", (1, "a"), "is").replace(b",is\x00", b",iss")
    with pytest.raises(MalformedDatagram):
        decode_message(data)


@pytest.mark.parametrize("args,tags", [
    ((7, 60, 0.25, 0.5, 96), "iiffi"), (("x", 1.0), "sf"), ((1, 2), "hd"), ((b"blob!",), "b"), ((True, None), "TN"),
])
def test_encode_is_read_back_by_python_osc(args, tags):
    data = encode("/qriff/clip/notes", args, tags)
    assert len(data) % 4 == 0
    msg = OscMessage(data)
    assert msg.address == "/qriff/clip/notes"
    assert list(msg.params) == [pytest.approx(a) if isinstance(a, float) else a for a in args]


def test_bundles_are_flattened():
    b = OscBundleBuilder(IMMEDIATELY)
    b.add_content(OscMessageBuilder("/qriff/ping").build())
    inner = OscBundleBuilder(IMMEDIATELY)
    m = OscMessageBuilder("/qriff/get/key")
    m.add_arg(3)
    inner.add_content(m.build())
    b.add_content(inner.build())
    msgs = decode(b.build().dgram)
    assert [(m.address, m.args) for m in msgs] == [("/qriff/ping", ()), ("/qriff/get/key", (3,))]


GOOD = encode("/qriff/ping", (1,), "i")


@pytest.mark.parametrize("data,reason", [
    (b"", "empty"),
    (b"qriff", "must start with an address"),
    (b"/qriff", "NUL-terminated"),
    (b"/qriff/x\x00", "too short"),
    (b"/qriff/ping\x00\x00\x00\x00i\x00\x00\x00", "must start with ','"),
    (GOOD[:-2], "too short"),
    (GOOD + b"\x00\x00\x00\x00", "left over"),
    (encode("/a", (), "") [:-4] + b",x\x00\x00", "type tag 'x'"),
    (b"/a\x00\x00,s\x00\x00\xff\xfe\x00\x00", "UTF-8"),
    (b"/a\x00\x00,b\x00\x00" + struct.pack(">i", -4), "declares -4 bytes"),
    (b"/a\x00\x00,b\x00\x00" + struct.pack(">i", 1000) + b"abcd", "too short"),
    (b"#bundle\x00" + b"\x00" * 8 + struct.pack(">i", 3) + b"abc", "positive multiple of 4"),
    # python-osc alone would loop forever on a negative element size
    (b"#bundle\x00" + b"\x00" * 8 + struct.pack(">i", -4) + b"/a\x00\x00", "positive multiple of 4"),
    (b"#bundle\x00\x00\x00", "time tag"),
    (b"/" + b"a" * MAX_INCOMING, "too long"),
])
def test_malformed_datagrams_are_rejected_with_a_reason(data, reason):
    with pytest.raises(MalformedDatagram, match=reason):
        decode(data)


def test_bundle_nesting_and_message_count_are_bounded():
    msg = encode("/x", (), "")
    data = msg
    for _ in range(6):
        data = b"#bundle\x00" + b"\x00" * 8 + struct.pack(">i", len(data)) + data
    with pytest.raises(MalformedDatagram, match="nested deeper"):
        decode(data)
    many = b"#bundle\x00" + b"\x00" * 8 + (struct.pack(">i", len(msg)) + msg) * 65
    with pytest.raises(MalformedDatagram, match="more than 64 messages"):
        decode(many)


def test_nan_and_inf_floats_decode_as_floats():
    # NaN/inf are valid OSC floats; the protocol layer refuses them as values.
    msg = decode_message(encode("/a", (math.nan, math.inf), "ff"))
    assert math.isnan(msg.args[0]) and msg.args[1] == math.inf


@pytest.mark.parametrize("n", [0, 1, 31, 32, 33, 100])
def test_note_chunks_fit_the_datagram_limit(n):
    notes = [(127, 1234.5, 0.25, 127)] * n
    parts = list(chunks(notes, NOTES_PER_CHUNK))
    assert sum(len(p) for p in parts) == n
    assert all(1 <= len(p) <= NOTES_PER_CHUNK for p in parts)
    for p in parts:
        flat = [v for note in p for v in note]
        data = encode("/qriff/clip/notes", (2**31 - 1, *flat), "i" + "iffi" * len(p))
        assert len(data) <= MAX_DATAGRAM


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_fuzz_random_bytes_only_raise_malformed(data):
    try:
        decode(data)
    except MalformedDatagram:
        pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutated_messages_only_raise_malformed(data):
    base = bytearray(encode("/qriff/generate", (7, "key", "D", "bars", 4, "temperature", 0.5), "isssisf"))
    for _ in range(data.draw(st.integers(1, 6))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, max(0, len(base) - 1)))
        if op == "flip" and base:
            base[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del base[pos:]
        else:
            base[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
    try:
        decode(bytes(base))
    except MalformedDatagram:
        pass
