"""Quality of the shipped model, by RL Tuner's protocol and against real melodies.

Generates 1,000 clips per case through the runtime policy with fixed seeds (variation
``i`` has seed ``i``) at the default temperature, scores them with ``engine.evaluation.evaluate``
and prints the tables beside RL Tuner's published columns, a held-out corpus column and
a uniform-random column:

* C major, 2 bars, default progression: ``--style hook`` and the default style;
* C natural minor, 4 bars, progression ``i iv VII III``: both styles (reported only).

Checks issue 3's targets (hook: beats RL Tuner's Q column on every row; default: close
to the corpus; both: >= 99% distinct clips) and exits 1 when one is missed.

    .venv/bin/python bench/bench_quality.py [--model PATH] [--clips 1000] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.corpus.prior import PriorModel  # noqa: E402
from engine.evaluation import evaluate  # noqa: E402
from engine.runtime.policy import Policy  # noqa: E402

MINOR_CHORDS = "i iv VII III"

#: (case label, style, generate kwargs, evaluate kwargs)
CASES = [
    ("hook", "hook", {"key": "C", "scale": "major", "bars": 2}, {"scale": "major"}),
    ("default", None, {"key": "C", "scale": "major", "bars": 2}, {"scale": "major"}),
    ("hook, minor 4 bars", "hook", {"key": "C", "scale": "natural_minor", "bars": 4, "chords": MINOR_CHORDS},
     {"scale": "natural_minor", "chords": MINOR_CHORDS}),
    ("default, minor 4 bars", None, {"key": "C", "scale": "natural_minor", "bars": 4, "chords": MINOR_CHORDS},
     {"scale": "natural_minor", "chords": MINOR_CHORDS}),
]

#: (case, metric, comparison, bound, description)
TARGETS = [
    ("hook", "not_in_key", "<=", 0.005, "notes not in key <= 0.5% (RL Tuner Q 1.00%)"),
    ("hook", "repeated", "<=", 0.001, "notes excessively repeated <= 0.1%"),
    ("hook", "abs_autocorr_1", "<=", 0.15, "|autocorrelation lag 1| <= 0.15"),
    ("hook", "abs_autocorr_2", "<=", 0.15, "|autocorrelation lag 2| <= 0.15"),
    ("hook", "abs_autocorr_3", "<=", 0.15, "|autocorrelation lag 3| <= 0.15"),
    ("hook", "starts_with_tonic", ">=", 0.90, "starts with tonic >= 90% (28.8%)"),
    ("hook", "leaps_resolved", ">=", 0.95, "leaps resolved >= 95% (91.1%)"),
    ("hook", "unique_max", ">=", 0.65, "unique max note >= 65% (56.4%)"),
    ("hook", "unique_min", ">=", 0.60, "unique min note >= 60% (51.9%)"),
    ("hook", "in_motif", ">=", 0.76, "notes in motif >= 76% (75.7%)"),
    ("hook", "in_repeated_motif", ">=", 0.05, "notes in repeated motif >= 5% (0.11%)"),
    ("hook", "distinct_clips", ">=", 0.99, "distinct clips >= 99%"),
    ("default", "overlap_pitch_class", ">=", 0.85, "pitch-class overlap with the corpus >= 0.85"),
    ("default", "overlap_interval", ">=", 0.85, "interval overlap with the corpus >= 0.85"),
    ("default", "overlap_length", ">=", 0.80, "note-length overlap with the corpus >= 0.80"),
    ("default", "prior_ll_gap", "<=", 0.30, "|prior log-likelihood - corpus's| <= 0.3 nats"),
    ("default", "not_in_key", "<=", 0.005, "notes not in key <= 0.5%"),
    ("default", "repeated", "<=", 0.03, "notes excessively repeated <= 3%"),
    ("default", "leaps_resolved", ">=", 0.90, "leaps resolved >= 90%"),
    ("default", "distinct_clips", ">=", 0.99, "distinct clips >= 99%"),
]


def generate_tokens(policy: Policy, n: int, style: str | None, temperature: float, **kw) -> list:
    """``n`` clips with seeds 0..n-1 (in batches of 64), as lead-token sequences relative to the tonic."""
    seqs = []
    for start in range(0, n, 64):
        clips = policy.generate(count=min(64, n - start), seed=start, style=style, temperature=temperature, **kw)
        seqs.extend(evaluate.clip_tokens(c) for c in clips)
    return seqs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="ONNX model (default: the shipped model)")
    ap.add_argument("--clips", type=int, default=1000, help="clips per case (default: 1000)")
    ap.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default: 1.0)")
    ap.add_argument("--out", default=None, help="also write quality.json and quality.md here")
    args = ap.parse_args(argv)
    try:  # the prior's numpy matmuls: one BLAS thread (a second one only spin-waits on a busy box)
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
    except ImportError:
        pass

    t0 = time.perf_counter()
    policy = Policy.load(args.model)
    prior = PriorModel.load()
    ref_major, n_major = evaluate.corpus_reference((4, 4), "major", progress=False)
    ref_minor, n_minor = evaluate.corpus_reference((4, 4), "natural_minor", progress=False)
    corpus_major = evaluate.corpus_set(bars=2, scale="major", n=600, progress=False)
    corpus_minor = evaluate.corpus_set(bars=4, scale="natural_minor", n=300, progress=False)

    results: dict[str, dict[str, float]] = {}
    for label, style, gen_kw, ev_kw in CASES:
        seqs = generate_tokens(policy, args.clips, style, args.temperature, **gen_kw)
        ref = ref_minor if "minor" in label else ref_major
        results[label] = evaluate.evaluate_sequences(seqs, reference=ref, prior=prior, **ev_kw)
    corpus_major_r = evaluate.evaluate_set(corpus_major, ref_major, prior)
    corpus_minor_r = evaluate.evaluate_set(corpus_minor, ref_minor, prior)
    random_major_r = evaluate.evaluate_set(evaluate.random_set(600, bars=2), ref_major, prior)
    random_minor_r = evaluate.evaluate_set(evaluate.random_set(300, bars=4, scale="natural_minor"), ref_minor, prior)

    head = (f"model {policy.info.model_id}, {args.clips} clips per case (seeds 0..{args.clips - 1}), temperature "
            f"{args.temperature:g}; reference: whole test-split 4/4 tunes ({n_major} major, {n_minor} minor); "
            f"{time.perf_counter() - t0:.0f} s")
    table_major = evaluate.markdown_table({
        "qriff --style hook": results["hook"], "qriff default style": results["default"],
        corpus_major.label: corpus_major_r, "uniform random": random_major_r})
    table_minor = evaluate.markdown_table({
        "qriff --style hook": results["hook, minor 4 bars"],
        "qriff default style": results["default, minor 4 bars"],
        corpus_minor.label: corpus_minor_r, "uniform random": random_minor_r}, published=False)
    print(head + "\n\n## C major, 2 bars (RL Tuner's protocol)\n\n" + table_major)
    print(f"\n## C natural minor, 4 bars, chords {MINOR_CHORDS}\n\n" + table_minor)

    derived = {label: dict(r) for label, r in results.items()}
    for r in derived.values():
        for lag in (1, 2, 3):
            r[f"abs_autocorr_{lag}"] = abs(r.get(f"autocorr_{lag}", math.nan))
        r["prior_ll_gap"] = abs(r.get("prior_log_likelihood", math.nan) - corpus_major_r["prior_log_likelihood"])
    print("\n## Targets (issue 3)\n\n| target | measured | met |\n|---|---|---|")
    missed = []
    for case, key, op, bound, text in TARGETS:
        value = derived[case].get(key, math.nan)
        ok = (value <= bound) if op == "<=" else (value >= bound)
        ok = bool(ok) and not math.isnan(value)
        shown = f"{value:.4g}" if key.startswith(("abs_", "prior_", "overlap_")) else f"{value * 100:.3g}%"
        print(f"| {case}: {text} | {shown} | {'yes' if ok else 'NO'} |")
        if not ok:
            missed.append(f"{case}: {text} (measured {shown})")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        payload = {"info": head, "results": results, "corpus_major": corpus_major_r, "corpus_minor": corpus_minor_r,
                   "random_major": random_major_r, "random_minor": random_minor_r, "missed": missed}
        (out / "quality.json").write_text(json.dumps(payload, indent=1, default=float))
        (out / "quality.md").write_text(head + "\n\n" + table_major + "\n\n" + table_minor + "\n")
    if missed:
        print(f"\nmissed {len(missed)} of {len(TARGETS)} targets:\n  " + "\n  ".join(missed), file=sys.stderr)
        return 1
    print(f"\nall {len(TARGETS)} targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
