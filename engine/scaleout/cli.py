"""Command-line glue of the scale-out features: ``qriff train --sweep`` and the Ray flags."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.commands.options import bounded_int
from engine.scaleout import CONNECT_TIMEOUT_S, ScaleoutError


def add_ray_options(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """``--ray-address`` and ``--workers``: where the work runs."""
    g = parser.add_argument_group("scale-out (Ray; pip install 'qriff[ray]')")
    g.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                   help="join a running Ray cluster (HOST:PORT of 'ray start --head', ray://HOST:PORT or auto); "
                        f"an address that does not answer within {CONNECT_TIMEOUT_S:g} s is an error. "
                        "Default: start a local Ray")
    g.add_argument("--workers", type=bounded_int(1, 4096), default=None, metavar="N",
                   help="CPUs of the local Ray (default: all cores); ignored with --ray-address")
    return g


def add_sweep_options(parser: argparse.ArgumentParser) -> None:
    g = add_ray_options(parser)
    g.add_argument("--sweep", default=None, metavar="FILE",
                   help="run the grid of trainings in a TOML sweep file on Ray Tune (see README 'Scaling out'); "
                        "writes OUT/results.md, results.json, metric.png, best.onnx and OUT/trials/")


def run_sweep_command(args: argparse.Namespace) -> int:
    from engine.scaleout import require_ray
    from engine.scaleout.sweep import load_sweep, run_sweep

    require_ray("--sweep")
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
