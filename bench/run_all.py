"""Run every benchmark in bench/ in turn and summarise which met their targets.

A benchmark is a ``bench_*.py`` script: it measures its targets as ratios against a
baseline timed in the same run and exits non-zero when one is missed. The runner finds
them by name, so a new one cannot be left out, prints each script's own table, then one
line per script, and exits non-zero if any script did. (``style_rolls.py`` draws the
pictures of docs/melody-model.md, ``train_table.py`` trains the models of the quality
table and ``taste_defaults.py`` is the study that chose ``qriff tune``'s defaults: they make
artefacts and check no target, so they are not benchmarks.)

``--quick`` runs each benchmark at the smaller sizes of :data:`QUICK` (a smoke run: the
targets are still checked, but ratios from short runs are noisier). Numbers depend on
the machine and its load: quote full runs on an otherwise idle machine.

    python bench/run_all.py                     # all of them
    python bench/run_all.py --quick             # all of them, small
    python bench/run_all.py render policy       # only the named ones
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Every benchmark, by the name after ``bench_``.
SCRIPTS = tuple(sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py")))

#: The flags of a quick run of each benchmark (tests/bench/test_run_all.py checks that each
#: benchmark has an entry and accepts its flags).
QUICK: dict[str, tuple[str, ...]] = {
    "bridge": ("--seconds", "1", "--soak", "10000"),
    "feedback": ("--verdicts", "1000", "--clips", "40"),
    "model_switch": ("--switches", "100", "--first", "2"),
    "policy": ("--rounds", "20"),
    "quality": ("--clips", "64", "--limit", "200", "--quiet"),
    "ray": ("--trial-steps", "8000", "--overhead-steps", "24000", "--rounds", "1", "--clips", "40",
            "--rec-epochs", "2"),
    "recommender": ("--quick",),
    "recsim": ("--seeds", "1", "--episodes", "20", "--logged-episodes", "100", "--online-episodes", "50",
               "--epochs", "20", "--no-ablations"),
    "render": ("--repeat", "1"),
    "service": ("--quick",),
    "taste": ("--tastes", "stepwise-long", "--seeds", "1", "--verdicts", "60", "--clips", "60", "--episodes", "64",
              "--realism-clips", "60", "--dial", "", "--no-speed"),
    "taste_embedding": ("--seeds", "1", "--verdicts", "50", "--fresh", "100", "--tune", "0"),
    "train": ("--ours-steps", "4000", "--sb3-steps", "1000"),
}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="run_all.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all: {', '.join(SCRIPTS)})")
    ap.add_argument("--quick", action="store_true", help="smaller sizes: a smoke run of every benchmark")
    args = ap.parse_args(argv)
    names = args.names or list(SCRIPTS)
    unknown = [n for n in names if n not in SCRIPTS]
    if unknown:
        print(f"run_all.py: error: unknown benchmark {unknown[0]!r} (allowed: {', '.join(SCRIPTS)})", file=sys.stderr)
        return 2
    results = []
    for name in names:
        flags = QUICK.get(name, ()) if args.quick else ()
        print(f"\n===== bench_{name}.py {' '.join(flags)} =====", flush=True)
        start = time.perf_counter()
        rc = subprocess.call([sys.executable, str(HERE / f"bench_{name}.py"), *flags])
        results.append((name, rc, time.perf_counter() - start))
    print("\n===== summary =====")
    for name, rc, secs in results:
        print(f"bench_{name}.py: {'all targets met' if rc == 0 else f'FAILED (exit {rc})'} in {secs:.0f} s")
    return 0 if all(rc == 0 for _, rc, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
