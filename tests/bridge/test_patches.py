"""The Max and Pd patches: structure, OSC addresses against the address table, and a live run.

The .maxpat and the device (.amxd) cannot be opened without Max, so they are checked
structurally: the .amxd container is parsed byte by byte (an independent reader of the
format, see :func:`read_amxd`), and in both patchers every
patchline joins existing boxes through existing inlets/outlets, the inlet/outlet counts
of each object match Max's, and every OSC message it sends is a request of the
address table with valid options whose values have the right kinds. The Pd patches are
checked the same way and then run headless against a real server.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bridge import protocol
from tests.bridge.support import free_udp_port, running_server

ROOT = Path(__file__).resolve().parents[2]
MAXPAT = ROOT / "max_patches" / "qriff.maxpat"
AMXD = ROOT / "max_patches" / "qriff.amxd"
MAXPATS = pytest.mark.parametrize("path", [MAXPAT, AMXD], ids=["qriff.maxpat", "qriff.amxd"])
PD_USER = ROOT / "max_patches" / "qriff.pd"
PD_TEST = ROOT / "tests" / "pd" / "generate.pd"

# Max objects used by the patch: (inlets, outlets), from Max's reference (n = number of arguments).
MAX_OBJECTS = {
    "loadbang": lambda n: (1, 1), "i": lambda n: (2, 1), "+": lambda n: (2, 1), "*": lambda n: (2, 1),
    "!/": lambda n: (2, 1), "==": lambda n: (2, 1), "&&": lambda n: (2, 1), "pack": lambda n: (max(n, 2), 1),
    "unpack": lambda n: (1, max(n, 2)), "route": lambda n: (2, n + 1), "prepend": lambda n: (1, 1),
    "zl": lambda n: (2, 2), "gate": lambda n: (2, 1 if n else 1), "pipe": lambda n: (n, n - 1),
    "makenote": lambda n: (3, 2), "noteout": lambda n: (3, 0), "udpsend": lambda n: (1, 0),
    "udpreceive": lambda n: (1, 1), "js": lambda n: (1, 1), "midiin": lambda n: (1, 1), "midiout": lambda n: (1, 0),
    "deferlow": lambda n: (1, 1), "t": lambda n: (1, n),
}
MAX_UI = {"message": (2, 1), "comment": (1, 0), "button": (1, 1), "toggle": (1, 1), "number": (1, 2),
          "flonum": (1, 2), "dial": (1, 1), "umenu": (1, 3), "live.menu": (1, 3), "live.numbox": (1, 2),
          "live.dial": (1, 2)}

# Pd vanilla objects: (inlets, outlets).
PD_OBJECTS = {
    "r": lambda n: (0, 1), "loadbang": lambda n: (1, 1), "unpack": lambda n: (1, n), "pack": lambda n: (n, 1),
    "netsend": lambda n: (1, 2), "netreceive": lambda n: (1, 2), "oscformat": lambda n: (1, 1),
    "oscparse": lambda n: (1, 1), "print": lambda n: (1, 0), "t": lambda n: (1, n), "delay": lambda n: (2, 1),
    "f": lambda n: (2, 1), "+": lambda n: (2, 1), "*": lambda n: (2, 1), "/": lambda n: (2, 1),
    "==": lambda n: (2, 1), "spigot": lambda n: (2, 1), "swap": lambda n: (2, 2), "pipe": lambda n: (n, n - 1),
    "makenote": lambda n: (3, 2), "noteout": lambda n: (3, 0), "hradio": lambda n: (1, 1), "hsl": lambda n: (1, 1),
    "bng": lambda n: (1, 1), "tgl": lambda n: (1, 1), "s": lambda n: (1, 0),
}
PD_LIST = {"trim": (1, 1), "prepend": (2, 1), "append": (2, 1), "split": (2, 3), "store": (2, 2), "length": (1, 1)}


# ----------------------------------------------------------------------- OSC checks

def kind_ok(prop_kind: str, value_kind: str) -> bool:
    """Whether a value of ``value_kind`` (i, f, s) is accepted by a property of ``prop_kind``."""
    return {"i": value_kind == "i", "f": value_kind in "if", "s": value_kind == "s",
            "n": value_kind in "is"}[prop_kind]


def check_request(address: str, args: list[str], slot_kinds: dict[int, str]) -> None:
    """Assert that ``address args`` is a valid request; ``$N`` args take the kind in ``slot_kinds``."""
    table = protocol.request_addresses()
    assert address in table, f"{address} is not in the address table"
    assert args, f"{address}: the request id is missing"
    method = protocol.method(address)
    rest = args[1:]
    if method is None:
        if len(rest) >= 2 and rest[-2] == "reply_port":  # get, set and list take a trailing reply_port N
            rest = rest[:-2]
        assert len(rest) == len(table[address]), (address, args)
        for arg, value in zip(table[address], rest):
            if value.startswith("$"):
                assert kind_ok(arg.kind, slot_kinds[int(value[1:])]), f"{address} {arg.name}: {value}"
        return
    fixed = [a for a in method.args if not a.optional]
    assert len(rest) >= len(fixed), f"{address}: needs {[a.name for a in fixed]} after the id: {rest}"
    for arg, value in zip(fixed, rest):
        if value.startswith("$"):
            assert kind_ok(arg.kind, slot_kinds[int(value[1:])]), f"{address} {arg.name}: {value}"
    rest = rest[len(fixed):]
    assert len(rest) % 2 == 0, f"{address}: options must be key/value pairs: {rest}"
    for name, value in zip(rest[::2], rest[1::2]):
        assert name in method.options, f"{address}: option {name!r} is not in {method.options}"
        prop = protocol.PROPERTIES.get(name)
        if value.startswith("$"):
            kind = slot_kinds[int(value[1:])]
            if prop is not None:
                assert kind_ok(prop.kind, kind), f"{address} {name}: a {kind} goes into a {prop.kind} option"
            else:
                assert kind == "i", f"{address} {name}: a {kind} value"
        else:
            literal: object = int(value) if re.fullmatch(r"-?\d+", value) else value
            protocol._OPTION_PARSERS[name](literal)


# ------------------------------------------------------------------------------ Max

def read_amxd(data: bytes) -> dict:
    """The parts of an .amxd: ``version``, ``type``, ``meta`` (bytes), ``patcher`` (the JSON, decoded).

    ``ampf``, u32 version, 4-byte device type, then chunks (4-byte tag, u32 size
    little-endian, payload): ``meta`` and ``ptch``, the last running to the end of the
    file and holding the patcher JSON with a NUL at its end.
    """
    assert data[:4] == b"ampf", data[:4]
    version = struct.unpack_from("<I", data, 4)[0]
    out: dict = {"version": version, "type": data[8:12], "chunks": []}
    pos = 12
    while pos < len(data):
        tag, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        payload = data[pos + 8:pos + 8 + size]
        assert len(payload) == size, f"chunk {tag!r} declares {size} bytes, {len(payload)} follow"
        out["chunks"].append((tag, size))
        if tag == b"meta":
            out["meta"] = payload
        elif tag == b"ptch":
            assert payload.endswith(b"\x00") and b"\x00" not in payload[:-1]
            out["patcher"] = json.loads(payload[:-1].decode("utf-8"))
        pos += 8 + size
    return out


def max_boxes(path=MAXPAT):
    data = read_amxd(path.read_bytes())["patcher"] if path.suffix == ".amxd" else json.loads(path.read_text())
    boxes = {b["box"]["id"]: b["box"] for b in data["patcher"]["boxes"]}
    lines = [ln["patchline"] for ln in data["patcher"]["lines"]]
    return data, boxes, lines


@MAXPATS
def test_maxpat_is_valid_patcher_json(path):
    data, boxes, lines = max_boxes(path)
    assert len(boxes) == len(data["patcher"]["boxes"]), "box ids must be unique"
    assert len(boxes) > 40 and len(lines) > 40
    for box in boxes.values():
        assert {"id", "maxclass", "numinlets", "numoutlets", "patching_rect"} <= set(box)
        assert len(box["patching_rect"]) == 4
        if box["numoutlets"]:
            assert len(box["outlettype"]) == box["numoutlets"]


@MAXPATS
def test_maxpat_lines_join_existing_boxes_through_existing_ports(path):
    _, boxes, lines = max_boxes(path)
    for line in lines:
        (src, outlet), (dst, inlet) = line["source"], line["destination"]
        assert src in boxes and dst in boxes, line
        assert 0 <= outlet < boxes[src]["numoutlets"], line
        assert 0 <= inlet < boxes[dst]["numinlets"], line


def js_ports(script: str) -> tuple[int, int]:
    """(inlets, outlets) a Max [js] box gets from the ``inlets = N; outlets = M;`` its script declares."""
    text = (ROOT / "max_patches" / script).read_text()
    return tuple(int(re.search(rf"^{side} = (\d+);", text, re.M).group(1))  # type: ignore[return-value,union-attr]
                 for side in ("inlets", "outlets"))


@MAXPATS
def test_maxpat_port_counts_match_max_objects(path):
    _, boxes, _ = max_boxes(path)
    for box in boxes.values():
        if box["maxclass"] == "newobj":
            name, *args = box["text"].split()
            assert name in MAX_OBJECTS, f"object {name!r} is not in the reference table"
            expect = js_ports(args[0]) if name == "js" else MAX_OBJECTS[name](len(args))
        else:
            expect = MAX_UI[box["maxclass"]]
        assert (box["numinlets"], box["numoutlets"]) == expect, box


@MAXPATS
def test_maxpat_sends_only_requests_of_the_address_table(path):
    _, boxes, lines = max_boxes(path)
    feeders = {}
    for line in lines:
        feeders.setdefault((line["destination"][0], line["destination"][1]), []).append(line["source"][0])
    sent = []
    for box in boxes.values():
        if box["maxclass"] == "message" and box["text"].startswith("/qriff/"):
            address, *args = box["text"].split()
            kinds: dict[int, str] = {}
            for src in feeders.get((box["id"], 0), []):
                name, *pack_args = boxes[src].get("text", "").split() or [""]
                if name != "pack":  # a bang: the message goes out as written
                    assert boxes[src]["maxclass"] == "button" or name in ("loadbang", "t"), boxes[src]
                    continue
                kinds = {i + 1: ("f" if "." in a else "i" if re.fullmatch(r"-?\d+", a) else "s")
                         for i, a in enumerate(pack_args)}
            check_request(address, args, kinds)
            sent.append(address)
    assert {"/qriff/generate", "/qriff/ping", "/qriff/render", "/qriff/list/models", "/qriff/get/model",
            "/qriff/set/model"} <= set(sent)
    assert ("/qriff/live/push" in sent) == (path == MAXPAT)  # the device writes clips itself
    # replies are routed by addresses the server sends, to the port every request names
    routes = [b["text"].split()[1:] for b in boxes.values()
              if b.get("text", "").startswith("route /")]
    answered = {*protocol.REPLY_ADDRESSES, *protocol.request_addresses()}  # get/set/list answer on their own
    assert routes and all(a in answered for r in routes for a in r)
    texts = [b.get("text", "") for b in boxes.values()]
    recv_port = next(t.split()[1] for t in texts if t.startswith("udpreceive"))
    assert all(f"reply_port {recv_port}" in t for t in texts if t.startswith("/qriff/"))
    assert any(t == "udpsend 127.0.0.1 9000" for t in texts)


def test_maxpat_has_the_controls_a_musician_needs():
    _, boxes, lines = max_boxes(MAXPAT)
    classes = [b["maxclass"] for b in boxes.values()]
    assert classes.count("umenu") == 4 and "dial" in classes and classes.count("number") >= 3
    menus = [b["items"] for b in boxes.values() if b["maxclass"] == "umenu" and b.get("varname") != "model"]
    items = [[x for x in m if x != ","] for m in menus]
    assert items[0] == protocol.list_items("keys")
    assert items[1] == protocol.list_items("scales")
    assert items[2] == protocol.list_items("styles")
    texts = [b.get("text", "") for b in boxes.values()]
    assert "noteout" in texts and any(t.startswith("makenote") for t in texts)


def test_device_parameters_are_saved_with_the_set_and_automatable():
    """live.menu / live.numbox / live.dial with parameter_enable on, each a valid value of its request option."""
    data, boxes, lines = max_boxes(AMXD)
    params = {b["varname"]: b for b in boxes.values() if b["maxclass"].startswith("live.")}
    assert set(params) == {"Key", "Scale", "Style", "Bars", "Variations", "Seed", "Temperature"}
    assert not [b for b in boxes.values() if b["maxclass"] in ("number", "dial", "flonum")]
    # one umenu: the model menu, not a Live parameter (its items follow the server's models folder)
    [menu] = [b for b in boxes.values() if b["maxclass"] == "umenu"]
    assert menu["varname"] == "model" and menu["parameter_enable"] == 0 and menu["presentation"] == 1
    for name, box in params.items():
        value = box["saved_attribute_attributes"]["valueof"]
        assert box["parameter_enable"] == 1 and value["parameter_longname"] == name
        assert value["parameter_initial_enable"] == 1 and box["presentation"] == 1
    kinds = {"Key": ("live.menu", "keys"), "Scale": ("live.menu", "scales"), "Style": ("live.menu", "styles")}
    for name, (cls, lst) in kinds.items():
        value = params[name]["saved_attribute_attributes"]["valueof"]
        assert params[name]["maxclass"] == cls and value["parameter_type"] == 2
        assert value["parameter_enum"] == protocol.list_items(lst)  # the index sent is the server's index
        assert protocol.PROPERTIES[name.lower()].parse(value["parameter_initial"][0]) == protocol.list_items(lst)[0]
    for name in ("Bars", "Variations", "Seed", "Temperature"):
        value = params[name]["saved_attribute_attributes"]["valueof"]
        prop = protocol.PROPERTIES[name.lower()]
        for v in (value["parameter_mmin"], value["parameter_mmax"], value["parameter_initial"][0]):
            prop.parse(v)  # the whole range is accepted by the server
    assert params["Temperature"]["maxclass"] == "live.dial" and \
        params["Temperature"]["saved_attribute_attributes"]["valueof"]["parameter_type"] == 0
    assert params["Bars"]["maxclass"] == "live.numbox"
    # the parameters feed the generate request: menus by index (left outlet), numbers and dial by value
    feeds = {(ln["source"][0], ln["source"][1]) for ln in lines}
    assert all((params[n]["id"], 0) in feeds for n in params)
    assert data["patcher"]["openinpresentation"] == 1
    texts = [b.get("text", "") for b in boxes.values()]
    assert "js qriff_live.js" in texts and "midiin" in texts and "midiout" in texts
    status = [b for b in boxes.values() if b["maxclass"] == "message" and b.get("presentation")]
    assert len(status) == 1  # the status line is in the device view


# ---------------------------------------------------------------------- the device

def test_device_is_an_amxd_midi_effect():
    data = AMXD.read_bytes()
    amxd = read_amxd(data)
    assert amxd["version"] == 4 and amxd["type"] == b"mmmm"
    assert [tag for tag, _ in amxd["chunks"]] == [b"meta", b"ptch"] and len(amxd["meta"]) == 4
    ptch_size = dict(amxd["chunks"])[b"ptch"]
    assert 12 + 8 + 4 + 8 + ptch_size == len(data)  # header, meta chunk, ptch chunk: nothing before or after
    patcher = amxd["patcher"]["patcher"]
    assert patcher["project"]["amxdtype"] == int.from_bytes(b"mmmm", "big")
    assert patcher["openinpresentation"] == 1 and patcher["devicewidth"] > 0


def test_device_lists_the_script_it_loads():
    patcher = read_amxd(AMXD.read_bytes())["patcher"]["patcher"]
    deps = {d["name"]: d for d in patcher["dependency_cache"]}
    scripts = [b["box"]["text"].split()[1] for b in patcher["boxes"] if b["box"].get("text", "").startswith("js ")]
    assert sorted(scripts) == sorted(deps) == ["qriff_live.js", "qriff_models.js"]
    for name in scripts:
        assert deps[name]["type"] == "TEXT" and (AMXD.parent / name).is_file()  # kept beside the device


def test_device_parameters_fit_lives_parameter_types():
    """Live's Int parameters hold at most 256 values: Seed (-1..99999) is a Float with unit style Int."""
    patcher = read_amxd(AMXD.read_bytes())["patcher"]["patcher"]
    params = {}
    for b in patcher["boxes"]:
        box = b["box"]
        if box.get("parameter_enable"):
            params[box["varname"]] = (box["id"], box["saved_attribute_attributes"]["valueof"])
    listed = {k: v[0] for k, v in patcher["parameters"].items() if k != "inherited_shortname"}
    assert listed == {box_id: name for name, (box_id, _) in params.items()}
    for name, (_, v) in params.items():
        if v["parameter_type"] == 1:  # Int
            assert v["parameter_mmax"] - v["parameter_mmin"] + 1 <= 256, name
        elif v["parameter_type"] == 2:  # Enum
            assert len(v["parameter_enum"]) <= 256, name
    seed = params["Seed"][1]
    assert seed["parameter_type"] == 0 and seed["parameter_unitstyle"] == 0  # Float, shown as Int
    assert (seed["parameter_mmin"], seed["parameter_mmax"]) == (-1, 99999)
    assert params["Bars"][1]["parameter_type"] == 1 and params["Variations"][1]["parameter_type"] == 1


