"""``qriff train``: train the melody Q-network (needs the ``train`` extra: torch)."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from engine.base.errors import EngineError
from engine.base.options import add_ray_options, bounded_int
from engine.music import limits


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train the melody DQN (torch) and export it to ONNX",
        description="Train the melody Q-network with double DQN on the vectorised melody MDP. Writes "
                    "config.json, checkpoint.pt, replay.npz, train_log.csv, eval_log.csv, curves.png, "
                    "metrics.json and model.onnx into --out. Ctrl-C writes a checkpoint; --resume continues.",
        epilog="Examples: qriff train                       (the shipped model's recipe, into runs/default)\n"
               "          qriff train --preset tiny --out /tmp/t   (a smoke run of a few seconds)\n"
               "          qriff train --set gamma=0.8 --set 'env={\"bars\": [2, 4]}' --out runs/exp1\n"
               "          qriff train --resume --out runs/default",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    # engine.learn.train imports torch: the preset names are checked when the command runs, so that
    # building the parser (for every qriff command) stays torch-free.
    p.add_argument("--preset", default="default",
                   help="starting configuration: default (the recipe of the shipped model) or tiny "
                        "(a smoke run of a few seconds) (default: default)")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="a config.json (e.g. from an earlier run) to start from instead of a preset")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a TrainConfig field; VALUE is JSON or a bare string (repeatable), "
                        "e.g. --set gamma=0.8 --set hidden=[128,128]")
    p.add_argument("--out", default=None, metavar="DIR", help="run directory (default: runs/PRESET)")
    p.add_argument("--steps", type=bounded_int(1, 10**9), default=None, help="environment steps in total")
    p.add_argument("--envs", type=bounded_int(1, 4096), default=None, help="parallel environments")
    p.add_argument("--seed", type=bounded_int(0, limits.MAX_SEED), default=None, help="random seed (default: 0)")
    p.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt if it exists")
    p.add_argument("--no-export", action="store_true", help="do not export model.onnx at the end")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
    add_sweep_options(p)
    from engine.cli.train_kl import add_kl_options

    add_kl_options(p)
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace):
    """The TrainConfig the flags ask for."""
    from engine.learn.recipe import config_from_flags

    return config_from_flags(preset=args.preset, config=args.config, sets=args.set, out=args.out, steps=args.steps,
                             envs=args.envs, seed=args.seed, resume=args.resume, export=not args.no_export,
                             quiet=args.quiet)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def add_sweep_options(parser: argparse.ArgumentParser) -> None:
    g = add_ray_options(parser)
    g.add_argument("--sweep", default=None, metavar="FILE",
                   help="run the grid of trainings in a TOML sweep file on Ray Tune (see docs/scaling.md); "
                        "writes OUT/results.md, results.json, metric.png, best.onnx and OUT/trials/")


def run_sweep_command(args: argparse.Namespace) -> int:
    """``qriff train --sweep FILE``: the sweep of :mod:`engine.scaleout.sweep`."""
    from engine.base.cluster import ScaleoutError, require_ray

    require_ray("--sweep")
    from engine.scaleout.sweep import load_sweep, run_sweep

    clash = [flag for flag, used in (("--config", args.config), ("--preset", args.preset != "default"),
                                     ("--set", args.set), ("--steps", args.steps is not None),
                                     ("--envs", args.envs is not None), ("--seed", args.seed is not None),
                                     ("--resume", args.resume), ("--no-export", args.no_export)) if used]
    if clash:
        raise ScaleoutError(f"--sweep {args.sweep!r} takes the configs from the file: drop {', '.join(clash)} "
                            "(put them in the file's preset/config, [set] or seeds)")
    out = Path(args.out) if args.out else Path("runs") / f"sweep-{Path(args.sweep).stem}"
    spec = load_sweep(args.sweep, out)
    doc = run_sweep(spec, address=args.ray_address, workers=args.workers, quiet=args.quiet)
    if not args.quiet:
        best = doc["trials"][0]
        failed = sum(r["error"] is not None for r in doc["trials"])
        print(f"{len(spec.trials)} trials in {doc['wall_s'] / 60:.1f} min ({failed} failed); best {best['trial']} "
              f"{spec.metric}={best['value']:.4f}; wrote {spec.out / 'results.md'}, results.json, metric.png"
              + (", best.onnx" if (spec.out / "best.onnx").is_file() else ""))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.algo != "mlp":
        from engine.cli.train_kl import run_kl

        return run_kl(args)
    if args.sweep:
        return run_sweep_command(args)
    try:
        from engine.learn.train import train
    except ImportError as exc:
        raise EngineError(f"training needs torch (pip install 'qriff[train]'): {exc}") from None
    cfg = build_config(args)
    # A job scheduler's SIGTERM gets the same treatment as Ctrl-C: checkpoint, then stop.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        result = train(cfg)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if result.interrupted:
        print(f"qriff train: interrupted at {result.env_steps} steps; checkpoint {result.checkpoint}; "
              f"continue with: qriff train --resume --out {cfg.out_dir}", file=sys.stderr)
        return 130
    if not args.quiet:
        print(f"trained {result.env_steps} env steps, {result.grad_steps} gradient steps in "
              f"{result.wall_s / 60:.1f} min; checkpoint {result.checkpoint}"
              + (f"; model {result.model}" if result.model else ""))
    return 0
