"""Does ``qriff tune`` learn a musician's taste? The simulated-musician loop of issue 21.

For each hidden taste (:data:`engine.evaluation.musician.TASTES`) and seed:

1. the shipped model generates ``--verdicts`` clips (4 bars, C major, default style);
   the simulated musician (a logistic keep probability over clip descriptors, calibrated
   to keep 30% of the shipped model's clips) judges them, and the verdicts go into a
   fresh feedback store, as ``qriff keep``/``qriff discard`` would record them;
2. ``qriff tune`` runs as a subprocess on that store (its wall and CPU time measured);
3. the personal model (default taste weight) and the shipped model each generate
   ``--clips`` new clips (seeds never used above), and the keep rate is measured under
   the same taste: the musician's mean keep probability (the expected share kept, which
   does not add coin-flip noise to the figure).

Also measured, per run: the **control** (the musician with the opposite taste, calibrated
to the same 30%, judging the shipped and the personal model's clips: it should gain
nothing); the **ceiling** (the keep rate of the shipped model's clips re-weighted by what
a perfect tuner would reach, ``exp(w z / c)`` with the fitted reward model's log-odds
``z``: the tilt the KL objective asks for); **realism** (two-sample AUC of the clips
against held-out Essen 4-bar openings, personal minus shipped; ``--realism-clips 0``
skips it); and **generation speed** (CPU time of ``generate_many`` on the personal model
over the shipped one's, same clips).

Targets: keep rate +50% relative (mean over seeds) for every taste; control does not
rise; realism rises by <= 0.05; tuning <= 180 s for 200 verdicts; generation within 1.1x.
Exit status 1 when a target is missed, 2 for bad arguments. ``--out FILE.json`` keeps the
numbers, ``--markdown FILE`` the table (docs/taste.md carries it).

    .venv/bin/python bench/bench_taste.py                      # 3 tastes x 3 seeds, 200 verdicts
    .venv/bin/python bench/bench_taste.py --seeds 1 --clips 64 --realism-clips 0   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.cli.tune import DEFAULT_KL  # noqa: E402
from engine.evaluation import twosample  # noqa: E402
from engine.evaluation.evaluate import generated_tokens  # noqa: E402
from engine.evaluation.musician import ALL_TASTES, DEV_TASTES, TASTES, Musician  # noqa: E402

BARS = 4
BASE_RATE = 0.3
GAIN_TARGET = 0.5
REALISM_TARGET = 0.05
TUNE_SECONDS_TARGET = 180.0
SPEED_TARGET = 1.1


def tokens_of(clips: list[Any]) -> list[np.ndarray]:
    """Each clip's lead melody; a clip without notes is all rests (it still counts)."""
    return [generated_tokens(c) for c in clips]


def record(store: Path, clips: list[Any], labels: np.ndarray) -> None:
    """The verdicts into a feedback store, as the CLI records them."""
    from engine.feedback import FeedbackStore, Judgement

    with FeedbackStore(store) as fs:
        fs.record_many([Judgement(c, "keep" if k else "discard", None, "cli", f"sim/clip-{i:04d}.json")
                        for i, (c, k) in enumerate(zip(clips, labels))])


def run_tune(store: Path, models: Path, name: str, seed: int, kl: float, verdicts: int,
             episodes: int | None) -> tuple[float, float, str]:
    """``qriff tune`` in a subprocess: (wall seconds, CPU seconds of the child, its output)."""
    cmd = [sys.executable, "-m", "engine.cli", "tune", "--out", name, "--store", str(store), "--seed", str(seed),
           "--kl", f"{kl:g}", "--verdicts", str(verdicts)]
    if episodes is not None:
        cmd += ["--episodes", str(episodes)]
    env = dict(os.environ, QRIFF_MODEL_DIR=str(models), PYTHONPATH=str(ROOT))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"qriff tune failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout


