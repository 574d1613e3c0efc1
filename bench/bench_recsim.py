"""RecSim benchmark (issue 17): does the DQN's horizon pay off where the world rewards it?

Runs ``qriff rec evaluate --env recsim`` (RecSim interest evolution, slate of one, a fixed
pool, the DQN trained through ``qriff rec ingest`` / ``train`` on logged sessions of a
behaviour policy that is not the myopic one) and its negative control (quality gives no time
back), ``--seeds`` seeds, every policy on the same evaluation listeners. Targets, each the
mean over seeds of the per-seed ratio:

- the DQN >= 1.15x the myopic policy (RecSim's true choice model), moonshot >= 1.3x;
- the DQN >= 1.1x its own gamma-0 ablation;
- negative control: the DQN's gain over myopic vanishes (<= 1.05x).

The known-model planner's ratio is printed beside: the ceiling the test bed allows.
Prints the tables and the targets, writes them as JSON with ``--out``, exits 1 when a
target is missed.

    .venv/bin/python bench/bench_recsim.py [--seeds 5] [--episodes 100] [--logged-episodes 1000] [--first-seed S] [--merge JSON ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--episodes", type=int, default=100, help="evaluation listeners a seed")
    ap.add_argument("--logged-episodes", type=int, default=1000)
    ap.add_argument("--online-episodes", type=int, default=300)
    ap.add_argument("--behaviour", default="mixed")
    ap.add_argument("--candidates", type=int, default=10)
    ap.add_argument("--pool", type=int, default=200)
    ap.add_argument("--time-budget", type=float, default=60.0)
    ap.add_argument("--gamma", type=float, default=0.99)
    ap.add_argument("--epochs", type=int, default=None, help="the DQN's epochs (default: recsim_eval.EPOCHS)")
    ap.add_argument("--skip-control", action="store_true")
    ap.add_argument("--no-ablations", action="store_true", help="only gamma 0 beside the DQN (no 'no Q-loss', "
                    "no online rollouts): a cheaper run")
    ap.add_argument("--control-only", action="store_true", help="only the negative control (run beside the main one)")
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    ap.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                    help="no run: merge the --out files of runs over other seeds (e.g. run side by side) and "
                         "check the targets on all their seeds")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    import logging


    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("recommender.recsim_eval").setLevel(logging.INFO)  # each seed's rows as it finishes

    from recommender.recsim_env import RecSimConfig
    from recommender.recsim_eval import EPOCHS, RecSimEvalConfig, default_train_config, evaluate_recsim

    world = RecSimConfig(candidates=args.candidates, pool=args.pool, time_budget=args.time_budget,
                         seed=args.first_seed)
    cfg = RecSimEvalConfig(world=world, logged_episodes=args.logged_episodes, behaviour=args.behaviour,
                           episodes=args.episodes, seeds=args.seeds, online_episodes=args.online_episodes,
                           train=default_train_config(gamma=args.gamma, epochs=args.epochs or EPOCHS,
                                                      candidates=args.candidates),
                           ablations=not args.no_ablations)
    t0 = time.time()
    targets: list[dict] = []

    def check(name: str, value: float, need: float, kind: str) -> None:
        ok = value >= need if kind == ">=" else value <= need
        targets.append({"target": name, "measured": round(value, 4), "need": f"{kind} {need:g}", "ok": bool(ok)})

    out: dict = {}
    res = ctrl = None
    if args.merge:
        res, ctrl = _merged(args.merge)
        if res is not None:
            print(res.table(), flush=True)
    elif not args.control_only:
        res = evaluate_recsim(cfg, progress=sys.stderr.isatty())
        print(res.table(), flush=True)
    if res is not None:
        check("dqn / myopic", res.ratio("dqn")[0], 1.15, ">=")
        check("dqn / dqn gamma 0", res.ratio("dqn", "dqn, gamma 0")[0], 1.1, ">=")
        out["recsim"] = res.to_dict()
    if ctrl is None and not args.skip_control and not args.merge:
        ctrl = evaluate_recsim(replace(cfg, world=replace(world, quality_affects_budget=False), ablations=False),
                               progress=sys.stderr.isatty())
    if ctrl is not None:
        print("\n" + ctrl.table("Negative control (quality gives no time back)"), flush=True)
        check("negative control: dqn / myopic", ctrl.ratio("dqn")[0], 1.05, "<=")
        out["negative_control"] = ctrl.to_dict()
    if res is not None:
        moon = res.ratio("dqn")[0]
        print(f"\nplanner (known model) / myopic: {res.ratio('known-model planner')[0]:.3f}x; "
              f"moonshot dqn / myopic >= 1.3: {moon:.3f}x ({'met' if moon >= 1.3 else 'not met'})")
    print("\n| target | measured | need | ok |\n|---|---|---|---|")
    for t in targets:
        print(f"| {t['target']} | {t['measured']} | {t['need']} | {'yes' if t['ok'] else 'MISSED'} |")
    print(f"\n{time.time() - t0:.0f} s; load average {os.getloadavg()}")
    out["targets"] = targets
    if args.out:
        args.out.write_text(json.dumps(out, indent=2))
    return 0 if all(t["ok"] for t in targets) else 1


def _merged(paths: list[Path]):
    """The main and control results of several ``--out`` files, seeds concatenated (None where absent)."""
    from recommender.recsim_eval import RecSimResult

    merged: dict[str, RecSimResult | None] = {"recsim": None, "negative_control": None}
    for p in paths:
        data = json.loads(p.read_text())
        for key in merged:
            if key not in data:
                continue
            part = data[key]
            if merged[key] is None:
                merged[key] = RecSimResult(part["config"], notes=list(part["notes"]))
            else:
                merged[key].notes += part["notes"]
            for row, v in part["rows"].items():
                # files written before rows carried their seeds: the run's seeds in order
                seeds = v.get("seeds") or list(range(part["config"]["world"]["seed"],
                                                     part["config"]["world"]["seed"] + len(v["per_seed"])))
                for seed, value in zip(seeds, v["per_seed"]):
                    merged[key].add(row, seed, value)
    return merged["recsim"], merged["negative_control"]


if __name__ == "__main__":
    raise SystemExit(main())
