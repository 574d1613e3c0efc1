"""Scale-out on Ray (issue 13): sweep and batch speed-ups, Ray's overhead, per-core capacity.

Everything is measured in this one run, as ratios against baselines timed here too:

* priority (the cause): the CPU share a busy loop gets beside one busy sibling at the
  caller's priority in this session (as a trial beside the other trial, the Tune driver
  and Ray's daemons), in-process, in a qriff worker and in a Ray-default (+15) worker.
  Target: the qriff worker gets >= 0.8 of the in-process share.
* worker: one trial's training (48,000 steps) in this process, in a Ray worker started
  as qriff starts them, and in a worker at Ray's default priority (+15), interleaved
  round by round. Target: the qriff worker within 5% of in-process, and at the caller's
  nice value (the cause of the old 15-25% slowdown; see docs/scaling.md). Printed for
  each: nice, CPUs allowed, torch/BLAS threads, the thread-related environment, CPU
  seconds and seconds spent waiting for a CPU.
* sweep: the same 4 training trials in sequence (one process, ``engine.learn.train``)
  against a sweep on a running local Ray with 2 workers, interleaved. Target >= 1.7x.
  Also printed: ``qriff train --sweep`` as a fresh command (Ray's start-up included).
* batch: ``qriff batch`` of 200 clips with ``--workers 1`` against ``--workers 2``.
  Target >= 1.7x.
* overhead: ``qriff train --sweep`` of one trial against the plain ``qriff train`` of the
  same config, and ``qriff batch --workers 1`` against ``qriff batch --local``, each as
  a fresh command (Ray's start-up included). Target <= 10%. Also printed: the overhead
  on a Ray that is already running (start-up excluded), which is what a cluster user sees.
* recommender: ``qriff rec train`` data-parallel on Ray Train (2 workers) against the
  single-process run, same seed and data: NDCG@10 within 2%.
* capacity per core (one process, one thread, by CPU time): env steps/s trained, clips/s
  generated, stems/s rendered, recommender events/s trained, which docs/scaling-out.md's sizing table uses.

The machine's load is printed before and after: on a shared 2-core machine every
parallel ratio is depressed by whatever else runs. Exits 1 when a target is missed.

    python bench/bench_ray.py [--trial-steps 48000] [--rounds 3] [--overhead-steps 240000] [--clips 200]
                              [--only capacity,worker,sweep,batch,overhead,rec]
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

PARTS = ("capacity", "priority", "worker", "sweep", "batch", "overhead", "rec")
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


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def _pid() -> int:
    return os.getpid()


def _thread_sched() -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of the calling thread, from the kernel's schedstat."""
    on_cpu, waiting, _ = open("/proc/thread-self/schedstat").read().split()
    return int(on_cpu) / 1e9, int(waiting) / 1e9


def trial_probe(steps: int, out: str) -> dict:
    """One sweep trial's training (gamma 0.8, seed 0) in whatever process calls it, and what that process runs under."""
    import logging
    import threading

    import torch
    from threadpoolctl import threadpool_info

    from engine.learn.train import preset_config, train

    facts = {"pid": os.getpid(), "nice": os.getpriority(os.PRIO_PROCESS, 0), "affinity": len(os.sched_getaffinity(0)),
             "torch_threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
             "blas": {p["internal_api"]: p["num_threads"] for p in threadpool_info()},
             "py_threads": threading.active_count(), "os_threads": len(os.listdir("/proc/self/task")),
             "log_level": logging.getLevelName(logging.getLogger("engine.learn.train").getEffectiveLevel()),
             "env": {k: v for k, v in sorted(os.environ.items())
                     if k.startswith(("OMP_", "MKL_", "OPENBLAS_", "RAY_worker", "MALLOC"))}}
    cpu0, wait0 = _thread_sched()
    start = time.perf_counter()
    r = train(preset_config("default", **TRIAL, total_steps=steps, gamma=0.8, seed=0, quiet=True, out_dir=out))
    wall = time.perf_counter() - start
    cpu1, wait1 = _thread_sched()
    return {**facts, "wall_s": wall, "train_wall_s": r.wall_s, "cpu_s": cpu1 - cpu0, "wait_s": wait1 - wait0}


