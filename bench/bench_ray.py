"""Scale-out on Ray (issue 13): sweep and batch speed-ups, Ray's overhead, per-core capacity.

Everything is measured in this one run, as ratios against baselines timed here too:

* sweep: the same 4 training trials in sequence (one process, ``engine.learn.train``)
  against ``qriff train --sweep`` on a local Ray with 2 workers. Target >= 1.7x.
* batch: ``qriff batch`` of 200 clips with ``--workers 1`` against ``--workers 2``.
  Target >= 1.7x.
* overhead: ``qriff train --sweep`` of one trial against the plain ``qriff train`` of the
  same config, and ``qriff batch --workers 1`` against ``qriff batch --local``, each as
  a fresh command (Ray's start-up included). Target <= 10%. Also printed: the overhead
  on a Ray that is already running (start-up excluded), which is what a cluster user sees.
* recommender: ``qriff rec train`` data-parallel on Ray Train (2 workers) against the
  single-process run, same seed and data: NDCG@10 within 2%.
* capacity per core (one process, one thread, by CPU time): env steps/s trained, clips/s
  generated, stems/s rendered, recommender events/s trained, which README's sizing table uses.

The machine's load is printed before and after: on a shared 2-core machine every
parallel ratio is depressed by whatever else runs. Exits 1 when a target is missed.

    python bench/bench_ray.py [--trial-steps 48000] [--overhead-steps 240000] [--clips 200] [--only sweep,batch,overhead,rec,capacity]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PARTS = ("capacity", "sweep", "batch", "overhead", "rec")
TRIAL = {"eval_corpus": False, "eval_clips": 50, "learning_starts": 1000, "checkpoint_every": 10**9,
         "save_replay": False, "eval_every": 0}


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def qriff(*args: str) -> float:
    """Wall seconds of one ``qriff`` command in a fresh process (as a user runs it)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"bench_ray.py: qriff {' '.join(args)} failed: {r.stderr.strip()[-2000:]}")
    return wall


