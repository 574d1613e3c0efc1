"""The bridge against real, non-Python OSC peers: Pure Data and liblo (oscsend/oscdump)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from bridge.datagrams import encode
from engine.music.clip import Clip
from tests.bridge.support import OscDump, free_udp_port, parse_oscdump, running_server

pytestmark = pytest.mark.slow  # real Pure Data and liblo peers

PD_PATCH = Path(__file__).resolve().parents[1] / "pd" / "generate.pd"


def run_pd(pd: str, server_port: int, request: str, timeout: float = 60) -> str:
    """Open the test patch headless, send it ``request`` and return what it printed."""
    reply_port = free_udp_port()
    r = subprocess.run([pd, "-nogui", "-noaudio", "-nomidi", "-stderr", "-open", str(PD_PATCH),
                        "-send", f"cfg {server_port} {reply_port}", "-send", f"gen {request}"],
                       capture_output=True, text=True, timeout=timeout)
    return r.stdout + r.stderr


def pd_lines(out: str, tag: str) -> list[list[str]]:
    return [line.split(": ", 1)[1].split(" ") for line in out.splitlines() if line.startswith(f"{tag}: ")]


@pytest.mark.parametrize("request_text,variations", [
    ("7 key D scale dorian bars 2 seed 11", 1),
    ("8 key 9 scale 1 bars 4 variations 2 seed 3 style hook roles lead+bass", 2),
    ("9 key Eb scale blues bars 1 chords Cm|Fm tempo 90", 1),
])
def test_pure_data_generates_a_clip(require_tool, tmp_path, request_text, variations):
    pd = require_tool("pd")
    with running_server(tmp_path) as srv:
        out = run_pd(pd, srv.address[1], request_text)
    begins, ends, notes = pd_lines(out, "BEGIN"), pd_lines(out, "END"), pd_lines(out, "NOTES")
    assert len(begins) == len(ends) == variations, out
    rid = request_text.split()[0]
    assert all(line[0] == rid for line in begins + ends + notes)
    printed = [tuple(float(x) for x in line[1:]) for line in notes]
    flat = [q for row in printed for q in (row[i:i + 4] for i in range(0, len(row), 4))]
    expected = []
    for end in ends:
        clip = Clip.from_json(Path(end[4]).read_text())
        for track in clip.tracks:
            expected += [(n.pitch, n.start, n.duration, n.velocity) for n in track.notes]
    assert flat == [pytest.approx(e, abs=1e-4) for e in expected]
    assert int(begins[0][8]) == len(expected) // variations or variations > 1


def test_pure_data_sees_errors(require_tool, tmp_path):
    pd = require_tool("pd")
    with running_server(tmp_path) as srv:
        out = run_pd(pd, srv.address[1], "5 key H")
    [err] = pd_lines(out, "ERROR")
    assert err[:2] == ["5", "bad_value"] and "'H'" in " ".join(err)


# ------------------------------------------------------------------------ liblo

@pytest.mark.parametrize("address,types,values", [
    ("/qriff/clip/notes", "iiffi", ("7", "60", "0.25", "0.5", "96")),
    ("/qriff/error", "iss", ("-1", "malformed", "a b")),
    ("/qriff/clip/end", "siiss", ("abc", "0", "12", "/tmp/x y.mid", "/tmp/x.json")),
    ("/qriff/clip/begin", "fiiifssiis", ("2.5", "0", "1", "4", "120", "D", "dorian", "3", "16", "1/1 QRIFF D dorian")),
])
def test_encoder_bytes_equal_liblo(require_tool, address, types, values):
    oscsend = require_tool("oscsend")
    raw = subprocess.run([oscsend, "-", address, types, *values], capture_output=True, timeout=10).stdout
    conv = {"i": int, "f": float, "s": str}
    assert encode(address, [conv[t](v) for t, v in zip(types, values)], types) == raw


def test_oscsend_request_and_oscdump_replies(require_tool, tmp_path):
    oscsend = require_tool("oscsend")
    dump = OscDump(require_tool("oscdump"))
    try:
        with running_server(tmp_path) as srv:
            subprocess.run([oscsend, "127.0.0.1", str(srv.address[1]), "/qriff/generate", "isssssisisi", "21",
                            "key", "A", "scale", "minor", "bars", "2", "seed", "8", "reply_port", str(dump.port)],
                           check=True, timeout=10)
            lines = dump.lines(until="/qriff/clip/end")
            subprocess.run([oscsend, "127.0.0.1", str(srv.address[1]), "/qriff/ping", "fsi", "3.5", "reply_port",
                            str(dump.port)], check=True, timeout=10)
            pong = dump.lines(until="/qriff/pong")[-1]
            subprocess.run([oscsend, "127.0.0.1", str(srv.address[1]), "/qriff/set/tempo", "iN", "4"], timeout=10)
    finally:
        dump.close()
    msgs = [parse_oscdump(x) for x in lines]
    kinds = {a: t for a, t, _ in msgs}
    assert kinds["/qriff/clip/begin"] == "iiiifssiisf"
    assert kinds["/qriff/clip/track"] == "iisii"
    assert kinds["/qriff/clip/end"] == "iiiss"
    note_msgs = [(t, v) for a, t, v in msgs if a == "/qriff/clip/notes"]
    assert note_msgs and all(re.fullmatch(r"i(iffi)+", t) for t, _ in note_msgs)
    end = next(v for a, _, v in msgs if a == "/qriff/clip/end")
    clip = Clip.from_json(Path(end[4]).read_text())
    got = [v[1:] for _, v in note_msgs]
    flat = [tuple(row[i:i + 4]) for row in got for i in range(0, len(row), 4)]
    assert [(int(p), float(s), float(d), int(vel)) for p, s, d, vel in flat] == \
        [(n.pitch, pytest.approx(n.start), pytest.approx(n.duration), n.velocity) for n in clip.tracks[0].notes]
    assert parse_oscdump(pong)[:2] == ("/qriff/pong", "fs")
