"""Write ``qriff.maxpat`` (Max/MSP), ``qriff.amxd`` (the Max for Live MIDI effect) and
``qriff.pd`` (Pure Data vanilla) from one layout.

``qriff.amxd`` is the device a Live user drops on a MIDI track: the ``ampf`` container
(:func:`amxd_bytes`) around the device patcher, with ``qriff_live.js`` in its
``dependency_cache`` (keep the files together, or freeze the device in Max to embed
the scripts before sharing it). Both Max patches load ``qriff_models.js``, which fills
their model menu from ``/qriff/list/models``.

The patches talk to ``qriff serve`` on 127.0.0.1:9000 and listen for replies on 9001
(every request carries ``reply_port 9001``, because ``[udpsend]``/``[netsend]`` send
from an ephemeral port). Run ``python max_patches/build_patches.py`` after changing the
layout; tests/bridge/test_patches.py checks the written files against the OSC address
table, and opens the Pd patch headless against a live server.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SERVER_PORT = 9000
REPLY_PORT = 9001
KEYS = ["C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
SCALES = ["major", "natural_minor", "harmonic_minor", "melodic_minor", "dorian", "phrygian", "lydian", "mixolydian",
          "locrian", "major_pentatonic", "minor_pentatonic", "blues"]
STYLES = ["folk", "hook", "chorale", "ambient"]


# ============================================================================ Max

@dataclass
class MaxPatch:
    """A .maxpat under construction: boxes with ids ``obj-N`` and patchlines."""

    boxes: list[dict[str, Any]] = field(default_factory=list)
    lines: list[dict[str, Any]] = field(default_factory=list)

    def add(self, maxclass: str, x: float, y: float, w: float = 100, h: float = 22, text: str | None = None,
            inlets: int = 1, outlets: int = 1, outlettype: list[str] | None = None, **attrs: Any) -> str:
        box_id = f"obj-{len(self.boxes) + 1}"
        box: dict[str, Any] = {"id": box_id, "maxclass": maxclass, "numinlets": inlets, "numoutlets": outlets,
                               "patching_rect": [float(x), float(y), float(w), float(h)]}
        if outlets:
            box["outlettype"] = outlettype or [""] * outlets
        if text is not None:
            box["text"] = text
        box.update(attrs)
        self.boxes.append({"box": box})
        return box_id

    def obj(self, text: str, x: float, y: float, inlets: int, outlets: int, w: float | None = None) -> str:
        return self.add("newobj", x, y, w or max(40, 7.5 * len(text) + 12), 22, text=text, inlets=inlets,
                        outlets=outlets)

    def msg(self, text: str, x: float, y: float, w: float | None = None, **attrs: Any) -> str:
        return self.add("message", x, y, w or max(40, 7 * len(text) + 12), 22, text=text, inlets=2, outlets=1,
                        **attrs)

    def comment(self, text: str, x: float, y: float, w: float = 300, **attrs: Any) -> str:
        return self.add("comment", x, y, w, 20, text=text, inlets=1, outlets=0, **attrs)

    def connect(self, src: str, outlet: int, dst: str, inlet: int) -> None:
        self.lines.append({"patchline": {"source": [src, outlet], "destination": [dst, inlet]}})

    def to_json(self, presentation: bool = False, device: bool = False) -> dict[str, Any]:
        out = self._patcher_json(presentation)
        if device:
            out["patcher"].update(_device_fields(self.boxes))
        return out

    def _patcher_json(self, presentation: bool) -> dict[str, Any]:
        return {"patcher": {
            "fileversion": 1,
            "appversion": {"major": 8, "minor": 5, "revision": 0, "architecture": "x64", "modernui": 1},
            "classnamespace": "box", "rect": [80.0, 80.0, 1180.0, 760.0], "bglocked": 0,
            "openinpresentation": int(presentation),
            "default_fontsize": 12.0, "default_fontface": 0, "default_fontname": "Arial", "gridonopen": 1,
            "gridsize": [15.0, 15.0], "gridsnaponopen": 1, "toolbarvisible": 1, "boxanimatetime": 200,
            "description": "qriff: generate melodies with qriff serve over OSC", "digest": "", "tags": "qriff osc",
            "boxes": self.boxes, "lines": self.lines}}


def build_max(device: bool = False) -> dict[str, Any]:
    """The Max patch: controls -> /qriff/generate, replies -> status and note playback.

    ``device``: the Max for Live variant: instead of playing the notes and pushing through
    AbletonOSC, ``qriff_live.js`` writes each clip into the highlighted Session clip slot
    through the Live API, and MIDI passes through the device.
    """
    p = MaxPatch()
    title = "qriff for Max for Live: clips go into the highlighted clip slot" if device else \
        "qriff - melodies from deep Q-learning"
    p.comment(f"{title}. Start the server first: qriff serve", 20, 10, 620)
    p.comment(f"Requests go to 127.0.0.1:{SERVER_PORT}; replies come back on port {REPLY_PORT}.", 20, 30, 520)

    # ---- controls -------------------------------------------------------------
    if device:
        key, scale, style, bars, variations, seed, temp = _live_controls(p)
    else:
        key, scale, style, bars, variations, seed, temp = _max_controls(p)
    load = p.obj("loadbang", 700, 60, 1, 1)
    if not device:  # a device's parameters come back with the Live set (or their initial values)
        init = p.msg("0", 700, 90)
        p.connect(load, 0, init, 0)
        for menu in (key, scale, style):
            p.connect(init, 0, menu, 0)
        for box, value in ((bars, "4"), (variations, "1"), (seed, "-1"), (temp, "100")):
            m = p.msg(value, 760 + 40 * (len(p.boxes) % 4), 90)
            p.connect(load, 0, m, 0)
            p.connect(m, 0, box, 0)

    # ---- generate -------------------------------------------------------------
    gen = p.add("button", 20, 140, 40, 40, inlets=1, outlets=1, outlettype=["bang"],
                **_shown(device, 4, 60, 24, 24))
    p.comment("generate", 65, 150, 80, **_shown(device, 30, 63, 64, 18))
    rid = p.obj("i", 20, 200, 2, 1)
    inc = p.obj("+ 1", 60, 230, 2, 1)
    p.connect(gen, 0, rid, 0)
    p.connect(rid, 0, inc, 0)
    p.connect(inc, 0, rid, 1)
    # a device sends menu indices (live.menu's left outlet), the Max patch the item names (umenu's middle one)
    pack = p.obj("pack 0 0 0 0 4 1 -1 1." if device else "pack 0 C major folk 4 1 -1 1.", 20, 270, 8, 1, w=560)
    p.connect(rid, 0, pack, 0)
    menu_out = 0 if device else 1
    p.connect(key, menu_out, pack, 1)
    p.connect(scale, menu_out, pack, 2)
    p.connect(style, menu_out, pack, 3)
    p.connect(bars, 0, pack, 4)
    p.connect(variations, 0, pack, 5)
    p.connect(seed, 0, pack, 6)
    p.connect(temp, 0, pack, 7)
    gen_msg = p.msg(f"/qriff/generate $1 key $2 scale $3 style $4 bars $5 variations $6 seed $7 temperature $8 "
                    f"reply_port {REPLY_PORT}", 20, 300, 640)
    p.connect(pack, 0, gen_msg, 0)

    sends = [gen_msg]
    if not device:
        sends.append(_push_section(p))
    render = p.msg(f"/qriff/render 0 reply_port {REPLY_PORT}", 700, 340, 240)
    p.comment("render the last clip to audio stems", 950, 340, 220)
    ping = p.msg(f"/qriff/ping 0 reply_port {REPLY_PORT}", 700, 380, 220)
    p.connect(load, 0, ping, 0)
    sends += [render, ping]

    send = p.obj(f"udpsend 127.0.0.1 {SERVER_PORT}", 20, 420, 1, 0)
    for m in sends:
        p.connect(m, 0, send, 0)

    # ---- replies ---------------------------------------------------------------
    recv = p.obj(f"udpreceive {REPLY_PORT}", 20, 470, 1, 1)
    routes = ["/qriff/clip/begin", "/qriff/clip/track", "/qriff/clip/notes", "/qriff/clip/end", "/qriff/error",
              "/qriff/live/pushed", "/qriff/render/end", "/qriff/pong"]
    labels = [(3, "clip ready"), (4, "error"), (5, "pushed to Live"), (6, "rendered"), (7, "connected")]
    if device:
        routes.append("/qriff/feedback/stored")
        labels.append((8, "recorded"))
    routes += MODEL_REPLIES
    labels.append((routes.index("/qriff/set/model"), "model"))
    route = p.obj("route " + " ".join(routes), 20, 500, 2, len(routes) + 1, w=900)
    if device:
        # udpreceive outputs on the scheduler (high-priority) thread, where the LiveAPI must not be
        # used; deferlow moves every reply to the main thread, in arrival order (defer would reverse
        # a burst).
        low = p.obj("deferlow", 20, 485, 1, 1)
        p.connect(recv, 0, low, 0)
        p.connect(low, 0, route, 0)
    else:
        p.connect(recv, 0, route, 0)
    status = p.msg("start qriff serve, then press generate", 20, 700, 640, **_shown(device, 4, 146, 410, 20))
    p.comment("status", 670, 700, 60)
    for i, label in labels:
        pre = p.obj(f"prepend set {label}", 20 + 150 * (i - 3), 650, 1, 1)
        p.connect(route, i, pre, 0)
        p.connect(pre, 0, status, 0)
    _model_menu(p, device, route, routes, ping, send)
    if device:
        _live_api_section(p, route, status, load, send)
    else:
        _playback_section(p, route, load)
    return p.to_json(presentation=device, device=device)


#: The replies the model menu listens to.
MODEL_REPLIES = ["/qriff/list/models", "/qriff/get/model", "/qriff/set/model"]


def _model_menu(p: MaxPatch, device: bool, route: str, routes: list[str], ping: str, send: str) -> None:
    """The model menu: a umenu filled by ``qriff_models.js`` from ``/qriff/list/models``.

    Whenever the server answers a ping (on load, and on refresh) the patch asks for the list
    and then for the current model; a pick goes out as ``/qriff/set/model id NAME``; after
    any error the current model is asked for again, so a refused switch shows the model that
    still generates. A plain umenu, not a Live parameter: its items change with the user's
    models folder, and a live.menu's items are fixed when the device is saved.
    """
    x, y = 960, 60
    p.comment("model", x, y, 60, **_shown(device, 4, 122, 40, 18))
    menu = p.add("umenu", x, y + 20, 200, 22, inlets=1, outlets=3, outlettype=["int", "", ""], items=[],
                 parameter_enable=0, varname="model", **_shown(device, 46, 122, 220, 18))
    refresh = p.add("button", x, y + 50, 24, 24, inlets=1, outlets=1, outlettype=["bang"],
                    **_shown(device, 272, 122, 18, 18))
    p.comment("refresh", x + 28, y + 52, 60, **_shown(device, 294, 122, 60, 18))
    p.connect(refresh, 0, ping, 0)  # a pong asks for the list: refreshing is pinging again
    ask = p.obj("t b b", x, y + 90, 1, 2)
    p.connect(route, routes.index("/qriff/pong"), ask, 0)
    list_msg = p.msg(f"/qriff/list/models 0 reply_port {REPLY_PORT}", x, y + 120, 210)
    get_msg = p.msg(f"/qriff/get/model 0 reply_port {REPLY_PORT}", x, y + 150, 210)
    p.connect(ask, 1, list_msg, 0)  # right to left: the items first, then which one is current
    p.connect(ask, 0, get_msg, 0)
    resync = p.obj("t b", x + 220, y + 90, 1, 1)
    p.connect(route, routes.index("/qriff/error"), resync, 0)
    p.connect(resync, 0, get_msg, 0)
    js = p.obj("js qriff_models.js", x, y + 220, 1, 2)
    for address, selector in (("/qriff/list/models", "models"), ("/qriff/get/model", "model"),
                              ("/qriff/set/model", "model")):
        pre = p.obj(f"prepend {selector}", x + 110 * MODEL_REPLIES.index(address), y + 190, 1, 1)
        p.connect(route, routes.index(address), pre, 0)
        p.connect(pre, 0, js, 0)
    p.connect(js, 0, menu, 0)
    pick = p.obj("prepend pick", x + 210, y + 50, 1, 1)
    p.connect(menu, 1, pick, 0)  # the middle outlet: the item's text
    p.connect(pick, 0, js, 0)
    # the script's outlet 1: a model to switch to -> /qriff/set/model id NAME
    name = p.obj("t b s", x, y + 250, 1, 2)
    p.connect(js, 1, name, 0)
    rid = p.obj("i 300000", x, y + 280, 2, 1)
    inc = p.obj("+ 1", x + 80, y + 280, 2, 1)
    p.connect(name, 0, rid, 0)
    p.connect(rid, 0, inc, 0)
    p.connect(inc, 0, rid, 1)
    pack = p.obj("pack 0 s", x, y + 310, 2, 1)
    p.connect(name, 1, pack, 1)
    p.connect(rid, 0, pack, 0)
    set_msg = p.msg(f"/qriff/set/model $1 $2 reply_port {REPLY_PORT}", x, y + 340, 210)
    p.connect(pack, 0, set_msg, 0)
    for m in (list_msg, get_msg, set_msg):
        p.connect(m, 0, send, 0)


# ======================================================================= the device

#: The device type of an .amxd (``mmmm`` MIDI effect, ``aaaa`` audio effect, ``iiii`` instrument).
AMXD_MIDI_EFFECT = b"mmmm"
#: The scripts the device loads, listed in its ``dependency_cache`` (kept beside the .amxd, or frozen in).
DEVICE_SCRIPTS = ("qriff_live.js", "qriff_models.js")
#: Device width in Live's device chain, pixels (the presentation view below fits in it).
DEVICE_WIDTH = 420.0


def _device_fields(boxes: list[dict[str, Any]]) -> dict[str, Any]:
    """Top-level patcher fields of a Max for Live device: parameters, dependencies, device type."""
    params: dict[str, Any] = {}
    for b in boxes:
        box = b["box"]
        if box.get("parameter_enable"):
            value = box["saved_attribute_attributes"]["valueof"]
            params[box["id"]] = [value["parameter_longname"], value["parameter_shortname"], 0]
    params["inherited_shortname"] = 1
    return {
        "openrect": [0.0, 0.0, DEVICE_WIDTH, 169.0], "devicewidth": DEVICE_WIDTH,
        "parameters": params,
        "dependency_cache": [{"name": name, "bootpath": ".", "type": "TEXT", "implicit": 1}
                             for name in DEVICE_SCRIPTS],
        "latency": 0, "is_mpe": 0, "minimum_live_version": "", "minimum_max_version": "",
        "platform_compatibility": 0, "autosave": 0,
        "project": {"version": 1, "amxdtype": int.from_bytes(AMXD_MIDI_EFFECT, "big"), "readonly": 0,
                    "devpathtype": 0, "devpath": ".", "autoorganize": 1, "hideprojectwindow": 1,
                    "showdependencies": 1, "autolocalize": 0, "contents": {"patchers": {}, "code": {}},
                    "layout": {}, "searchpath": {}, "detailsvisible": 0, "sortmode": 0, "viewmode": 0},
    }


def amxd_bytes(patcher: dict[str, Any], device_type: bytes = AMXD_MIDI_EFFECT) -> bytes:
    """The .amxd file of ``patcher``: what Max writes when it saves an unfrozen device.

    Layout (integers little-endian u32): ``ampf``, 4 (format version), the device type,
    ``meta``, 4 (its size), 1, ``ptch``, the size of what follows, then the patcher
    JSON as UTF-8 ending in a NUL byte, counted in that size.
    """
    if len(device_type) != 4:
        raise ValueError(f"device type {device_type!r} must be 4 bytes (mmmm, aaaa or iiii)")
    body = (json.dumps(patcher, indent=1) + "\n").encode("utf-8") + b"\x00"
    u32 = struct.Struct("<I").pack
    return b"ampf" + u32(4) + device_type + b"meta" + u32(4) + u32(1) + b"ptch" + u32(len(body)) + body


def _shown(device: bool, x: float, y: float, w: float, h: float) -> dict[str, Any]:
    """Attributes that put a box in the device's view (presentation mode); nothing for the Max patch."""
    return {"presentation": 1, "presentation_rect": [float(x), float(y), float(w), float(h)]} if device else {}


