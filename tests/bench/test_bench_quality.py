"""bench/bench_quality.py: the model table's structure and values on a tiny corpus.

Two controls bound the table: real corpus tunes fed in as a "model" must read like the
calibration (AUC near 0.5, shape ratios near 1), and a model that plays only rests must
be told apart every time (AUC near 1) and miss the shape rows.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.evaluation import evaluate as ev
from engine.evaluation import scales, shape
from engine.music import tokens

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("bench_quality", ROOT / "bench" / "bench_quality.py")
bq = importlib.util.module_from_spec(spec)
sys.modules["bench_quality"] = bq  # dataclasses look their module up
spec.loader.exec_module(bq)

BARS = 2
SETTINGS = bq.Settings(clips=28, bars=BARS, distinct_of=28, families=("major", "natural_minor"))


@pytest.fixture(scope="module")
def tunes(cache):
    from engine.corpus import melodies as corpus

    every = corpus.load_corpus("all", sources=["essen"], limit=300, progress=False)
    return [m for m in every if m.time_signature == (4, 4) and m.bars >= BARS]


@pytest.fixture(scope="module")
def halves(tunes):
    """Openings of 4/4 major tunes, split in two disjoint halves by position; and the minor openings."""
    major = [m.segment(0, BARS) for m in tunes if m.scale == "major"]
    minor = [m.segment(0, BARS) for m in tunes if m.scale == "natural_minor"]
    assert len(major) >= 2 * SETTINGS.clips and len(minor) >= SETTINGS.clips
    return major[0::2], major[1::2], minor


@pytest.fixture(scope="module")
def reference(halves, tunes):
    ref_half, _, _ = halves
    openings = ev.EvalSet("essen", [m.tokens for m in ref_half],
                          [ev.SequenceContext("major", (4, 4), 0, list(m.chords)) for m in ref_half], note="test")
    return bq.reference_of(openings, scales.corpus_shares(tunes, None, SETTINGS.families))


def corpus_model(halves):
    _, model_half, minor = halves

    def gen(n, scale, chords, style, seed):
        pool = minor if scale == "natural_minor" else model_half
        return [m.tokens for m in pool[:n]]

    return gen


def rests(n, scale, chords, style, seed):
    return [np.full(BARS * 16, tokens.REST, np.int64) for _ in range(n)]


@pytest.fixture(scope="module")
def rows(halves, reference):
    specs = [bq.ModelSpec("prior-like corpus", ["corpus"]), bq.ModelSpec("rests", ["rests"])]
    got = bq.run_models(specs, SETTINGS, reference, generators={"corpus": corpus_model(halves), "rests": rests},
                        quiet=True)
    bq.table(got, reference, SETTINGS, baseline=None)
    return got


@pytest.mark.slow
def test_real_tunes_read_like_the_calibration(rows, reference):
    s = rows["prior-like corpus"]["summary"]
    assert abs(s["auc"]["mean"] - 0.5) < 0.2 and abs(reference.calibration_auc - 0.5) < 0.2
    for k in ("notes_per_bar", "pitch_range", "stepwise_share"):
        assert 0.75 <= s[f"{k}_ratio"]["mean"] <= 1.25, k
    # the minor tunes themselves set the natural-minor corpus share's scale: same tunes, ratio near 1
    assert 0.5 <= s["scale_natural_minor_ratio"]["mean"] <= 1.5
    marks = {t["key"]: t for t in rows["prior-like corpus"]["targets"]}
    assert marks["notes_per_bar_ratio"]["met"] and marks["stepwise_share_ratio"]["met"]


@pytest.mark.slow
def test_a_model_of_rests_is_told_apart_and_misses_the_shape(rows):
    s = rows["rests"]["summary"]
    assert s["auc"]["mean"] >= 0.95
    assert s["silent_share"]["mean"] == 1.0 and s["notes_per_bar"]["mean"] == 0
    marks = {t["key"]: t for t in rows["rests"]["targets"]}
    for k in shape.RATIO_KEYS:
        assert not marks[f"{k}_ratio"]["met"], k
    assert not marks["auc"]["met"] and not marks["hook_chord_tones"]["met"]
    # an empty melody has no leaps to resolve: NaN, and NaN never meets a target
    assert math.isnan(marks["hook_leaps_resolved"]["measured"]) and not marks["hook_leaps_resolved"]["met"]
    assert s["hook_distinct"]["mean"] == pytest.approx(1 / SETTINGS.clips)


@pytest.mark.slow
def test_table_structure(rows, reference):
    text = bq.markdown(rows, reference, SETTINGS, "# head")
    for section in ("realism and theory", "shape (model, ratio to Essen)", "styles", "scales"):
        assert f"### {section}" in text
    lines = text.splitlines()
    realism = lines[lines.index("### realism and theory") + 2:]
    header = realism[0]
    assert header.startswith("| model | seeds | AUC vs Essen | not in key |")
    body = realism[2:5]
    assert body[0].startswith("| prior-like corpus | 1 |") and body[1].startswith("| rests | 1 | 1.000")
    assert body[2].startswith("| Essen openings")
    assert all(line.count("|") == header.count("|") for line in realism[:5])
    met = [t["target"] for t in rows["rests"]["targets"] if t["met"]]
    # silence meets only the targets that ask for little (a silent bar nearly repeats a silent bar)
    assert set(met) == {"ambient: <= 3 notes a bar", "ambient: >= 30% rest steps", "ambient: not in key <= 0.5%",
                        "hook: near repeat >= 0.5"}, met
    assert f"| rests | {len(met)} of " in text and "✗" in text


def test_seeds_give_mean_and_spread():
    s = bq.summarise([{"a": 1.0, "b": math.nan}, {"a": 3.0, "b": 2.0}])
    assert s["a"] == {"mean": 2.0, "std": pytest.approx(math.sqrt(2)), "min": 1.0, "max": 3.0, "seeds": 2}
    assert s["b"]["mean"] == 2.0 and s["b"]["seeds"] == 1
    assert bq.cell(s, "a", "f", {"a": False}) == "2.000 ± 1.414 ✗"


def test_baseline_targets_compare_with_the_prior_row():
    base = {k: {"mean": v} for k, v in (("auc", 0.86), ("not_in_key", 0.01), ("leaps_resolved", 0.8),
                                        ("repeated", 0.02))}
    tg = [t for t in bq.targets(base, SETTINGS) if "baseline" in t.text]
    got = bq.check({"auc": {"mean": 0.9}, "not_in_key": {"mean": 0.0}, "leaps_resolved": {"mean": 0.9},
                    "repeated": {"mean": 0.05}}, tg)
    assert [g["met"] for g in got] == [False, True, True, False]


def test_tradeoff_png(tmp_path):
    pt = {k: {"mean": v, "std": 0.01} for k, v in (("auc", 0.8), ("not_in_key", 0.01), ("repeated", 0.0),
                                                   ("leaps_resolved", 0.9))}
    path = bq.write_tradeoff_png({0.1: pt, 1.0: pt}, tmp_path / "t.png", 0.5)
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(Exception, match="must be > 0"):
        bq.write_tradeoff_png({0.0: pt}, tmp_path / "u.png")


@pytest.mark.parametrize("argv, match", [
    (["--model", "x"], "is not NAME=PATH"),
    (["--model", "x=/no/such.onnx"], "does not exist"),
    (["--tradeoff", "0=engine/models/default.onnx"], "must be a number > 0"),
    (["--model", "a=engine/models/default.onnx", "--baseline", "b"], "is not a --model row"),
    (["--model", "a=engine/models/default.onnx", "--clips", "3"], "too few"),
])
def test_bad_arguments_exit_2(argv, match, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as e:
        bq.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert match in err


def test_a_bare_run_measures_the_shipped_model_and_prior():
    specs = bq.default_models()
    assert [s.name for s in specs] == ["shipped model", "prior alone"]
    assert Path(specs[0].paths[0]).is_file() and specs[1].paths == ["prior:shipped"]


@pytest.mark.slow
def test_json_round_trip_of_a_row(rows):
    text = json.dumps(bq.json_safe(rows["rests"]), allow_nan=False)   # strict JSON: NaN becomes null
    row = json.loads(text)
    assert row["summary"]["auc"]["seeds"] == 1 and row["summary"]["hook_leaps_resolved"]["mean"] is None
