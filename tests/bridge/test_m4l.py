"""The Max for Live device script (max_patches/qriff_live.js) against a fake Live API, under node.

The script is what Max's [js] object runs; node runs the same file with the Max
globals it uses (``LiveAPI``, ``outlet``, ``arrayfromargs``) provided by a fake Live
set, and the test feeds it the replies a real server sent.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from engine.music.clip import Clip
from tests.bridge.support import Peer, running_server

DEVICE_JS = Path(__file__).resolve().parents[2] / "max_patches" / "qriff_live.js"

HARNESS = r"""
const fs = require("fs"); const vm = require("vm");
const [deviceJs, scenarioPath] = process.argv.slice(2);
const scenario = JSON.parse(fs.readFileSync(scenarioPath, "utf8"));
const live = {tracks: scenario.tracks, log: [], outlets: []};
class LiveAPI {
  constructor(path) {
    let m;
    if (path === "live_set view highlighted_clip_slot") {
      path = `live_set tracks ${scenario.highlighted[0]} clip_slots ${scenario.highlighted[1]}`;
    }
    this.unquotedpath = path; this.path = '"' + path + '"'; this.id = 0;
    if ((m = /^live_set tracks (\d+) clip_slots (\d+)( clip)?$/.exec(path))) {
      this.t = +m[1]; this.s = +m[2]; this.kind = m[3] ? "clip" : "slot";
      const track = live.tracks[this.t];
      this.id = (track && this.s < track.length && (this.kind === "slot" || track[this.s])) ? 1 : 0;
    }
  }
  get(prop) {
    if (this.kind === "slot" && prop === "has_clip") return [live.tracks[this.t][this.s] ? 1 : 0];
    throw "no property " + prop;
  }
  set(prop, value) {
    live.log.push(["set", this.unquotedpath, prop, value]);
    if (this.kind === "clip" && prop === "name") live.tracks[this.t][this.s].name = value;
  }
  call(fn, arg) {
    live.log.push(["call", this.unquotedpath, fn]);
    if (this.kind === "slot" && fn === "create_clip") {
      if (live.tracks[this.t][this.s]) throw "Clip slot already has a clip";
      live.tracks[this.t][this.s] = {length: arg, notes: [], name: ""};
    } else if (this.kind === "clip" && fn === "add_new_notes") {
      live.tracks[this.t][this.s].notes.push(...arg.notes);
    } else throw "no function " + fn;
  }
}
const sandbox = {LiveAPI, post: () => {}, outlet: (n, ...a) => live.outlets.push(a),
                 arrayfromargs: (a) => Array.prototype.slice.call(a)};
vm.createContext(sandbox);
vm.runInContext(fs.readFileSync(deviceJs, "utf8"), sandbox);
for (const [fn, ...args] of scenario.messages) sandbox[fn](...args);
console.log(JSON.stringify({tracks: live.tracks, log: live.log, outlets: live.outlets}));
"""

SELECTORS = {"/qriff/clip/begin": "begin", "/qriff/clip/track": "track", "/qriff/clip/notes": "notes",
             "/qriff/clip/end": "end"}


@pytest.fixture(scope="module")
def replies(tmp_path_factory):
    """Replies of one real request: 2 variations of a 2-bar lead+bass clip."""
    tmp = tmp_path_factory.mktemp("m4l")
    with running_server(tmp) as srv:
        peer = Peer(srv.address)
        got = peer.request("/qriff/generate", 7, "bars", 2, "variations", 2, "roles", "lead+bass", "seed", 3,
                           until="/qriff/clip/end", count=2)
    return got


def run_device(node, tmp_path, tracks, highlighted, messages):
    (tmp_path / "harness.js").write_text(HARNESS)
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"tracks": tracks, "highlighted": highlighted, "messages": messages}))
    r = subprocess.run([node, str(tmp_path / "harness.js"), str(DEVICE_JS), str(scenario)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def as_messages(replies):
    return [[SELECTORS[a], *p] for a, p in replies if a in SELECTORS]


def test_variations_go_into_the_highlighted_and_next_empty_slots(require_tool, tmp_path, replies):
    node = require_tool("node")
    tracks = [[None, None], [{"name": "mine", "notes": []}, None, None, None]]
    out = run_device(node, tmp_path, tracks, [1, 0], as_messages(replies))
    slots = out["tracks"][1]
    assert slots[0] == {"name": "mine", "notes": []}  # an existing clip is never touched
    ends = [p for a, p in replies if a == "/qriff/clip/end"]
    begins = [p for a, p in replies if a == "/qriff/clip/begin"]
    for slot, begin, end in zip(slots[1:3], begins, ends):
        clip = Clip.from_json(Path(end[4]).read_text())
        assert slot["name"] == begin[9] and slot["length"] == clip.length_beats
        lead = clip.track("lead").notes
        assert [(n["pitch"], n["start_time"], n["duration"], n["velocity"]) for n in slot["notes"]] == \
            [(n.pitch, pytest.approx(n.start), pytest.approx(n.duration), n.velocity) for n in lead]
    assert slots[3] is None and out["tracks"][0] == [None, None]
    assert [o[:2] for o in out["outlets"]] == [["status", "wrote"], ["status", "wrote"]]


def test_write_off_leaves_live_alone(require_tool, tmp_path, replies):
    out = run_device(require_tool("node"), tmp_path, [[None, None, None]], [0, 0],
                     [["write", 0], *as_messages(replies)])
    assert out["tracks"] == [[None, None, None]] and out["log"] == []


def test_full_track_reports_an_error(require_tool, tmp_path, replies):
    out = run_device(require_tool("node"), tmp_path, [[{"name": "a"}, {"name": "b"}]], [0, 0],
                     as_messages(replies))
    assert out["outlets"][0][:2] == ["status", "error"] and "no empty clip slot" in out["outlets"][0][2]
    assert out["tracks"] == [[{"name": "a"}, {"name": "b"}]]