def cpu_of(fn: Any, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        c0 = time.process_time()
        fn()
        best = min(best, time.process_time() - c0)
    return best


def load_average() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def one_run(taste: str, seed: int, args: argparse.Namespace, shipped: Any, reference: list[np.ndarray],
            openings: np.ndarray | None, work: Path) -> dict[str, Any]:
    from engine.learn.personal import load_reward_model
    from engine.runtime import Policy

    musician = Musician.calibrated(taste, ALL_TASTES[taste], reference, 16, BASE_RATE)
    opposite = musician.opposite(reference, 16)
    rng = np.random.default_rng(seed)
    judged = shipped.generate_many(args.verdicts, seed=1_000_000 * (seed + 1), bars=BARS)
    labels = musician.judge(tokens_of(judged), rng)
    store, models, name = work / f"{taste}-{seed}.sqlite", work / "models", f"{taste}-s{seed}"
    record(store, judged, labels)
    wall, cpu, _ = run_tune(store, models, name, seed, args.kl, args.verdicts, args.episodes)
    personal = Policy.load(models / f"{name}.onnx")
    reward = load_reward_model(models / f"{name}.taste.json")  # with its network, when it reads the embedding
    fresh_seed = 2_000_000 * (seed + 1)
    n_gen = max(args.clips, args.realism_clips)
    base_all = tokens_of(shipped.generate_many(n_gen, seed=fresh_seed, bars=BARS))
    tuned_all = tokens_of(personal.generate_many(n_gen, seed=fresh_seed, bars=BARS))
    base_seqs, tuned_seqs = base_all[:args.clips], tuned_all[:args.clips]
    z = np.clip(reward.score(base_seqs, 16), -5, 5)
    from engine.mdp import styles

    tuned_cfg = personal.info.train_config
    kl_kept = float(tuned_cfg.get("kl_coef", args.kl))  # the realism guard may have doubled --kl
    tilt = np.exp(styles.TERM_DEFAULTS[styles.TASTE_TERM] * z / kl_kept)
    tilt /= tilt.sum()
    row: dict[str, Any] = {
        "taste": taste, "seed": seed, "verdicts": args.verdicts, "kept_verdicts": int(labels.sum()),
        "reward_heldout_auc": reward.heldout_auc, "reward_representation": reward.representation,
        "base_keep": float(musician.keep_probability(base_seqs).mean()),
        "tuned_keep": float(musician.keep_probability(tuned_seqs).mean()),
        "ceiling_keep": float(np.sum(tilt * musician.keep_probability(base_seqs))),
        "control_base_keep": float(opposite.keep_probability(base_seqs).mean()),
        "control_tuned_keep": float(opposite.keep_probability(tuned_seqs).mean()),
        "tune_wall_s": round(wall, 1), "tune_cpu_s": round(cpu, 1), "load": load_average(),
        "kl_asked": args.kl, "kl_kept": kl_kept,
        "guard_rises": [c["rise"] for c in tuned_cfg.get("realism_guard", {}).get("checks", [])],
    }
    row["gain"] = row["tuned_keep"] / row["base_keep"] - 1.0
    row["control_gain"] = row["control_tuned_keep"] / row["control_base_keep"] - 1.0
    if openings is not None:
        n = args.realism_clips
        b = twosample.feature_matrix(base_all[:n], 16)
        t = twosample.feature_matrix(tuned_all[:n], 16)
        row["auc_base"] = twosample.two_sample_test(b, openings, seed=seed).auc
        row["auc_tuned"] = twosample.two_sample_test(t, openings, seed=seed).auc
        row["auc_rise"] = row["auc_tuned"] - row["auc_base"]
    row["dial"] = {}
    for w in args.dial:  # the same personal model with the taste term dialled to w
        seqs = tokens_of(personal.generate_many(n_gen, seed=fresh_seed, bars=BARS, style=f"folk,taste={w:g}"))
        d = {"keep": float(musician.keep_probability(seqs[:args.clips]).mean()),
             "control_keep": float(opposite.keep_probability(seqs[:args.clips]).mean())}
        if openings is not None:
            d["auc_rise"] = twosample.two_sample_test(twosample.feature_matrix(seqs[:args.realism_clips], 16),
                                                      openings, seed=seed).auc - row["auc_base"]
        row["dial"][f"{w:g}"] = d
    if args.speed:
        row["speed_ratio"] = (cpu_of(lambda: personal.generate_many(64, seed=5, bars=BARS))
                              / cpu_of(lambda: shipped.generate_many(64, seed=5, bars=BARS)))
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    return row


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for taste in dict.fromkeys(r["taste"] for r in rows):
        rs = [r for r in rows if r["taste"] == taste]

        def ms(key: str, rs: list[dict[str, Any]] = rs) -> tuple[float, float]:
            v = np.array([r[key] for r in rs if key in r], np.float64)
            return (float(v.mean()), float(v.std())) if len(v) else (float("nan"), float("nan"))

        s: dict[str, Any] = {k: ms(k) for k in ("base_keep", "tuned_keep", "ceiling_keep", "gain", "control_base_keep",
                                "control_tuned_keep", "control_gain", "auc_base", "auc_tuned", "auc_rise",
                                "tune_wall_s", "tune_cpu_s", "reward_heldout_auc", "speed_ratio")}
        s["seeds"] = len(rs)
        s["kl_kept"] = " / ".join(f"{r['kl_kept']:g}" for r in rs)
        s["gain_of_means"] = s["tuned_keep"][0] / s["base_keep"][0] - 1.0
        s["met"] = {
            "keep rate +50%": s["gain_of_means"] >= GAIN_TARGET,
            "control does not rise": s["control_tuned_keep"][0] <= s["control_base_keep"][0],
            "realism rise <= 0.05": (s["auc_rise"][0] <= REALISM_TARGET) if not np.isnan(s["auc_rise"][0]) else None,
            "tuning <= 180 s": max(r["tune_wall_s"] for r in rs) <= TUNE_SECONDS_TARGET,
            "generation <= 1.1x": (s["speed_ratio"][0] <= SPEED_TARGET) if not np.isnan(s["speed_ratio"][0])
            else None,
        }
        out[taste] = s
    return out


def dial_markdown(rows: list[dict[str, Any]]) -> str:
    """Keep-rate gain and realism rise at each taste weight, mean over seeds."""
    weights = list(rows[0]["dial"]) if rows and rows[0].get("dial") else []
    if not weights:
        return ""
    lines = ["| taste | " + " | ".join(f"taste={w}: gain / control gain / realism rise" for w in weights) + " |",
             "|---|" + "---|" * len(weights)]
    for taste in dict.fromkeys(r["taste"] for r in rows):
        rs = [r for r in rows if r["taste"] == taste]
        base = np.mean([r["base_keep"] for r in rs])
        cbase = np.mean([r["control_base_keep"] for r in rs])
        cells = []
        for w in weights:
            keep = np.mean([r["dial"][w]["keep"] for r in rs])
            ckeep = np.mean([r["dial"][w]["control_keep"] for r in rs])
            rise = [r["dial"][w]["auc_rise"] for r in rs if "auc_rise" in r["dial"][w]]
            cells.append(f"{100 * (keep / base - 1):+.0f}% / {100 * (ckeep / cbase - 1):+.0f}% / "
                         + (f"{np.mean(rise):+.3f}" if rise else "n/a"))
        lines.append(f"| {taste} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown(summary: dict[str, dict[str, Any]], args: argparse.Namespace, command: str, when: str,
             load: str) -> str:
    def pm(v: tuple[float, float], pct: bool = True, digits: int = 1) -> str:
        if np.isnan(v[0]):
            return "n/a"
        return f"{100 * v[0]:.{digits}f}% ± {100 * v[1]:.{digits}f}" if pct else f"{v[0]:.3f} ± {v[1]:.3f}"

    def mark(ok: bool | None) -> str:
        return "" if ok is None else (" ✓" if ok else " ✗")

    lines = [f"Command: `{command}`  ",
             f"Date: {when}; machine: {platform.node() or 'this machine'} ({os.cpu_count()} cores, "
             f"{platform.machine()}); load average at the end: {load}. "
             f"{args.verdicts} verdicts, {args.clips} clips each side, {BARS} bars, KL c = {args.kl:g}, "
             f"mean ± sd over seeds.", "",
             "| taste | seeds | reward AUC (held out) | KL kept (guard) | shipped keep | personal keep | gain (of means) | "
             "ceiling | control: shipped → personal | realism AUC: shipped → personal (rise) | tune wall / CPU s | "
             "generation CPU ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for taste, s in summary.items():
        met = s["met"]
        realism = ("n/a" if np.isnan(s["auc_rise"][0]) else
                   f"{s['auc_base'][0]:.3f} → {s['auc_tuned'][0]:.3f} ({s['auc_rise'][0]:+.3f}"
                   f"{mark(met['realism rise <= 0.05'])})")
        speed = "n/a" if np.isnan(s["speed_ratio"][0]) else \
            f"{s['speed_ratio'][0]:.2f}x{mark(met['generation <= 1.1x'])}"
        label = f"{taste} (dev)" if taste in DEV_TASTES else taste
        lines.append(
            f"| {label} | {s['seeds']} | {pm(s['reward_heldout_auc'], False)} | {s['kl_kept']} | {pm(s['base_keep'])} | "
            f"{pm(s['tuned_keep'])} | {100 * s['gain_of_means']:+.0f}%{mark(met['keep rate +50%'])} | "
            f"{pm(s['ceiling_keep'])} | {pm(s['control_base_keep'])} → {pm(s['control_tuned_keep'])}"
            f"{mark(met['control does not rise'])} | {realism} | "
            f"{s['tune_wall_s'][0]:.0f} / {s['tune_cpu_s'][0]:.0f}{mark(met['tuning <= 180 s'])} | {speed} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tastes", default=",".join(TASTES),
                   help=f"comma-separated: the evaluation tastes {', '.join(TASTES)} (the default), or the development "
                   f"tastes {', '.join(DEV_TASTES)} (on which the defaults are chosen), or 'dev' for all of those")
    p.add_argument("--seeds", type=int, default=3, help="seeds per taste (default 3)")
    p.add_argument("--verdicts", type=int, default=200, help="clips the musician judges (default 200)")
    p.add_argument("--clips", type=int, default=200, help="clips generated after tuning, each model (default 200)")
    p.add_argument("--kl", type=float, default=DEFAULT_KL, help=f"qriff tune --kl (default {DEFAULT_KL:g}, qriff tune's own)")
    p.add_argument("--episodes", type=int, default=None, help="qriff tune --episodes (default: its own)")
    p.add_argument("--realism-clips", type=int, default=330,
                   help="clips of each model in the two-sample test (default 330, about the held-out openings; 0: skip)")
    p.add_argument("--dial", default="0,2,3", help="other taste weights to measure the personal model at "
                   "(comma-separated; default 0,2,3; '' for none)")
    p.add_argument("--no-speed", dest="speed", action="store_false", help="skip the generation-speed ratio")
    p.add_argument("--out", type=Path, default=None, help="write the rows and summary as JSON")
    p.add_argument("--markdown", type=Path, default=None, help="write the table as markdown")
    args = p.parse_args(argv)
    tastes = list(DEV_TASTES) if args.tastes == "dev" else [t.strip() for t in args.tastes.split(",") if t.strip()]
    args.dial = [float(w) for w in args.dial.split(",") if w.strip()]
    bad = [t for t in tastes if t not in ALL_TASTES]
    if bad or args.seeds < 1 or args.verdicts < 20 or args.clips < 10 or args.realism_clips < 0:
        p.error(f"tastes {bad} unknown (allowed {', '.join(ALL_TASTES)}, or 'dev'), or --seeds < 1, --verdicts < 20, "
                "--clips < 10 or --realism-clips < 0")
    import torch

    torch.set_num_threads(1)
    from engine.runtime import Policy

    shipped = Policy.load()
    reference = tokens_of(shipped.generate_many(400, seed=10_000, bars=BARS))
    openings = None
    if args.realism_clips:
        from engine.evaluation import evaluate

        ref = evaluate.corpus_set(BARS, "major", (4, 4), n=100_000, split="heldout", sources=["essen"], seed=0)
        openings = twosample.feature_matrix(ref.sequences, 16)
        print(f"realism reference: {len(ref.sequences)} held-out Essen openings of {BARS} bars", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="qriff-taste-") as tmp:
        for taste in tastes:
            for seed in range(args.seeds):
                rows.append(one_run(taste, seed, args, shipped, reference, openings, Path(tmp)))
    summary = summarise(rows)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = load_average()
    command = "python bench/bench_taste.py " + " ".join(argv if argv is not None else sys.argv[1:])
    table = markdown(summary, args, command.strip(), when, load)
    dial = dial_markdown(rows)
    if dial:
        table += "\nThe taste dial (the same personal models, `--style folk,taste=W`; gains against the shipped " \
                 "model's keep rate, mean over seeds):\n\n" + dial
    print(table)
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "summary": summary, "when": when, "load": load,
                                        "command": command}, indent=1, default=str) + "\n")
    if args.markdown:
        args.markdown.write_text(table)
    # the targets are for its tastes; the development tastes are reported, not judged
    missed = [f"{t}: {k}" for t, s in summary.items() if t in TASTES for k, ok in s["met"].items() if ok is False]
    if missed:
        print("missed: " + "; ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
