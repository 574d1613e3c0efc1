"""The study that chose ``qriff tune``'s defaults, on the simulated musician's development tastes.

``qriff tune``'s defaults (the KL coefficient above all) must not be chosen on the tastes the
taste bench reports (:data:`engine.evaluation.musician.TASTES`), or the bench would measure its
own tuning. This script runs the same loop as ``bench/bench_taste.py`` on the development tastes
(:data:`engine.evaluation.musician.DEV_TASTES`, over features the reward model's descriptors do
not name), in process and for several tuning settings on the same verdicts:

1. the shipped model makes 200 clips (4 bars, C major, default style) and the musician judges them;
2. the reward model is fitted on those verdicts (``qriff tune``'s own);
3. for each ``--variant`` (``TuneConfig`` fields, ``"kl_coef=2;lam=0.5"``; ``""`` is the defaults),
   the shipped model is tuned toward it and the personal model makes ``--clips`` fresh clips.

Per run it reports the musician's keep rate (mean keep probability) of the shipped and the tuned
clips and the gain; the **ceiling** (the keep rate of the shipped clips re-weighted by the exact
optimum of the KL objective, ``odds(keep)^(1/c)`` of the fitted reward model); the mean reward-model
log-odds of shipped, tuned and ceiling clips, and the share of that gap the tuner closed; the
tuned model's **realism** rise (two-sample AUC against 331 held-out Essen openings, 330 clips a
side; ``--realism-clips 0`` skips it); and the tuning CPU time. The summary gives, per variant,
mean ± sd over the runs every variant completed.

It checks no target (it is a study, like ``train_table.py``): the rule that picked the default
is in docs/taste.md.

    python bench/taste_defaults.py --variant "" --variant "kl_coef=2" --variant "kl_coef=1.5"
"""

from __future__ import annotations

import argparse
import ast
import collections
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.evaluation.musician import ALL_TASTES, DEV_TASTES, Musician  # noqa: E402

BARS = 4


def parse_variant(text: str) -> dict[str, Any]:
    """``"kl_coef=2;lam=0.5"`` -> ``{"kl_coef": 2.0, "lam": 0.5}`` (values are Python literals)."""
    from engine.learn.tune import TuneConfig

    out: dict[str, Any] = {}
    fields = TuneConfig.__dataclass_fields__
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, _, value = part.partition("=")
        if key not in fields or key in ("seed", "quiet", "extra"):
            raise SystemExit(f"taste_defaults.py: error: --variant {text!r}: {key!r} is not a TuneConfig setting")
        out[key] = ast.literal_eval(value)
    return out


