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
// Live Object Model paths and calls used (Live 11 or later, for Clip.add_new_notes):
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
        var at = "track " + (where[0] + 1) + " slot " + (where[1] + 1);
        var slotPath = "live_set tracks " + where[0] + " clip_slots " + where[1];
        new LiveAPI(slotPath).call("create_clip", c.length);
        var clip = new LiveAPI(slotPath + " clip");
        if (!exists(clip) || Math.abs(Number(clip.get("length")) - c.length) > 1e-3 || noteCount(clip) !== 0) {
            throw at + ": Live did not create the clip (the slot was filled meanwhile?); nothing was written";
        }
        clip.call("add_new_notes", {notes: c.notes});
        clip.set("name", c.name);
        nextSlot = [where[0], where[1] + 1];
        outlet(0, "status", "wrote", c.name, "to", at);
    } catch (e) {
        outlet(0, "status", "error", String(e));
    }
}

function exists(api) {
    return !(api.id === 0 || api.id === "0");
}

function noteCount(clip) {
    var got = clip.call("get_all_notes_extended");
    var dict = typeof got === "string" ? JSON.parse(got) : got;
    return dict && dict.notes ? dict.notes.length : 0;
}

// The first empty slot from the highlighted one (or from after the previous variation) of a MIDI
// track; a new scene at the end of the set when there is none (unless "scenes 0").
function targetSlot() {
    var start = nextSlot;
    if (!start) {
        var hl = new LiveAPI("live_set view highlighted_clip_slot");
        var m = /tracks (\d+) clip_slots (\d+)/.exec(String(hl.unquotedpath || hl.path).replace(/"/g, ""));
        if (!exists(hl) || !m) {
            throw "select a clip slot of a MIDI track in the Session view first";
        }
        start = [parseInt(m[1], 10), parseInt(m[2], 10)];
    }
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
