"""``qriff corpus extract|stats|prior``: the melody corpus and the prior trained on it."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter

from engine.base.options import bounded_int
from engine.music import limits


def _sources(text: str) -> list[str]:
    from engine.corpus.melodies import SOURCES

    names = [s for s in text.replace(",", " ").split() if s]
    bad = [s for s in names if s not in SOURCES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"source {', '.join(bad) or repr(text)} is not known "
                                         f"(allowed: {', '.join(SOURCES)})")
    return names


def _add_selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sources", type=_sources, default=None, metavar="NAMES",
                   help="comma-separated sources: essen, oneill, ryans, aird, bach (default: all)")
    p.add_argument("--limit", type=bounded_int(1, 100_000), default=None, metavar="N",
                   help="take only the first N tunes of each source (default: all)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "corpus", help="extract the melody corpus from music21 and train the corpus prior",
        description="Monophonic melodies from music21's installed corpus (Essen folk songs, O'Neill, Ryan's "
                    "Mammoth, Aird's airs, Bach chorale soprano lines), transposed to C on the 16th-note grid "
                    "and split train/valid/test by tune. Extraction is cached in the user cache directory "
                    "(QRIFF_CACHE_DIR overrides it).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples: qriff corpus extract\n"
               "          qriff corpus stats --sources essen\n"
               "          qriff corpus prior --out engine/models/prior.npz")
    sub = p.add_subparsers(dest="corpus_command", metavar="ACTION", parser_class=type(p))
    ex = sub.add_parser("extract", help="extract (or load the cached) corpus and print what was kept and skipped",
                        description="Extract every source (2 processes; a few minutes the first time) and print "
                                    "tunes kept per split and skip reasons per source.")
    _add_selection(ex)
    ex.add_argument("--skipped", action="store_true", help="also list every skipped tune with its reason")
    ex.set_defaults(func=run_extract)
    st = sub.add_parser("stats", help="corpus statistics: metres, scales, lengths and token shares per split",
                        description="Describe the extracted corpus: tunes per split, metre and scale, bars and "
                                    "the share of rests, holds and onsets.")
    _add_selection(st)
    st.set_defaults(func=run_stats)
    pr = sub.add_parser("prior", help="train the corpus prior (needs torch)",
                        description="Train the next-token prior on the train split, early-stopped on valid, and "
                                    "report held-out (test) NLL per step and accuracy beside a unigram baseline, "
                                    "per corpus source and per scale family. --arch gru (default) trains the "
                                    "recurrent prior that KL training starts from (.pt + .json); --arch mlp the "
                                    "feed-forward one of the reward's prior term (.npz + .json).")
    _add_selection(pr)
    pr.add_argument("--arch", choices=("gru", "mlp"), default="gru",
                    help="gru: recurrent sequence prior (default); mlp: the feed-forward prior")
    pr.add_argument("--out", default=None, metavar="PATH",
                    help="where to write the model (default: the shipped engine/models/prior-seq.pt for gru, "
                         "engine/models/prior.npz for mlp)")
    pr.add_argument("--epochs", type=bounded_int(1, 1000), default=None,
                    help="most epochs (default: 8 gru, 15 mlp)")
    pr.add_argument("--rows", type=bounded_int(0, 10**9), default=None, metavar="N",
                    help="training steps sampled per epoch, 0 = all (default: 400000)")
    pr.add_argument("--hidden", default=None, metavar="W,W",
                    help="hidden layer widths (default: 256,256)")
    pr.add_argument("--seed", type=bounded_int(0, limits.MAX_SEED), default=0, help="random seed (default: 0)")
    pr.add_argument("--init", default=None, metavar="PATH.pt",
                    help="gru only: start from this prior (fine-tune it, e.g. with --sources essen)")
    pr.add_argument("--lr", type=float, default=None, help="gru only: Adam learning rate (default 2e-3)")
    pr.set_defaults(func=run_prior)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def run_extract(args: argparse.Namespace) -> int:
    from engine.corpus.melodies import SKIP_REASONS, load_corpus_with_report

    t0 = time.perf_counter()
    _, report = load_corpus_with_report("all", args.sources, args.limit, progress=not args.quiet)
    took = time.perf_counter() - t0
    print(report.table())
    print(f"\n{report.kept} tunes kept; loaded in {took:.2f} s (cache: {report.cache_dir})")
    reasons = sorted({k for r in report.sources.values() for k in r.skipped})
    if reasons:
        print("skip reasons: " + "; ".join(f"{k} = {SKIP_REASONS.get(k, k)}" for k in reasons))
    for r in report.sources.values():
        if r.notes:
            print(f"{r.source}: " + ", ".join(f"{k}: {v}" for k, v in r.notes.items()))
        if args.skipped:
            for name, reason, detail in r.skipped_tunes:
                print(f"  skipped {name}: {reason} ({detail})")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    import numpy as np

    from engine.corpus.melodies import SPLITS, load_corpus

    mels = load_corpus("all", args.sources, args.limit, progress=not args.quiet)
    if not mels:
        print("the corpus selection is empty", file=sys.stderr)
        return 1
    print("| split | tunes | bars (mean) | rests | holds | onsets |")
    print("|---|---|---|---|---|---|")
    for split in (*SPLITS, "all"):
        sel = [m for m in mels if split == "all" or m.split == split]
        if not sel:
            continue
        toks = np.concatenate([m.tokens for m in sel])
        shares = [(toks == 0).mean(), (toks == 1).mean(), (toks >= 2).mean()]
        print(f"| {split} | {len(sel)} | {np.mean([m.bars for m in sel]):.1f} | "
              + " | ".join(f"{100 * s:.1f}%" for s in shares) + " |")
    metres = Counter(f"{m.time_signature[0]}/{m.time_signature[1]}" for m in mels)
    scales = Counter(m.scale for m in mels)
    print("\nmetres: " + ", ".join(f"{k} {v}" for k, v in metres.most_common()))
    print("scales: " + ", ".join(f"{k} {v}" for k, v in scales.most_common()))
    return 0


def run_prior(args: argparse.Namespace) -> int:
    from engine.base.errors import EngineError
    from engine.corpus.prior import DEFAULT_PATH

    if args.arch == "gru":
        return _run_seq_prior(args)

    try:
        from engine.learn.prior_training import PriorConfig, train_prior
    except ImportError as exc:
        raise EngineError(f"training the prior needs torch: pip install -e '.[train]' ({exc})") from None
    cfg = PriorConfig(seed=args.seed, sources=tuple(args.sources) if args.sources else None, limit=args.limit)
    if args.epochs is not None:
        cfg.epochs = args.epochs
    if args.rows is not None:
        cfg.rows_per_epoch = args.rows
    if args.hidden:
        try:
            cfg.hidden = tuple(int(x) for x in args.hidden.replace(",", " ").split())
        except ValueError:
            cfg.hidden = ()
        if not cfg.hidden or any(not 1 <= h <= 4096 for h in cfg.hidden):
            raise EngineError(f"--hidden {args.hidden!r} is not valid: give layer widths 1-4096 like 256,256")
    model, m = train_prior(cfg, progress=not args.quiet)
    out = model.save(args.out or DEFAULT_PATH)
    summary = {k: v for k, v in m.items() if k != "history"}
    print(json.dumps(summary, indent=1))
    print(f"test NLL {m['test_nll']:.3f} nats/step (unigram {m['unigram_test_nll']:.3f}), accuracy "
          f"{100 * m['test_accuracy']:.1f}% (unigram {100 * m['unigram_test_accuracy']:.1f}%); wrote {out}")
    return 0


def _run_seq_prior(args: argparse.Namespace) -> int:
    from engine.base.errors import EngineError

    try:
        from engine.learn.seqprior_training import SEQ_PRIOR_PATH, SeqPriorConfig, save_seq_prior, train_seq_prior
    except ImportError as exc:
        raise EngineError(f"training the prior needs torch: pip install -e '.[train]' ({exc})") from None
    if args.rows is not None or args.hidden:
        raise EngineError("--rows and --hidden apply to --arch mlp; the gru prior's sizes are fixed by its config")
    cfg = SeqPriorConfig(seed=args.seed, sources=tuple(args.sources) if args.sources else None, limit=args.limit)
    if args.epochs is not None:
        cfg.epochs = args.epochs
    if args.init:
        cfg.init = args.init
    if args.lr is not None:
        if not 0 < args.lr < 1:
            raise EngineError(f"--lr {args.lr!r} is out of range (allowed: 0 < lr < 1)")
        cfg.lr = args.lr
    from engine.learn.kl_train import style_terms
    from engine.learn.seqexport import export_prior_model

    net, m = train_seq_prior(cfg, progress=not args.quiet)
    out = save_seq_prior(net, m, args.out or SEQ_PRIOR_PATH)
    command = "qriff corpus prior --arch gru" + (f" --epochs {args.epochs}" if args.epochs else "") \
        + (f" --seed {args.seed}" if args.seed else "") + (f" --init {args.init}" if args.init else "") \
        + (f" --lr {args.lr}" if args.lr else "") + (" --sources " + ",".join(args.sources) if args.sources else "")
    export_prior_model(net, out.with_suffix(".onnx"), style_terms(),
                       metrics={k: m[k] for k in ("test_nll", "test_accuracy", "valid_nll")}, train_command=command)
    print(json.dumps({k: v for k, v in m.items() if k != "history"}, indent=1))
    print(f"test NLL {m['test_nll']:.3f} nats/step (unigram {m['unigram_test_nll']:.3f}), accuracy "
          f"{100 * m['test_accuracy']:.1f}%; wrote {out} and the prior-alone model {out.with_suffix('.onnx')}")
    for group in ("test_per_source", "test_per_scale_family"):
        print(f"{group.replace('test_per_', 'per ').replace('_', ' ')}: " + ", ".join(
            f"{k} {v['nll']:.3f} ({v['steps']} steps)" for k, v in m[group].items()))
    return 0