def _rect(box):
    return box["presentation_rect"]


def test_every_control_of_the_device_view_has_a_label_beside_it():
    _, boxes, _ = max_boxes(AMXD)
    shown = [b for b in boxes.values() if b.get("presentation")]
    controls = [b for b in shown
                if b["maxclass"] in ("live.menu", "live.numbox", "live.dial", "button", "toggle", "umenu")]
    labels = [b for b in shown if b["maxclass"] == "comment"]
    assert len(controls) == 7 + 4 + 2  # the parameters, generate, keep, discard, write, model menu, refresh
    for c in controls:
        x, y, w, h = _rect(c)
        beside = [t for t in labels
                  if (abs((_rect(t)[0] + _rect(t)[2]) - x) <= 12 or abs(_rect(t)[0] - (x + w)) <= 12)
                  and _rect(t)[1] < y + h and y < _rect(t)[1] + _rect(t)[3]]
        above = [t for t in labels if abs(_rect(t)[1] + _rect(t)[3] - y) <= 6 and _rect(t)[0] < x + w
                 and x < _rect(t)[0] + _rect(t)[2]]
        assert beside or above, f"{c.get('varname') or c['maxclass']} at {_rect(c)} has no label"
    # nothing overlaps, and everything fits the device (Live shows 169 pixels of height)
    width = read_amxd(AMXD.read_bytes())["patcher"]["patcher"]["devicewidth"]
    for i, a in enumerate(shown):
        ax, ay, aw, ah = _rect(a)
        assert ax >= 0 and ay >= 0 and ax + aw <= width and ay + ah <= 169, a
        for b in shown[i + 1:]:
            bx, by, bw, bh = _rect(b)
            assert not (ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah), (a, b)
    names = {t["text"] for t in labels}
    assert {"Keep", "Discard", "generate", "model", "refresh"} <= names


