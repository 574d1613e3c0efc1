// qriff for Max for Live: writes the clips that `qriff serve` sends into Live's Session view.
//
// The device patch (qriff_m4l.maxpat) routes the replies of /qriff/generate here:
//   begin id variation variations bars tempo key scale seed notes name length
//   track id variation role program notes
//   notes id pitch start duration velocity [pitch start duration velocity ...]
//   end   id variation notes midi_path json_path
// Variation 0 goes into the highlighted clip slot (or, if it holds a clip, the next empty slot
// below it), later variations into the following empty slots, as Magenta Studio does. Only the
// first track of a clip (the lead) is written: a Live clip belongs to one track.
//
// Keep and Discard ("keep", "discard") judge the clip in the highlighted slot, if this device wrote
// it since it was loaded and it is still there (the same Live clip, even renamed): the script sends
// "feedback id clip verdict" out of outlet 0, which the patch turns into /qriff/feedback. Any other
// clip is refused with a status message: nothing is recorded about a clip qriff did not make.
//
// Every LiveAPI call runs on Max's main thread: the patch puts [deferlow] between [udpreceive]
// and this script, and between the buttons and it.
//
// Live Object Model paths and calls used (Live 11.1 or later: Clip.get_all_notes_extended is 11.1's,
// Clip.add_new_notes 11.0's):
//   live_set view highlighted_clip_slot          -> its path names the track and the slot
//   live_set tracks N           has_midi_input   (an audio or group track cannot hold a MIDI clip)
//   live_set tracks N           getcount clip_slots (one slot per scene)
//   live_set tracks N clip_slots M  has_clip, create_clip(length)
//   live_set                    create_scene(-1) (a new scene at the end, when a track is full)
//   live_set tracks N clip_slots M clip  length, get_all_notes_extended, add_new_notes({notes: [...]}), name
// A LiveAPI call that Live refuses is reported in the Max window, not thrown, so every step
// is checked by reading the set back: nothing is ever written into a clip the user made.
// Messages for the user go out of outlet 0 as "status wrote ..." or "status error ...".

autowatch = 1;
inlets = 1;
outlets = 1;

var clips = {};      // "id/variation" -> {name, length, notes: [], tracks: 0}
var current = null;  // the clip the next notes belong to
var enabled = 1;     // "write 0" turns writing off
var addScenes = 1;   // "scenes 0": report a full track instead of adding a scene
var nextSlot = null; // [track, slot] where the next variation of this request goes
var written = {};    // "track/slot" -> {clip: file name in qriff's output folder, id: Live clip id, name}
var feedbackId = 500000;  // request ids of /qriff/feedback (the generate ids count from 0)

function write(flag) {
    enabled = flag ? 1 : 0;
}

function scenes(flag) {
    addScenes = flag ? 1 : 0;
}

function begin(id, variation, variations, bars, tempo, key, scale, seed, count, name, length) {
    var c = {name: String(name), length: Number(length), notes: [], tracks: 0};
    clips[id + "/" + variation] = c;
    current = c;
    if (variation === 0) {
        nextSlot = null;
    }
}

function track(id, variation, role, program, count) {
    var c = clips[id + "/" + variation];
    if (!c) {
        return;
    }
    c.tracks += 1;
    current = c.tracks === 1 ? c : null;  // notes of later tracks are not written
}

function notes() {
    var a = arrayfromargs(arguments);
    if (!current) {
        return;
    }
    for (var i = 1; i + 3 < a.length; i += 4) {
        current.notes.push({pitch: Math.round(a[i]), start_time: Number(a[i + 1]), duration: Number(a[i + 2]),
                            velocity: Math.round(a[i + 3]), mute: 0});
    }
}

function end(id, variation, count, midiPath, jsonPath) {
    var key = id + "/" + variation;
    var c = clips[key];
    delete clips[key];
    current = null;
    if (!c || !enabled) {
        return;
    }
    try {
        var where = targetSlot();
        var at = "track " + (where[0] + 1) + " slot " + (where[1] + 1);
        var slotPath = "live_set tracks " + where[0] + " clip_slots " + where[1];
        new LiveAPI(slotPath).call("create_clip", c.length);
        var clip = new LiveAPI(slotPath + " clip");
        if (!exists(clip) || Math.abs(Number(clip.get("length")) - c.length) > 1e-3) {
            throw at + ": Live did not create the clip (the slot was filled meanwhile?); nothing was written";
        }
        if (noteCount(clip, at) !== 0) {
            throw at + ": the clip there already holds notes (the slot was filled meanwhile?); nothing was written";
        }
        clip.call("add_new_notes", {notes: c.notes});
        clip.set("name", c.name);
        written[where[0] + "/" + where[1]] = {clip: baseName(jsonPath), id: String(clip.id), name: c.name};
        nextSlot = [where[0], where[1] + 1];
        outlet(0, "status", "wrote", c.name, "to", at);
    } catch (e) {
        outlet(0, "status", "error", String(e));
    }
}

