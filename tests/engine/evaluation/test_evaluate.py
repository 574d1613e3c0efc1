"""The evaluation suite: evaluate_sequences, clip reading, sets, the table, and ``qriff evaluate``."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from engine.base.errors import ClipError, EngineError
from engine.corpus import prior
from engine.evaluation import evaluate as ev
from engine.evaluation import metrics
from engine.mdp import observation
from engine.music import tokens
from engine.music.clip import Clip, Note, Track, tokens_to_notes
from engine.music.midi import write_midi

H, R = 1, 0
# a 2-bar C major melody: C E G E | D - G - C...
MEL = np.array([14, H, 18, H, 21, H, 18, H, 16, H, H, H, 21, R, 19, H,
                18, H, 16, H, 14, H, H, H, 16, 18, 19, 21, 14, H, H, H])


def tiny_prior(seed=0) -> prior.PriorModel:
    rng = np.random.default_rng(seed)
    d0 = observation.obs_dim(0)
    return prior.PriorModel([(rng.normal(0, 0.05, (d0, 8)).astype(np.float32), np.zeros(8, np.float32)),
                             (rng.normal(0, 0.05, (8, tokens.N_ACTIONS)).astype(np.float32),
                              np.zeros(tokens.N_ACTIONS, np.float32))], {})


def clip_of(seq, key="C", scale="major", bars=2, chords=("C", "G")) -> Clip:
    from engine.music import theory

    notes = tokens_to_notes(seq, theory.parse_key(key), "lead")
    return Clip(key=key, scale=scale, bars=bars, chords=list(chords), tracks=[Track("lead", 0, notes)])


# ------------------------------------------------------------ evaluate_sequences

def test_evaluate_sequences_has_every_metric():
    other = MEL.copy()
    other[0] = 26
    r = ev.evaluate_sequences([MEL, other])
    direct = metrics.rl_tuner_stats([MEL, other])
    for k in metrics.STEP_METRICS + metrics.COMPOSITION_METRICS + ("leaps_resolved", "autocorr_1", "n", "steps"):
        assert r[k] == pytest.approx(direct[k], nan_ok=True)
    assert r["starts_with_tonic"] == 0.5 and r["distinct_clips"] == 1.0 and r["n"] == 2
    assert "overlap_pitch_class" not in r and "prior_log_likelihood" not in r


def test_overlap_with_itself_is_one():
    r = ev.evaluate_sequences([MEL], reference=[MEL])
    assert r["overlap_pitch_class"] == r["overlap_interval"] == r["overlap_length"] == pytest.approx(1.0)


def test_prior_log_likelihood_is_teacher_forced():
    model = tiny_prior()
    r = ev.evaluate_sequences([MEL], prior=model, chords="C G")
    ctx = observation.MelodyContext.from_music(key=0, scale="major", bars=2, time_signature=(4, 4),
                                               chords=["C", "G"], role="lead", style=np.zeros((0,), np.float32))
    batch = observation.MelodyBatch.create([ctx])
    total = 0.0
    for tok in MEL:
        total += float(model.log_prob(observation.observe(batch), np.array([tok]))[0])
        batch.append(np.array([tok]))
    assert r["prior_log_likelihood"] == pytest.approx(total / len(MEL), rel=1e-5)


def test_named_reference_and_prior():
    # ("heldout" loads the whole held-out corpus: corpus_reference is tested on a tiny corpus below)
    with pytest.raises(EngineError, match="reference 'corpus' is not known"):
        ev.evaluate_sequences([MEL], reference="corpus")
    with pytest.raises(EngineError, match="prior 'mine' is not known"):
        ev.evaluate_sequences([MEL], prior="mine")
    r = ev.evaluate_sequences([MEL], prior="shipped")
    assert r["prior_log_likelihood"] < 0


@pytest.mark.parametrize("kwargs, match", [
    ({"chords": [["C"], ["G"], ["F"]]}, "3 chord progressions for 2 melodies"),
    ({"time_signature": "5/4"}, "not supported"),
    ({"scale": "bebop"}, "not known"),
])
def test_evaluate_sequences_bad_arguments(kwargs, match):
    with pytest.raises(EngineError, match=match):
        ev.evaluate_sequences([MEL, MEL], **kwargs)


def test_partial_bars_are_refused_for_the_prior():
    with pytest.raises(EngineError, match="not a whole number"):
        ev.evaluate_sequences([MEL[:30]], prior=tiny_prior())


# ------------------------------------------------------------------- clips

@pytest.mark.parametrize("key", ["C", "G", "Eb", "B"])
def test_clip_tokens_round_trip(key):
    assert ev.clip_tokens(clip_of(MEL, key=key)).tolist() == MEL.tolist()


def test_a_generated_clip_without_notes_is_all_rests():
    from engine.base.errors import ClipError

    assert ev.generated_tokens(clip_of(MEL)).tolist() == MEL.tolist()
    silent = Clip(key="G", scale="major", bars=2, chords=["G", "D"], tracks=[Track("lead", 0, [])])
    assert ev.generated_tokens(silent).tolist() == [0] * 32
    with pytest.raises(ClipError, match="has no notes"):  # what clip_tokens says of the same clip
        ev.clip_tokens(silent)
    waltz = Clip(key="C", scale="major", bars=3, time_signature=(3, 4), chords=["C"] * 3, tracks=[])
    assert ev.generated_tokens(waltz).tolist() == [0] * 36


@pytest.mark.parametrize("fmt", ["json", "mid"])
def test_clip_set_reads_files(tmp_path, fmt):
    for i, key in enumerate(["C", "A"]):
        clip = clip_of(MEL, key=key)
        path = tmp_path / f"clip-{i:04d}.{fmt}"
        clip.write_json(path) if fmt == "json" else write_midi(clip, path)
    s = ev.clip_set(tmp_path)
    assert len(s.sequences) == 2 and s.names == [f"clip-0000.{fmt}", f"clip-0001.{fmt}"]
    for seq in s.sequences:
        assert seq.tolist() == MEL.tolist()
    assert [c.key for c in s.contexts] == [0, 9]


def test_empty_folder(tmp_path):
    with pytest.raises(ClipError, match="holds no clips"):
        ev.clip_set(tmp_path)


def test_chords_are_not_a_melody(tmp_path):
    notes = [Note(p, float(b), 1.0) for b in range(8) for p in (60, 64, 67)]
    write_midi(Clip(bars=2, tracks=[Track("lead", 0, notes)]), tmp_path / "chords.mid")
    with pytest.raises(ClipError, match="not a melody"):
        ev.clip_set(tmp_path)


def test_unreadable_midi(tmp_path):
    (tmp_path / "broken.mid").write_bytes(b"MThd garbage")
    with pytest.raises(ClipError, match="not a readable MIDI file"):
        ev.clip_set(tmp_path)


# ------------------------------------------------------------------- sets

def test_random_set_is_seeded():
    a = ev.random_set(n=4, bars=2, seed=5)
    b = ev.random_set(n=4, bars=2, seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(a.sequences, b.sequences))
    assert all(len(x) == 32 and x.max() < tokens.N_ACTIONS for x in a.sequences)
    seqs = np.concatenate(ev.random_set(n=300, bars=2, seed=1).sequences)
    # uniform over 38 tokens: about 1/38 rests
    assert abs((seqs == 0).mean() - 1 / 38) < 0.01


def test_corpus_set_and_reference(cache):
    s = ev.corpus_set(bars=2, scale="major", time_signature=(4, 4), n=5, split="train", sources=["essen"],
                      limit=40, progress=False)
    assert 1 <= len(s.sequences) <= 5
    assert all(len(x) == 32 for x in s.sequences) and all(len(c.chords) == 2 for c in s.contexts)
    hist, n = ev.corpus_reference((4, 4), "major", split="train", sources=["essen"], limit=40, progress=False)
    assert n >= len(s.sequences) and hist.pitch_class.sum() > 0
    r = ev.evaluate_set(s, hist, None)
    assert 0 < r["overlap_pitch_class"] <= 1


def test_corpus_set_empty_selection(cache):
    with pytest.raises(EngineError, match="has no 6/8 dorian tunes"):
        ev.corpus_set(bars=2, scale="dorian", time_signature=(6, 8), n=5, split="test", sources=["essen"],
                      limit=5, progress=False)


# ------------------------------------------------------------------ output

@pytest.mark.parametrize("value, kind, text", [
    (0.633, "%", "63.3%"), (0.00007, "%", "0.007%"), (0.0, "%", "0%"), (-0.16, "r", "-.16"),
    (0.55, "r", ".55"), (0.9041, "f", "0.904"), (600, "d", "600"), (math.nan, "%", "n/a"), (None, "f", "n/a"),
])
def test_format_value(value, kind, text):
    assert ev.format_value(value, kind) == text


def test_markdown_table():
    r = ev.evaluate_sequences([MEL], reference=[MEL])
    table = ev.markdown_table({"ours": r})
    lines = table.splitlines()
    assert lines[0] == "| metric | " + " | ".join(ev.PUBLISHED_COLUMNS) + " | ours |"
    assert "| notes excessively repeated | 63.3% | 0% | 0.02% | 0.03% |" in table
    assert "| overlap with corpus: pitch class | — | — | — | — | 1.000 |" in table
    assert all(line.count("|") == 7 for line in lines)


def test_write_results(tmp_path):
    r = ev.evaluate_sequences([MEL])
    j, md = ev.write_results(tmp_path / "out", {"ours": r}, {"note": "test"})
    data = json.loads(j.read_text())
    assert data["results"]["ours"]["n"] == 1 and data["results"]["ours"]["leaps_resolved"] is None
    assert data["published"]["columns"] == list(ev.PUBLISHED_COLUMNS)
    assert "| metric |" in md.read_text()


# --------------------------------------------------------------------- CLI

def test_cli_folder(tmp_path, qriff):
    clips = tmp_path / "clips"
    for i in range(3):
        clip_of(np.roll(MEL, 2 * i) if i else MEL).write_json(clips / f"clip-{i:04d}.json")
    out = tmp_path / "report"
    r = qriff("evaluate", str(clips), "--random", "--n", "20", "--no-prior", "--no-reference", "--out", str(out), "-q")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].endswith("| clips | uniform random (20) |")
    data = json.loads((out / "evaluation.json").read_text())
    assert set(data["results"]) == {"clips", "uniform random (20)"}
    assert data["results"]["clips"]["n"] == 3
    assert (out / "evaluation.md").is_file()


def test_cli_corpus_rows(cache, qriff, tmp_path):
    env = {**os.environ, "QRIFF_CACHE_DIR": str(cache)}
    r = qriff("evaluate", "--corpus", "--sources", "essen", "--limit", "40", "--split", "train", "--n", "5",
              "--no-prior", "-q", env=env)
    assert r.returncode == 0, r.stderr
    header = r.stdout.splitlines()[0]
    assert "corpus (train" in header and "uniform random (5)" in header
    assert "overlap with corpus: interval" in r.stdout


def test_cli_two_sample_and_histograms(cache, qriff, tmp_path):
    env = {**os.environ, "QRIFF_CACHE_DIR": str(cache)}
    out = tmp_path / "report"
    r = qriff("evaluate", "--corpus", "--sources", "essen", "--limit", "150", "--split", "train", "--n", "40",
              "--bars", "1", "--no-prior", "--out", str(out), "-q", env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    data = json.loads((out / "evaluation.json").read_text())
    rows = data["results"]
    random_row = next(v for k, v in rows.items() if k.startswith("uniform random"))
    assert random_row["two_sample_auc"] > 0.9        # random notes are easy to tell from tunes
    assert "told apart from the corpus" in r.stdout and "gives it away" in r.stdout
    assert "bars repeating an earlier bar's rhythm" in r.stdout
    assert (out / "histograms.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_prior_set_samples_the_prior_alone():
    p = tiny_prior()
    a = ev.prior_set(p, n=6, bars=2, seed=3)
    b = ev.prior_set(p, n=6, bars=2, seed=3)
    assert [x.tolist() for x in a.sequences] == [x.tolist() for x in b.sequences]
    assert all(len(x) == 32 for x in a.sequences) and a.label == "corpus prior alone (6)"
    greedy = ev.prior_set(p, n=2, bars=1, temperature=0)
    assert greedy.sequences[0].tolist() == greedy.sequences[1].tolist()


def test_histograms_png(tmp_path):
    a = ev.EvalSet("a", [MEL, MEL], [ev.SequenceContext()] * 2)
    b = ev.EvalSet("b", [np.roll(MEL, 3)], [ev.SequenceContext()])
    path = ev.write_histograms_png(tmp_path / "h.png", [a], b)
    assert path.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("make, match", [
    (lambda d: None, "holds no clips"),
    (lambda d: (d / "x.mid").write_bytes(b"junk"), "not a readable MIDI"),
    (lambda d: write_midi(Clip(bars=1, tracks=[Track("lead", 0, [Note(p, 0.0, 1.0) for p in (60, 64, 67)] +
                                                     [Note(p, 1.0, 1.0) for p in (62, 65, 69)])]), d / "c.mid"),
     "not a melody"),
])
def test_cli_bad_input_exits_2(tmp_path, qriff, make, match):
    make(tmp_path)
    r = qriff("evaluate", str(tmp_path), "--no-prior", "--no-reference")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and match in r.stderr and "Traceback" not in r.stderr


def test_cli_needs_something(qriff):
    r = qriff("evaluate")
    assert r.returncode == 2 and "nothing to evaluate" in r.stderr


# ------------------------------------------------------------ per-scale rows

def test_scale_rows_group_by_scale():
    from engine.evaluation import scales

    minor = MEL.copy()
    minor[2] = 17                                 # an Eb
    s = ev.EvalSet("x", [MEL, minor, MEL], [ev.SequenceContext("major"), ev.SequenceContext("natural_minor"),
                                            ev.SequenceContext("blues")])
    shares = {"major": scales.CorpusShare("major", 0.05, 10, "ten tunes")}
    rows = ev.scale_rows(s, shares)
    assert [(r["scale"], r["n"]) for r in rows] == [("major", 1), ("natural_minor", 1)]   # blues has no degree
    major = rows[0]
    assert major["share"] == scales.degree_share([MEL], 11) and major["ratio"] == pytest.approx(major["share"] / 0.05)
    assert math.isnan(rows[1]["corpus_share"]) and rows[1]["basis"] == ""
    table = ev.scale_table(rows)
    assert "| x | major | 7th (pc 11) | 1 |" in table and "ten tunes" in table and "| n/a |" in table


def test_cli_families_match_the_module():
    from engine.cli import evaluate as cli
    from engine.evaluation import scales

    assert cli.FAMILIES == scales.FAMILIES
    assert cli.families_type("all") == scales.FAMILIES
    assert cli.families_type("ionian, Dorian,major") == ("major", "dorian")


def test_cli_folder_has_shape_and_scale_rows(tmp_path, qriff):
    clips = tmp_path / "clips"
    clip_of(MEL).write_json(clips / "a.json")
    clip_of(MEL, key="D", scale="dorian", chords=("Dm", "G")).write_json(clips / "b.json")
    out = tmp_path / "report"
    r = qriff("evaluate", str(clips), "--no-prior", "--no-reference", "--out", str(out), "-q")
    assert r.returncode == 0, r.stderr
    assert "| 16th notes |" in r.stdout and "| chord tones on strong beats |" in r.stdout
    assert "| clips | major | 7th (pc 11) | 1 |" in r.stdout and "| clips | dorian | 6th (natural) (pc 9) | 1 |" in r.stdout
    data = json.loads((out / "evaluation.json").read_text())
    assert [row["scale"] for row in data["per_scale"]] == ["major", "dorian"]
    assert "Characteristic degree per scale family" in (out / "evaluation.md").read_text()


@pytest.mark.parametrize("args, match", [
    (["--prior-sample", "--scales", "blues"], "is not evaluated per scale"),
    (["--prior-sample", "--scales", ","], "names no family"),
    (["--scales", "all", "--random"], "add --prior-sample"),
])
def test_cli_bad_scales_exit_2(qriff, args, match):
    r = qriff("evaluate", *args, "--no-prior", "--no-reference")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and match in r.stderr and "Traceback" not in r.stderr


def test_cli_prior_in_each_family(qriff):
    r = qriff("evaluate", "--prior-sample", "--scales", "lydian,harmonic", "--n", "4", "--bars", "1", "--no-prior",
              "--no-reference", "-q")
    assert r.returncode == 0, r.stderr
    assert "| corpus prior alone (4), lydian | lydian | #4 (pc 6) | 4 |" in r.stdout
    assert "| corpus prior alone (4), harmonic_minor | harmonic_minor | 7th (raised) (pc 11) | 4 |" in r.stdout
