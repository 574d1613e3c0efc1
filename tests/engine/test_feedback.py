"""The keep/discard store (engine.feedback) and ``qriff keep|discard|feedback`` as a user runs them."""

from __future__ import annotations

import json
import sqlite3

import pytest

from engine.feedback import (
    SCHEMA_VERSION,
    FeedbackError,
    FeedbackStore,
    Judgement,
    clip_id,
    judgements,
)
from engine.mdp import observation
from engine.music.clip import Clip, Note, Track
from engine.music.midi import write_midi
from engine.runtime import MODEL_FORMAT


def make_clip(seed: int, key: str = "D", model: str = "m-1") -> Clip:
    notes = [Note(62 + (seed + i) % 7, i * 0.5, 0.5, 90) for i in range(8)]
    return Clip(key=key, scale="dorian", tempo=100.0, bars=1, seed=seed, model=model, style={"motif": 1.5},
                chords=["Dm", "G"], tracks=[Track("lead", 0, notes)])


@pytest.fixture
def clips(tmp_path):
    """Three clip files: a .json, a .mid with its .json beside it, and a bare .mid."""
    a = make_clip(1).write_json(tmp_path / "a.json")
    make_clip(2).write_json(tmp_path / "b.json")
    b = write_midi(make_clip(2), tmp_path / "b.mid")
    c = write_midi(make_clip(3), tmp_path / "c.mid")
    return a, b, c


@pytest.fixture
def store(tmp_path):
    with FeedbackStore(tmp_path / "fb.sqlite") as s:
        yield s


def rows(path):
    with sqlite3.connect(path) as db:
        return db.execute("SELECT clip_id, verdict, stars, source, revisions FROM verdicts ORDER BY clip_id").fetchall()


def test_a_verdict_stores_what_a_reward_model_needs(tmp_path, store, clips):
    [j] = judgements([clips[0]], "keep", 4)
    cid = store.record(j)
    v = store.get(cid)
    clip = make_clip(1)
    assert cid == clip_id(clip) and v is not None
    assert (v.verdict, v.stars, v.source, v.revisions) == ("keep", 4, "cli", 1)
    assert Clip.from_dict(v.clip).to_dict() == clip.to_dict()  # the notes, without the file
    assert (v.model, v.model_format, v.obs_version) == ("m-1", MODEL_FORMAT, observation.OBS_VERSION)
    assert (v.key, v.scale, v.chords, v.seed, v.style, v.bars, v.time_signature) == \
        ("D", "dorian", ["Dm", "G"], 1, {"motif": 1.5}, 1, "4/4")
    assert v.decided_at.endswith("+00:00") and v.clip_path == str(clips[0].resolve())


def test_the_last_verdict_wins_and_revisions_count(tmp_path, store, clips):
    store.record_many(judgements([clips[0]], "keep", 5))
    store.record(Judgement(make_clip(1), "discard", None, "device"))  # same clip, other front end
    [v] = list(store.verdicts())
    assert (v.verdict, v.stars, v.source, v.revisions) == ("discard", None, "device", 2)
    assert v.first_at < v.decided_at and len(store) == 1


def test_a_mid_is_judged_through_the_json_beside_it(tmp_path, store, clips):
    ids = store.record_many(judgements([clips[1], tmp_path / "b.json"], "keep"))
    assert ids[0] == ids[1] and store.get(ids[0]).seed == 2 and store.get(ids[0]).revisions == 2
    [bare] = judgements([clips[2]], "discard")  # no .json: the MIDI's notes and key, no seed or model
    assert bare.clip.seed is None and store.get(store.record(bare)).model == "midi:c.mid"


@pytest.mark.parametrize("paths,verdict,stars,needle", [
    (["a.json", "missing.json"], "keep", None, "missing.json"),
    (["a.json"], "maybe", None, "verdict 'maybe' is not valid: allowed are keep or discard"),
    (["a.json"], "keep", 6, "stars 6 is not valid: allowed an integer 1-5"),
    (["a.json"], "keep", 0, "stars 0"),
    (["a.json"], "keep", 2.5, "stars 2.5"),
    (["a.json"], "keep", True, "stars True"),
    (["notes.txt"], "keep", None, "notes.txt"),
])
def test_bad_input_is_refused_and_the_store_untouched(tmp_path, store, clips, paths, verdict, stars, needle):
    (tmp_path / "notes.txt").write_text("hello")
    store.record_many(judgements([clips[0]], "discard"))
    before = rows(tmp_path / "fb.sqlite")
    with pytest.raises(FeedbackError, match=needle.replace(".", r"\.").replace("(", r"\(")) as err:
        store.record_many(judgements([tmp_path / p for p in paths], verdict, stars))
    assert "\n" not in str(err.value)
    with pytest.raises(FeedbackError, match="source 'web'"):
        store.record(Judgement(make_clip(1), "keep", None, "web"))
    assert rows(tmp_path / "fb.sqlite") == before