def _max_controls(p: MaxPatch) -> tuple[str, ...]:
    """Max's own objects for the standalone patch: umenu, number, dial."""
    p.comment("key", 20, 60, 60)
    key = p.add("umenu", 20, 80, 70, 22, inlets=1, outlets=3, outlettype=["int", "", ""],
                items=_menu_items(KEYS), parameter_enable=0)
    p.comment("scale", 100, 60, 80)
    scale = p.add("umenu", 100, 80, 130, 22, inlets=1, outlets=3, outlettype=["int", "", ""],
                  items=_menu_items(SCALES), parameter_enable=0)
    p.comment("style", 240, 60, 60)
    style = p.add("umenu", 240, 80, 90, 22, inlets=1, outlets=3, outlettype=["int", "", ""],
                  items=_menu_items(STYLES), parameter_enable=0)
    p.comment("bars", 340, 60, 50)
    bars = p.add("number", 340, 80, 50, 22, inlets=1, outlets=2, outlettype=["", "bang"], minimum=1, maximum=16)
    p.comment("variations", 400, 60, 70)
    variations = p.add("number", 400, 80, 50, 22, inlets=1, outlets=2, outlettype=["", "bang"], minimum=1,
                       maximum=16)
    p.comment("seed (-1 = new)", 470, 60, 100)
    seed = p.add("number", 470, 80, 70, 22, inlets=1, outlets=2, outlettype=["", "bang"], minimum=-1)
    p.comment("temperature 0-2", 560, 40, 110)
    temp = p.add("dial", 570, 60, 40, 40, inlets=1, outlets=1, outlettype=["float"], size=201.0, mult=0.01,
                 floatoutput=1)
    temp_show = p.add("flonum", 620, 80, 50, 22, inlets=1, outlets=2, outlettype=["", "bang"], format=6)
    p.connect(temp, 0, temp_show, 0)
    return key, scale, style, bars, variations, seed, temp


