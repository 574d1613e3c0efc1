"""Benchmark: audio rendering speed and memory (issue 4 targets).

Renders an 8-bar, 3-track clip (lead, bass, pad) at 120 bpm = 16 s of audio, and
measures in one run:

- floor: pedalboard's own effect chain (Compressor, Chorus, Delay, Reverb) over 16 s
  of stereo audio, the cost of effects alone;
- voices + studio: ``render_clip`` with the built-in voices and the ``studio`` preset,
  files written (WAV 24-bit), no piano roll; target >= 100x real time;
- soundfont + studio: the same with every track on the bundled GM SoundFont (FluidSynth);
  target >= 50x real time;
- memory: peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, the
  whole process: interpreter, libraries and audio) of a fresh subprocess that renders
  a 64-bar clip the same way; target < 300 MB.

"x real time" = 16 s / time to render. Times are the best of ``--repeat`` runs, both
wall-clock and process CPU time; the targets are checked on CPU time, because this
machine's two cores are shared and wall time then measures the neighbours (rendering
is single-threaded, so on an idle core wall time equals CPU time; both are printed).
Prints a table; exits 1 when a target is missed.

    .venv/bin/python bench/bench_render.py [--repeat 5] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.audio.render import chord_pad, render_audio, render_clip  # noqa: E402
from engine.music.clip import Clip, Note, Track  # noqa: E402

TEMPO = 120.0


def bench_clip(bars: int = 8, seed: int = 7) -> Clip:
    """A lead of eighths and sixteenths in C major, a quarter-note bass and a chord pad."""
    rng = np.random.default_rng(seed)
    scale = [0, 2, 4, 5, 7, 9, 11]
    lead, beat, degree = [], 0.0, 0
    while beat < bars * 4 - 1e-9:
        dur = min(float(rng.choice([0.25, 0.5, 0.5, 1.0])), bars * 4 - beat)
        degree = int(np.clip(degree + rng.integers(-2, 3), 0, 13))
        pitch = 60 + scale[degree % 7] + 12 * (degree // 7)
        lead.append(Note(pitch, beat, dur * 0.9, int(rng.integers(80, 115))))
        beat += dur
    roots = [0, 7, 9, 5]
    bass = [Note(36 + roots[(i // 4) % 4], float(i), 0.85, 100) for i in range(bars * 4)]
    clip = Clip(key="C", scale="major", tempo=TEMPO, bars=bars, chords=["C", "G", "Am", "F"],
                tracks=[Track("lead", 81, lead), Track("bass", 38, bass)])
    clip.tracks.append(chord_pad(clip))
    return clip


def timed(fn, repeat: int) -> tuple[float, float]:
    """Best (wall seconds, CPU seconds) over ``repeat`` calls, after one warm-up call."""
    fn()
    wall, cpu = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return min(wall), min(cpu)


MEMORY_SCRIPT = """
import resource, sys, tempfile
sys.path.insert(0, {root!r})
from bench.bench_render import bench_clip
from engine.audio.render import render_clip
clip = bench_clip(bars=64)
with tempfile.TemporaryDirectory() as d:
    r = render_clip(clip, d, preset="studio", pianoroll=False, quiet=True)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, r.duration_seconds)
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per case; the best counts (default 5)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = ap.parse_args(argv)

    import pedalboard

    clip = bench_clip()
    seconds = clip.length_seconds
    sr = 44100
    rows = []

    # Floor: pedalboard's effect chain over the clip's length of real (dry) audio.
    dry = render_audio(clip, preset="dry", sample_rate=sr).premaster[:, :int(seconds * sr)].copy()
    board = pedalboard.Pedalboard([pedalboard.Compressor(threshold_db=-18, ratio=3), pedalboard.Chorus(),
                                   pedalboard.Delay(delay_seconds=0.375, feedback=0.3, mix=0.2),
                                   pedalboard.Reverb(room_size=0.5)])
    wall, cpu = timed(lambda: board(dry, sr, reset=True), args.repeat)
    rows.append(("floor: pedalboard Compressor+Chorus+Delay+Reverb", wall, cpu, None))

    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = timed(lambda: render_clip(clip, Path(tmp) / "v", preset="studio", pianoroll=False, quiet=True),
                          args.repeat)
        rows.append(("voices + studio (render_clip, 4 WAV files)", wall, cpu, 100.0))
        gm = {"lead": "gm", "bass": "gm", "pad": "gm"}
        wall, cpu = timed(lambda: render_clip(clip, Path(tmp) / "s", preset="studio", instruments=gm,
                                              pianoroll=False, quiet=True), args.repeat)
        rows.append(("soundfont (gm) + studio (render_clip)", wall, cpu, 50.0))

    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT.format(root=str(ROOT))], capture_output=True,
                         text=True, timeout=600)
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return 1
    peak_mb, long_seconds = (float(x) for x in out.stdout.split())

    failed = False
    print(f"clip: 8 bars, 3 tracks, {TEMPO:g} bpm = {seconds:.1f} s of audio at {sr} Hz; best of {args.repeat}")
    print(f"{'case':48s} {'wall ms':>8s} {'x rt':>7s} {'cpu ms':>8s} {'x rt cpu':>9s} {'target':>8s}  ok")
    results = []
    for name, wall, cpu, target in rows:
        xw, xc = seconds / wall, seconds / cpu
        ok = target is None or xc >= target
        failed |= not ok
        tgt = f">={target:g}x" if target else "-"
        print(f"{name:48s} {wall * 1e3:8.1f} {xw:7.0f} {cpu * 1e3:8.1f} {xc:9.0f} {tgt:>8s}  {'yes' if ok else 'NO'}")
        results.append({"case": name, "wall_ms": wall * 1e3, "x_realtime_wall": xw, "cpu_ms": cpu * 1e3,
                        "x_realtime_cpu": xc, "target_x": target, "ok": ok})
    ok = peak_mb < 300
    failed |= not ok
    print(f"{'peak RSS, 64-bar clip (' + f'{long_seconds:.0f}' + ' s), ru_maxrss':48s} {peak_mb:8.1f} MB"
          f"{'':26s} {'<300 MB':>8s}  {'yes' if ok else 'NO'}")
    results.append({"case": "peak_rss_64_bars_mb", "value": peak_mb, "target": 300, "ok": ok})
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
