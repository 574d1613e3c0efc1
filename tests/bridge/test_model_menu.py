"""The model menu of the Max patch, the Max for Live device and the Pd patch.

The Max side is a ``umenu`` driven by ``max_patches/qriff_models.js``: its wiring is
checked in both generated patchers, and the script runs under node (as
tests/bridge/test_m4l.py runs the device script) on the replies of a real server
serving tiny model files. The Pd patch runs headless against a real server: it fills
its radio from ``/qriff/list/models`` and a pick switches the server's model.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from bridge.source import PolicySource
from tests.bridge.support import Peer, free_udp_port, running_server
from tests.bridge.test_patches import AMXD, MAXPATS, PD_USER, max_boxes
from tests.bridge.tiny_models import write_tiny_model

MODELS_JS = Path(__file__).resolve().parents[2] / "max_patches" / "qriff_models.js"

HARNESS = r"""
const fs = require("fs"); const vm = require("vm");
const [script, messagesPath] = process.argv.slice(2);
const out = [];
const sandbox = {post: () => {}, outlet: (n, ...a) => out.push([n, ...a]),
                 arrayfromargs: (a) => Array.prototype.slice.call(a)};
vm.createContext(sandbox);
vm.runInContext(fs.readFileSync(script, "utf8"), sandbox);
for (const [fn, ...args] of JSON.parse(fs.readFileSync(messagesPath, "utf8"))) {
  if (typeof sandbox[fn] !== "function") throw new Error("the script has no function " + fn);
  out.push(["in", fn, ...args]);
  sandbox[fn](...args);
}
console.log(JSON.stringify(out));
"""


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("models")
    write_tiny_model(folder / "plain-a.onnx", "plain-a")
    write_tiny_model(folder / "mine.onnx", "mine", personal=True)
    return folder


@pytest.fixture
def folder(models_dir, monkeypatch) -> Path:
    monkeypatch.setenv("QRIFF_MODEL_DIR", str(models_dir))
    return models_dir


# ------------------------------------------------------------------ Max: the wiring


def _edges(lines: list[dict[str, Any]]) -> set[tuple[str, int, str, int]]:
    return {(ln["source"][0], ln["source"][1], ln["destination"][0], ln["destination"][1]) for ln in lines}


@MAXPATS
def test_the_model_menu_is_wired_to_the_script_and_the_server(path):
    _, boxes, lines = max_boxes(path)
    edges = _edges(lines)
    by_text = {b.get("text", ""): i for i, b in boxes.items()}
    [menu] = [i for i, b in boxes.items() if b["maxclass"] == "umenu" and b.get("varname") == "model"]
    js = by_text["js qriff_models.js"]
    route = next(i for i, b in boxes.items() if b.get("text", "").startswith("route /qriff/clip/begin"))
    routes = boxes[route]["text"].split()[1:]
    # only the script fills and sets the menu; the menu's picks go back to the script
    assert {(s, o) for s, o, d, _ in edges if d == menu} == {(js, 0)}
    pick = by_text["prepend pick"]
    assert (menu, 1, pick, 0) in edges and (pick, 0, js, 0) in edges
    # every reply the menu needs reaches the script under the selector the script defines
    for address, selector in (("/qriff/list/models", "models"), ("/qriff/get/model", "model"),
                              ("/qriff/set/model", "model")):
        pre = [d for s, o, d, _ in edges if s == route and o == routes.index(address)]
        assert any(boxes[d]["text"] == f"prepend {selector}" and (d, 0, js, 0) in edges for d in pre), address
        assert f"function {selector}(" in MODELS_JS.read_text()
    # a pong asks for the list, then the current model; an error asks for the current model again
    msgs = {b["text"].split()[0]: i for i, b in boxes.items() if b["maxclass"] == "message"
            and b["text"].startswith("/qriff/")}
    [ask] = [d for s, o, d, _ in edges if s == route and o == routes.index("/qriff/pong") and boxes[d]["text"] == "t b b"]
    assert (ask, 1, msgs["/qriff/list/models"], 0) in edges and (ask, 0, msgs["/qriff/get/model"], 0) in edges
    [again] = [d for s, o, d, _ in edges if s == route and o == routes.index("/qriff/error")
               and boxes[d].get("text") == "t b"]
    assert (again, 0, msgs["/qriff/get/model"], 0) in edges
    # the script's outlet 1 (a model to switch to) becomes /qriff/set/model id NAME
    [name] = [d for s, o, d, _ in edges if s == js and o == 1]
    assert boxes[name]["text"] == "t b s"
    pack = by_text["pack 0 s"]
    assert (name, 1, pack, 1) in edges and (pack, 0, msgs["/qriff/set/model"], 0) in edges
    assert boxes[msgs["/qriff/set/model"]]["text"].split()[1:3] == ["$1", "$2"]
    # refresh pings again (whose pong asks for the list)
    [refresh] = [i for i, b in boxes.items() if b["maxclass"] == "button"
                 and any(s == i and d == msgs["/qriff/ping"] for s, _, d, _ in edges)]
    assert boxes[refresh]["maxclass"] == "button"


def test_the_device_shows_the_menu_with_a_label_and_refresh():
    _, boxes, _ = max_boxes(AMXD)
    [menu] = [b for b in boxes.values() if b["maxclass"] == "umenu"]
    labels = {b["text"]: b["presentation_rect"] for b in boxes.values()
              if b["maxclass"] == "comment" and b.get("presentation")}
    assert menu["presentation_rect"][1] == labels["model"][1] and menu["presentation_rect"][2] >= 200


# ------------------------------------------------------------------ Max: the script under node


def run_script(node: str, tmp_path: Path, messages: list[list[Any]]) -> list[list[Any]]:
    (tmp_path / "harness.js").write_text(HARNESS)
    (tmp_path / "messages.json").write_text(json.dumps(messages))
    r = subprocess.run([node, str(tmp_path / "harness.js"), str(MODELS_JS), str(tmp_path / "messages.json")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def after(out: list[list[Any]], n: int) -> list[list[Any]]:
    """What the script sent in answer to the ``n``-th message (0-based)."""
    starts = [i for i, o in enumerate(out) if o[0] == "in"] + [len(out)]
    return out[starts[n] + 1:starts[n + 1]]


def test_the_script_fills_the_menu_from_a_real_list_reply(require_tool, tmp_path, folder):
    node = require_tool("node")
    with running_server(tmp_path, PolicySource("plain-a")) as srv:
        peer = Peer(srv.address)
        [(_, listed)] = peer.request("/qriff/list/models", 0)
        [(_, current)] = peer.request("/qriff/get/model", 0)
    models = listed[1:]
    assert {"plain-a", "mine", "qriff-default-3"} <= set(models)
    out = run_script(node, tmp_path, [["models", *listed], ["model", *current], ["pick", "mine"],
                                      ["pick", "plain-a"], ["pick", "no-such-model"], ["models", 0, "mine"],
                                      ["model", 0, "gone-from-the-list"]])
    # the list: cleared, then one item per model in the server's order
    assert after(out, 0) == [[0, "clear"], *[[0, "append", m] for m in models]]
    assert after(out, 1) == [[0, "setsymbol", "plain-a"]]  # shown without output
    assert after(out, 2) == [[1, "mine"]]  # a pick asks for the switch
    assert after(out, 3) == [[1, "plain-a"]]  # even of the model shown: another client may have switched
    assert after(out, 4) == []  # not a listed model: nothing is asked
    # a new list keeps showing the current model when it is still there
    assert after(out, 5) == [[0, "clear"], [0, "append", "mine"]]
    assert after(out, 6) == [[0, "append", "gone-from-the-list"], [0, "setsymbol", "gone-from-the-list"]]


def test_a_refused_switch_leaves_the_menu_on_the_model_that_still_generates(require_tool, tmp_path, folder):
    """The patch's sequence: pick -> /qriff/set/model -> /qriff/error -> /qriff/get/model -> setsymbol."""
    node = require_tool("node")
    with running_server(tmp_path, PolicySource("mine")) as srv:
        peer = Peer(srv.address)
        [(_, listed)] = peer.request("/qriff/list/models", 0)
        assert peer.request("/qriff/set/style", 1, "folk,taste=2")[0][0] == "/qriff/set/style"
        [(addr, err)] = peer.request("/qriff/set/model", 2, "plain-a")
        assert addr == "/qriff/error" and err[1] == "bad_value"
        [(_, current)] = peer.request("/qriff/get/model", 3)
    out = run_script(node, tmp_path, [["models", *listed], ["model", *current], ["pick", "plain-a"],
                                      ["model", *current]])
    assert after(out, 2) == [[1, "plain-a"]] and after(out, 3) == [[0, "setsymbol", "mine"]]