def part_worker(tmp: Path, steps: int, rounds: int) -> dict:
    """The same training in this process, in a qriff Ray worker, and in a worker at Ray's default priority, interleaved.

    The three run the same code on the same config; per round each runs once, in turn, so
    that load from other jobs falls on all three alike. Medians over the rounds.
    """
    from engine.base.cluster import NICENESS_VAR, connect

    arms: dict[str, list[dict]] = {"in_process": [], "qriff_worker": [], "ray_default_worker": []}
    # two CPUs' worth of idle workers, so that Ray keeps both arms' workers alive (one runs at a time)
    with connect(workers=2) as ray:
        qriff_worker = ray.remote(num_cpus=1, max_retries=0)(trial_probe)
        # Ray's own default, +15, restored for one worker through the same setting qriff overrides.
        default_worker = ray.remote(num_cpus=1, max_retries=0,
                                    runtime_env={"env_vars": {NICENESS_VAR: "15"}})(trial_probe)
        ray.get([qriff_worker.remote(2000, str(tmp / "w-warm1")), default_worker.remote(2000, str(tmp / "w-warm2"))])
        trial_probe(2000, str(tmp / "w-warm0"))  # every arm pays its imports and first calls before timing
        for i in range(rounds):
            arms["in_process"].append(trial_probe(steps, str(tmp / f"w-in-{i}")))
            arms["qriff_worker"].append(ray.get(qriff_worker.remote(steps, str(tmp / f"w-q-{i}"))))
            arms["ray_default_worker"].append(ray.get(default_worker.remote(steps, str(tmp / f"w-d-{i}"))))
            print(f"worker round {i + 1}/{rounds} (load {load()}): " + ", ".join(
                f"{k} {v[-1]['train_wall_s']:.1f} s" for k, v in arms.items()), flush=True)
    out: dict = {"steps": steps, "rounds": rounds}
    for name, runs in arms.items():
        out[name] = {k: _median([r[k] for r in runs]) for k in ("wall_s", "train_wall_s", "cpu_s", "wait_s")}
        out[name]["processes"] = len({r["pid"] for r in runs})
        out[name].update({k: runs[0][k] for k in ("nice", "affinity", "torch_threads", "interop_threads", "blas",
                                                    "py_threads", "os_threads", "log_level", "env")})
    base = out["in_process"]["train_wall_s"]
    out["qriff_ratio"] = out["qriff_worker"]["train_wall_s"] / base
    out["default_ratio"] = out["ray_default_worker"]["train_wall_s"] / base
    return out


def cpu_share(window_s: float) -> dict:
    """Spin for ``window_s`` wall seconds in whatever process calls it; the share of one CPU this thread got."""
    start, cpu0 = time.perf_counter(), time.thread_time()
    while time.perf_counter() - start < window_s:
        sum(range(1000))
    return {"nice": os.getpriority(os.PRIO_PROCESS, 0), "share": (time.thread_time() - cpu0) / window_s}