def test_live_api_work_is_deferred():
    """No path from [udpreceive] or a button reaches [js] without a [deferlow] on it."""
    _, boxes, lines = max_boxes(AMXD)
    out: dict[str, list[str]] = {}
    for ln in lines:
        out.setdefault(ln["source"][0], []).append(ln["destination"][0])
    js = next(i for i, b in boxes.items() if b.get("text", "") == "js qriff_live.js")

    def reaches_js_undeferred(start):
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            for nxt in out.get(node, []):
                if nxt == js:
                    return True
                if nxt not in seen and boxes[nxt].get("text") != "deferlow":
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    recv = next(i for i, b in boxes.items() if b.get("text", "").startswith("udpreceive"))
    buttons = [i for i, b in boxes.items() if b["maxclass"] == "button"]
    assert not reaches_js_undeferred(recv)
    assert not any(reaches_js_undeferred(b) for b in buttons)
    assert any(b.get("text") == "deferlow" for b in boxes.values())


def test_keep_and_discard_reach_the_server_as_feedback_from_the_device():
    _, boxes, _ = max_boxes(AMXD)
    texts = [b.get("text", "") for b in boxes.values()]
    [fb] = [t for t in texts if t.startswith("/qriff/feedback ")]
    assert fb.split()[1:4] == ["$1", "$2", "$3"] and "source device" in fb
    assert "route status feedback" in texts and "keep" in texts and "discard" in texts
    assert any("/qriff/feedback/stored" in t for t in texts if t.startswith("route /"))