def one_taste(taste: str, seed: int, variants: list[str], args: argparse.Namespace, shipped: Any,
              reference: list[np.ndarray], openings: np.ndarray | None) -> list[dict[str, Any]]:
    from engine.evaluation import twosample
    from engine.evaluation.evaluate import generated_tokens
    from engine.evaluation.taste import fit_reward_model, representations_of
    from engine.learn.embedding import ClipEmbedder
    from engine.learn.personal import SHIPPED_POLICY_WEIGHTS, contexts_of
    from engine.learn.seqexport import export_seq_model
    from engine.learn.seqmodel import load_policy
    from engine.learn.tune import TuneConfig, tune_policy, tuned_terms
    from engine.runtime import Policy

    def tok(clips: list[Any]) -> list[np.ndarray]:
        return [generated_tokens(c) for c in clips]

    musician = Musician.calibrated(taste, ALL_TASTES[taste], reference, 16, 0.3)
    judged_clips = shipped.generate_many(args.verdicts, seed=1_000_000 * (seed + 1), bars=BARS)
    judged = tok(judged_clips)
    labels = musician.judge(judged, np.random.default_rng(seed))
    # the reward model as qriff tune fits it: the three representations, the shipped model's embedding among them
    embedder = ClipEmbedder.from_weights(SHIPPED_POLICY_WEIGHTS, shipped.info.model_id)
    reward = fit_reward_model(representations_of(judged, 16, embedder, judged_clips), labels, seed=seed,
                              embedder=embedder)

    def score(s: list[np.ndarray], spb: list[int], contexts: list[Any] | None = None) -> np.ndarray:
        return np.clip(reward.score(s, spb, contexts), -5.0, 5.0)

    n_gen = max(args.clips, args.realism_clips)
    fresh_seed = 2_000_000 * (seed + 1)
    base_all = tok(shipped.generate_many(n_gen, seed=fresh_seed, bars=BARS))
    base = base_all[:args.clips]
    p_base, z_base = musician.keep_probability(base), score(base, [16] * len(base))
    auc_base = (twosample.two_sample_test(twosample.feature_matrix(base_all[:args.realism_clips], 16), openings,
                                          seed=seed).auc if openings is not None else float("nan"))
    terms = shipped.info.style_terms
    contexts = contexts_of(judged_clips, terms)
    base_net = load_policy(SHIPPED_POLICY_WEIGHTS)
    rows = []
    for variant in variants:
        cfg = TuneConfig(seed=seed, quiet=True, **parse_variant(variant))
        c0 = time.process_time()
        net, _ = tune_policy(base_net, terms, contexts, score, cfg)
        cpu = time.process_time() - c0
        with tempfile.TemporaryDirectory(prefix="qriff-defaults-") as tmp:
            export_seq_model(net, Path(tmp) / "tuned.onnx", tuned_terms(terms), check=False)
            tuned_all = tok(Policy.load(Path(tmp) / "tuned.onnx").generate_many(n_gen, seed=fresh_seed, bars=BARS))
        tuned = tuned_all[:args.clips]
        tilt = np.exp(z_base / cfg.kl_coef)
        tilt /= tilt.sum()
        z_tuned = float(score(tuned, [16] * len(tuned)).mean())
        z_ceiling = float(np.sum(tilt * z_base))
        tuned_keep = float(musician.keep_probability(tuned).mean())
        row: dict[str, Any] = {"taste": taste, "seed": seed, "variant": variant, "reward_auc": round(reward.heldout_auc, 3),
               "representation": reward.representation, "base_keep": round(float(p_base.mean()), 4),
               "tuned_keep": round(tuned_keep, 4),
               "ceiling_keep": round(float(np.sum(tilt * p_base)), 4),
               "z_base": round(float(z_base.mean()), 3), "z_tuned": round(z_tuned, 3), "z_ceiling": round(z_ceiling, 3),
               "gap_closed": round((z_tuned - float(z_base.mean())) / max(z_ceiling - float(z_base.mean()), 1e-9), 3),
               "tune_cpu_s": round(cpu, 1)}
        row["gain"] = round(tuned_keep / float(p_base.mean()) - 1.0, 4)
        if openings is not None:
            auc = twosample.two_sample_test(twosample.feature_matrix(tuned_all[:args.realism_clips], 16), openings,
                                            seed=seed).auc
            row["realism_rise"] = round(auc - auc_base, 4)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def summary(rows: list[dict[str, Any]], variants: list[str]) -> str:
    """Per variant, mean ± sd over the (taste, seed) runs every variant completed."""
    by: dict[str, dict[tuple[str, int], dict[str, Any]]] = collections.defaultdict(dict)
    for r in rows:
        by[r["variant"]][(r["taste"], r["seed"])] = r
    common = set.intersection(*(set(by[v]) for v in variants)) if all(v in by for v in variants) else set()
    lines = [f"Runs in every variant: {len(common)} ({', '.join(f'{t} {s}' for t, s in sorted(common))})", "",
             "| variant | keep gain | ceiling gain | reward gap closed (median) | realism rise (max) | tune CPU s |",
             "|---|---|---|---|---|---|"]
    for v in variants:
        rs = [by[v][k] for k in sorted(common)]
        if not rs:
            continue
        gain = np.array([r["gain"] for r in rs])
        ceil = np.array([r["ceiling_keep"] / r["base_keep"] - 1 for r in rs])
        rise = np.array([r.get("realism_rise", np.nan) for r in rs])
        lines.append(f"| `{v or '(defaults)'}` | {100 * gain.mean():+.1f}% ± {100 * gain.std():.1f} | "
                     f"{100 * ceil.mean():+.1f}% | {np.median([r['gap_closed'] for r in rs]):.2f} | "
                     f"{np.mean(rise):+.3f} ± {np.std(rise):.3f} ({np.max(rise):+.3f}) | "
                     f"{np.mean([r['tune_cpu_s'] for r in rs]):.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tastes", default=",".join(DEV_TASTES),
                   help=f"comma-separated (default: the development tastes {', '.join(DEV_TASTES)})")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--variant", action="append", default=None,
                   help="TuneConfig settings to try, 'key=value;key=value' ('' is the defaults); repeatable")
    p.add_argument("--verdicts", type=int, default=200, help="clips the musician judges (default 200)")
    p.add_argument("--clips", type=int, default=300, help="fresh clips a model for the keep rate (default 300)")
    p.add_argument("--realism-clips", type=int, default=330, help="clips a side of the realism test (0: skip)")
    p.add_argument("--out", type=Path, default=None, help="write the rows as JSON")
    args = p.parse_args(argv)
    tastes = [t.strip() for t in args.tastes.split(",") if t.strip()]
    bad = [t for t in tastes if t not in ALL_TASTES]
    if bad or args.verdicts < 20 or args.clips < 10 or args.realism_clips < 0:
        p.error(f"tastes {bad} unknown (allowed {', '.join(ALL_TASTES)}), or --verdicts < 20, --clips < 10 or "
                "--realism-clips < 0")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    variants = args.variant if args.variant is not None else [""]
    for v in variants:
        parse_variant(v)
    import torch

    torch.set_num_threads(1)
    from engine.evaluation import evaluate, twosample
    from engine.evaluation.evaluate import clip_tokens
    from engine.runtime import Policy

    shipped = Policy.load()
    reference = [clip_tokens(c) for c in shipped.generate_many(400, seed=10_000, bars=BARS)]
    openings = None
    if args.realism_clips:
        ref = evaluate.corpus_set(BARS, "major", (4, 4), n=100_000, split="heldout", sources=["essen"], seed=0)
        openings = twosample.feature_matrix(ref.sequences, 16)
    rows = [r for t in tastes for s in seeds for r in one_taste(t, s, variants, args, shipped, reference, openings)]
    print(summary(rows, variants))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