def part_priority(window_s: float, rounds: int) -> dict:
    """The cause row: the CPU share a process gets beside one busy sibling at the caller's priority in this session,
    as a sweep trial runs beside the other trial, the Tune driver and Ray's daemons: in-process, in a qriff worker
    and in a worker at Ray's default +15. Shares, not run times, so that other users' load cancels out.
    """
    from engine.base.cluster import NICENESS_VAR, connect

    arms: dict[str, list[dict]] = {"in_process": [], "qriff_worker": [], "ray_default_worker": []}
    with connect(workers=2) as ray:
        qriff_worker = ray.remote(num_cpus=1, max_retries=0)(cpu_share)
        default_worker = ray.remote(num_cpus=1, max_retries=0, runtime_env={"env_vars": {NICENESS_VAR: "15"}})(cpu_share)
        ray.get([qriff_worker.remote(0.1), default_worker.remote(0.1)])  # both workers started before the timing
        sibling = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            for _ in range(rounds):
                arms["in_process"].append(cpu_share(window_s))
                arms["qriff_worker"].append(ray.get(qriff_worker.remote(window_s)))
                arms["ray_default_worker"].append(ray.get(default_worker.remote(window_s)))
        finally:
            sibling.kill()
            sibling.wait()
    out: dict = {"window_s": window_s, "rounds": rounds}
    for name, runs in arms.items():
        out[name] = {"nice": runs[0]["nice"], "share": _median([r["share"] for r in runs])}
    for name in ("qriff_worker", "ray_default_worker"):
        out[name]["relative"] = out[name]["share"] / out["in_process"]["share"]
    print(f"priority (load {load()}): CPU share beside a busy sibling, median of {rounds} x {window_s:g} s: " + ", ".join(
        f"{k} at nice {v['nice']}: {v['share']:.3f}" for k, v in out.items() if isinstance(v, dict)), flush=True)
    return out


def part_sweep(tmp: Path, steps: int, rounds: int) -> dict[str, float]:
    """4 trials: in sequence in this process, and as a sweep on a running Ray with 2 workers (interleaved, medians);
    then once as a fresh ``qriff train --sweep`` command, Ray's start-up included."""
    from engine.base.cluster import connect
    from engine.learn.train import preset_config, train
    from engine.scaleout.sweep import load_sweep, run_sweep

    gammas, seeds = [0.8, 0.9], [0, 1]
    path = sweep_file(tmp / "s4.toml", steps, gammas, seeds)
    sequential, running, trials = [], [], []
    with connect(workers=2) as ray:
        # "running": Ray is up and its two idle workers have started, as on a cluster that was there before the sweep
        ray.get([ray.remote(num_cpus=1)(_pid).remote() for _ in range(2)])
        for i in range(rounds):
            start = time.perf_counter()
            for g in gammas:
                for s in seeds:
                    train(preset_config("default", **TRIAL, total_steps=steps, gamma=g, seed=s, quiet=True,
                                        out_dir=str(tmp / f"seq-{i}-{g}-{s}")))
            sequential.append(time.perf_counter() - start)
            spec = load_sweep(path, tmp / f"sweep4-{i}")
            start = time.perf_counter()
            doc = run_sweep(spec, quiet=True)
            running.append(time.perf_counter() - start)
            trials += doc["trials"]
            print(f"sweep round {i + 1}/{rounds} (load {load()}): sequential {sequential[-1]:.1f} s, sweep on a "
                  f"running Ray {running[-1]:.1f} s", flush=True)
    cold = qriff("train", "--sweep", str(path), "--out", str(tmp / "sweep4-cold"), "--workers", "2", "-q")
    seq = _median(sequential)
    return {"sequential_s": seq, "running_ray_s": _median(running), "speedup": seq / _median(running),
            "cold_ray_s": cold, "cold_speedup": seq / cold, "rounds": rounds,
            "trial_nice": sorted({t["nice"] for t in trials}), "workers_used": len({t["pid"] for t in trials}) / rounds,
            "import_s": [round(t["import_s"], 2) for t in trials]}


def part_batch(tmp: Path, clips: int, bars: int) -> dict[str, float]:
    spec = str(batch_file(tmp / "b.toml", clips, bars))
    one = qriff("batch", spec, "--out", str(tmp / "b1"), "--workers", "1", "-q")
    two = qriff("batch", spec, "--out", str(tmp / "b2"), "--workers", "2", "-q")
    same = all((tmp / "b1" / p.relative_to(tmp / "b2")).read_bytes() == p.read_bytes()
               for p in (tmp / "b2").rglob("*.wav"))
    return {"one_worker_s": one, "two_workers_s": two, "speedup": one / two, "identical": same}