# ------------------------------------------------------------------ Pd, headless against a real server


def read_until(proc: subprocess.Popen[bytes], needle: str, seconds: float) -> list[str]:
    """Lines of ``proc``'s stderr until one contains ``needle`` or ``seconds`` pass (Pd itself never exits).
    Read unbuffered, so no line waits in a buffer that select cannot see."""
    assert proc.stderr is not None
    data = b""
    deadline = time.monotonic() + seconds
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stderr, selectors.EVENT_READ)
        while time.monotonic() < deadline and needle.encode() not in data:
            if sel.select(timeout=max(0.0, deadline - time.monotonic())):
                chunk = os.read(proc.stderr.fileno(), 65536)
                if not chunk:
                    break
                data += chunk
    return [x.strip() for x in data.decode("utf-8", "replace").splitlines()]


def test_the_pd_patch_lists_the_models_and_a_pick_switches_the_server(require_tool, tmp_path, folder):
    pd = require_tool("pd")
    source = PolicySource("plain-a")
    with running_server(tmp_path, source) as srv:
        models = source.models()
        index = models.index("mine")
        # a second patch picks cell `index` once the names arrived (the user patch sends them to qriff-models)
        driver = tmp_path / "driver.pd"
        driver.write_text("#N canvas 0 0 300 200 12;\n#X obj 10 10 r qriff-models;\n#X obj 10 40 t b;\n"
                          f"#X msg 10 70 {index};\n#X obj 10 100 s qriff-model;\n"
                          "#X connect 0 0 1 0;\n#X connect 1 0 2 0;\n#X connect 2 0 3 0;\n")
        shutil.copy(PD_USER, tmp_path / "qriff.pd")
        proc = subprocess.Popen([pd, "-nogui", "-noaudio", "-nomidi", "-stderr", "-open", str(tmp_path / "qriff.pd"),
                                 "-open", str(driver), "-send", f"qriff-connect {srv.address[1]} {free_udp_port()}"],
                                stderr=subprocess.PIPE)
        try:
            lines = read_until(proc, "model mine", 30)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        assert source.model_id == "mine", lines
    shown = [x for x in lines if x.startswith("qriff: list model")]
    assert shown[0].endswith("plain-a") and shown[-1].endswith("mine"), lines  # on connect, then after the pick
    assert not [x for x in lines if "error" in x.lower() or "couldn't create" in x], lines