def sweep_file(path: Path, steps: int, gammas: list[float], seeds: list[int]) -> Path:
    lines = ['metric = "folk.not_in_key"', 'mode = "min"', f"seeds = {seeds}", "[set]", f"total_steps = {steps}"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in TRIAL.items()]
    lines += ["[grid]", f"gamma = {gammas}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def batch_file(path: Path, clips: int, bars: int) -> Path:
    per = clips // 4
    settings = [("C", "major", "folk"), ("A", "minor", "hook"), ("D", "dorian", "chorale"), ("E", "phrygian", "ambient")]
    lines = [f"count = {per}", "seed = 0", 'presets = ["studio"]', "midi = false"]
    for key, scale, style in settings:
        lines += ["[[setting]]", f'key = "{key}"', f'scale = "{scale}"', f'style = "{style}"', f"bars = {bars}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def part_sweep(tmp: Path, steps: int) -> dict[str, float]:
    """4 trials: in sequence in one process, then on Ray Tune with 2 workers."""
    from engine.learn.train import preset_config, train

    gammas, seeds = [0.8, 0.9], [0, 1]
    start = time.perf_counter()
    for g in gammas:
        for s in seeds:
            train(preset_config("default", **TRIAL, total_steps=steps, gamma=g, seed=s, quiet=True,
                                out_dir=str(tmp / f"seq-{g}-{s}")))
    sequential = time.perf_counter() - start
    ray2 = qriff("train", "--sweep", str(sweep_file(tmp / "s4.toml", steps, gammas, seeds)), "--out",
                 str(tmp / "sweep4"), "--workers", "2", "-q")
    return {"sequential_s": sequential, "ray_2_workers_s": ray2, "speedup": sequential / ray2}


def part_batch(tmp: Path, clips: int, bars: int) -> dict[str, float]:
    spec = str(batch_file(tmp / "b.toml", clips, bars))
    one = qriff("batch", spec, "--out", str(tmp / "b1"), "--workers", "1", "-q")
    two = qriff("batch", spec, "--out", str(tmp / "b2"), "--workers", "2", "-q")
    same = all((tmp / "b1" / p.relative_to(tmp / "b2")).read_bytes() == p.read_bytes()
               for p in (tmp / "b2").rglob("*.wav"))
    return {"one_worker_s": one, "two_workers_s": two, "speedup": one / two, "identical": same}


def part_overhead(tmp: Path, steps: int, clips: int, bars: int) -> dict[str, float]:
    """Fresh commands (start-up included), then on an already running Ray (start-up excluded)."""
    import ray

    from engine.learn.train import TrainConfig, train
    from engine.scaleout.batch import load_batch, run_batch
    from engine.scaleout.sweep import load_sweep, run_sweep

    sets = [f"{k}={json.dumps(v)}" for k, v in TRIAL.items()]
    plain_train = qriff("train", *sum((["--set", s] for s in sets), []), "--set", "gamma=0.8", "--steps", str(steps),
                        "--seed", "0", "--out", str(tmp / "plain"), "-q")
    sweep_1 = qriff("train", "--sweep", str(sweep_file(tmp / "s1.toml", steps, [0.8], [0])), "--out",
                    str(tmp / "sweep1"), "--workers", "1", "-q")
    spec = str(batch_file(tmp / "b.toml", clips, bars))
    plain_batch = qriff("batch", spec, "--out", str(tmp / "blocal"), "--local", "-q")
    batch_1 = qriff("batch", spec, "--out", str(tmp / "bray1"), "--workers", "1", "-q")

    # Warm: a Ray that is already up; the plain runs in the same process.
    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        s1 = load_sweep(tmp / "s1.toml", tmp / "warm-sweep")
        start = time.perf_counter()
        run_sweep(s1, quiet=True)
        warm_sweep = time.perf_counter() - start
        start = time.perf_counter()
        train(TrainConfig.from_dict({**s1.trials[0].config, "out_dir": str(tmp / "warm-plain")}))
        warm_train = time.perf_counter() - start
        b = load_batch(spec)
        start = time.perf_counter()
        run_batch(b, tmp / "warm-bray", quiet=True)
        warm_batch = time.perf_counter() - start
        start = time.perf_counter()
        run_batch(b, tmp / "warm-blocal", local=True, quiet=True)
        warm_local = time.perf_counter() - start
    finally:
        ray.shutdown()
    return {"plain_train_s": plain_train, "sweep_1_trial_s": sweep_1, "train_overhead": sweep_1 / plain_train - 1,
            "plain_batch_s": plain_batch, "batch_1_worker_s": batch_1, "batch_overhead": batch_1 / plain_batch - 1,
            "warm_train_overhead": warm_sweep / warm_train - 1, "warm_batch_overhead": warm_batch / warm_local - 1}


def part_capacity(tmp: Path, bars: int) -> dict[str, float]:
    """Per-core rates in this process (one thread), by CPU time, so that other jobs on the machine do not lower them."""
    from dataclasses import replace

    import torch

    from engine.audio.render import render_clip
    from engine.learn.train import preset_config, train
    from engine.runtime import Policy

    torch.set_num_threads(1)
    c0 = time.process_time()
    r = train(preset_config("default", **{**TRIAL, "eval_clips": 0}, total_steps=16_000, export=False, quiet=True,
                            out_dir=str(tmp / "cap")))
    env_rate = r.env_steps / (time.process_time() - c0)  # includes start-up and the learning-start phase
    policy = Policy.load()
    policy.generate(bars=bars, seed=0)
    n, c0 = 100, time.process_time()
    clips = [policy.generate(bars=bars, seed=i)[0] for i in range(n)]
    gen = n / (time.process_time() - c0)
    render_clip(clips[0], tmp / "warm", quiet=True, pianoroll=False)
    m, stems, c0 = 20, 0, time.process_time()
    for i in range(m):
        stems += len(render_clip(clips[i], tmp / f"r{i}", quiet=True, pianoroll=False).stems)
    rend = stems / (time.process_time() - c0)
    rec = {}
    try:
        from recommender.candidates import CandidateConfig, Candidates
        from recommender.dataset import load_movielens_100k
        from recommender.train import TrainConfig, Trainer, prepare_features

        data = load_movielens_100k()
        part = replace(data)
        prepare_features(part, Candidates(CandidateConfig(seed=0)).fit(data.user_items()))
        trainer = Trainer(part, TrainConfig(epochs=1, seed=0), progress=False)
        c0 = time.process_time()
        trainer.run(resume=False)
        rec = {"rec_events_per_s": len(part) / (time.process_time() - c0)}
    except Exception as exc:  # noqa: BLE001 - MovieLens needs the bench extra; say so and go on
        print(f"recommender capacity not measured: {exc}")
    return {"env_steps_per_s": env_rate, "clips_per_s": gen, "stems_per_s": rend, "bars": bars, **rec}


def part_rec(tmp: Path, epochs: int) -> dict[str, float]:
    """MovieLens-100K, leave-last-out: the DQN trained in one process and on Ray Train (2 workers), NDCG@10 of each."""
    from dataclasses import replace

    import numpy as np

    from recommender.candidates import CandidateConfig, Candidates
    from recommender.dataset import leave_last_out, load_movielens_100k
    from recommender.distributed import fit_data_parallel
    from recommender.metrics import hit_ndcg, ranks_full
    from recommender.train import TrainConfig, Trainer, prepare_features, score_users

    split = leave_last_out(load_movielens_100k())
    users, targets = split.test_users, split.test_items
    ui = split.train.user_items()
    part = replace(split.train)
    prepare_features(part, Candidates(CandidateConfig(seed=0)).fit(ui))  # the candidates stay with implicit
    cfg = TrainConfig(epochs=epochs, seed=0)
    b = part.bounds
    seqs = [part.item[b[u]:b[u + 1]] for u in users]
    outs = [part.outcome[b[u]:b[u + 1]].astype(np.int64) for u in users]
    uvecs = part.user_features[users] if part.user_features.shape[1] else None

    def ndcg(net) -> float:
        scores = np.asarray(score_users(net, cfg, seqs, outs, user_vecs=uvecs), np.float64)
        scores[:, 0] = -np.inf
        return hit_ndcg(ranks_full(scores, targets, ui[users]))["NDCG@10"]

    start = time.perf_counter()
    single = Trainer(part, cfg, progress=False).run(resume=False)
    single_s = time.perf_counter() - start
    start = time.perf_counter()
    parallel, _ = fit_data_parallel(part, cfg, workers=2, storage=tmp / "rec-ray")
    ray_s = time.perf_counter() - start
    a, b_ = ndcg(single), ndcg(parallel)
    return {"ndcg_single": a, "ndcg_ray": b_, "rel_diff": b_ / a - 1, "single_s": single_s, "ray_2_workers_s": ray_s,
            "events": len(part), "epochs": epochs, "events_per_s_single": len(part) * epochs / single_s}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trial-steps", type=int, default=48_000, help="env steps per sweep trial (default 48000)")
    p.add_argument("--overhead-steps", type=int, default=240_000,
                   help="env steps of the single trial the overhead is measured on (default 240000, a fifth of the "
                        "default recipe)")
    p.add_argument("--clips", type=int, default=200, help="clips of the batch runs (default 200)")
    p.add_argument("--bars", type=int, default=8, help="bars per batch clip (default 8)")
    p.add_argument("--rec-epochs", type=int, default=10, help="recommender epochs (default 10, as qriff rec train)")
    p.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts: {', '.join(PARTS)}")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the figures as JSON")
    args = p.parse_args(argv)
    parts = [x for x in args.only.split(",") if x]
    if bad := [x for x in parts if x not in PARTS]:
        p.error(f"--only {bad[0]!r} is not a part (allowed: {', '.join(PARTS)})")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    figures: dict[str, dict] = {"load_before": {"loadavg": load(), "cores": os.cpu_count()}}
    print(f"load average before: {load()} on {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as t:
        tmp = Path(t)
        if "capacity" in parts:
            figures["capacity"] = part_capacity(tmp, args.bars)
        if "sweep" in parts:
            figures["sweep"] = part_sweep(tmp, args.trial_steps)
        if "batch" in parts:
            figures["batch"] = part_batch(tmp, args.clips, args.bars)
        if "overhead" in parts:
            figures["overhead"] = part_overhead(tmp, args.overhead_steps, args.clips, args.bars)
        if "rec" in parts:
            figures["rec"] = part_rec(tmp, args.rec_epochs)
    figures["load_after"] = {"loadavg": load()}
    print(f"load average after: {load()}")

    checks = []
    if "sweep" in figures:
        s = figures["sweep"]
        checks.append(("4-trial sweep, 2 Ray workers vs sequence", f"{s['speedup']:.2f}x "
                       f"({s['sequential_s']:.0f} s -> {s['ray_2_workers_s']:.0f} s)", ">= 1.7x", s["speedup"] >= 1.7))
    if "batch" in figures:
        b = figures["batch"]
        checks.append((f"batch of {args.clips} clips, 2 workers vs 1", f"{b['speedup']:.2f}x ({b['one_worker_s']:.0f} s"
                       f" -> {b['two_workers_s']:.0f} s)", ">= 1.7x", b["speedup"] >= 1.7))
        checks.append(("batch output, 1 worker vs 2", "identical" if b["identical"] else "DIFFERENT", "identical",
                       b["identical"]))
    if "overhead" in figures:
        o = figures["overhead"]
        checks.append(("Ray overhead, 1-trial sweep vs qriff train", f"{o['train_overhead']:+.1%} ({o['plain_train_s']:.1f}"
                       f" s -> {o['sweep_1_trial_s']:.1f} s); running Ray {o['warm_train_overhead']:+.1%}", "<= 10%",
                       o["train_overhead"] <= 0.10))
        checks.append(("Ray overhead, 1-worker batch vs --local", f"{o['batch_overhead']:+.1%} ({o['plain_batch_s']:.1f}"
                       f" s -> {o['batch_1_worker_s']:.1f} s); running Ray {o['warm_batch_overhead']:+.1%}", "<= 10%",
                       o["batch_overhead"] <= 0.10))
    if "rec" in figures:
        r = figures["rec"]
        checks.append(("rec NDCG@10, Ray Train 2 workers vs 1 process", f"{r['ndcg_ray']:.4f} vs {r['ndcg_single']:.4f} "
                       f"({r['rel_diff']:+.2%}; {r['single_s']:.0f} s -> {r['ray_2_workers_s']:.0f} s)", "within 2%",
                       abs(r["rel_diff"]) <= 0.02))
    if "capacity" in figures:
        c = figures["capacity"]
        print(f"capacity per core (CPU time): {c['env_steps_per_s']:.0f} env steps/s trained (default recipe), "
              f"{c['clips_per_s']:.1f} clips/s generated ({c['bars']} bars), {c['stems_per_s']:.1f} stems/s rendered"
              + (f", {c['rec_events_per_s']:.0f} recommender events/s trained" if "rec_events_per_s" in c else ""))
    width = max((len(c[0]) for c in checks), default=10)
    for name, value, target, ok in checks:
        print(f"{name:<{width}}  {value:<60} target {target:<9} {'met' if ok else 'MISSED'}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0 if all(c[3] for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