def part_overhead(tmp: Path, steps: int, clips: int, bars: int) -> dict[str, float]:
    """Fresh commands (start-up included), then on an already running Ray (start-up excluded)."""
    from engine.base.cluster import connect
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

    # Warm: a Ray that is already up (started as qriff starts one); the plain runs in the same process.
    with connect(workers=1) as ray:
        ray.get(ray.remote(num_cpus=1)(_pid).remote())  # up, with its idle worker started
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
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved rounds of the worker part (default 3) and the sweep part (2 fewer, at least 1)")
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
    # Ray's workers import the engine from this tree, as the commands below do.
    os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    figures: dict[str, dict] = {"load_before": {"loadavg": load(), "cores": os.cpu_count()}}
    print(f"load average before: {load()} on {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as t:
        tmp = Path(t)
        if "capacity" in parts:
            figures["capacity"] = part_capacity(tmp, args.bars)
        if "priority" in parts:
            figures["priority"] = part_priority(5.0, args.rounds)
        if "worker" in parts:
            figures["worker"] = part_worker(tmp, args.trial_steps, args.rounds)
        if "sweep" in parts:
            figures["sweep"] = part_sweep(tmp, args.trial_steps, max(1, args.rounds - 2))
        if "batch" in parts:
            figures["batch"] = part_batch(tmp, args.clips, args.bars)
        if "overhead" in parts:
            figures["overhead"] = part_overhead(tmp, args.overhead_steps, args.clips, args.bars)
        if "rec" in parts:
            figures["rec"] = part_rec(tmp, args.rec_epochs)
    figures["load_after"] = {"loadavg": load()}
    print(f"load average after: {load()}")

    checks = []
    if "priority" in figures:
        pr = figures["priority"]
        checks.append(("CPU share beside a busy sibling, qriff worker / in-process",
                       f"{pr['qriff_worker']['relative']:.2f} (nice {pr['qriff_worker']['nice']}); Ray-default worker "
                       f"{pr['ray_default_worker']['relative']:.2f} (nice {pr['ray_default_worker']['nice']})",
                       ">= 0.8", pr["qriff_worker"]["relative"] >= 0.8))
    if "worker" in figures:
        w = figures["worker"]
        inp, qw, dw = w["in_process"], w["qriff_worker"], w["ray_default_worker"]
        for name, arm in (("in-process", inp), ("qriff Ray worker", qw), ("Ray-default worker", dw)):
            print(f"{name:>18}: nice {arm['nice']}, {arm['affinity']} CPUs allowed, torch threads {arm['torch_threads']}"
                  f" (inter-op {arm['interop_threads']}), BLAS/OpenMP pools {arm['blas']}, {arm['os_threads']} OS "
                  f"threads, engine log level {arm['log_level']}, env {arm['env']}, {arm['processes']} process(es); median of {w['rounds']}: train() "
                  f"{arm['wall_s']:.1f} s wall, {arm['cpu_s']:.1f} s on a CPU, {arm['wait_s']:.1f} s waiting for one")
        checks.append(("qriff Ray worker's nice vs the caller's", f"{qw['nice']} vs {inp['nice']} (Ray's default "
                       f"worker: {dw['nice']})", "equal", qw["nice"] == inp["nice"]))
        checks.append((f"training in a qriff Ray worker vs in-process ({w['steps']} steps)",
                       f"{w['qriff_ratio']:.3f}x ({inp['train_wall_s']:.1f} s -> {qw['train_wall_s']:.1f} s); "
                       f"Ray-default worker {w['default_ratio']:.3f}x ({dw['train_wall_s']:.1f} s)", "<= 1.05x",
                       w["qriff_ratio"] <= 1.05))
    if "sweep" in figures:
        s = figures["sweep"]
        checks.append(("4-trial sweep on a running Ray, 2 workers vs sequence", f"{s['speedup']:.2f}x "
                       f"({s['sequential_s']:.0f} s -> {s['running_ray_s']:.0f} s); cold command "
                       f"{s['cold_speedup']:.2f}x ({s['cold_ray_s']:.0f} s)", ">= 1.7x", s["speedup"] >= 1.7))
        print(f"sweep trials: nice {s['trial_nice']}, {s['workers_used']:.0f} worker processes per sweep, "
              f"import seconds per trial {s['import_s']}")
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
