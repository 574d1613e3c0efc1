"""One piano roll per style preset, from one model: the pictures in docs/melody-model.md.

Each roll is an 8-bar clip in C major (the hook with chords "C G Am F"), temperature 1,
seed 0, written as ``docs/images/style-<name>.png``.

    .venv/bin/python bench/style_rolls.py [--model PATH] [--out docs/images]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.audio.pianoroll import write_pianoroll  # noqa: E402
from engine.mdp.styles import PRESETS  # noqa: E402
from engine.runtime import Policy  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model (default: the shipped one)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "images"), help="folder of the PNGs")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    policy = Policy.load(args.model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in PRESETS:
        chords = "C G Am F" if name == "hook" else None
        clip = policy.generate(key="C", scale="major", bars=8, seed=args.seed, style=name, chords=chords)[0]
        path = write_pianoroll(clip, out / f"style-{name}.png")
        notes = clip.tracks[0].notes
        print(f"{name}: {len(notes)} notes -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