#: Live parameter types (``parameter_type``) and unit styles (``parameter_unitstyle``).
_FLOAT, _INT, _ENUM = 0, 1, 2
_UNIT_INT, _UNIT_FLOAT = 0, 1


def _parameter(name: str, kind: int, initial: float, **valueof: Any) -> dict[str, Any]:
    """A Live parameter: saved with the set, automatable, shown under ``name`` in Live."""
    return {"parameter_enable": 1, "varname": name, "saved_attribute_attributes": {"valueof": {
        "parameter_longname": name, "parameter_shortname": name, "parameter_type": kind,
        "parameter_initial_enable": 1, "parameter_initial": [initial], **valueof}}}


def _live_controls(p: MaxPatch) -> tuple[str, ...]:
    """live.menu, live.numbox and live.dial with parameter_enable on: Live saves and automates them.

    Each control has a label beside it in the device view. Live's Int parameters hold at
    most 256 values, so Seed (-1..99999) is a Float parameter shown with unit style Int.
    """
    boxes = []
    # presentation: (label x, label width, control x, control width) per control of a row
    menus = ((4, 30, 36, 48), (92, 38, 132, 104), (244, 36, 282, 64))
    for i, (name, items) in enumerate((("Key", KEYS), ("Scale", SCALES), ("Style", STYLES))):
        x = 20 + 110 * i
        lx, lw, cx, cw = menus[i]
        p.comment(name, x, 60, 60, **_shown(True, lx, 5, lw, 18))
        boxes.append(p.add("live.menu", x, 80, 100, 15, inlets=1, outlets=3, outlettype=["", "", "float"],
                           **_shown(True, cx, 6, cw, 15),
                           **_parameter(name, _ENUM, 0, parameter_enum=list(items), parameter_mmax=len(items) - 1)))
    numbers = (("Bars", "Bars", 1, 16, 4, _INT, (4, 34, 40, 40)),
               ("Variations", "Variations", 1, 16, 1, _INT, (88, 62, 152, 40)),
               ("Seed", "Seed (-1 new)", -1, 99999, -1, _FLOAT, (200, 84, 286, 56)))
    for i, (name, label, lo, hi, initial, kind, (lx, lw, cx, cw)) in enumerate(numbers):
        x = 360 + 70 * i
        p.comment(label, x, 60, 70, **_shown(True, lx, 28, lw, 18))
        boxes.append(p.add("live.numbox", x, 80, 60, 15, inlets=1, outlets=2, outlettype=["", "float"],
                           **_shown(True, cx, 30, cw, 15),
                           **_parameter(name, kind, initial, parameter_mmin=lo, parameter_mmax=hi,
                                        parameter_unitstyle=_UNIT_INT)))
    p.comment("Temperature", 580, 40, 80, **_shown(True, 348, 2, 70, 18))
    boxes.append(p.add("live.dial", 580, 60, 44, 48, inlets=1, outlets=2, outlettype=["", "float"],
                       **_shown(True, 356, 22, 44, 48),
                       **_parameter("Temperature", _FLOAT, 1.0, parameter_mmin=0.0, parameter_mmax=2.0,
                                    parameter_unitstyle=_UNIT_FLOAT)))
    key, scale, style, bars, variations, seed, temp = boxes
    return key, scale, style, bars, variations, seed, temp