function exists(api) {
    return !(api.id === 0 || api.id === "0");
}

// The number of notes in a clip, read back through the Live API. Fails closed: anything but an
// object (or its JSON text) with a "notes" array means the read failed (an older Live without
// get_all_notes_extended, a Max returning another shape), and the write is abandoned.
function noteCount(clip, at) {
    var got = clip.call("get_all_notes_extended");
    var dict = null;
    if (typeof got === "string") {
        try {
            dict = JSON.parse(got);
        } catch (e) {
            dict = null;
        }
    } else {
        dict = got;
    }
    if (!dict || typeof dict !== "object" || Array.isArray(dict) || !Array.isArray(dict.notes)) {
        throw at + ": could not read the clip's notes back (get_all_notes_extended needs Live 11.1 or later); "
            + "nothing was written";
    }
    return dict.notes.length;
}

function baseName(path) {
    var parts = String(path).split(/[\\/]/);
    return parts[parts.length - 1];
}

function keep() {
    judge("keep");
}

function discard() {
    judge("discard");
}

// Sends "feedback id clip verdict" for the clip in the highlighted slot, if this device wrote it.
function judge(verdict) {
    try {
        var where = highlightedSlot();
        var at = "track " + (where[0] + 1) + " slot " + (where[1] + 1);
        var mine = written[where[0] + "/" + where[1]];
        if (!mine) {
            throw at + ": no clip this device wrote since it was loaded; nothing was recorded "
                + "(from a terminal: qriff " + verdict + " FILE)";
        }
        var clip = new LiveAPI("live_set tracks " + where[0] + " clip_slots " + where[1] + " clip");
        if (!exists(clip) || String(clip.id) !== mine.id) {
            throw at + ": the clip there is no longer the one qriff wrote; nothing was recorded";
        }
        feedbackId += 1;
        outlet(0, "feedback", feedbackId, mine.clip, verdict);
        outlet(0, "status", verdict, "sent:", mine.name);
    } catch (e) {
        outlet(0, "status", "error", String(e));
    }
}

function highlightedSlot() {
    var hl = new LiveAPI("live_set view highlighted_clip_slot");
    var m = /tracks (\d+) clip_slots (\d+)/.exec(String(hl.unquotedpath || hl.path).replace(/"/g, ""));
    if (!exists(hl) || !m) {
        throw "select a clip slot of a MIDI track in the Session view first";
    }
    return [parseInt(m[1], 10), parseInt(m[2], 10)];
}

// The first empty slot from the highlighted one (or from after the previous variation) of a MIDI
// track; a new scene at the end of the set when there is none (unless "scenes 0").
function targetSlot() {
    var start = nextSlot || highlightedSlot();
    var trackPath = "live_set tracks " + start[0];
    var trackApi = new LiveAPI(trackPath);
    if (!exists(trackApi)) {
        throw "track " + (start[0] + 1) + " does not exist";
    }
    if (Number(trackApi.get("has_midi_input")) !== 1) {
        throw "track " + (start[0] + 1) + " is not a MIDI track: select a slot of a MIDI track";
    }
    var slots = trackApi.getcount("clip_slots");
    for (var s = start[1]; s < slots; s++) {
        if (Number(new LiveAPI(trackPath + " clip_slots " + s).get("has_clip")) === 0) {
            return [start[0], s];
        }
    }
    var detail = start[1] >= slots ? "slot " + (start[1] + 1) + " is past the last scene"
                                   : "slots " + (start[1] + 1) + "-" + slots + " all hold clips";
    if (!addScenes) {
        throw "track " + (start[0] + 1) + ": no empty clip slot (" + detail + "): add a scene or delete a clip";
    }
    new LiveAPI("live_set").call("create_scene", -1);
    if (trackApi.getcount("clip_slots") !== slots + 1) {
        throw "track " + (start[0] + 1) + ": no empty clip slot (" + detail + ") and Live did not add a scene";
    }
    return [start[0], slots];
}
