"""``qriff evaluate``: RL Tuner's metrics, corpus likeness, prior likelihood and diversity."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from engine.base.options import bounded_int
from engine.cli.options import scale_type, time_signature_type
from engine.music import limits
from engine.music.limits import MAX_BARS

#: The prior ``--prior-sample`` samples: the KL reference of the shipped model.
RECURRENT_PRIOR = Path(__file__).resolve().parent.parent / "models" / "prior-essen.onnx"

#: Scale families of the per-scale table (engine.evaluation.scales.FAMILIES, kept here so --help imports nothing heavy).
FAMILIES = ("major", "natural_minor", "harmonic_minor", "dorian", "lydian")


def families_type(text: str) -> tuple[str, ...]:
    """``all`` or a comma list of scale families (aliases accepted) for ``--scales``."""
    from engine.base.errors import TheoryError
    from engine.music import theory

    if text.strip().lower() == "all":
        return FAMILIES
    out = []
    for item in (t for t in text.split(",") if t.strip()):
        try:
            name = theory.parse_scale(item)
        except TheoryError:
            name = None
        if name not in FAMILIES:
            raise argparse.ArgumentTypeError(f"scale family {item.strip()!r} is not evaluated per scale: give 'all' "
                                             f"or a comma list of {', '.join(FAMILIES)}")
        out.append(name)
    if not out:
        raise argparse.ArgumentTypeError(f"--scales {text!r} names no family: give 'all' or a comma list of "
                                         f"{', '.join(FAMILIES)}")
    return tuple(dict.fromkeys(out))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate", help="score clips (or the corpus, or a random policy) with RL Tuner's metrics and more",
        description="Score melodies with RL Tuner's composition statistics (after transposing to C), their "
                    "histogram overlap with held-out corpus tunes of the same metre and scale (pitch class, "
                    "interval, note length), the corpus prior's log-likelihood per step, diversity, the shape measures "
                    "(notes a bar, range, rests, long notes, 16ths, steps, leading tone, first note, chord tones on "
                    "strong beats; see docs/evaluation.md) and, per scale family, the share of its characteristic "
                    "degree against the corpus's. "
                    "Prints a markdown table with RL Tuner's published columns beside ours.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples: qriff evaluate out/                      (a folder of clip .json/.mid files)\n"
               "          qriff evaluate --corpus                   (held-out corpus and random rows: 2 bars, C major, 4/4)\n"
               "          qriff evaluate out/ --corpus --out report/ (all three, written as JSON and markdown)\n"
               "          qriff evaluate --prior-sample --scales all --bars 8 (the prior alone in five scale families)")
    p.add_argument("folders", nargs="*", metavar="DIR", help="folders of clips (.json, .mid) to score, one row each")
    p.add_argument("--corpus", action="store_true",
                   help="add a row of real openings from the held-out corpus, and a uniform-random row")
    p.add_argument("--random", action="store_true", help="add a uniform-random policy row")
    p.add_argument("--prior-sample", action="store_true",
                   help="add a row sampled from the corpus prior alone, no RL (--n melodies of --bars bars, "
                        "--scale, --time-signature): the baseline a trained model must beat")
    g = p.add_argument_group("corpus and random rows")
    g.add_argument("--bars", type=bounded_int(1, MAX_BARS), default=2, help="bars per melody (default: 2)")
    g.add_argument("--scale", type=scale_type, default="major", help="scale of the corpus tunes (default: major)")
    g.add_argument("--time-signature", type=time_signature_type, default="4/4",
                   help="metre of the corpus tunes: 4/4, 3/4, 2/4, 6/8 (default: 4/4)")
    g.add_argument("--n", type=bounded_int(1, 100_000), default=600, help="melodies per row (default: 600)")
    g.add_argument("--split", choices=("heldout", "valid", "test", "train"), default="heldout",
                   help="corpus split the corpus row comes from (default: heldout = valid + test, the tunes the "
                        "prior never trained on; the overlap reference is always the whole heldout tunes)")
    g.add_argument("--sources", default=None, metavar="NAMES",
                   help="corpus sources for the corpus row and the reference: essen, oneill, ryans, aird, bach "
                        "(default: all)")
    g.add_argument("--limit", type=bounded_int(1, 100_000), default=None, metavar="N",
                   help="use only the first N tunes of each corpus source (quick looks; default: all)")
    g.add_argument("--seed", type=bounded_int(0, limits.MAX_SEED), default=0, help="sampling seed (default: 0)")
    g.add_argument("--scales", type=families_type, default=(), metavar="LIST",
                   help="with --prior-sample, also sample the prior in each of these scale families (comma list of "
                        f"{', '.join(FAMILIES)}, or 'all') for the per-scale table: the share of each family's "
                        "characteristic degree (7th, b6, raised 7th, natural 6th, #4) against the corpus's")
    m = p.add_argument_group("models and output")
    m.add_argument("--prior", default=None, metavar="PATH.npz",
                   help="feed-forward prior of the log-likelihood row (default: the shipped one)")
    m.add_argument("--prior-model", default=None, metavar="PATH.onnx",
                   help="recurrent prior that --prior-sample samples (default: engine/models/prior-essen.onnx, "
                        "the KL reference of the shipped model)")
    m.add_argument("--no-prior", action="store_true", help="leave out the prior log-likelihood")
    m.add_argument("--no-reference", action="store_true", help="leave out the corpus overlap and the per-scale table's corpus shares (no corpus needed)")
    m.add_argument("--no-two-sample", action="store_true",
                   help="leave out the classifier two-sample test (by default, with --corpus, every other row is "
                        "told apart from held-out corpus openings of its length, and two corpus halves calibrate it)")
    m.add_argument("--out", default=None, metavar="DIR",
                   help="also write DIR/evaluation.json, DIR/evaluation.md and DIR/histograms.png (each row's "
                        "pitch-class, interval, note-length and notes-per-bar histograms beside the corpus's)")
    m.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.cli import UsageError
    from engine.corpus import check_sources
    from engine.evaluation import evaluate as ev
    from engine.music import theory

    if not args.folders and not args.corpus and not args.random and not args.prior_sample:
        raise UsageError("nothing to evaluate: give a folder of clips, --corpus, --random or --prior-sample "
                         "(see qriff evaluate --help)")
    if args.scales and not args.prior_sample:
        raise UsageError("--scales samples the prior in each family: add --prior-sample (a folder of clips is "
                         "grouped by its clips' scales without it)")
    sources = check_sources(args.sources) if args.sources else None
    ts = theory.parse_time_signature(args.time_signature)
    t0 = time.perf_counter()
    sets = [ev.clip_set(folder) for folder in args.folders]
    prior = None
    if not args.no_prior:
        from engine.corpus.prior import PriorModel

        prior = PriorModel.load(args.prior)
    # --prior-sample samples the recurrent prior the shipped model is tuned against
    sampled = args.prior_model or str(RECURRENT_PRIOR)
    if args.prior_sample:
        sets.append(recurrent_prior_set(sampled, args.n, args.bars, ts, args.scale, seed=args.seed))
    scale_sets = [recurrent_prior_set(sampled, args.n, args.bars, ts, fam, seed=args.seed) for fam in args.scales]
    for s in scale_sets:
        s.label = f"{s.label}, {s.contexts[0].scale}"
    corpus_row = None
    if args.corpus:
        corpus_row = ev.corpus_set(args.bars, args.scale, ts, args.n, args.split, sources, args.seed,
                                   limit=args.limit, progress=not args.quiet)
        sets.append(corpus_row)
    random_row = None
    if args.corpus or args.random:
        random_row = ev.random_set(args.n, args.bars, ts, args.scale, args.seed)
        sets.append(random_row)
    labels = [s.label for s in sets]
    if len(set(labels)) != len(labels):
        for i, s in enumerate(sets):
            s.label = f"{s.label} #{i + 1}"
    results = {}
    info: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    for s in sets:
        ref = None
        if not args.no_reference:
            ref, desc = ev.reference_for(s, "heldout", sources, args.limit, progress=not args.quiet)
            info[f"reference for {s.label}"] = desc
        results[s.label] = ev.evaluate_set(s, ref, None if args.no_prior else prior)
        info[s.label] = s.note
    references: dict[str, ev.EvalSet] = {}
    if corpus_row is not None:
        for s in sets:
            if s is corpus_row:
                continue
            openings = _openings_like(s, corpus_row, args, sources)
            if openings is None:
                info[f"two-sample test for {s.label}"] = "skipped: its melodies differ in length, metre or scale"
                continue
            references[s.label] = openings
            if min(len(s.sequences), len(openings.sequences)) < 4:
                info[f"two-sample test for {s.label}"] = "skipped: it needs at least 4 melodies on each side"
            elif not args.no_two_sample:
                test = ev.two_sample(s, openings, seed=args.seed)
                results[s.label]["two_sample_auc"] = test.auc
                info[f"two-sample test for {s.label}"] = (f"AUC {test.summary(5)} ({test.n_per_set} melodies a side, "
                                                          f"against {openings.label})")
        if not args.no_two_sample and len(corpus_row.sequences) >= 8:
            calib = ev.two_sample_calibration(corpus_row, seed=args.seed)
            results[corpus_row.label]["two_sample_auc"] = calib.auc
            info[f"two-sample calibration for {corpus_row.label}"] = \
                f"AUC {calib.auc:.3f} between two random halves ({calib.n_per_set} melodies a side)"
    per_scale: list[dict] = []
    scored = [s for s in sets if s is not corpus_row and s is not random_row] + scale_sets
    if scored:
        shares = None if args.no_reference else ev.corpus_degree_shares(sources=sources, limit=args.limit,
                                                                        progress=not args.quiet)
        for s in scored:
            per_scale.extend(ev.scale_rows(s, shares))
    if not args.no_prior:
        info["prior"] = str(args.prior or "shipped engine/models/prior.npz")
    info["seconds"] = round(time.perf_counter() - t0, 1)
    print(ev.markdown_table(results))
    for k, v in info.items():
        if k.startswith("two-sample"):
            print(f"\n{k}: {v}")
    if per_scale:
        print("\ncharacteristic degree per scale family (share of notes; corpus: held-out tunes of that scale, "
              "see docs/evaluation.md):\n")
        print(ev.scale_table(per_scale))
    if args.out:
        j, md = ev.write_results(args.out, results, info, per_scale)
        print(f"\nwrote {j} and {md}")
        others = [s for s in sets if s is not corpus_row and s.label in references]
        if corpus_row is not None and others:
            png = ev.write_histograms_png(Path(args.out) / "histograms.png", others, references[others[0].label])
            print(f"wrote {png}")
        elif corpus_row is not None:
            png = ev.write_histograms_png(Path(args.out) / "histograms.png", [], corpus_row)
            print(f"wrote {png}")
    return 0


def _openings_like(evset, corpus_row, args: argparse.Namespace, sources):
    """Held-out corpus openings of the same length, metre and scale family as ``evset``'s
    melodies (the corpus row itself when it fits), or None when ``evset`` mixes them."""
    from engine.evaluation import evaluate as ev
    from engine.music import theory

    frames = {(len(s), c.time_signature, ev.scale_family(c.scale)) for s, c in zip(evset.sequences, evset.contexts)}
    if len(frames) != 1:
        return None
    steps, ts, fam = frames.pop()
    spb = theory.steps_per_bar(ts)
    if steps % spb:
        return None
    first = corpus_row.contexts[0]
    if (len(corpus_row.sequences[0]), first.time_signature, ev.scale_family(first.scale)) == (steps, ts, fam):
        return corpus_row
    return ev.corpus_set(steps // spb, fam, ts, args.n, args.split, sources, args.seed, limit=args.limit,
                         progress=not args.quiet)


def recurrent_prior_set(path: str, n: int, bars: int, time_signature: tuple[int, int], scale: str, seed: int = 0,
                        temperature: float = 1.0):  # noqa: ANN201 - an engine.evaluation.evaluate.EvalSet
    """``n`` melodies sampled from a recurrent prior exported as a model (no RL), through
    :meth:`engine.runtime.Policy.generate`, which carries its state; variation ``i`` has seed ``seed + i``."""
    from engine.evaluation import evaluate as ev
    from engine.music import theory
    from engine.runtime import Policy

    policy = Policy.load(path)
    scale = theory.parse_scale(scale)
    clips = policy.generate_many(n, seed=seed, key="C", scale=scale, bars=bars, temperature=temperature,
                                 time_signature=time_signature)
    return ev.EvalSet(label=f"corpus prior alone ({n})", sequences=[ev.clip_tokens(c) for c in clips],
                      contexts=[ev.SequenceContext(scale, time_signature, 0, None)] * n,
                      note=f"{n} x {bars} bars sampled from the recurrent prior {policy.info.model_id} alone (no RL), "
                           f"temperature {temperature:g}")
