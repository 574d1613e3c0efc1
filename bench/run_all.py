"""Run every benchmark script in turn and summarise which met their targets.

Each script measures its targets as ratios against a baseline timed in the same run and
exits non-zero when one is missed; this runner prints each script's own table, then one
line per script, and exits non-zero if any script did. Numbers depend on the machine and
its load: run on an otherwise idle machine before quoting them.

    python bench/run_all.py                 # all of them
    python bench/run_all.py render policy   # only the named ones
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ("policy", "quality", "train", "render", "bridge", "feedback", "recommender", "service")


def main(argv: list[str]) -> int:
    names = argv or list(SCRIPTS)
    unknown = [n for n in names if n not in SCRIPTS]
    if unknown:
        print(f"run_all.py: error: unknown benchmark {unknown[0]!r} (allowed: {', '.join(SCRIPTS)})", file=sys.stderr)
        return 2
    results = []
    for name in names:
        print(f"\n===== bench_{name}.py =====", flush=True)
        start = time.perf_counter()
        rc = subprocess.call([sys.executable, str(HERE / f"bench_{name}.py")])
        results.append((name, rc, time.perf_counter() - start))
    print("\n===== summary =====")
    for name, rc, secs in results:
        print(f"bench_{name}.py: {'all targets met' if rc == 0 else f'FAILED (exit {rc})'} in {secs:.0f} s")
    return 0 if all(rc == 0 for _, rc, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
