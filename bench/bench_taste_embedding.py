"""Does the sequence network's own embedding earn its place as a taste representation?

For each taste and seed, the shipped model generates clips (4 bars, C major, default
style, as ``bench_taste.py`` does); a simulated musician judges ``--verdicts`` of them; a
reward model is fitted on those verdicts over each representation alone (``descriptors``,
``features``, ``embedding``) and over all three, where validation picks
(:func:`engine.evaluation.taste.fit_reward_model`). Each is scored on ``--fresh`` clips
never judged, whose verdicts the same musician draws: the ROC AUC there is the figure
(also recorded: each model's own held-out-quarter AUC, a noisier figure on 13 clips at 50
verdicts). Alongside, per taste: the **ceiling** (the AUC of the musician's true keep
probability on the same fresh verdicts: no model can rank better) and a **negative
control** (the embedding fitted on shuffled verdicts, mean of 5 shuffles: it must stay
near 0.5). The pooling study fits each half of the embedding alone (the mean of the states,
the final state).

Tastes: ``stepwise-long`` (a descriptor taste, :data:`engine.evaluation.musician.TASTES`)
and two hidden rules over the tokens that none of the five descriptors reads:
``ends-on-tonic`` (the last note is a tonic) and ``repeated-notes`` (the share of notes
that repeat the previous pitch). Each keeps 30% of the shipped model's clips.

Then the cost in ``qriff tune`` on 200 verdicts of ``ends-on-tonic``: fitting the reward
model with validation over the two old representations and over all three (the embedding
computed too), and one tune run at the default settings (:class:`engine.learn.tune.TuneConfig`,
KL 3) with a reward model reading ``features`` and one reading ``embedding``: the wall time
of each and of the run's score calls (every bar prefix of 32 clips a round).

Exit status 1 when the embedding does not earn its place or costs too much: its fresh AUC
at the largest verdict count on a non-descriptor taste is not 0.1 above the shuffled
control, or fitting and tuning with it take over 180 s (issue 21's tuning target).

    .venv/bin/python bench/bench_taste_embedding.py                      # 5 seeds, 50 and 200 verdicts
    .venv/bin/python bench/bench_taste_embedding.py --seeds 1 --tune 0   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.evaluation import metrics  # noqa: E402
from engine.evaluation.evaluate import clip_tokens  # noqa: E402
from engine.evaluation.musician import TASTES, Musician  # noqa: E402

BARS = 4
BASE_RATE = 0.3
REPS = ("descriptors", "features", "embedding")
CONTROL_MARGIN = 0.1
TUNE_SECONDS_TARGET = 180.0
#: Shuffled-verdict fits averaged for the negative control.
SHUFFLES = 5


def ends_on_tonic(seq: np.ndarray) -> float:
    notes = metrics.notes_of(np.asarray(seq))
    return float(notes and (notes[-1][0] - 14) % 12 == 0)


def repeated_notes(seq: np.ndarray) -> float:
    p = np.array([q for q, _ in metrics.notes_of(np.asarray(seq))])
    return float((np.diff(p) == 0).mean()) if len(p) > 1 else 0.0


#: Hidden rules over the tokens (name -> (feature of a melody, weight per standard deviation)).
RULES: dict[str, tuple[Callable[[np.ndarray], float], float]] = {
    "ends-on-tonic": (ends_on_tonic, 2.0),
    "repeated-notes": (repeated_notes, 1.5),
}


class RuleMusician:
    """A logistic keep probability over one rule's feature, calibrated like
    :class:`~engine.evaluation.musician.Musician` to keep ``base_rate`` of the reference clips."""

    def __init__(self, rule: str, reference: Sequence[np.ndarray], base_rate: float = BASE_RATE) -> None:
        self.fn, self.weight = RULES[rule]
        v = self._values(reference)
        self.mu, self.sd = v.mean(), v.std() + 1e-9
        z = self._z(v)
        lo, hi = -20.0, 20.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if np.mean(1 / (1 + np.exp(-(z + mid)))) < base_rate else (lo, mid)
        self.bias = (lo + hi) / 2

    def _values(self, seqs: Sequence[np.ndarray]) -> np.ndarray:
        return np.array([self.fn(s) for s in seqs])

    def _z(self, v: np.ndarray) -> np.ndarray:
        return self.weight * (v - self.mu) / self.sd

    def keep_probability(self, seqs: Sequence[np.ndarray], steps_per_bar: int = 16) -> np.ndarray:
        return 1 / (1 + np.exp(-(self._z(self._values(seqs)) + self.bias)))


def auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score)) if len(np.unique(y)) == 2 else float("nan")


def experiment(args: argparse.Namespace, shipped: Any, embedder: Any) -> list[dict[str, Any]]:
    from engine.evaluation.taste import fit_reward_model, representations_of

    reference = [clip_tokens(c) for c in shipped.generate_many(300, seed=7, bars=BARS)]
    musicians: dict[str, Any] = {"stepwise-long": Musician.calibrated("stepwise-long", TASTES["stepwise-long"],
                                                                       reference, 16, BASE_RATE)}
    musicians.update({name: RuleMusician(name, reference) for name in RULES})
    n_max = max(args.verdicts)
    rows = []
    for seed in range(args.seeds):
        clips = shipped.generate_many(n_max + args.fresh, seed=1_000_000 * (seed + 1), bars=BARS)
        seqs = [clip_tokens(c) for c in clips]
        reps = representations_of(seqs, 16, embedder, clips)
        for taste, m in musicians.items():
            rng = np.random.default_rng(seed)
            p = m.keep_probability(seqs)
            y = (rng.random(len(seqs)) < p).astype(np.int64)
            judged, fresh = np.arange(n_max), np.arange(n_max, len(seqs))
            ceiling = auc(y[fresh], p[fresh])
            for n in args.verdicts:
                idx = judged[:n]
                if min(int(y[idx].sum()), n - int(y[idx].sum())) < 5:
                    continue  # too few of one verdict: qriff tune would refuse
                row: dict[str, Any] = {"taste": taste, "seed": seed, "verdicts": n, "ceiling": ceiling}
                for r in REPS:
                    model = fit_reward_model({r: reps[r][idx]}, y[idx], seed=seed)
                    row[f"{r}_fresh"] = auc(y[fresh], model.log_odds(reps[r][fresh]))
                    row[f"{r}_heldout"] = model.heldout_auc
                half = reps["embedding"].shape[1] // 2  # the embedding's two halves alone: the pooling study
                for part, cols in (("mean", slice(0, half)), ("final", slice(half, None))):
                    x = reps["embedding"][:, cols]
                    row[f"embedding-{part}_fresh"] = auc(y[fresh], fit_reward_model({part: x[idx]}, y[idx],
                                                                                     seed=seed).log_odds(x[fresh]))
                picked = fit_reward_model({r: reps[r][idx] for r in REPS}, y[idx], seed=seed)
                row["picked"] = picked.representation
                row["picked_fresh"] = auc(y[fresh], picked.log_odds(reps[picked.representation][fresh]))
                # a shuffled fit points in a random direction, which can still line up with a taste the
                # embedding holds strongly (either sign): the control is the mean over several shuffles
                row["control_fresh"] = float(np.mean([
                    auc(y[fresh], fit_reward_model({"embedding": reps["embedding"][idx]}, rng.permutation(y[idx]),
                                                   seed=seed).log_odds(reps["embedding"][fresh]))
                    for _ in range(SHUFFLES)]))
                rows.append(row)
                print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    return rows


def tune_cost(args: argparse.Namespace, shipped: Any, embedder: Any, weights: Path, terms: tuple[str, ...]
              ) -> dict[str, dict[str, float]]:
    """One default tune run per representation (features, embedding): wall seconds, score seconds."""
    from engine.evaluation.taste import fit_reward_model, representations_of
    from engine.learn.personal import contexts_of
    from engine.learn.seqmodel import load_policy
    from engine.learn.tune import TuneConfig, tune_policy

    reference = [clip_tokens(c) for c in shipped.generate_many(300, seed=7, bars=BARS)]
    m = RuleMusician("ends-on-tonic", reference)
    clips = shipped.generate_many(200, seed=3_000_000, bars=BARS)
    seqs = [clip_tokens(c) for c in clips]
    y = (np.random.default_rng(0).random(len(seqs)) < m.keep_probability(seqs)).astype(np.int64)
    out: dict[str, dict[str, float]] = {}
    for name, emb in (("fit without the embedding", None), ("fit with the embedding", embedder)):
        t0, c0 = time.perf_counter(), time.process_time()  # what qriff tune does before tuning
        fit_reward_model(representations_of(seqs, 16, emb, clips), y, seed=0, embedder=emb)
        out[name] = {"wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(time.process_time() - c0, 1)}
        print(json.dumps({"fit": name, **out[name]}), flush=True)
    reps = representations_of(seqs, 16, embedder, clips)
    for r in ("features", "embedding"):
        reward = fit_reward_model({r: reps[r]}, y, seed=0, embedder=embedder)
        spent = [0.0]

        def score(s: list[np.ndarray], spb: list[int], contexts: Any = None, reward: Any = reward,
                  spent: list[float] = spent) -> np.ndarray:
            t0 = time.perf_counter()
            z = np.clip(reward.score(s, spb, contexts), -5.0, 5.0)
            spent[0] += time.perf_counter() - t0
            return z

        t0, c0 = time.perf_counter(), time.process_time()
        _, log = tune_policy(load_policy(weights), terms, contexts_of(clips, terms), score,
                             TuneConfig(seed=0, kl_coef=3.0, quiet=True))
        out[f"tune, reward reads {r}"] = {"wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(time.process_time() - c0, 1),
                  "score_s": round(spent[0], 1), "episodes": log["episodes"]}
        print(json.dumps({"tune": r, **out[f"tune, reward reads {r}"]}), flush=True)
    return out


def ms(v: Sequence[float]) -> str:
    a = np.asarray([x for x in v if not np.isnan(x)], np.float64)
    return f"{a.mean():.3f} ± {a.std():.3f}" if len(a) else "n/a"


def markdown(rows: list[dict[str, Any]], tune: dict[str, dict[str, float]], args: argparse.Namespace,
             meta: dict[str, str]) -> str:
    lines = [f"`{meta['command']}`: {meta['date']}, {meta['machine']}, load {meta['load']}; "
             f"{args.seeds} seeds, AUC on {args.fresh} fresh clips' verdicts (mean ± sd over seeds)", "",
             "| taste | verdicts | descriptors | features | embedding | picked by validation | picked's AUC "
             "| shuffled control | ceiling |", "|---|---|---|---|---|---|---|---|---|"]
    for taste in dict.fromkeys(r["taste"] for r in rows):
        for n in args.verdicts:
            rs = [r for r in rows if r["taste"] == taste and r["verdicts"] == n]
            if not rs:
                continue
            picks = ", ".join(f"{p} {sum(r['picked'] == p for r in rs)}" for p in REPS
                              if any(r["picked"] == p for r in rs))
            lines.append(f"| {taste} | {n} | " + " | ".join(ms([r[f'{k}_fresh'] for r in rs]) for k in REPS)
                         + f" | {picks} | {ms([r['picked_fresh'] for r in rs])} | "
                         f"{ms([r['control_fresh'] for r in rs])} | {ms([r['ceiling'] for r in rs])} |")
    lines += ["", "Pooling (the embedding's halves alone, same fresh AUC):", "",
              "| taste | verdicts | mean of the states | final state | both (the embedding) |", "|---|---|---|---|---|"]
    for taste in dict.fromkeys(r["taste"] for r in rows):
        for n in args.verdicts:
            rs = [r for r in rows if r["taste"] == taste and r["verdicts"] == n]
            if rs:
                lines.append(f"| {taste} | {n} | " + " | ".join(ms([r[f"embedding{k}_fresh"] for r in rs])
                                                                 for k in ("-mean", "-final", "")) + " |")
    if tune:
        lines += ["", "| qriff tune's steps (default settings, 200 verdicts of ends-on-tonic) | wall s | CPU s "
                  "| of which scoring s |", "|---|---|---|---|"]
        lines += [f"| {r} | {v['wall_s']} | {v['cpu_s']} | {v.get('score_s', '')} |" for r, v in tune.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5, help="seeds (clip sets and verdict draws) per taste (1-20)")
    ap.add_argument("--verdicts", type=int, nargs="+", default=[50, 200], help="verdict counts (20-1000 each)")
    ap.add_argument("--fresh", type=int, default=400, help="clips never judged, scored for the AUC (50-5000)")
    ap.add_argument("--tune", type=int, default=1, choices=(0, 1), help="1: also time one tune run each")
    ap.add_argument("--out", type=Path, help="write the rows as JSON here")
    ap.add_argument("--markdown", type=Path, help="write the table here")
    args = ap.parse_args(argv)
    bad = ([f"--seeds {args.seeds} (allowed 1-20)"] * (not 1 <= args.seeds <= 20)
           + [f"--verdicts {v} (allowed 20-1000)" for v in args.verdicts if not 20 <= v <= 1000]
           + [f"--fresh {args.fresh} (allowed 50-5000)"] * (not 50 <= args.fresh <= 5000))
    if bad:
        ap.error(f"{bad[0]} is out of range")
    import torch

    torch.set_num_threads(1)
    from engine.learn.embedding import ClipEmbedder
    from engine.learn.personal import resolve_base
    from engine.runtime import Policy

    base = resolve_base(None)
    shipped = Policy.load(base.onnx)
    embedder = ClipEmbedder.from_weights(base.weights, base.model_id)
    t0 = time.perf_counter()
    rows = experiment(args, shipped, embedder)
    tune = tune_cost(args, shipped, embedder, base.weights, base.style_terms) if args.tune else {}
    meta = {"command": "python bench/bench_taste_embedding.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "load": " ".join(f"{x:.1f}" for x in
                                                                                       os.getloadavg()),
            "seconds": f"{time.perf_counter() - t0:.0f}"}
    table = markdown(rows, tune, args, meta)
    print(table)
    if args.out:
        args.out.write_text(json.dumps({"meta": meta, "rows": rows, "tune": tune}, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(table)
    n = max(args.verdicts)
    failures = []
    for taste in RULES:
        rs = [r for r in rows if r["taste"] == taste and r["verdicts"] == n]
        emb, ctl = np.mean([r["embedding_fresh"] for r in rs]), np.mean([r["control_fresh"] for r in rs])
        if not emb >= ctl + CONTROL_MARGIN:
            failures.append(f"{taste}: embedding AUC {emb:.3f} is not {CONTROL_MARGIN} above the control {ctl:.3f}")
    if tune:
        total = tune["fit with the embedding"]["wall_s"] + tune["tune, reward reads embedding"]["wall_s"]
        if total > TUNE_SECONDS_TARGET:
            failures.append(f"fitting and tuning with the embedding took {total:.1f} s > {TUNE_SECONDS_TARGET} s")
    for f in failures:
        print(f"MISSED: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
