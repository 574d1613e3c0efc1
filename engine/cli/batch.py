"""``qriff batch SPEC``: generate and render many clips across Ray workers (sample packs, datasets)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from engine.base.options import add_ray_options

    p = subparsers.add_parser(
        "batch", help="generate and render many clips across Ray workers (sample packs, datasets)",
        description="Generate COUNT clips per [[setting]] of a TOML spec and render each with every preset, as Ray "
                    "tasks. Writes OUT/SETTING/SEED/clip.json (+ .mid) and PRESET/ stems and mix, then "
                    "OUT/manifest.csv and manifest.json (file, key, scale, style, seed, preset, loudness...). A re-run "
                    "skips the clips already done. Each clip is identical to 'qriff generate --seed S --format json' "
                    "followed by 'qriff render clip.json --preset P'. See docs/scaling-out.md for the spec.",
        epilog="Examples: qriff batch pack.toml --out pack\n"
               "          qriff batch pack.toml --out pack --ray-address 10.0.0.5:6379\n"
               "          qriff batch pack.toml --out pack --local      (in this process, without Ray)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", type=Path, help="batch spec (TOML): count, seed, presets, audio options, [[setting]]s")
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="output folder (default: beside the spec, "
                   "named after it)")
    p.add_argument("--local", action="store_true", help="run in this process, one clip after another, without Ray")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")
    add_ray_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.base.cluster import ScaleoutError, require_ray
    from engine.scaleout.batch import load_batch, run_batch

    if args.local and (args.ray_address or args.workers):
        raise ScaleoutError("--local runs without Ray: drop --ray-address/--workers, or drop --local")
    if not args.local:
        require_ray("qriff batch (or --local, without Ray)")
    spec = load_batch(args.spec)
    out = args.out if args.out is not None else args.spec.with_suffix("")
    if out.resolve() == args.spec.resolve():
        raise ScaleoutError(f"--out {str(out)!r} is the spec file itself: give a folder")
    result = run_batch(spec, out, address=args.ray_address, workers=args.workers, local=args.local, quiet=args.quiet)
    if not args.quiet:
        print(f"{result['units']} clips x {len(spec.presets)} presets in {out} ({result['made']} made, "
              f"{result['skipped']} already done) in {result['wall_s']:.1f} s; manifest {out / 'manifest.csv'}, "
              f"{out / 'manifest.json'}", file=sys.stdout)
    return 0
