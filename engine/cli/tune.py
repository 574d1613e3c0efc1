"""``qriff tune``: a personal model tuned to the keep/discard verdicts (``docs/taste.md``)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from engine.base.options import MAX_SEED, bounded_float, bounded_int

#: ``--kl`` bounds and default (engine.learn.tune.KL_RANGE and DEFAULT_KL, repeated here so ``--help``
#: needs no torch; a test holds them equal). The default was chosen on the simulated musician's
#: development tastes, never on the tastes the bench reports (docs/taste.md).
KL_LO, KL_HI = 0.05, 100.0
DEFAULT_KL = 1.5
#: ``--realism-guard`` default (engine.learn.personal.REALISM_GUARD, held equal by a test).
DEFAULT_GUARD = 0.03


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tune", help="tune a personal model to the clips you kept and discarded",
        description="Learn your taste from the keep/discard verdicts in the feedback store (qriff keep, qriff "
                    "discard, the device's buttons), then fine-tune the shipped model toward it with KL control "
                    "against the shipped model, so it keeps sounding like music. Writes NAME.onnx (and its .pt "
                    "weights, NAME.taste.json and NAME.calibration.png) into your models folder, where qriff "
                    "generate --model NAME, /qriff/list/models and the bridge find it. Generate with more or less "
                    "of your taste with --style 'folk,taste=W' (W -5..5; 0 is near the shipped model's behaviour, "
                    "default 1). Needs at least 20 verdicts, 5 of each kind; nothing is written otherwise.",
        epilog="Example: qriff tune --out my-taste --kl 1 && qriff generate --model my-taste --count 8",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="personal", metavar="NAME",
                   help="name (and model id) of the personal model (default: personal); never replaces a file")
    p.add_argument("--verdicts", type=bounded_int(1, 10**7), default=None, metavar="N",
                   help="use the newest N verdicts (default: all)")
    p.add_argument("--kl", type=bounded_float(KL_LO, KL_HI), default=DEFAULT_KL, metavar="C",
                   help=f"KL coefficient {KL_LO:g}-{KL_HI:g}: larger stays nearer the shipped model "
                        f"(default {DEFAULT_KL:g})")
    p.add_argument("--realism-guard", type=bounded_float(0.0, 1.0), default=DEFAULT_GUARD, metavar="R",
                   help="after tuning, generate with both models and compare them with corpus tunes; if the personal "
                        "model's two-sample AUC rose by more than R, tune again with twice the KL coefficient (at "
                        f"most twice; default {DEFAULT_GUARD:g})")
    p.add_argument("--no-realism-guard", dest="realism_guard", action="store_const", const=None,
                   help="skip the realism check (faster; the model may drift further from music)")
    p.add_argument("--seed", type=bounded_int(0, MAX_SEED), default=0, help="seed of the split and tuning")
    p.add_argument("--base", default=None, metavar="MODEL",
                   help="model to tune (default: the shipped model); an id or path of a model with its .pt beside it")
    p.add_argument("--episodes", type=bounded_int(1, 10**6), default=None,
                   help="clips played while tuning (default 512)")
    p.add_argument("--store", type=Path, default=None, metavar="FILE",
                   help="the feedback store (default: $QRIFF_FEEDBACK_DB, else feedback.sqlite in the user data folder)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar; print only the model's path")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.base.extras import require

    require("torch", "train", "qriff tune")
    require("sklearn", "eval", "qriff tune (the reward model)")
    from engine.learn.personal import make_personal_model
    parts = ["qriff", "tune", "--out", args.out, "--kl", f"{args.kl:g}", "--seed", str(args.seed)]
    if args.verdicts is not None:
        parts += ["--verdicts", str(args.verdicts)]
    if args.base is not None:
        parts += ["--base", args.base]
    if args.episodes is not None:
        parts += ["--episodes", str(args.episodes)]
    if args.realism_guard is None:
        parts += ["--no-realism-guard"]
    elif args.realism_guard != DEFAULT_GUARD:
        parts += ["--realism-guard", f"{args.realism_guard:g}"]
    result = make_personal_model(args.out, store=args.store, verdicts=args.verdicts, kl=args.kl, seed=args.seed,
                                 base=args.base, episodes=args.episodes, quiet=args.quiet, command=shlex.join(parts),
                                 realism_guard=args.realism_guard)
    if args.quiet:
        print(result.path)
        return 0
    r = result.reward
    print(f"taste model: {r.summary()}")
    if result.skipped:
        print(f"skipped {result.skipped} verdicts whose clips are not melodies")
    for check in result.guard:
        print(f"realism guard at --kl {check.kl:g}: two-sample AUC against corpus tunes {check.auc_base:.3f} (base) "
              f"-> {check.auc_tuned:.3f} ({check.rise:+.3f}, limit {args.realism_guard:+.3f})")
    if len(result.guard) > 1:
        print(f"kept the model tuned at --kl {result.kl:g}" + ("" if result.guard[-1].rise <= args.realism_guard else
                                                              " (the most conservative tried; still over the limit)"))
    print(f"tuned in {result.tune_seconds:.0f} s ({result.tune_cpu_seconds:.0f} s CPU); model {result.model_id!r} "
          f"at {result.path}")
    print(f"generate: qriff generate --model {result.model_id} --style 'folk,taste=1'  (taste -5..5, default 1)")
    return 0


__all__ = ["register", "run"]
