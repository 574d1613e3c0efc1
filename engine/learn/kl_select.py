"""Scores that pick the KL coefficient: realism and theory on the corpus *valid* split.

The coefficient is chosen on validation data, never on the held-out tunes the final
table is measured on: :func:`validation_scores` generates clips (8 bars, C major, 4/4,
default style, temperature 1) and compares them with the valid split's Essen openings
of the same length (two-sample AUC), and reads RL Tuner's theory rows and the shape
rows that matter most for realism. :func:`pick_coefficient` takes the most realistic
run whose theory rows beat the prior alone's.
"""

from __future__ import annotations

import os
from typing import Any

from engine.evaluation import metrics, structure
from engine.evaluation.evaluate import EvalSet, SequenceContext, corpus_set, two_sample
from engine.runtime import Policy

VAL_BARS = 8


def validation_scores(model: str | os.PathLike[str], n: int = 256, seed: int = 0, style: str | None = None,
                      limit: int | None = None, bars: int = VAL_BARS, split: str = "valid") -> dict[str, Any]:
    """AUC against valid-split Essen openings, theory rows and shape rows of ``n`` clips
    (``limit``: tunes of the corpus read, for quick runs)."""
    policy = Policy.load(model)
    clips = policy.generate_many(n, seed=10_000 + 1000 * seed, key="C", scale="major", bars=bars, style=style)
    from engine.evaluation.evaluate import clip_tokens

    seqs = [clip_tokens(c) for c in clips]
    ref = corpus_set(bars=bars, scale="major", time_signature=(4, 4), n=600, split=split,
                     sources=("essen",), limit=limit, progress=False)
    mine = EvalSet(label="model", sequences=seqs, contexts=[SequenceContext("major", (4, 4))] * len(seqs))
    auc = two_sample(mine, ref, seed=seed)
    rl = metrics.rl_tuner_stats(seqs, "major")
    st = structure.structure_stats(seqs, 16)
    ref_st = structure.structure_stats(ref.sequences, 16)
    shares = metrics.token_shares(seqs)
    return {"auc": float(auc.auc), "not_in_key": float(rl["not_in_key"]),
            "leaps_resolved": float(rl["leaps_resolved"]),
            "excessive_repetition": float(rl["repeated"]),
            "notes_per_bar": float(st["notes_per_bar"]), "corpus_notes_per_bar": float(ref_st["notes_per_bar"]),
            "rest_share": float(shares["rest_share"]), "clips": len(seqs), "reference": ref.note}


def pick_coefficient(runs: dict[float, dict[str, Any]], prior: dict[str, Any]) -> float:
    """The coefficient with the lowest AUC among the runs whose theory rows (notes not in key,
    leaps resolved, excessive repetition) all beat ``prior``'s; the lowest AUC overall if none do."""
    def beats(s: dict[str, Any]) -> bool:
        return (s["not_in_key"] <= prior["not_in_key"] and s["leaps_resolved"] >= prior["leaps_resolved"]
                and s["excessive_repetition"] <= prior["excessive_repetition"])

    good = {c: s for c, s in runs.items() if beats(s)} or runs
    return float(min(good, key=lambda c: (good[c]["auc"], c)))


__all__ = ["validation_scores", "pick_coefficient"]
