"""The OSC server, driven over real UDP sockets with python-osc as the client.

Uses the deterministic test clip source (tests/bridge/support.py); the CLI tests at
the end run ``qriff serve`` itself with the real policy.
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge import protocol
from bridge.datagrams import MAX_DATAGRAM, NOTES_PER_CHUNK, encode
from engine.music.clip import Clip
from tests.bridge.support import Peer, WalkSource, osc, running_server


def collect_clip(replies):
    """Notes per (variation, role) and the end messages, from a reply list."""
    notes: dict[tuple[int, str], list[tuple]] = {}
    ends, begins = [], []
    current = None
    for addr, params in replies:
        if addr == "/qriff/clip/begin":
            begins.append(params)
        elif addr == "/qriff/clip/track":
            current = (params[1], params[2])
            notes[current] = []
        elif addr == "/qriff/clip/notes":
            body = params[1:]
            assert len(body) % 4 == 0 and len(body) // 4 <= NOTES_PER_CHUNK
            notes[current] += [tuple(body[i:i + 4]) for i in range(0, len(body), 4)]
        elif addr == "/qriff/clip/end":
            ends.append(params)
    return begins, notes, ends


@pytest.fixture
def server(tmp_path):
    with running_server(tmp_path) as srv:
        yield srv


@pytest.fixture
def peer(server):
    p = Peer(server.address)
    yield p
    p.close()


def test_ping_echoes_the_id_with_its_type(peer):
    for rid in (7, 2.5, "abc"):
        [(addr, params)] = peer.request("/qriff/ping", rid)
        assert addr == "/qriff/pong"
        assert params == [rid, "0.1.0"]
        assert type(params[0]) is type(rid)


@pytest.mark.parametrize("options,expect", [
    ((), dict(key="C", scale="major", bars=4, variations=1, roles=("lead",))),
    (("key", "D", "scale", "dorian", "bars", 2), dict(key="D", scale="dorian", bars=2)),
    (("key", 7, "scale", 4.0, "bars", 3.0, "variations", 3, "seed", 11), dict(key="G", scale="dorian", bars=3,
                                                                              variations=3)),
    (("KEY", "Bb", "Scale", "minor", "roles", "lead+bass", "count", 2, "seed", 5),
     dict(key="Bb", scale="natural_minor", variations=2, roles=("lead", "bass"))),
    (("chords", "Dm7 G7 Cmaj7", "style", "hook,prior=0.5", "tempo", 96, "time_signature", "3/4", "seed", 1),
     dict(bars=4, roles=("lead",))),
])
def test_generate_replies_carry_exactly_the_clip_written(peer, server, options, expect):
    variations = expect.get("variations", 1)
    replies = peer.request("/qriff/generate", 42, *options, until="/qriff/clip/end", count=variations)
    assert all(params[0] == 42 for _, params in replies)
    begins, notes, ends = collect_clip(replies)
    assert len(begins) == len(ends) == variations
    for v, (begin, end) in enumerate(zip(begins, ends)):
        assert begin[1:4] == [v, variations, expect.get("bars", 4)]
        assert begin[5] == expect.get("key", begin[5])
        assert begin[6] == expect.get("scale", begin[6])
        midi, js = end[3], end[4]
        assert midi.startswith(str(server.out_dir)) and midi.endswith(".mid")
        clip = Clip.from_json(open(js).read())
        assert begin[7] == clip.seed
        assert tuple(t.role for t in clip.tracks) == expect.get("roles", tuple(t.role for t in clip.tracks))
        assert end[2] == begin[8] == sum(len(t.notes) for t in clip.tracks)
        assert begin[10] == pytest.approx(clip.length_beats)
        for t in clip.tracks:
            got = notes[(v, t.role)]
            assert [(n.pitch, n.start, n.duration, n.velocity) for n in t.notes] == \
                [(p, pytest.approx(s), pytest.approx(d), vel) for p, s, d, vel in got]
        # ... and it is the clip the source makes for the same arguments
        again = WalkSource().generate(key=clip.key, scale=clip.scale, bars=clip.bars, seed=clip.seed, count=1,
                                      roles=tuple(t.role for t in clip.tracks), tempo=clip.tempo,
                                      time_signature=clip.time_signature)[0]
        assert [t.notes for t in again.tracks] == [t.notes for t in clip.tracks]


def test_generate_chunks_long_clips_under_the_datagram_limit(tmp_path):
    with running_server(tmp_path) as srv:
        peer = Peer(srv.address)
        peer.send("/qriff/generate", 1, "bars", 16, "roles", "lead+bass", "seed", 3)
        sizes, addrs = [], []
        while not addrs or addrs[-1] != "/qriff/clip/end":
            addr, _, raw = peer.recv()
            addrs.append(addr)
            sizes.append(len(raw))
        assert addrs.count("/qriff/clip/notes") >= 4
        assert max(sizes) <= MAX_DATAGRAM


def test_session_defaults_get_set_and_apply(peer):
    assert peer.request("/qriff/set/key", 1, "F#") == [("/qriff/set/key", [1, "F#"])]
    assert peer.request("/qriff/set/scale", 2, 5.0) == [("/qriff/set/scale", [2, "phrygian"])]
    assert peer.request("/qriff/set/bars", 3, 2) == [("/qriff/set/bars", [3, 2])]
    assert peer.request("/qriff/get/key", 4) == [("/qriff/get/key", [4, "F#"])]
    replies = peer.request("/qriff/generate", 5, "seed", 9, until="/qriff/clip/end")
    begin = replies[0][1]
    assert begin[3:7] == [2, 120.0, "F#", "phrygian"]
    [(_, tempo)] = peer.request("/qriff/get/tempo", 6)
    assert tempo == [6, 120.0]


@pytest.mark.parametrize("name,kind", [("version", str), ("out", str), ("port", int),
                                       ("queue", int), ("served", int), ("malformed", int)])
def test_read_only_properties(peer, server, name, kind):
    [(addr, params)] = peer.request(f"/qriff/get/{name}", 1)
    assert addr == f"/qriff/get/{name}" and isinstance(params[1], kind)
    if name == "port":
        assert params[1] == server.address[1]
    [(addr, params)] = peer.request(f"/qriff/set/{name}", 2, 1)
    assert addr == "/qriff/error" and params[:2] == [2, "unknown_address"] and "read-only" in params[2]


@pytest.mark.parametrize("name", list(protocol.LISTS))
def test_lists(peer, name):
    [(addr, params)] = peer.request(f"/qriff/list/{name}", "x")
    assert addr == f"/qriff/list/{name}" and params[0] == "x"
    assert params[1:] == protocol.list_items(name, ["test-walk"])


@pytest.mark.parametrize("address,args,code,fragment", [
    ("/qriff/generate", (1, "key", "H"), "bad_value", "key 'H'"),
    ("/qriff/generate", (1, "bars", 17), "bad_value", "1..16"),
    ("/qriff/generate", (1, "bars", 2.5), "bad_value", "bars 2.5"),
    ("/qriff/generate", (1, "temperature", math.nan), "bad_value", "temperature nan"),
    ("/qriff/generate", (1, "tempo", math.inf), "bad_value", "tempo inf"),
    ("/qriff/generate", (1, "scale", "klingon"), "bad_value", "scale 'klingon'"),
    ("/qriff/generate", (1, "style", "polka"), "bad_value", "style 'polka'"),
    ("/qriff/generate", (1, "chords", "C X7"), "bad_value", "chords"),
    ("/qriff/generate", (1, "roles", "drums"), "bad_value", "roles"),
    ("/qriff/generate", (1, "key"), "bad_request", "key/value pairs"),
    ("/qriff/generate", (1, "colour", "red"), "bad_request", "'colour' is not known"),
    ("/qriff/generate", (1, 3, 4), "bad_request", "not a string"),
    ("/qriff/generate", (1, "primer", "../../etc/passwd"), "bad_value", "no folders"),
    ("/qriff/generate", (1, "primer", "nothing.mid"), "not_found", "does not exist"),
    ("/qriff/generate", (1, "seed", -5), "bad_value", "-1..2147483647"),
    ("/qriff/generate", (), "bad_request", "request id is missing"),
    ("/qriff/generate", (True,), "bad_request", "not usable"),
    ("/qriff/ping", (1, 2), "bad_request", "key/value pairs"),
    ("/qriff/get/key", (1, 2), "bad_request", "takes only the request id"),
    ("/qriff/set/bars", (1,), "bad_request", "one value"),
    ("/qriff/set/bars", (1, "x"), "bad_value", "bars 'x'"),
    ("/qriff/set/nothing", (1, 2), "unknown_address", "not a property"),
    ("/qriff/get/nothing", (1,), "unknown_address", "not a property"),
    ("/qriff/list/nothing", (1,), "unknown_address", "lists are"),
    ("/qriff/dance", (1,), "unknown_address", "'/qriff/dance' is not known"),
    ("/live/song/get/tempo", (1,), "unknown_address", "is not known"),
    ("/qriff/render", (1, "clip", "a/b.json"), "bad_value", "no folders"),
    ("/qriff/live/push", (1,), "not_found", "none generated yet"),
    ("/qriff/live/push", (1, "clip", ".hidden"), "bad_value", "no folders"),
])
def test_bad_requests_get_an_error_and_the_server_keeps_serving(peer, address, args, code, fragment):
    [(addr, params)] = peer.request(address, *args)
    assert addr == "/qriff/error", params
    assert params[1] == code, params
    assert fragment in params[2], params
    assert params[0] == (args[0] if args and not isinstance(args[0], bool) else -1)
    assert peer.request("/qriff/ping", 99) == [("/qriff/pong", [99, "0.1.0"])]


def test_replies_go_to_reply_port_on_the_senders_host(server):
    sender, listener = Peer(server.address), Peer(server.address)
    sender.send("/qriff/ping", 1, "reply_port", listener.port)
    assert listener.recv()[:2] == ("/qriff/pong", [1, "0.1.0"])
    sender.send("/qriff/generate", 2, "bars", 1, "reply_port", listener.port)
    assert listener.recv()[0] == "/qriff/clip/begin"
    while listener.recv()[0] != "/qriff/clip/end":
        pass
    # a session default redirects everything, errors included
    sender.send("/qriff/set/reply_port", 3, listener.port)
    assert listener.recv()[:2] == ("/qriff/set/reply_port", [3, listener.port])
    sender.send_raw(b"\x00garbage")
    addr, params, _ = listener.recv()
    assert addr == "/qriff/error" and params[:2] == [-1, "malformed"]
    sender.sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        sender.sock.recvfrom(65536)


@pytest.mark.parametrize("address,args,expect", [
    ("/qriff/generate", (5, "key", "D", "reply_port", "PORT", "bars"), ("/qriff/error", "bad_request")),
    ("/qriff/generate", (5, "key", "reply_port", "PORT"), ("/qriff/error", "bad_request")),
    ("/qriff/generate", (5, "bars", 99, "reply_port", "PORT"), ("/qriff/error", "bad_value")),
    ("/qriff/set/key", (5, "D", "reply_port", "PORT"), ("/qriff/set/key", None)),
    ("/qriff/set/key", (5, "H", "reply_port", "PORT"), ("/qriff/error", "bad_value")),
    ("/qriff/set/bars", (5, 2, 3, "reply_port", "PORT"), ("/qriff/error", "bad_request")),
    ("/qriff/get/key", (5, "extra", "reply_port", "PORT"), ("/qriff/error", "bad_request")),
    ("/qriff/nothing", (5, "reply_port", "PORT"), ("/qriff/error", "unknown_address")),
    ("/qriff/ping", (5, "reply_port", "PORT", "colour", 1), ("/qriff/error", "bad_request")),
])
def test_reply_port_is_honoured_wherever_it_appears(server, address, args, expect):
    """Odd option lists, /qriff/set/*, unknown addresses: the answer reaches reply_port, not the sender."""
    sender, listener = Peer(server.address), Peer(server.address)
    sender.send(address, *[listener.port if a == "PORT" else a for a in args])
    addr, params, _ = listener.recv()
    assert addr == expect[0] and params[0] == 5, params
    if expect[1]:
        assert params[1] == expect[1], params
    sender.sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        sender.sock.recvfrom(65536)
    server.session.update(protocol.defaults())


def test_unexpected_failure_is_answered_internal_and_logged_once_a_minute(server, peer, caplog):
    def broken(ctx, request):
        raise KeyError("a bug")

    server.dispatcher.map("/qriff/broken", broken)
    now = [0.0]
    server.failures.clock = lambda: now[0]
    with caplog.at_level("ERROR", logger="bridge.server"):
        for i in range(50):
            [(addr, params)] = peer.request("/qriff/broken", i, "reply_port", peer.port)
            assert addr == "/qriff/error" and params[:2] == [i, "internal"]
            assert "KeyError" in params[2] and "\n" not in params[2]
        now[0] = 61.0
        peer.request("/qriff/broken", 50)
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 2 and server.failures.total == 51
    assert "49 more unexpected failures" in tracebacks[1].getMessage()
    assert peer.request("/qriff/ping", 99) == [("/qriff/pong", [99, "0.1.0"])]


def test_path_from_the_network_never_leaves_the_output_folder(peer, server, tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    for name in ("../secret.json", "..", "/etc/passwd", "a/../../secret.json", "x\\..\\secret.json"):
        [(addr, params)] = peer.request("/qriff/render", 1, "clip", name)
        assert addr == "/qriff/error" and params[1] == "bad_value", (name, params)
    # a clip of the folder is fine (primer = continue from it)
    end = peer.request("/qriff/generate", 2, "bars", 1, "seed", 4, until="/qriff/clip/end")[-1][1]
    name = end[4].rsplit("/", 1)[1]
    replies = peer.request("/qriff/generate", 3, "bars", 1, "primer", name, until="/qriff/clip/end")
    assert replies[-1][0] == "/qriff/clip/end"
    assert {p.parent for p in server.out_dir.iterdir()} == {server.out_dir}


def test_a_full_queue_answers_busy_and_every_request_gets_an_answer(tmp_path):
    with running_server(tmp_path, WalkSource(delay=0.4), queue_size=2) as srv:
        peer = Peer(srv.address)
        peer.send("/qriff/generate", 0, "bars", 1, "seed", 0)  # explicit seeds: no batching
        while peer.request("/qriff/get/queue", "q")[0][1][1]:  # until the worker has taken it
            time.sleep(0.01)
        for i in range(1, 8):
            peer.send("/qriff/generate", i, "bars", 1, "seed", i)
        outcome: dict[int, str] = {}
        deadline = time.monotonic() + 10
        while len(outcome) < 8 and time.monotonic() < deadline:
            addr, params, _ = peer.recv()
            if addr == "/qriff/error":
                assert params[1] == "busy" and "retry" in params[2]
                outcome[params[0]] = "busy"
            elif addr == "/qriff/clip/end":
                outcome[params[0]] = "clip"
        assert len(outcome) == 8
        assert list(outcome.values()).count("busy") >= 4
        assert list(outcome.values()).count("clip") >= 3
        assert [outcome[i] for i in range(3)] == ["clip"] * 3  # first come, first served
        assert peer.request("/qriff/ping", 9)[0][0] == "/qriff/pong"


def test_stop_answers_queued_requests_with_shutdown(tmp_path):
    srv_cm = running_server(tmp_path, WalkSource(delay=0.2), queue_size=8)
    srv = srv_cm.__enter__()
    peer = Peer(srv.address)
    for i in range(4):
        peer.send("/qriff/generate", i, "bars", 1, "seed", i)
    time.sleep(0.3)
    t = threading.Thread(target=srv_cm.__exit__, args=(None, None, None))
    t.start()
    codes = []
    peer.sock.settimeout(3)
    try:
        while True:
            addr, params, _ = peer.recv(1)
            if addr == "/qriff/error":
                codes.append(params[1])
    except TimeoutError:
        pass
    t.join()
    assert "shutdown" in codes


def test_requests_with_default_seeds_are_batched_and_reproducible(tmp_path):
    source = WalkSource(delay=0.3)
    with running_server(tmp_path, source, queue_size=16) as srv:
        peer = Peer(srv.address)
        peer.send("/qriff/generate", 0, "bars", 1, "seed", 1)  # occupies the worker while the others queue
        for i in range(1, 6):
            peer.send("/qriff/generate", i, "bars", 1, "variations", 2)
        begins, ends = {}, {}
        while len(ends) < 11:
            addr, params, _ = peer.recv()
            if addr == "/qriff/clip/begin":
                begins[(params[0], params[1])] = params
            elif addr == "/qriff/clip/end":
                ends[(params[0], params[1])] = params
    assert len(source.calls) == 2 and source.calls[1]["count"] == 10
    seeds = [begins[(i, v)][7] for i in range(1, 6) for v in range(2)]
    assert seeds == list(range(seeds[0], seeds[0] + 10))
    for i in range(1, 6):  # each clip is what its own seed gives alone
        for v in range(2):
            clip = Clip.from_json(open(ends[(i, v)][4]).read())
            alone = WalkSource().generate(bars=1, seed=clip.seed)[0]
            assert clip.tracks[0].notes == alone.tracks[0].notes and begins[(i, v)][1:3] == [v, 2]


def test_bundles_are_answered_message_by_message(peer):
    from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
    from pythonosc.osc_message import OscMessage

    b = OscBundleBuilder(IMMEDIATELY)
    for i in (1, 2):
        b.add_content(OscMessage(osc("/qriff/ping", i)))
    peer.send_raw(b.build().dgram)
    assert [peer.recv()[1][0] for _ in range(2)] == [1, 2]


def test_allow_list_drops_other_senders(tmp_path):
    with running_server(tmp_path, allow=(__import__("ipaddress").ip_network("10.0.0.0/8"),)) as srv:
        peer = Peer(srv.address)
        peer.send("/qriff/ping", 1)
        with pytest.raises(TimeoutError):
            peer.recv(0.3)


_PING_IDS = iter(range(10**6, 10**7))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=300),
    st.builds(lambda a, args: encode(a, args),
              st.sampled_from(["/qriff/generate", "/qriff/set/bars", "/qriff/ping", "/qriff/render", "/qriff/x",
                               "/qriff/live/push", "/qriff/set/key", "/qriff/get/tempo", "/qriff/set/reply_port"]),
              st.lists(st.one_of(st.integers(-2**31, 2**31 - 1), st.floats(width=32),
                                 st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40),
                                 st.sampled_from(["key", "bars", "scale", "primer", "clip", "reply_port", "seed"])),
                       max_size=8))))
def test_fuzz_server_survives_anything_and_still_answers(server, peer, data):
    server.session.update(protocol.defaults())  # a fuzzed /qriff/set must not leak into this example
    peer.send_raw(data)
    rid = next(_PING_IDS)
    peer.send("/qriff/ping", rid, "reply_port", peer.port)  # even if the datagram moved reply_port
    while True:  # skip whatever the datagram caused (errors, or a whole clip for a valid generate)
        addr, params, _ = peer.recv(5)
        if addr == "/qriff/pong" and params[0] == rid:
            break


def test_oversized_and_truncated_datagrams(peer):
    peer.send_raw(b"/qriff/ping\x00,s\x00\x00" + b"a" * 60000 + b"\x00\x00\x00\x00")
    addr, params, _ = peer.recv()
    assert addr == "/qriff/error" and params[1] == "malformed" and "too long" in params[2]
    peer.send_raw(osc("/qriff/generate", 1, "key", "D")[:-3])
    addr, params, _ = peer.recv()
    assert addr == "/qriff/error" and params[1] == "malformed"


def test_error_messages_fit_one_datagram(peer):
    peer.send("/qriff/generate", 1, "style", "x" * 500)
    addr, params, raw = peer.recv()
    assert addr == "/qriff/error" and len(raw) <= MAX_DATAGRAM


def test_json_written_matches_design_contract(peer, server):
    end = peer.request("/qriff/generate", 1, "bars", 2, "seed", 3, until="/qriff/clip/end")[-1][1]
    data = json.loads(open(end[4]).read())
    assert data["qriff_clip"] == 1 and data["bars"] == 2 and data["seed"] == 3


def _free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ------------------------------------------------------------------------- CLI

def test_cli_help_and_address_table(qriff):
    r = qriff("serve", "--help")
    assert r.returncode == 0 and "--reply-port" in r.stdout and "--allow" in r.stdout
    assert "--no-create-scenes" in r.stdout and "--live-reply-port" not in r.stdout  # AbletonOSC answers on 11001
    r = qriff("serve", "--address-table")
    assert r.returncode == 0 and r.stdout == protocol.address_table_markdown()


@pytest.mark.parametrize("flags,fragment", [
    (("--port", "70000"), "--port"), (("--allow", "nonsense"), "--allow"), (("--queue", "0"), "--queue"),
    (("--live-timeout", "-1"), "--live-timeout"),
])
def test_cli_bad_flags_exit_2_with_one_line(qriff, flags, fragment):
    r = qriff("serve", *flags)
    assert r.returncode == 2 and fragment in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_cli_missing_model_exits_2(qriff, tmp_path):
    r = qriff("serve", "--port", "0", "--out", str(tmp_path), "--model", str(tmp_path / "none.onnx"))
    assert r.returncode == 2 and "none.onnx" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("host,loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                           ("0.0.0.0", False)])
def test_loopback_detection(tmp_path, host, loopback):
    from bridge.server import Server, ServerConfig

    assert Server(ServerConfig(host=host, port=0, out_dir=tmp_path), WalkSource()).binds_loopback() is loopback


def test_ipv6_loopback_serves(tmp_path):
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with running_server(tmp_path, host="::1") as srv:
        client = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        client.settimeout(5)
        client.sendto(osc("/qriff/ping", 5), srv.address)
        from pythonosc.osc_message import OscMessage

        assert OscMessage(client.recvfrom(65536)[0]).params == [5, "0.1.0"]
        client.close()


def test_unusable_out_folder_and_busy_port_are_config_errors(tmp_path):
    from bridge.errors import ConfigError
    from bridge.server import Server, ServerConfig

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot hold clips"):
        Server(ServerConfig(port=0, out_dir=blocker), WalkSource()).bind()
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    try:
        with pytest.raises(ConfigError, match="pick another --port"):
            Server(ServerConfig(port=taken.getsockname()[1], out_dir=tmp_path / "o"), WalkSource()).bind()
    finally:
        taken.close()


def test_cli_unusable_out_folder_exits_2(qriff, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = qriff("serve", "--port", "0", "--out", str(blocker), "--model", str(tmp_path / "none.onnx"))
    assert r.returncode == 2 and "cannot hold clips" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_restarted_server_never_writes_over_an_earlier_sessions_clips(tmp_path):
    written = {}
    for session in range(2):
        with running_server(tmp_path) as srv:
            peer = Peer(srv.address)
            for rid in range(2):
                end = peer.request("/qriff/generate", rid, "bars", 1, "seed", 10 * session + rid,
                                   until="/qriff/clip/end")[-1][1]
                for path in end[3:5]:
                    assert path not in written
                    written[path] = open(path, "rb").read()
            peer.close()
    assert len(written) == 8 and all(open(p, "rb").read() == data for p, data in written.items())
    assert sorted(p.rsplit("/", 1)[1] for p in written)[-1] == "000004-0.mid"


def test_a_double_id_too_large_for_a_float32_is_echoed_as_a_double(peer):
    """Found by the fuzz: echoing 1e300 as a float32 raised OverflowError and the sender heard nothing."""
    peer.send_raw(encode("/qriff/ping", (1e300,), "d"))
    addr, params, raw = peer.recv()
    assert addr == "/qriff/pong" and params[0] == 1e300 and b",ds" in raw
    peer.send_raw(encode("/qriff/nothing", (-2.5e200,), "d"))
    addr, params, _ = peer.recv()
    assert addr == "/qriff/error" and params[:2] == [-2.5e200, "unknown_address"]
