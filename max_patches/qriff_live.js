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
// Needs Live 11 or later (Clip.add_new_notes). Messages for the user go out of outlet 0.

autowatch = 1;
inlets = 1;
outlets = 1;

var MAX_SLOT_SEARCH = 64;
var clips = {};      // "id/variation" -> {name, length, notes: [], track: 0}
var current = null;  // the clip the next notes belong to
var enabled = 1;
var nextSlot = null; // [track, slot] where the next variation of this request goes

function write(flag) {
    enabled = flag ? 1 : 0;
}

function begin(id, variation, variations, bars, tempo, key, scale, seed, count, name, length) {
    var c = {name: String(name), length: Number(length), notes: [], tracks: 0, wanted: 0};
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
        current.notes.push({pitch: a[i], start_time: a[i + 1], duration: a[i + 2], velocity: a[i + 3]});
    }
}

function end(id, variation) {
    var key = id + "/" + variation;
    var c = clips[key];
    delete clips[key];
    current = null;
    if (!c || !enabled) {
        return;
    }
    try {
        var where = targetSlot();
        var slot = new LiveAPI("live_set tracks " + where[0] + " clip_slots " + where[1]);
        slot.call("create_clip", c.length);
        var clip = new LiveAPI("live_set tracks " + where[0] + " clip_slots " + where[1] + " clip");
        clip.call("add_new_notes", {notes: c.notes});
        clip.set("name", c.name);
        nextSlot = [where[0], where[1] + 1];
        outlet(0, "status", "wrote", c.name, "to track", where[0] + 1, "slot", where[1] + 1);
    } catch (e) {
        outlet(0, "status", "error", String(e));
    }
}

// The first empty slot from the highlighted one (or from after the previous variation).
function targetSlot() {
    var start = nextSlot;
    if (!start) {
        var hl = new LiveAPI("live_set view highlighted_clip_slot");
        var m = /tracks (\d+) clip_slots (\d+)/.exec(String(hl.unquotedpath || hl.path).replace(/"/g, ""));
        if (!m) {
            throw "select a clip slot of a MIDI track in the Session view first";
        }
        start = [parseInt(m[1], 10), parseInt(m[2], 10)];
    }
    for (var s = start[1]; s < start[1] + MAX_SLOT_SEARCH; s++) {
        var slot = new LiveAPI("live_set tracks " + start[0] + " clip_slots " + s);
        if (slot.id === 0 || slot.id === "0") {
            break;  // past the last scene
        }
        if (Number(slot.get("has_clip")) === 0) {
            return [start[0], s];
        }
    }
    throw "no empty clip slot below the selected one: add a scene or delete a clip";
}
