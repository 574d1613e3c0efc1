"""The Max for Live device script (max_patches/qriff_live.js) against a model of the Live Object Model, under node.

The script is what Max's [js] object runs; node runs the same file with the Max
globals it uses (``LiveAPI``, ``outlet``, ``arrayfromargs``) backed by a small Live set,
and the test feeds it the replies a real server sent. The fake ``LiveAPI`` knows only
the Live Object Model paths, properties and functions the device may use (``live_set
tracks N clip_slots M [clip]``, ``live_set view highlighted_clip_slot``; ``has_midi_input``,
``has_clip``, ``length``, ``name``; ``create_clip``, ``create_scene``, ``add_new_notes``
with the Live 11 note dictionary, ``get_all_notes_extended``) and fails the run on
anything else. As in Max, a call Live refuses is reported (here: logged), not thrown.

``get_all_notes_extended`` answers as the scenario says: the JSON text Max 8 returns
(default), a parsed object, an array (how the LiveAPI returns most results), nothing
(a Live before 11.1, where the call does not exist) or text that is not JSON. Each clip
has its own Live id, so a clip replaced in a slot is a different clip. Scenario
messages starting with ``@`` act as the user: ``@highlight T S`` selects a slot,
``@replace T S`` puts a clip of the user's in place of the one there.
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
// tracks: [{midi: bool, slots: [clip or null]}]; every track has one slot per scene
const live = {tracks: scenario.tracks, log: [], errors: [], outlets: []};
const NOTE_KEYS = ["duration", "mute", "pitch", "start_time", "velocity"];
const clipIds = new WeakMap(); let nextId = 100;
function clipId(clip) { if (!clipIds.has(clip)) clipIds.set(clip, nextId++); return clipIds.get(clip); }
function fail(msg) { throw new Error("not in the Live Object Model as the device may use it: " + msg); }
class LiveAPI {
  constructor(a, b) {
    let path = typeof a === "function" ? b : a, m;
    if (path === "live_set view highlighted_clip_slot") {
      const [t, s] = scenario.highlighted;
      path = `live_set tracks ${t} clip_slots ${s}`;
    }
    this.unquotedpath = path; this.path = '"' + path + '"'; this.id = 0;
    if (path === "live_set") { this.kind = "song"; this.id = 1; }
    else if ((m = /^live_set tracks (\d+)$/.exec(path))) {
      this.kind = "track"; this.t = +m[1]; this.id = this.t < live.tracks.length ? 2 : 0;
    } else if ((m = /^live_set tracks (\d+) clip_slots (\d+)( clip)?$/.exec(path))) {
      this.t = +m[1]; this.s = +m[2]; this.kind = m[3] ? "clip" : "slot";
      const track = live.tracks[this.t];
      this.id = (track && this.s < track.slots.length && (this.kind === "slot" || track.slots[this.s])) ? 3 : 0;
      if (this.kind === "clip" && this.id) this.id = clipId(track.slots[this.s]);
    } else fail("path " + path);
  }
  get(prop) {
    live.log.push(["get", this.unquotedpath, prop]);
    if (this.id === 0) { live.errors.push("get on invalid object " + this.unquotedpath); return []; }
    const track = live.tracks[this.t];
    if (this.kind === "track" && prop === "has_midi_input") return [track.midi ? 1 : 0];
    if (this.kind === "slot" && prop === "has_clip") return [track.slots[this.s] ? 1 : 0];
    if (this.kind === "clip" && (prop === "length" || prop === "name")) return [track.slots[this.s][prop]];
    fail(this.kind + " property " + prop);
  }
  getcount(child) {
    live.log.push(["getcount", this.unquotedpath, child]);
    if (this.kind === "track" && child === "clip_slots") return live.tracks[this.t].slots.length;
    fail(this.kind + " child " + child);
  }
  set(prop, value) {
    live.log.push(["set", this.unquotedpath, prop, value]);
    if (this.kind === "clip" && prop === "name") { live.tracks[this.t].slots[this.s].name = String(value); return; }
    fail(this.kind + " settable property " + prop);
  }
  call(fn, arg) {
    live.log.push(["call", this.unquotedpath, fn]);
    if (this.kind === "song" && fn === "create_scene") {
      if (arg !== -1) fail("create_scene index " + arg);
      for (const t of live.tracks) t.slots.push(null);
      return;
    }
    if (this.id === 0) { live.errors.push(fn + " on invalid object " + this.unquotedpath); return; }
    const track = live.tracks[this.t];
    if (this.kind === "slot" && fn === "create_clip") {
      const fill = scenario.fillBeforeCreate;
      if (fill && fill[0] === this.t && fill[1] === this.s) track.slots[this.s] = scenario.userClip;
      if (!track.midi) { live.errors.push("create_clip: not a MIDI track"); return; }
      if (track.slots[this.s]) { live.errors.push("create_clip: slot already has a clip"); return; }
      track.slots[this.s] = {length: arg, notes: [], name: ""};
      return;
    }
    if (this.kind === "clip" && fn === "get_all_notes_extended") {
      const notes = track.slots[this.s].notes, mode = scenario.notesReturn || "json";
      if (mode === "json") return JSON.stringify({notes});
      if (mode === "object") return {notes};
      if (mode === "array") return ["notes", notes.length].concat(...notes.map((n) => [n.pitch, n.start_time]));
      if (mode === "missing") { live.errors.push("get_all_notes_extended: no such function"); return undefined; }
      if (mode === "garbage") return "notes 0";
      fail("notesReturn " + mode);
    }
    if (this.kind === "clip" && fn === "add_new_notes") {
      if (!arg || !Array.isArray(arg.notes)) fail("add_new_notes without {notes: [...]}");
      for (const n of arg.notes) {
        if (JSON.stringify(Object.keys(n).sort()) !== JSON.stringify(NOTE_KEYS)) fail("note keys " + Object.keys(n));
        if (!Number.isInteger(n.pitch) || n.pitch < 0 || n.pitch > 127 || !(n.duration > 0) || n.start_time < 0
            || !(n.velocity >= 1 && n.velocity <= 127)) fail("note " + JSON.stringify(n));
      }
      track.slots[this.s].notes.push(...arg.notes);
      return;
    }
    fail(this.kind + " function " + fn);
  }
}
const sandbox = {LiveAPI, post: () => {}, outlet: (n, ...a) => live.outlets.push(a),
                 arrayfromargs: (a) => Array.prototype.slice.call(a)};
vm.createContext(sandbox);
vm.runInContext(fs.readFileSync(deviceJs, "utf8"), sandbox);
for (const [fn, ...args] of scenario.messages) {
  if (fn === "@highlight") scenario.highlighted = args;
  else if (fn === "@replace") live.tracks[args[0]].slots[args[1]] = {name: "mine", notes: [], length: 4.0};
  else sandbox[fn](...args);
}
console.log(JSON.stringify({tracks: live.tracks, log: live.log, errors: live.errors, outlets: live.outlets}));
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


def run_device(node, tmp_path, tracks, highlighted, messages, **extra):
    (tmp_path / "harness.js").write_text(HARNESS)
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"tracks": tracks, "highlighted": highlighted, "messages": messages, **extra}))
    r = subprocess.run([node, str(tmp_path / "harness.js"), str(DEVICE_JS), str(scenario)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def as_messages(replies):
    return [[SELECTORS[a], *p] for a, p in replies if a in SELECTORS]


def midi(*slots):
    return {"midi": True, "slots": list(slots)}


def lead_notes(end):
    clip = Clip.from_json(Path(end[4]).read_text())
    return clip, [(n.pitch, pytest.approx(n.start), pytest.approx(n.duration), n.velocity, 0)
                  for n in clip.track("lead").notes]


def test_variations_go_into_the_highlighted_and_next_empty_slots(require_tool, tmp_path, replies):
    node = require_tool("node")
    mine = {"name": "mine", "notes": [], "length": 4.0}
    out = run_device(node, tmp_path, [midi(None, None), midi(mine, None, None, None)], [1, 0], as_messages(replies))
    slots = out["tracks"][1]["slots"]
    assert slots[0] == mine  # an existing clip is never touched
    ends = [p for a, p in replies if a == "/qriff/clip/end"]
    begins = [p for a, p in replies if a == "/qriff/clip/begin"]
    for slot, begin, end in zip(slots[1:3], begins, ends):
        clip, notes = lead_notes(end)
        assert slot["name"] == begin[9] and slot["length"] == clip.length_beats
        assert [(n["pitch"], n["start_time"], n["duration"], n["velocity"], n["mute"]) for n in slot["notes"]] == notes
    assert slots[3] is None and out["tracks"][0]["slots"] == [None, None]
    assert [o[:2] for o in out["outlets"]] == [["status", "wrote"], ["status", "wrote"]]
    assert out["outlets"][0][-1] == "track 2 slot 2" and out["errors"] == []


def test_write_off_leaves_live_alone(require_tool, tmp_path, replies):
    out = run_device(require_tool("node"), tmp_path, [midi(None, None, None)], [0, 0],
                     [["write", 0], *as_messages(replies)])
    assert out["tracks"] == [midi(None, None, None)] and out["log"] == []


def test_full_track_gets_a_new_scene(require_tool, tmp_path, replies):
    full = [{"name": "a", "notes": [], "length": 4.0}, {"name": "b", "notes": [], "length": 4.0}]
    out = run_device(require_tool("node"), tmp_path, [midi(*full), midi(None, None)], [0, 0], as_messages(replies))
    assert [len(t["slots"]) for t in out["tracks"]] == [4, 4]  # one scene per variation, every track
    assert out["tracks"][0]["slots"][:2] == full and all(s["notes"] for s in out["tracks"][0]["slots"][2:])
    assert ["call", "live_set", "create_scene"] in out["log"]


def test_full_track_without_scenes_is_an_error(require_tool, tmp_path, replies):
    full = [{"name": "a", "notes": [], "length": 4.0}, {"name": "b", "notes": [], "length": 4.0}]
    out = run_device(require_tool("node"), tmp_path, [midi(*full)], [0, 0], [["scenes", 0], *as_messages(replies)])
    assert out["outlets"][0][:2] == ["status", "error"] and "no empty clip slot (slots 1-2 all hold clips)" in \
        out["outlets"][0][2]
    assert out["tracks"] == [midi(*full)]


def test_audio_track_is_an_error(require_tool, tmp_path, replies):
    out = run_device(require_tool("node"), tmp_path, [{"midi": False, "slots": [None, None]}], [0, 0],
                     as_messages(replies))
    assert out["outlets"][0][:2] == ["status", "error"] and "is not a MIDI track" in out["outlets"][0][2]
    assert out["tracks"][0]["slots"] == [None, None] and not [x for x in out["log"] if x[0] == "call"]


def test_slot_filled_before_the_create_is_never_written(require_tool, tmp_path, replies):
    users = {"name": "recorded", "notes": [{"pitch": 64, "start_time": 0, "duration": 1, "velocity": 80, "mute": 0}],
             "length": 8.0}
    out = run_device(require_tool("node"), tmp_path, [midi(None, None, None)], [0, 0], as_messages(replies),
                     fillBeforeCreate=[0, 0], userClip=users)
    assert out["outlets"][0][:2] == ["status", "error"] and "nothing was written" in out["outlets"][0][2]
    assert out["tracks"][0]["slots"][0] == users
    assert not [x for x in out["log"] if x[:3] == ["call", "live_set tracks 0 clip_slots 0 clip", "add_new_notes"]]


@pytest.mark.parametrize("mode", ["array", "missing", "garbage"])
def test_a_note_read_back_it_cannot_understand_aborts_the_write(require_tool, tmp_path, replies, mode):
    """noteCount fails closed: only an object with a notes array lets the write go on."""
    out = run_device(require_tool("node"), tmp_path, [midi(None, None, None)], [0, 0], as_messages(replies),
                     notesReturn=mode)
    assert [o[:2] for o in out["outlets"]][0] == ["status", "error"]
    assert "could not read the clip's notes back" in out["outlets"][0][2] and "11.1" in out["outlets"][0][2]
    assert not [x for x in out["log"] if x[0] == "call" and x[2] == "add_new_notes"]
    assert not [x for x in out["log"] if x[0] == "set"]
    assert all(not s or s["notes"] == [] for s in out["tracks"][0]["slots"])


def test_a_parsed_object_is_read_like_its_json_text(require_tool, tmp_path, replies):
    out = run_device(require_tool("node"), tmp_path, [midi(None, None, None)], [0, 0], as_messages(replies),
                     notesReturn="object")
    assert [o[:2] for o in out["outlets"]] == [["status", "wrote"], ["status", "wrote"]]


def test_keep_and_discard_send_feedback_for_the_clips_the_device_wrote(require_tool, tmp_path, replies):
    ends = [p for a, p in replies if a == "/qriff/clip/end"]
    names = [Path(e[4]).name for e in ends]
    messages = [*as_messages(replies), ["@highlight", 0, 1], ["keep"], ["@highlight", 0, 2], ["discard"],
                ["@highlight", 0, 0], ["keep"], ["@replace", 0, 1], ["@highlight", 0, 1], ["discard"]]
    mine = {"name": "mine", "notes": [], "length": 4.0}
    out = run_device(require_tool("node"), tmp_path, [midi(mine, None, None)], [0, 0], messages)
    sent = [o for o in out["outlets"] if o[0] == "feedback"]
    assert sent == [["feedback", 500001, names[0], "keep"], ["feedback", 500002, names[1], "discard"]]
    errors = [o[2] for o in out["outlets"] if o[:2] == ["status", "error"]]
    assert "track 1 slot 1: no clip this device wrote" in errors[0]  # the user's own clip
    assert "track 1 slot 2: the clip there is no longer the one qriff wrote" in errors[1]
    assert len(errors) == 2


def test_the_devices_feedback_is_stored_by_the_server(require_tool, tmp_path, replies):
    """End to end: the device's feedback message, sent as the patch sends it, lands in the store."""
    out = run_device(require_tool("node"), tmp_path, [midi(None, None)], [0, 0],
                     [*as_messages(replies), ["@highlight", 0, 0], ["keep"]])
    [(_, rid, clip, verdict)] = [o for o in out["outlets"] if o[0] == "feedback"]
    out_dir = Path([p for a, p in replies if a == "/qriff/clip/end"][0][4]).parent
    with running_server(tmp_path, out_dir=out_dir) as srv:
        peer = Peer(srv.address)
        got = peer.request("/qriff/feedback", rid, clip, verdict, "source", "device")
    assert got == [("/qriff/feedback/stored", [rid, clip, "keep", 0])]
    from engine.feedback import FeedbackStore

    with FeedbackStore(tmp_path / "feedback.sqlite") as store:
        [v] = list(store.verdicts())
    assert (v.verdict, v.source) == ("keep", "device") and v.clip_path.endswith(clip)