def _push_section(p: MaxPatch) -> str:
    """Track and slot boxes and a button sending /qriff/live/push (through AbletonOSC); the message box id."""
    p.comment("push the last clip to Ableton Live (AbletonOSC): track, slot", 700, 140, 380)
    track = p.add("number", 700, 165, 50, 22, inlets=1, outlets=2, outlettype=["", "bang"], minimum=0)
    slot = p.add("number", 760, 165, 50, 22, inlets=1, outlets=2, outlettype=["", "bang"], minimum=0)
    push = p.add("button", 820, 160, 30, 30, inlets=1, outlets=1, outlettype=["bang"])
    p.comment("push", 855, 165, 40)
    push_id = p.obj("i 100000", 820, 200, 2, 1)
    push_inc = p.obj("+ 1", 880, 230, 2, 1)
    p.connect(push, 0, push_id, 0)
    p.connect(push_id, 0, push_inc, 0)
    p.connect(push_inc, 0, push_id, 1)
    push_pack = p.obj("pack 0 0 0", 820, 260, 3, 1)
    p.connect(push_id, 0, push_pack, 0)
    p.connect(track, 0, push_pack, 1)
    p.connect(slot, 0, push_pack, 2)
    push_msg = p.msg(f"/qriff/live/push $1 track $2 slot $3 reply_port {REPLY_PORT}", 700, 300, 380)
    p.connect(push_pack, 0, push_msg, 0)
    return push_msg


