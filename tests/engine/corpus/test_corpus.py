"""Corpus extraction: hand-written ABC tunes through the real music21 parser, a tiny real
subset of every source, the cache, the split and the chord estimate."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest

from engine.base.errors import CorpusError
from engine.corpus import melodies as corpus
from engine.music import theory, tokens

R, H = 0, 1


def extract(abc: str, source: str = "essen"):
    job = corpus._Job(source=source, key="test.abc#1", title="test", text=abc, path="test.abc")
    return corpus._extract(job)


# ------------------------------------------------------------ hand-made tunes

def test_pickup_dropped_accidentals_carried_transposed_and_chords():
    # Pickup G is dropped; ^f then f in the same bar are both F# (ABC carries accidentals, music21
    # does not); ABC lower case c is C5, moved down an octave so the median sits near MIDI 65.
    abc = "X:1\nT:test\nM:4/4\nL:1/8\nK:C\nG | c2 e2 g2 e2 | ^f2 f2 g4 | c8 |]\n"
    status, mel, _ = extract(abc)
    assert status == "ok"
    C4, E4, FS4, G4 = 14, 18, 20, 21
    bar1 = [C4, H, H, H, E4, H, H, H, G4, H, H, H, E4, H, H, H]
    bar2 = [FS4, H, H, H, FS4, H, H, H, G4] + [H] * 7
    bar3 = [C4] + [H] * 15
    assert mel["tokens"].tolist() == bar1 + bar2 + bar3
    assert mel["time_signature"] == (4, 4) and mel["scale"] == "major" and mel["key"] == "C"
    assert mel["transpose"] == -12
    # bar 1 outlines C; bar 2 is G with F# passing (G is the root: +0.5 a step); bar 3 is a long C
    assert mel["chords"] == ["C", "G", "C"]


def test_declared_key_and_metre_transposed_to_c():
    # D major in 3/4 (O'Neill declares the mode): d f a | d' a f | d3 -> C E G | C' G E | C
    abc = "X:1\nT:test\nM:3/4\nL:1/4\nK:D\nd f a | d' a f | d3 |]\n"
    status, mel, _ = extract(abc, "oneill")
    assert status == "ok"
    C4, E4, G4, C5 = 14, 18, 21, 26
    q = [H, H, H]
    assert mel["tokens"].tolist() == [C4, *q, E4, *q, G4, *q, C5, *q, G4, *q, E4, *q, C4] + [H] * 11
    assert mel["time_signature"] == (3, 4) and mel["key"] == "D" and mel["scale"] == "major"


def test_declared_mode_is_kept():
    abc = "X:1\nT:test\nM:2/4\nL:1/8\nK:Ador\nA2 B2 | c2 d2 | e2 d2 | c2 A2 |]\n"
    status, mel, _ = extract(abc, "aird")
    assert status == "ok" and mel["scale"] == "dorian" and mel["key"] == "A"


def test_essen_mode_from_the_third():
    # Essen's K: gives the tonic; a minor third above it makes the tune minor
    abc = "X:1\nT:test\nM:2/4\nL:1/8\nK:G\nG2 _B2 | A2 G2 | _B2 c2 | d4 |]\n"
    status, mel, _ = extract(abc, "essen")
    assert status == "ok" and mel["scale"] == "natural_minor" and mel["key"] == "G"
    assert mel["chords"][0] == "Cm"  # G minor moved to C minor: G Bb A G -> C Eb D C


def test_renotated_metre():
    # 3/2 is read as 3/4 at half the note values: a half note becomes a quarter (4 steps)
    abc = "X:1\nT:test\nM:3/2\nL:1/4\nK:C\nc2 d2 e2 | f2 e2 d2 | c6 |]\n"
    status, mel, notes = extract(abc)
    assert status == "ok" and mel["time_signature"] == (3, 4)
    assert mel["tokens"][:8].tolist() == [14, H, H, H, 16, H, H, H]
    assert "renotated 3/2 as 3/4" in notes


@pytest.mark.parametrize("abc, reason", [
    ("X:1\nT:t\nM:9/8\nL:1/8\nK:C\nc3 d3 e3 | f3 e3 d3 | c9 |]\n", "unsupported_metre"),
    ("X:1\nT:t\nM:none\nL:1/4\nK:C\nc d e f g a b c' |]\n", "unsupported_metre"),
    ("X:1\nT:t\nM:4/4\nL:1/4\nK:C\n[CEG]2 [CEG]2 | [DFA]2 [DFA]2 | [CEG]4 |]\n", "polyphonic"),
    ("X:1\nT:t\nM:4/4\nL:1/4\nK:C\nc d e f | g4 |]\n", "too_short"),
    ("X:1\nT:t\nM:2/4\nL:1/8\nK:C\n(3cde (3fga | (3bag (3fed | (3cde (3fga | c4 |]\n", "off_grid"),
    ("X:1\nT:t\nM:4/4\nL:1/4\nK:C\nc d e f | g2 | a b c' d' | e'2 | d' c' b a | g2 | c4 |]\n",
     "metre_change"),
])
def test_skip_reasons(abc, reason):
    status, payload, _ = extract(abc)
    assert status == "skip" and payload[0] == reason, payload
    assert reason in corpus.SKIP_REASONS


def test_unreadable_file_is_a_parse_error():
    job = corpus._Job(source="bach", key="bach/none.mxl", title="none", text=None, path="/nonexistent/none.mxl")
    status, payload, _ = corpus._extract(job)
    assert status == "skip" and payload[0] == "parse_error"


# ------------------------------------------------------------------ chords

def test_diatonic_triads():
    assert [t[2] for t in corpus.diatonic_triads("major")] == ["C", "Dm", "Em", "F", "G", "Am", "Bdim"]
    assert [t[2] for t in corpus.diatonic_triads("natural_minor")] == ["Cm", "Ddim", "Eb", "Fm", "Gm", "Ab", "Bb"]
    for scale in ("major", "natural_minor", "dorian", "mixolydian"):
        for _, _, symbol in corpus.diatonic_triads(scale):
            theory.parse_chord(symbol)


@pytest.mark.parametrize("bar, scale, expected", [
    ([14, H, H, H, 18, H, H, H, 21, H, H, H, 18, H, H, H], "major", "C"),   # C E G E
    ([21, H, H, H, 25, H, H, H, 16 + 12, H, H, H, 25, H, H, H], "major", "G"),  # G B D B
    ([23, H, H, H, 26, H, H, H, 30, H, H, H, 26, H, H, H], "major", "Am"),  # A C E C
    ([19, H, H, H, 23, H, H, H, 26, H, H, H, 23, H, H, H], "major", "F"),   # F A C A
    ([14, H, H, H, 17, H, H, H, 21, H, H, H, 17, H, H, H], "natural_minor", "Cm"),
])
def test_estimate_chords(bar, scale, expected):
    # the empty second bar keeps the chord of the first
    assert corpus.estimate_chords(np.array(bar + [R] * 16), scale, (4, 4)) == [expected, expected]


# ------------------------------------------------------------------- split

def test_split_is_fixed_and_balanced():
    assert corpus.split_of("essen", "essenFolksong/altdeu10.abc#1") == corpus.split_of("essen",
                                                                                       "essenFolksong/altdeu10.abc#1")
    counts = Counter(corpus.split_of("essen", f"file.abc#{i}") for i in range(3000))
    assert 0.77 < counts["train"] / 3000 < 0.83
    assert 0.08 < counts["valid"] / 3000 < 0.12 and 0.08 < counts["test"] / 3000 < 0.12


# --------------------------------------------------------- the real corpus

LIMIT = 6


@pytest.mark.parametrize("source", list(corpus.SOURCES))
def test_real_sources(cache, source):
    mels, report = corpus.load_corpus_with_report("all", [source], limit=LIMIT, progress=False)
    rep = report.sources[source]
    assert rep.tunes == LIMIT and rep.kept == len(mels) >= 1
    assert rep.kept + sum(rep.skipped.values()) == rep.tunes
    assert sum(rep.splits.values()) == rep.kept
    for m in mels:
        steps_per_bar = theory.steps_per_bar(m.time_signature)
        assert m.tokens.dtype == np.int64 and len(m.tokens) % steps_per_bar == 0 and m.bars >= 2
        assert 0 <= m.tokens.min() and m.tokens.max() < tokens.N_ACTIONS
        assert (m.tokens >= tokens.FIRST_PITCH).sum() >= 6
        assert len(m.chords) == m.bars
        theory.parse_progression(m.chords)
        assert m.split in corpus.SPLITS and m.source == source and theory.parse_scale(m.scale) == m.scale


def test_cache_is_used(cache, monkeypatch):
    first = corpus.load_corpus("all", ["essen"], limit=LIMIT, progress=False)
    assert corpus._cache_path("essen", LIMIT).is_file()

    def no_extraction(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(corpus, "_run_jobs", no_extraction)
    again = corpus.load_corpus("all", ["essen"], limit=LIMIT, progress=False)
    assert [m.name for m in again] == [m.name for m in first]
    assert all(np.array_equal(a.tokens, b.tokens) for a, b in zip(again, first))
    assert [m.chords for m in again] == [m.chords for m in first]


def test_corrupt_cache_is_rebuilt(cache):
    path = corpus._cache_path("aird", 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not an npz")
    mels = corpus.load_corpus("all", ["aird"], limit=2, progress=False)
    assert mels and path.stat().st_size > 100


def test_splits_partition(cache):
    every = corpus.load_corpus("all", ["essen"], limit=LIMIT, progress=False)
    parts = [corpus.load_corpus(s, ["essen"], limit=LIMIT, progress=False) for s in corpus.SPLITS]
    assert sorted(m.name for p in parts for m in p) == sorted(m.name for m in every)


def test_segment():
    m = corpus.CorpusMelody(tokens=np.arange(48) % 38, time_signature=(3, 4), scale="major", chords=["C", "F", "G", "C"],
                            source="essen", name="x", split="train")
    seg = m.segment(1, 2)
    assert seg.bars == 2 and seg.chords == ["F", "G"] and seg.tokens.tolist() == (np.arange(12, 36) % 38).tolist()


@pytest.mark.parametrize("kwargs, match", [
    ({"split": "dev"}, "split 'dev'"),
    ({"sources": ["nottingham"]}, "'nottingham' is not known"),
    ({"limit": 0}, "limit 0"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(CorpusError, match=match):
        corpus.load_corpus(**kwargs)


@pytest.mark.slow  # extracts a corpus in subprocesses
def test_cli_extract_and_stats(cache, qriff):
    env = {**os.environ, "QRIFF_CACHE_DIR": str(cache)}
    r = qriff("corpus", "extract", "--sources", "essen", "--limit", str(LIMIT), "-q", env=env)
    assert r.returncode == 0, r.stderr
    assert "| essen |" in r.stdout and "tunes kept" in r.stdout
    r = qriff("corpus", "stats", "--sources", "essen", "--limit", str(LIMIT), "-q", env=env)
    assert r.returncode == 0 and "| all |" in r.stdout and "metres:" in r.stdout
    r = qriff("corpus", "extract", "--sources", "nowhere", env=env)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "nowhere" in r.stderr


def test_duplicates_keep_the_first():
    def mel(name, split, first=14):
        return corpus.CorpusMelody(tokens=np.array([first] + [1] * 31), time_signature=(4, 4), scale="major",
                                   chords=["C", "C"], source="essen", name=name, split=split)

    rep = corpus.SourceReport(source="essen", tunes=3, kept=3, splits={"train": 1, "valid": 1, "test": 1})
    kept = corpus._drop_duplicates([mel("a", "train"), mel("b", "test"), mel("c", "valid", first=16)], rep)
    assert [m.name for m in kept] == ["a", "c"]
    assert rep.kept == 2 and rep.skipped == {"duplicate": 1} and rep.splits == {"train": 1, "valid": 1, "test": 0}
    assert rep.skipped_tunes == [("b", "duplicate", "same tokens as a")]
