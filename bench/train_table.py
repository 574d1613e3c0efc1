"""Train every model of the melody quality table, then pick the KL coefficient on validation.

Runs (each a plain ``qriff train`` into ``--out/NAME``; a run whose ``model.onnx`` exists is
kept, so an interrupted table resumes):

1. ``kl-c{C}-s0`` for every ``--coefs`` C: the KL sweep, seed 0.
2. The coefficient is picked on the corpus *valid* split (:func:`engine.learn.kl_select.pick_coefficient`:
   the lowest two-sample AUC among the runs whose theory rows beat the prior alone's).
3. ``kl-c{C*}-s{1..}`` for the other ``--seeds``; ``theory0-s{k}`` (KL with the theory terms
   at 0: must equal the prior) and ``dqn-s{k}`` (the same network without KL) for every seed.

Then it prints the ``bench/bench_quality.py`` command for the table and the trade-off PNG,
and writes ``table.json`` (runs, validation scores, the pick) into ``--out``.

    .venv/bin/python bench/train_table.py --out runs/table
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.learn.kl_select import pick_coefficient, validation_scores  # noqa: E402


def train(out: Path, name: str, args: list[str], log: list[dict]) -> Path:
    model = out / name / "model.onnx"
    if model.exists():
        print(f"{name}: kept {model}", flush=True)
        return model
    cmd = [sys.executable, "-m", "engine.cli", "train", *args, "--out", str(out / name), "-q"]
    print(f"{name}: {shlex.join(cmd[2:])}", flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    log.append({"run": name, "seconds": round(time.perf_counter() - t0, 1), "command": shlex.join(cmd[2:])})
    print(f"{name}: done in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
    return model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/table", help="folder of the runs (default: runs/table)")
    ap.add_argument("--coefs", default="1,2,4,8", help="KL coefficients of the sweep (default: 1,2,4,8)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per row (default: 3)")
    ap.add_argument("--episodes", type=int, default=10000, help="training episodes per run (default: 10000)")
    ap.add_argument("--prior", default=None, help="recurrent prior .pt (default: the shipped one)")
    ap.add_argument("--val-clips", type=int, default=256, help="clips per validation score (default: 256)")
    ap.add_argument("--only-sweep", action="store_true", help="stop after the sweep and the pick")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    coefs = [float(c) for c in args.coefs.split(",")]
    common = ["--episodes", str(args.episodes), "--val-clips", str(args.val_clips)]
    if args.prior:
        common += ["--prior", args.prior]
    log: list[dict] = []
    sweep = {}
    for c in coefs:
        model = train(out, f"kl-c{c:g}-s0", ["--algo", "kl", "--kl", f"{c:g}", "--seed", "0", *common], log)
        sweep[c] = json.loads((model.parent / "validation.json").read_text())
    prior_onnx = Path(args.prior).with_suffix(".onnx") if args.prior else ROOT / "engine" / "models" / "prior-essen.onnx"
    prior_val = validation_scores(prior_onnx, n=args.val_clips, seed=0)
    best = pick_coefficient(sweep, prior_val)
    print(f"validation: prior alone {prior_val}\n" + "\n".join(f"  c={c:g}: {s}" for c, s in sweep.items())
          + f"\npicked c = {best:g}", flush=True)
    table = {"coefs": coefs, "validation": {f"{c:g}": s for c, s in sweep.items()}, "prior_validation": prior_val,
             "picked": best, "episodes": args.episodes, "runs": log}
    (out / "table.json").write_text(json.dumps(table, indent=1) + "\n")
    if args.only_sweep:
        return 0
    rows: dict[str, list[Path]] = {"KL (chosen c)": [out / f"kl-c{best:g}-s0" / "model.onnx"], "KL, theory 0": [],
                                   "no KL (DQN)": []}
    for s in range(args.seeds):
        if s:
            rows["KL (chosen c)"].append(train(out, f"kl-c{best:g}-s{s}",
                                               ["--algo", "kl", "--kl", f"{best:g}", "--seed", str(s), *common], log))
        rows["KL, theory 0"].append(train(out, f"theory0-s{s}", ["--algo", "kl", "--kl", f"{best:g}", "--theory-weight",
                                                                 "0", "--seed", str(s), *common], log))
        rows["no KL (DQN)"].append(train(out, f"dqn-s{s}", ["--algo", "dqn-seq", "--kl", f"{best:g}", "--seed", str(s),
                                                           *common], log))
    table["runs"] = log
    (out / "table.json").write_text(json.dumps(table, indent=1) + "\n")
    parts = ["bench/bench_quality.py", "--model", f"prior alone={prior_onnx}"]
    for name, paths in rows.items():
        parts += ["--model", f"{name}=" + ",".join(str(p) for p in paths)]
    parts += ["--model", "MLP (previous)=engine/models/default-mlp.onnx"]
    for c in coefs:
        parts += ["--tradeoff", f"{c:g}={out / f'kl-c{c:g}-s0' / 'model.onnx'}"]
    print("\ntable: " + shlex.join(parts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