def _live_api_section(p: MaxPatch, route: str, status: str, load: str, send: str) -> None:
    """Max for Live: replies -> qriff_live.js, which writes clips through the Live API; Keep and Discard
    buttons -> qriff_live.js -> /qriff/feedback; MIDI passes through."""
    js = p.obj("js qriff_live.js", 20, 560, 1, 1)
    for outlet, selector in ((0, "begin"), (1, "track"), (2, "notes"), (3, "end")):
        pre = p.obj(f"prepend {selector}", 20 + 120 * outlet, 530, 1, 1)
        p.connect(route, outlet, pre, 0)
        p.connect(pre, 0, js, 0)
    write = p.add("toggle", 520, 530, 24, 24, inlets=1, outlets=1, outlettype=["int"], **_shown(True, 4, 100, 18, 18))
    p.comment("write clips into Live", 548, 532, 150, **_shown(True, 26, 100, 150, 18))
    on = p.msg("1", 520, 500)
    p.connect(load, 0, on, 0)
    p.connect(on, 0, write, 0)
    write_pre = p.obj("prepend write", 520, 560, 1, 1)
    p.connect(write, 0, write_pre, 0)
    p.connect(write_pre, 0, js, 0)
    # Keep / Discard: the clip in the highlighted slot, if qriff wrote it (the script checks)
    for i, verdict in enumerate(("keep", "discard")):
        button = p.add("button", 700 + 90 * i, 470, 24, 24, inlets=1, outlets=1, outlettype=["bang"],
                       **_shown(True, 120 + 90 * i, 60, 24, 24))
        p.comment(verdict.capitalize(), 726 + 90 * i, 472, 60, **_shown(True, 146 + 90 * i, 63, 56, 18))
        word = p.msg(verdict, 700 + 90 * i, 500)
        p.connect(button, 0, word, 0)
        low = p.obj("deferlow", 700 + 90 * i, 530, 1, 1)  # LiveAPI work on the main thread, always
        p.connect(word, 0, low, 0)
        p.connect(low, 0, js, 0)
    p.comment("Keep / Discard: the clip in the highlighted slot", 880, 472, 260)
    js_out = p.obj("route status feedback", 20, 600, 2, 3)
    p.connect(js, 0, js_out, 0)
    show = p.obj("prepend set", 20, 630, 1, 1)
    p.connect(js_out, 0, show, 0)
    p.connect(show, 0, status, 0)
    # feedback id clip verdict -> /qriff/feedback id clip verdict source device reply_port 9001
    fb_msg = p.msg(f"/qriff/feedback $1 $2 $3 source device reply_port {REPLY_PORT}", 300, 630, 420)
    fb_pack = p.obj("pack 0 s s", 300, 600, 3, 1)
    p.connect(js_out, 1, fb_pack, 0)
    p.connect(fb_pack, 0, fb_msg, 0)
    p.connect(fb_msg, 0, send, 0)
    midi_in = p.obj("midiin", 760, 560, 1, 1)
    midi_out = p.obj("midiout", 760, 600, 1, 0)
    p.connect(midi_in, 0, midi_out, 0)
    p.comment("MIDI passes through this device", 820, 580, 220)


def _playback_section(p: MaxPatch, route: str, load: str) -> None:
    """Plays variation 0 through makenote -> noteout as it arrives (toggle 'play')."""
    # tempo -> milliseconds per beat (begin: id variation variations bars tempo ...)
    begin = p.obj("unpack 0 0 0 0 0.", 20, 540, 1, 5)
    p.connect(route, 0, begin, 0)
    mspb = p.obj("!/ 60000.", 20, 570, 2, 1)
    p.connect(begin, 4, mspb, 0)
    # play only variation 0, and only while "play" is on (track: id variation role program notes)
    track_info = p.obj("unpack 0 0 s 0 0", 160, 540, 1, 5)
    p.connect(route, 1, track_info, 0)
    first = p.obj("== 0", 160, 570, 2, 1)
    p.connect(track_info, 1, first, 0)
    play = p.add("toggle", 240, 560, 24, 24, inlets=1, outlets=1, outlettype=["int"])
    p.comment("play", 268, 562, 40)
    both = p.obj("&&", 160, 600, 2, 1)
    p.connect(play, 0, both, 1)
    p.connect(first, 0, both, 0)
    play_on = p.msg("1", 240, 530)
    p.connect(load, 0, play_on, 0)
    p.connect(play_on, 0, play, 0)

    # notes: id (pitch start duration velocity)* -> one note at a time
    drop_id = p.obj("zl slice 1", 330, 540, 2, 2)
    p.connect(route, 2, drop_id, 0)
    quads = p.obj("zl iter 4", 330, 570, 2, 2)
    p.connect(drop_id, 1, quads, 0)
    gate = p.obj("gate 1", 330, 600, 2, 1)
    p.connect(both, 0, gate, 0)
    p.connect(quads, 0, gate, 1)
    note = p.obj("unpack 0 0. 0. 0", 330, 630, 1, 4)
    p.connect(gate, 0, note, 0)
    start_ms = p.obj("* 500.", 450, 660, 2, 1)
    dur_ms = p.obj("* 500.", 520, 660, 2, 1)
    p.connect(mspb, 0, start_ms, 1)
    p.connect(mspb, 0, dur_ms, 1)
    p.connect(note, 1, start_ms, 0)
    p.connect(note, 2, dur_ms, 0)
    sched = p.obj("pack 0 0 0. 0.", 700, 630, 4, 1)
    p.connect(note, 0, sched, 0)
    p.connect(note, 3, sched, 1)
    p.connect(dur_ms, 0, sched, 2)
    p.connect(start_ms, 0, sched, 3)
    pipe = p.obj("pipe 0 0 0. 0", 700, 660, 4, 3)
    p.connect(sched, 0, pipe, 0)
    mk = p.obj("makenote 96 250", 700, 690, 3, 2)
    p.connect(pipe, 0, mk, 0)
    p.connect(pipe, 1, mk, 1)
    p.connect(pipe, 2, mk, 2)
    out = p.obj("noteout", 700, 720, 3, 0)
    p.connect(mk, 0, out, 0)
    p.connect(mk, 1, out, 1)