def test_a_store_from_a_newer_qriff_is_refused_untouched(tmp_path, clips):
    path = tmp_path / "fb.sqlite"
    with FeedbackStore(path) as store:
        store.record_many(judgements([clips[0]], "keep"))
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = path.read_bytes()
    with pytest.raises(FeedbackError, match=f"schema version {SCHEMA_VERSION + 1}, newer than this qriff's"):
        FeedbackStore(path)
    assert path.read_bytes() == before


def test_another_sqlite_file_is_not_taken_over(tmp_path):
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE songs (x)")
    with pytest.raises(FeedbackError, match="not a qriff feedback store"):
        FeedbackStore(path)
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(FeedbackError, match="not a qriff feedback store"):
        FeedbackStore(tmp_path / "junk.sqlite")


def test_stats_and_export(tmp_path, store, clips):
    store.record_many(judgements([clips[0]], "keep", 5))
    store.record(Judgement(make_clip(7, model="m-2"), "discard", 1, "osc"))
    s = store.stats()
    assert s["clips"] == 2 and s["verdicts"] == {"keep": 1, "discard": 1}
    assert s["sources"] == {"device": 0, "osc": 1, "cli": 1} and s["stars"]["5"] == 1 and s["stars"]["1"] == 1
    assert s["models"] == {"m-1": {"keep": 1, "discard": 0}, "m-2": {"keep": 0, "discard": 1}}
    import io

    buf = io.StringIO()
    assert store.export(buf) == 2
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert [x["verdict"] for x in lines] == ["keep", "discard"]
    assert Clip.from_dict(lines[1]["clip"]).seed == 7 and lines[1]["model"] == "m-2"


# ------------------------------------------------------------------------- CLI

def test_cli_keep_discard_list_stats_export(qriff, tmp_path, clips):
    env_store = tmp_path / "cli.sqlite"
    store = ["--store", str(env_store)]
    p = qriff("keep", str(clips[0]), str(clips[1]), "--stars", "4", *store)
    assert p.returncode == 0, p.stderr
    assert "2 verdicts recorded" in p.stderr and p.stdout.count("keep, 4 stars:") == 2
    p = qriff("discard", str(clips[0]), *store)
    assert p.returncode == 0, p.stderr
    p = qriff("feedback", "list", *store)
    assert p.returncode == 0 and len(p.stdout.splitlines()) == 2
    assert "discard" in p.stdout.splitlines()[-1] and "keep" in p.stdout.splitlines()[0]
    p = qriff("feedback", "list", "--verdict", "keep", *store)
    assert len(p.stdout.splitlines()) == 1
    p = qriff("feedback", "stats", *store)
    assert json.loads(p.stdout)["verdicts"] == {"keep": 1, "discard": 1}
    out = tmp_path / "taste.jsonl"
    p = qriff("feedback", "export", "--out", str(out), *store)
    assert p.returncode == 0 and len(out.read_text().splitlines()) == 2
    p = qriff("feedback", "export", *store)
    assert [json.loads(x)["verdict"] for x in p.stdout.splitlines()] == ["keep", "discard"]


@pytest.mark.parametrize("args,needle", [
    (["keep", "{dir}/a.json", "{dir}/nope.json"], "nope.json"),
    (["keep", "{dir}/a.json", "--stars", "9"], "--stars"),
    (["discard"], "CLIP"),
    (["feedback", "what"], "invalid choice"),
    (["feedback", "stats", "--verdict", "keep"], "--verdict and --limit apply to 'qriff feedback list' only"),
])
def test_cli_bad_input_exits_2_with_one_line_and_stores_nothing(qriff, tmp_path, clips, args, needle):
    store = tmp_path / "cli.sqlite"
    assert qriff("keep", str(clips[0]), "--store", str(store), "-q").returncode == 0
    before = rows(store)
    p = qriff(*[a.format(dir=tmp_path) for a in args], "--store", str(store))
    assert p.returncode == 2 and needle in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "Traceback" not in p.stderr and rows(store) == before


def test_cli_reading_before_any_verdict_says_how_to_record(qriff, tmp_path):
    p = qriff("feedback", "list", "--store", str(tmp_path / "none.sqlite"))
    assert p.returncode == 2 and "qriff keep CLIP" in p.stderr and not (tmp_path / "none.sqlite").exists()