def test_patches_are_what_the_builder_writes():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_patches", ROOT / "max_patches" / "build_patches.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["build_patches"] = mod  # dataclasses look their module up
    try:
        spec.loader.exec_module(mod)
    finally:
        del sys.modules["build_patches"]
    assert json.loads(MAXPAT.read_text()) == mod.build_max(), "run python max_patches/build_patches.py"
    assert AMXD.read_bytes() == mod.amxd_bytes(mod.build_max(device=True)), "run python max_patches/build_patches.py"
    assert PD_USER.read_text() == mod.build_pd(), "run python max_patches/build_patches.py"
    assert mod.KEYS == protocol.list_items("keys") and mod.SCALES == protocol.list_items("scales")
    assert mod.STYLES == protocol.list_items("styles")


# ------------------------------------------------------------------------------- Pd

def parse_pd(path: Path):
    """Objects (kind, tokens) in creation order and connections of the top-level canvas."""
    text = path.read_text()
    records = [r.strip().replace("\n", " ") for r in re.split(r"(?<!\\);", text) if r.strip()]
    objects, connects = [], []
    for rec in records:
        parts = rec.split()
        if parts[0] == "#X" and parts[1] in ("obj", "msg", "text", "floatatom", "symbolatom"):
            objects.append((parts[1], parts[4:]))
        elif parts[0] == "#X" and parts[1] == "connect":
            connects.append(tuple(int(x) for x in parts[2:6]))
        elif parts[0] == "#N":
            assert parts[1] == "canvas"
    return objects, connects