def _menu_items(items: list[str]) -> list[str]:
    out: list[str] = []
    for i, item in enumerate(items):
        if i:
            out.append(",")
        out.append(item)
    return out


# ============================================================================= Pd

@dataclass
class PdPatch:
    """A Pd patch under construction: one line per object, connections by object index."""

    lines: list[str] = field(default_factory=lambda: ["#N canvas 60 60 1000 720 12;"])
    count: int = 0
    connects: list[str] = field(default_factory=list)

    def _add(self, line: str) -> int:
        self.lines.append(line)
        self.count += 1
        return self.count - 1

    def obj(self, x: int, y: int, text: str) -> int:
        return self._add(f"#X obj {x} {y} {text};")

    def msg(self, x: int, y: int, text: str) -> int:
        return self._add(f"#X msg {x} {y} {text};")

    def text(self, x: int, y: int, text: str) -> int:
        escaped = text.replace(",", " \\,").replace(";", " \\;")
        return self._add(f"#X text {x} {y} {escaped};")

    def floatatom(self, x: int, y: int, lo: int, hi: int, label: str) -> int:
        return self._add(f"#X floatatom {x} {y} 6 {lo} {hi} 1 {label} - -;")

    def connect(self, src: int, outlet: int, dst: int, inlet: int) -> None:
        self.connects.append(f"#X connect {src} {outlet} {dst} {inlet};")

    def render(self) -> str:
        return "\n".join(self.lines + self.connects) + "\n"


