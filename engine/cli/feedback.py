"""``qriff keep CLIP...``, ``qriff discard CLIP...`` and ``qriff feedback list|stats|export``.

The verdicts go to the feedback store (:mod:`engine.feedback`), the same one the OSC
bridge and the Max for Live device write to.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.base.options import bounded_int

_STORE_HELP = "the feedback store (default: $QRIFF_FEEDBACK_DB, else feedback.sqlite in the user data folder)"


def register(subparsers: argparse._SubParsersAction) -> None:
    for verdict, what in (("keep", "you keep: qriff should make more like them"),
                          ("discard", "you throw away: qriff should make fewer like them")):
        p = subparsers.add_parser(
            verdict, help=f"record that you {verdict} clips (taste feedback for qriff)",
            description=f"Record the clips {what}. Each clip file (.json, or a .mid; the .json beside it is read "
                        "when it exists, since only it names the model, style and seed) is stored with its notes "
                        "and context in the feedback store. A clip judged again keeps its last verdict. Any bad "
                        "clip or value stops the command before anything is stored.",
            epilog=f"Example: qriff {verdict} qriff-clips/clip-0003.json qriff-clips/clip-0007.json --stars 4")
        p.add_argument("clips", nargs="+", metavar="CLIP", help="clip files written by qriff (.json or .mid)")
        p.add_argument("--stars", type=bounded_int(1, 5), default=None, help="how much, 1-5 (optional)")
        p.add_argument("--store", type=Path, default=None, metavar="FILE", help=_STORE_HELP)
        p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
        p.set_defaults(func=run_verdict, verdict=verdict)

    p = subparsers.add_parser(
        "feedback", help="list, count or export the keep/discard verdicts recorded so far",
        description="Read the feedback store: 'list' prints one verdict a line (newest last), 'stats' the counts, "
                    "'export' every verdict as JSON lines (the clip JSON, model, contract, style, key, scale, "
                    "chords, seed, time and source of each).",
        epilog="Examples: qriff feedback list --verdict keep\n"
               "          qriff feedback stats\n"
               "          qriff feedback export > taste.jsonl",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("list", "stats", "export"), help="what to show")
    p.add_argument("--verdict", choices=("keep", "discard"), default=None, help="list: only these verdicts")
    p.add_argument("--limit", type=bounded_int(1, 10**9), default=None, help="list: at most this many rows")
    p.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="export: write the JSON lines to FILE (atomically) instead of stdout")
    p.add_argument("--store", type=Path, default=None, metavar="FILE", help=_STORE_HELP)
    p.set_defaults(func=run_feedback)


def run_verdict(args: argparse.Namespace) -> int:
    from engine.feedback import FeedbackStore, judgements

    todo = judgements(args.clips, args.verdict, args.stars, source="cli")  # every clip checked before the store
    with FeedbackStore(args.store) as store:
        ids = store.record_many(todo)
        path = store.path
    if not args.quiet:
        stars = f", {args.stars} stars" if args.stars else ""
        for j, cid in zip(todo, ids):
            print(f"{args.verdict}{stars}: {j.clip_path} (clip {cid[:12]})")
        print(f"{len(ids)} verdict{'s' if len(ids) != 1 else ''} recorded in {path}", file=sys.stderr)
    return 0


def run_feedback(args: argparse.Namespace) -> int:
    from engine.feedback import FeedbackError, FeedbackStore

    if args.action != "list" and (args.verdict or args.limit):
        raise FeedbackError("--verdict and --limit apply to 'qriff feedback list' only")
    if args.action != "export" and args.out is not None:
        raise FeedbackError("--out applies to 'qriff feedback export' only")
    with FeedbackStore(args.store, create=False) as store:
        if args.action == "list":
            for v in store.verdicts(args.verdict, args.limit):
                stars = f"{v.stars}*" if v.stars else "-"
                print(f"{v.decided_at}  {v.verdict:<7} {stars:<3} {v.source:<6} {v.key} {v.scale} "
                      f"{v.bars} bars  {v.model or '?'}  {v.clip_path}")
        elif args.action == "stats":
            print(json.dumps(store.stats(), indent=1))
        elif args.out is not None:
            import io

            from engine.base.files import atomic_write

            buf = io.StringIO()
            n = store.export(buf)
            atomic_write(args.out, buf.getvalue())
            print(f"{n} verdicts exported to {args.out}", file=sys.stderr)
        else:
            store.export(sys.stdout)
    return 0