def pd_ports(kind: str, tokens: list[str]) -> tuple[int, int]:
    if kind == "msg":
        return 1, 1
    if kind == "text":
        return 0, 0
    if kind == "floatatom":
        return 1, 1
    name, args = tokens[0], tokens[1:]
    if name == "list":
        return PD_LIST[args[0]]
    if name == "route":
        return (2 if len(args) == 1 else 1), len(args) + 1
    assert name in PD_OBJECTS, f"object {name!r} is not in the reference table"
    return PD_OBJECTS[name](len(args))


@pytest.mark.parametrize("path", [PD_USER, PD_TEST], ids=["qriff.pd", "tests/pd/generate.pd"])
def test_pd_patch_structure_and_addresses(path):
    objects, connects = parse_pd(path)
    for src, outlet, dst, inlet in connects:
        assert 0 <= src < len(objects) and 0 <= dst < len(objects)
        assert outlet < pd_ports(*objects[src])[1], (objects[src], outlet)
        assert inlet < pd_ports(*objects[dst])[0], (objects[dst], inlet)
    # every [oscformat a b c] is a request address; the message feeding it carries valid options
    formats = [i for i, (k, t) in enumerate(objects) if k == "obj" and t[0] == "oscformat"]
    assert formats
    for i in formats:
        address = "/" + "/".join(objects[i][1][1:])
        feeding = [s for s, _, d, _ in connects if d == i]
        for s in feeding:
            kind, tokens = objects[s]
            if kind == "msg":
                args = [t.replace("\\", "") for t in tokens]
                kinds = {n: "i" for n in range(1, 10)}  # Pd sends floats: integral ones are accepted as ints
                for src, _, dst, _ in connects:  # a [pack] says which of its slots hold symbols
                    if dst == s and objects[src][1][0] == "pack":
                        kinds = {n: "s" if a == "s" else "i" for n, a in enumerate(objects[src][1][1:], 1)}
                check_request(address, args, kinds)
            else:
                assert tokens[:2] == ["list", "append"]  # the test patch appends reply_port to what -send gives
    # replies are split by [route] chains that spell addresses the server sends
    # (get, set and list replies come back on the request's own address)
    answered = [*protocol.REPLY_ADDRESSES, *(a for a in protocol.request_addresses() if a.count("/") == 3)]
    known = {a.lstrip("/").split("/")[i] for a in answered for i in range(len(a.split("/")) - 1)}
    for kind, tokens in objects:
        if kind == "obj" and tokens[0] == "route":
            assert set(tokens[1:]) <= known, tokens


def test_pd_user_patch_makes_a_clip_headless(require_tool, tmp_path):
    pd = require_tool("pd")
    with running_server(tmp_path) as srv:
        proc = subprocess.Popen([pd, "-nogui", "-noaudio", "-nomidi", "-stderr", "-open", str(PD_USER),
                                 "-send", f"qriff-connect {srv.address[1]} {free_udp_port()}",
                                 "-send", "qriff-generate bang"], stderr=subprocess.PIPE, text=True)
        lines: list[str] = []
        deadline = time.monotonic() + 30
        try:
            assert proc.stderr is not None
            for line in proc.stderr:
                lines.append(line.strip())
                if "clip-ready" in line or time.monotonic() > deadline:
                    break
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    ready = [x for x in lines if "clip-ready" in x]
    assert ready, lines
    midi = ready[0].split()[-2]
    assert Path(midi).is_file() and Path(midi).parent == srv.out_dir
    assert any("connected" in x for x in lines)
    assert not [x for x in lines if "error" in x.lower() or "couldn't create" in x], lines