def build_pd() -> str:
    """The Pd patch: same controls as the Max patch, in vanilla objects only."""
    p = PdPatch()
    p.text(20, 10, "qriff - melodies from deep Q-learning. Start the server first: qriff serve")
    p.text(20, 30, f"requests go to 127.0.0.1:{SERVER_PORT}; replies come back on port {REPLY_PORT}. "
                   "Send 'qriff-connect PORT REPLY_PORT' to use other ports")
    # controls: radios give indices, which the server accepts for key, scale and style
    p.text(20, 60, "key: C Db D Eb E F F# G Ab A Bb B")
    key = p.obj(20, 80, "hradio 18 1 0 12 empty empty empty 0 -8 0 10 #fcfcfc #000000 #000000 0")
    p.text(20, 110, "scale: major minor harm mel dorian phryg lydian mixo locrian pent minpent blues")
    scale = p.obj(20, 130, "hradio 18 1 0 12 empty empty empty 0 -8 0 10 #fcfcfc #000000 #000000 0")
    p.text(20, 160, "style: folk hook chorale ambient")
    style = p.obj(20, 180, "hradio 18 1 0 4 empty empty empty 0 -8 0 10 #fcfcfc #000000 #000000 0")
    bars = p.floatatom(20, 220, 1, 16, "bars")
    variations = p.floatatom(120, 220, 1, 16, "variations")
    seed = p.floatatom(220, 220, 0, 0, "seed")  # 0 0 = no limits; -1 asks for a new seed each time
    p.text(320, 200, "temperature 0-2")
    temp = p.obj(320, 220, "hsl 128 18 0 2 0 0 empty empty empty -2 -8 0 10 #fcfcfc #000000 #000000 0 1")
    temp_show = p.floatatom(460, 220, 0, 2, "t")
    p.connect(temp, 0, temp_show, 0)
    load = p.obj(600, 60, "loadbang")
    defaults = p.msg(600, 90, "4")
    p.connect(load, 0, defaults, 0)
    p.connect(defaults, 0, bars, 0)
    one = p.msg(640, 90, "1")
    p.connect(load, 0, one, 0)
    p.connect(one, 0, variations, 0)
    p.connect(one, 0, temp, 0)
    minus = p.msg(680, 90, "-1")
    p.connect(load, 0, minus, 0)
    p.connect(minus, 0, seed, 0)
    zero = p.msg(720, 90, "0")
    p.connect(load, 0, zero, 0)
    for radio in (key, scale, style):
        p.connect(zero, 0, radio, 0)

    # generate: [bng] (also 'qriff-generate bang' from anywhere) -> id counter -> pack -> /qriff/generate
    gen = p.obj(20, 270, "bng 30 250 50 0 empty qriff-generate generate 34 15 0 12 #fcfcfc #000000 #000000")
    rid = p.obj(20, 320, "f")
    inc = p.obj(60, 320, "+ 1")
    p.connect(gen, 0, rid, 0)
    p.connect(rid, 0, inc, 0)
    p.connect(inc, 0, rid, 1)
    pack = p.obj(20, 350, "pack f f f f f f f f f")
    p.connect(rid, 0, pack, 0)
    for i, src in enumerate((key, scale, style, bars, variations, seed, temp), start=1):
        p.connect(src, 0, pack, i)
    gen_msg = p.msg(20, 380, "\\$1 key \\$2 scale \\$3 style \\$4 bars \\$5 variations \\$6 seed \\$7 "
                              "temperature \\$8 reply_port \\$9")
    p.connect(pack, 0, gen_msg, 0)
    gen_fmt = p.obj(20, 410, "oscformat qriff generate")
    p.connect(gen_msg, 0, gen_fmt, 0)

    # push to Live and ping
    p.text(600, 270, "push last clip to Live: track slot")
    track = p.floatatom(600, 290, 0, 999, "track")
    slot = p.floatatom(680, 290, 0, 999, "slot")
    push = p.obj(760, 285, "bng 25 250 50 0 empty qriff-push push 30 12 0 12 #fcfcfc #000000 #000000")
    push_id = p.obj(760, 320, "f 100000")
    push_inc = p.obj(830, 320, "+ 1")
    p.connect(push, 0, push_id, 0)
    p.connect(push_id, 0, push_inc, 0)
    p.connect(push_inc, 0, push_id, 1)
    push_pack = p.obj(760, 350, "pack f f f f")
    p.connect(push_id, 0, push_pack, 0)
    p.connect(track, 0, push_pack, 1)
    p.connect(slot, 0, push_pack, 2)
    push_msg = p.msg(760, 380, "\\$1 track \\$2 slot \\$3 reply_port \\$4")
    p.connect(push_pack, 0, push_msg, 0)
    push_fmt = p.obj(760, 410, "oscformat qriff live push")
    p.connect(push_msg, 0, push_fmt, 0)
    ping_msg = p.msg(600, 380, "0 reply_port \\$1")
    ping_fmt = p.obj(600, 410, "oscformat qriff ping")
    p.connect(ping_msg, 0, ping_fmt, 0)

    to_send = p.obj(20, 450, "list prepend send")
    trim = p.obj(20, 475, "list trim")
    net = p.obj(20, 500, "netsend -u -b")
    for fmt in (gen_fmt, push_fmt, ping_fmt):
        p.connect(fmt, 0, to_send, 0)
    p.connect(to_send, 0, trim, 0)
    p.connect(trim, 0, net, 0)
    recv = p.obj(300, 500, "netreceive -u -b")
    # connect on load, and on 'qriff-connect PORT REPLY_PORT': set up first (right), then ping (left)
    ports = p.msg(600, 440, f"{SERVER_PORT} {REPLY_PORT}")
    p.connect(load, 0, ports, 0)
    conn_r = p.obj(700, 440, "r qriff-connect")
    both = p.obj(600, 465, "t a a")
    p.connect(ports, 0, both, 0)
    p.connect(conn_r, 0, both, 0)
    split = p.obj(600, 490, "unpack f f")
    p.connect(both, 1, split, 0)
    connect = p.msg(600, 515, "disconnect \\, connect 127.0.0.1 \\$1")
    listen = p.msg(760, 515, "listen \\$1")
    p.connect(split, 0, connect, 0)
    p.connect(split, 1, listen, 0)
    p.connect(split, 1, pack, 8)
    p.connect(split, 1, push_pack, 3)
    p.connect(connect, 0, net, 0)
    p.connect(listen, 0, recv, 0)
    reply_port = p.obj(600, 540, "list split 1")
    p.connect(both, 0, reply_port, 0)
    p.connect(reply_port, 1, ping_msg, 0)

    # replies
    parse = p.obj(300, 530, "oscparse")
    p.connect(recv, 0, parse, 0)
    ltrim = p.obj(300, 555, "list trim")
    p.connect(parse, 0, ltrim, 0)
    r_qriff = p.obj(300, 580, "route qriff")
    p.connect(ltrim, 0, r_qriff, 0)
    r_kind = p.obj(300, 605, "route clip error live pong render list get set")
    p.connect(r_qriff, 0, r_kind, 0)
    r_clip = p.obj(300, 630, "route begin track notes end")
    p.connect(r_kind, 0, r_clip, 0)
    log = p.obj(600, 640, "print qriff")
    status_pre = p.obj(600, 600, "list prepend set")
    status_trim = p.obj(600, 620, "list trim")
    status = p.msg(600, 680, "start qriff serve then press generate")
    p.connect(status_pre, 0, status_trim, 0)
    p.connect(status_trim, 0, status, 0)
    for outlet, label in ((1, "error"), (2, "live"), (3, "connected"), (4, "rendered")):
        tag = p.obj(600 + 90 * (outlet - 1), 570, f"list prepend {label}")
        p.connect(r_kind, outlet, tag, 0)
        p.connect(tag, 0, status_pre, 0)
        p.connect(tag, 0, log, 0)
    end_tag = p.obj(480, 660, "list prepend clip-ready")
    p.connect(r_clip, 3, end_tag, 0)
    p.connect(end_tag, 0, status_pre, 0)
    p.connect(end_tag, 0, log, 0)

    # tempo from begin (id variation variations bars tempo ...) -> ms per beat
    begin = p.obj(20, 560, "unpack f f f f f")
    p.connect(r_clip, 0, begin, 0)
    swap = p.obj(20, 585, "swap 60000")
    p.connect(begin, 4, swap, 0)
    mspb = p.obj(20, 610, "/")
    p.connect(swap, 1, mspb, 1)
    p.connect(swap, 0, mspb, 0)
    # play variation 0 only
    tinfo = p.obj(150, 560, "unpack f f")
    p.connect(r_clip, 1, tinfo, 0)
    first = p.obj(150, 590, "== 0")
    p.connect(tinfo, 1, first, 0)
    # notes: drop the id, then 4 values at a time (list split loop)
    drop = p.obj(20, 630, "list split 1")
    p.connect(r_clip, 2, drop, 0)
    gate = p.obj(20, 655, "spigot")
    p.connect(drop, 1, gate, 0)
    p.connect(first, 0, gate, 1)
    loop = p.obj(20, 680, "list split 4")
    p.connect(gate, 0, loop, 0)
    p.connect(loop, 1, loop, 0)
    note = p.obj(20, 705, "unpack f f f f")
    p.connect(loop, 0, note, 0)
    start_ms = p.obj(120, 730, "*")
    dur_ms = p.obj(180, 730, "*")
    p.connect(mspb, 0, start_ms, 1)
    p.connect(mspb, 0, dur_ms, 1)
    p.connect(note, 1, start_ms, 0)
    p.connect(note, 2, dur_ms, 0)
    sched = p.obj(20, 760, "pack f f f f")
    p.connect(note, 0, sched, 0)
    p.connect(note, 3, sched, 1)
    p.connect(dur_ms, 0, sched, 2)
    p.connect(start_ms, 0, sched, 3)
    pipe = p.obj(20, 785, "pipe f f f 0")
    p.connect(sched, 0, pipe, 0)
    mk = p.obj(20, 810, "makenote 96 250")
    p.connect(pipe, 0, mk, 0)
    p.connect(pipe, 1, mk, 1)
    p.connect(pipe, 2, mk, 2)
    out = p.obj(20, 835, "noteout 1")
    p.connect(mk, 0, out, 0)
    p.connect(mk, 1, out, 1)
    _pd_model_menu(p, r_kind, reply_port, to_send, status_pre, log)
    return p.render()


def _pd_model_menu(p: PdPatch, r_kind: int, reply_port: int, to_send: int, status_pre: int, log: int) -> None:
    """The Pd model menu. Vanilla Pd has no drop-down menu, so: a radio with one cell per model
    (``number N`` resizes it), the model names above it in the same order, the current model
    beside it. Filled from ``/qriff/list/models`` whenever the server answers a ping and on
    refresh; a click sends ``/qriff/set/model id NAME``; ``qriff-model N`` picks cell N from
    elsewhere, and the names go out to ``qriff-models`` when they arrive."""
    p.text(600, 720, "model: one radio cell per model, in the order of the names above it")
    names = p.msg(600, 745, "no models yet")
    radio = p.obj(600, 775, "hradio 18 1 0 1 empty empty empty 0 -8 0 10 #fcfcfc #000000 #000000 0")
    pick_r = p.obj(800, 775, "r qriff-model")
    p.connect(pick_r, 0, radio, 0)
    p.text(600, 805, "now generating with:")
    current = p.msg(760, 805, "?")
    refresh = p.obj(880, 720, "bng 20 250 50 0 empty qriff-refresh refresh 24 10 0 12 #fcfcfc #000000 #000000")
    # ask for the list and the current model (on a pong, and on refresh), replies to the reply port
    port = p.obj(700, 845, "f")
    p.connect(reply_port, 1, port, 1)
    ask = p.obj(600, 845, "t b")
    p.connect(r_kind, 3, ask, 0)
    p.connect(ask, 0, port, 0)
    p.connect(refresh, 0, port, 0)
    ask_msg = p.msg(600, 870, "0 reply_port \\$1")
    p.connect(port, 0, ask_msg, 0)
    for i, address in enumerate(("qriff list models", "qriff get model")):
        fmt = p.obj(600 + 180 * i, 895, f"oscformat {address}")
        p.connect(ask_msg, 0, fmt, 0)
        p.connect(fmt, 0, to_send, 0)
    # the list: id name name ... -> stored (for the radio), counted (radio cells), shown
    r_list = p.obj(300, 870, "route models")
    p.connect(r_kind, 5, r_list, 0)
    items = p.obj(300, 895, "list split 1")
    p.connect(r_list, 0, items, 0)
    fan = p.obj(300, 920, "t a a a a")
    p.connect(items, 1, fan, 0)
    store = p.obj(300, 945, "list store")
    p.connect(fan, 3, store, 1)
    count = p.obj(400, 945, "list length")
    p.connect(fan, 2, count, 0)
    number = p.msg(400, 970, "number \\$1")
    p.connect(count, 0, number, 0)
    p.connect(number, 0, radio, 0)
    show = p.obj(500, 945, "list prepend set")
    p.connect(fan, 1, show, 0)
    show_trim = p.obj(500, 970, "list trim")
    p.connect(show, 0, show_trim, 0)
    p.connect(show_trim, 0, names, 0)
    tell = p.obj(200, 945, "s qriff-models")
    p.connect(fan, 0, tell, 0)
    # the current model (get reply, or the reply to a switch): shown, and in the status and log
    r_model = p.obj(300, 995, "route model")
    p.connect(r_kind, 6, r_model, 0)
    p.connect(r_kind, 7, r_model, 0)
    name = p.obj(300, 1020, "list split 1")
    p.connect(r_model, 0, name, 0)
    cur = p.obj(420, 1045, "list prepend set")
    p.connect(name, 1, cur, 0)
    cur_trim = p.obj(420, 1070, "list trim")
    p.connect(cur, 0, cur_trim, 0)
    p.connect(cur_trim, 0, current, 0)
    tag = p.obj(300, 1045, "list prepend model")
    p.connect(name, 1, tag, 0)
    p.connect(tag, 0, status_pre, 0)
    p.connect(tag, 0, log, 0)
    # a click: cell N -> the N-th name -> /qriff/set/model id NAME
    get = p.msg(600, 1000, "get \\$1 1")
    p.connect(radio, 0, get, 0)
    p.connect(get, 0, store, 0)
    chosen = p.obj(600, 1025, "t b a")
    p.connect(store, 0, chosen, 0)
    rid = p.obj(600, 1050, "f 300000")
    inc = p.obj(680, 1050, "+ 1")
    p.connect(chosen, 0, rid, 0)
    p.connect(rid, 0, inc, 0)
    p.connect(inc, 0, rid, 1)
    pack = p.obj(600, 1075, "pack f s f")
    p.connect(chosen, 1, pack, 1)
    p.connect(port, 0, pack, 2)
    p.connect(rid, 0, pack, 0)
    set_msg = p.msg(600, 1100, "\\$1 \\$2 reply_port \\$3")
    p.connect(pack, 0, set_msg, 0)
    set_fmt = p.obj(600, 1125, "oscformat qriff set model")
    p.connect(set_msg, 0, set_fmt, 0)
    p.connect(set_fmt, 0, to_send, 0)


def main() -> None:
    (HERE / "qriff.maxpat").write_text(json.dumps(build_max(), indent=1) + "\n")
    (HERE / "qriff.amxd").write_bytes(amxd_bytes(build_max(device=True)))
    (HERE / "qriff.pd").write_text(build_pd())


if __name__ == "__main__":
    main()
