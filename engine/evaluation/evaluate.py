"""The evaluation suite behind ``qriff evaluate``: RL Tuner's table, corpus likeness, prior, diversity.

:func:`evaluate_sequences` scores a list of token sequences (relative to C, see
:mod:`engine.evaluation.metrics`) and returns every metric in one dict; :func:`markdown_table`
lays any number of such results beside RL Tuner's published columns. Sets to score
come from a folder of clips (:func:`clip_set`), from the held-out corpus
(:func:`corpus_set`) or from a uniform-random policy (:func:`random_set`).

Protocol: corpus likeness compares against held-out corpus tunes of the same metre
and scale, whole tunes: the ``heldout`` split (valid + test, never trained on). The
corpus row takes the opening bars of tunes drawn from the same held-out tunes, so real
openings are measured against whole tunes, as generated clips are.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.base.errors import ClipError, EngineError
from engine.base.files import atomic_write
from engine.evaluation import metrics, scales, shape, structure
from engine.mdp import observation
from engine.music import theory, tokens
from engine.music.clip import Clip, notes_to_tokens
from engine.music.clipfile import load_clip

log = logging.getLogger(__name__)

#: RL Tuner's published results (Jaques et al. 2017, 100,000 compositions each), as shares.
PUBLISHED_COLUMNS = ("RL Tuner Note RNN", "RL Tuner Q", "RL Tuner Psi", "RL Tuner G")
PUBLISHED: dict[str, tuple[float, float, float, float]] = {
    "repeated": (0.633, 0.0, 0.0002, 0.0003),
    "autocorr_1": (-0.16, -0.11, -0.10, 0.55),
    "autocorr_2": (0.14, 0.03, -0.01, 0.31),
    "autocorr_3": (-0.13, 0.03, 0.01, 0.17),
    "not_in_key": (0.001, 0.0100, 0.0060, 0.287),
    "starts_with_tonic": (0.009, 0.288, 0.287, 0.0),
    "leaps_resolved": (0.772, 0.911, 0.900, 0.522),
    "unique_max": (0.647, 0.564, 0.594, 0.371),
    "unique_min": (0.494, 0.519, 0.583, 0.565),
    "in_motif": (0.059, 0.757, 0.738, 0.693),
    "in_repeated_motif": (0.00007, 0.0011, 0.0009, 0.0001),
}

#: (metric key, row label, format) in table order; "%" = share shown as percent.
ROWS: tuple[tuple[str, str, str], ...] = (
    ("repeated", "notes excessively repeated", "%"),
    ("autocorr_1", "mean autocorrelation lag 1", "r"),
    ("autocorr_2", "mean autocorrelation lag 2", "r"),
    ("autocorr_3", "mean autocorrelation lag 3", "r"),
    ("not_in_key", "notes not in key", "%"),
    ("starts_with_tonic", "starts with tonic", "%"),
    ("leaps_resolved", "leaps resolved", "%"),
    ("unique_max", "unique max note", "%"),
    ("unique_min", "unique min note", "%"),
    ("in_motif", "notes in motif", "%"),
    ("in_repeated_motif", "notes in repeated motif", "%"),
    ("overlap_pitch_class", "overlap with corpus: pitch class", "f"),
    ("overlap_interval", "overlap with corpus: interval", "f"),
    ("overlap_length", "overlap with corpus: note length", "f"),
    ("prior_log_likelihood", "prior log-likelihood per step (nats)", "f"),
    ("distinct_clips", "distinct clips", "%"),
    ("distinct_4grams", "distinct 4-grams", "%"),
    ("rest_share", "rest steps", "%"),
    ("hold_share", "held steps", "%"),
    *structure.STRUCTURE_ROWS,
    *(row for row in shape.SHAPE_ROWS if row[0] not in {k for k, _, _ in structure.STRUCTURE_ROWS}),
    ("characteristic_share", "characteristic degree among notes (see the per-scale table)", "%"),
    ("two_sample_auc", "told apart from the corpus: classifier ROC AUC (0.5 = chance)", "f"),
    ("n", "compositions", "d"),
    ("steps", "steps", "d"),
)


@dataclass
class SequenceContext:
    """The musical frame a token sequence was written in (tokens are relative to its tonic).

    ``key`` is the tonic pitch class (0 = C), ``chords`` one symbol per bar of the
    looping progression, as written (absolute, like a clip's), or None for the scale's
    default progression.
    """

    scale: str = "major"
    time_signature: tuple[int, int] = (4, 4)
    key: int = 0
    chords: list[str] | None = None


@dataclass
class EvalSet:
    """A named set of sequences with their contexts, one row of the table."""

    label: str
    sequences: list[np.ndarray]
    contexts: list[SequenceContext]
    note: str = ""
    names: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- evaluation

def evaluate_sequences(seqs: Sequence[np.ndarray | Sequence[int]], *, reference: Any = None, prior: Any = None,
                       time_signature: tuple[int, int] | str = (4, 4), scale: str = "major",
                       chords: str | Sequence[str] | Sequence[Sequence[str]] | None = None) -> dict[str, float]:
    """Every metric of a set of melodies, as one flat dict.

    ``seqs``: token sequences relative to C (int, each a whole number of bars of
    ``time_signature``). ``reference``: tunes to compare with: ``"heldout"`` (the
    held-out corpus tunes of the same metre and scale, see :func:`corpus_reference`),
    :class:`engine.evaluation.metrics.Histograms`, or a list of token arrays / corpus melodies;
    None leaves the ``overlap_*`` metrics out. ``prior``: ``"shipped"`` or a
    :class:`engine.corpus.prior.PriorModel` for ``prior_log_likelihood`` (mean ``log p`` per
    step, nats); None leaves it out. ``chords``: one progression for all
    sequences (``"C G Am F"`` or a list of symbols), one per sequence, or None for the
    default progression of ``scale``.

    Keys: RL Tuner's (see :func:`engine.evaluation.metrics.rl_tuner_stats`), ``overlap_pitch_class``,
    ``overlap_interval``, ``overlap_length``, ``prior_log_likelihood``,
    ``distinct_clips``, ``distinct_4grams``, ``rest_share``, ``hold_share``,
    ``onset_share``, the structure measures of :func:`engine.evaluation.structure.structure_stats`, the
    shape measures of :func:`engine.evaluation.shape.shape_stats` (chord tones against ``chords``) and,
    for a scale with a characteristic degree (:data:`engine.evaluation.scales.CHARACTERISTIC`),
    ``characteristic_share``. Shares are in 0..1.
    """
    ts = theory.parse_time_signature(time_signature)
    scale = theory.parse_scale(scale)
    seqs = list(seqs)
    if not seqs:
        raise EngineError("no melodies to evaluate: give at least one token sequence")
    if chords is None or isinstance(chords, str) or (len(chords) and isinstance(chords[0], str)):
        per: list[Any] = [chords] * len(seqs)
    else:
        per = list(chords)
        if len(per) != len(seqs):
            raise EngineError(f"got {len(per)} chord progressions for {len(seqs)} melodies: give one, or one each")
    ctxs = [SequenceContext(scale=scale, time_signature=ts, key=0,
                            chords=None if c is None else (c.split() if isinstance(c, str) else list(c))) for c in per]
    if isinstance(reference, str):
        if reference != "heldout":
            raise EngineError(f"reference {reference!r} is not known: give 'heldout' (the held-out corpus tunes of "
                              "the same metre and scale), Histograms, or a list of token sequences")
        ref: metrics.Histograms | None = corpus_reference(ts, scale, "heldout", progress=False)[0]
    else:
        ref = reference if reference is None or isinstance(reference, metrics.Histograms) else _histograms_of(reference)
    if isinstance(prior, str):
        if prior != "shipped":
            raise EngineError(f"prior {prior!r} is not known: give 'shipped' or a PriorModel")
        from engine.corpus.prior import PriorModel

        prior = PriorModel.load()
    return _evaluate([np.asarray(s) for s in seqs], ctxs, ref, prior)


def _histograms_of(items: Sequence[Any]) -> metrics.Histograms:
    return metrics.Histograms.of([getattr(m, "tokens", m) for m in items])


def _evaluate(seqs: list[np.ndarray], ctxs: list[SequenceContext], reference: metrics.Histograms | None,
              prior: Any) -> dict[str, float]:
    by_scale: dict[str, list[np.ndarray]] = {}
    for s, c in zip(seqs, ctxs):
        by_scale.setdefault(c.scale, []).append(s)
    # RL Tuner's statistics are per step or per composition: pool them over scales
    parts = {sc: metrics.rl_tuner_stats(group, sc) for sc, group in by_scale.items()}
    out = _pool(parts)
    if reference is not None:
        ov = metrics.Histograms.of(seqs).overlap(reference)
        out.update({f"overlap_{k}": v for k, v in ov.items()})
    if prior is not None:
        out["prior_log_likelihood"] = prior_log_likelihood(seqs, ctxs, prior)
    out.update(metrics.diversity(seqs))
    out.update(metrics.token_shares(seqs))
    out.update(structure.structure_stats(seqs, [theory.steps_per_bar(c.time_signature) for c in ctxs]))
    out.update(shape.shape_stats(seqs, frames_of(ctxs)))
    if len(by_scale) == 1 and theory.parse_scale(ctxs[0].scale) in scales.CHARACTERISTIC:
        out["characteristic_share"] = scales.degree_share(seqs, scales.CHARACTERISTIC[ctxs[0].scale][0])
    return out


def frames_of(ctxs: Sequence[SequenceContext]) -> list[shape.Frame]:
    """The :class:`engine.evaluation.shape.Frame` of every context (chords relative to its tonic)."""
    cache: dict[Any, shape.Frame] = {}
    out = []
    for c in ctxs:
        k = (c.time_signature, tuple(c.chords) if c.chords else None, c.key, c.scale)
        if k not in cache:
            cache[k] = shape.Frame.of(c.time_signature, c.chords, c.key, c.scale)
        out.append(cache[k])
    return out


def _pool(parts: dict[str, dict[str, float]]) -> dict[str, float]:
    if len(parts) == 1:
        return next(iter(parts.values()))
    n = sum(p["n"] for p in parts.values())
    steps = sum(p["steps"] for p in parts.values())
    out: dict[str, float] = {"n": n, "steps": steps}
    for k in metrics.STEP_METRICS:
        out[k] = sum(p[k] * p["steps"] for p in parts.values()) / steps
    for k in metrics.COMPOSITION_METRICS:
        out[k] = sum(p[k] * p["n"] for p in parts.values()) / n
    res = sum(p["leaps_resolved_count"] for p in parts.values())
    dbl = sum(p["leaps_doubled_count"] for p in parts.values())
    out.update(leaps_resolved=res / (res + dbl) if res + dbl else math.nan, leaps_resolved_count=res,
               leaps_doubled_count=dbl)
    for lag in (1, 2, 3):
        vals = [(p[f"autocorr_{lag}"], p["n"]) for p in parts.values() if not math.isnan(p[f"autocorr_{lag}"])]
        out[f"autocorr_{lag}"] = sum(v * w for v, w in vals) / sum(w for _, w in vals) if vals else math.nan
    return out


def prior_log_likelihood(seqs: Sequence[np.ndarray], ctxs: Sequence[SequenceContext], prior: Any) -> float:
    """Mean ``log p(token | observation)`` per step under ``prior`` (nats), teacher-forced.

    Each sequence is observed exactly as the environment would see it while writing
    it: in its context (scale, metre, chords), lead role, no style.
    """
    from engine.corpus.prior import StepData

    contexts = []
    for s, c in zip(seqs, ctxs):
        steps_per_bar = theory.steps_per_bar(c.time_signature)
        if len(s) % steps_per_bar:
            raise EngineError(f"a melody of {len(s)} steps is not a whole number of {c.time_signature[0]}/"
                              f"{c.time_signature[1]} bars ({steps_per_bar} steps each)")
        contexts.append(observation.MelodyContext.from_music(
            key=c.key, scale=c.scale, bars=len(s) // steps_per_bar, time_signature=c.time_signature, chords=c.chords,
            role="lead", style=np.zeros((0,), np.float32)))
    data = StepData(contexts=contexts, sequences=[np.asarray(s, np.int64) for s in seqs])
    total, n = 0.0, 0
    for obs, y in data.chunks(size=256):
        total += float(prior.log_prob(obs, y).sum())
        n += len(y)
    return total / max(n, 1)


# ------------------------------------------------------------------- sets

def scale_family(scale: str) -> str:
    """``natural_minor`` for the minor scales and modes, else ``major``: the corpus family a scale is compared with."""
    return "natural_minor" if theory.is_minor_scale(scale) else "major"


def corpus_set(bars: int = 2, scale: str = "major", time_signature: tuple[int, int] | str = (4, 4), n: int = 600,
               split: str = "heldout", sources: Sequence[str] | None = None, seed: int = 0, limit: int | None = None,
               progress: bool = True) -> EvalSet:
    """The opening ``bars`` bars of ``n`` corpus tunes of one metre and scale (fewer if the split has fewer).

    Tunes are drawn at random (``seed``) from ``split``; tunes shorter than ``bars`` are skipped.
    """
    from engine.corpus import melodies as corpus

    ts = theory.parse_time_signature(time_signature)
    scale = theory.parse_scale(scale)
    pool = [m for m in corpus.load_corpus(split, sources=sources, limit=limit, progress=progress)
            if m.time_signature == ts and m.scale == scale and m.bars >= bars]
    if not pool:
        raise EngineError(f"the corpus {split} split has no {ts[0]}/{ts[1]} {scale} tunes of {bars}+ bars "
                          f"(sources {', '.join(sources) if sources else 'all'}): try another --scale, "
                          "--time-signature or --split")
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(pool), size=min(n, len(pool)), replace=False).tolist())
    chosen = [pool[i].segment(0, bars) for i in pick]
    return EvalSet(label=f"corpus ({split}, {len(chosen)} x {bars} bars)", sequences=[m.tokens for m in chosen],
                   contexts=[SequenceContext(scale, ts, 0, list(m.chords)) for m in chosen],
                   note=f"opening {bars} bars of {len(chosen)} {ts[0]}/{ts[1]} {scale} tunes from the {split} split",
                   names=[m.name for m in chosen])


def random_set(n: int = 600, bars: int = 2, time_signature: tuple[int, int] | str = (4, 4), scale: str = "major",
               seed: int = 0) -> EvalSet:
    """``n`` sequences drawn uniformly from the 38 tokens at every step (the scale's floor)."""
    ts = theory.parse_time_signature(time_signature)
    scale = theory.parse_scale(scale)
    rng = np.random.default_rng(seed)
    steps = bars * theory.steps_per_bar(ts)
    seqs = [rng.integers(0, tokens.N_ACTIONS, size=steps).astype(np.int64) for _ in range(n)]
    return EvalSet(label=f"uniform random ({n})", sequences=seqs, contexts=[SequenceContext(scale, ts)] * n,
                   note=f"{n} x {bars} bars, every step uniform over the 38 tokens")


def prior_set(prior: Any, n: int = 512, bars: int = 8, time_signature: tuple[int, int] | str = (4, 4),
              scale: str = "major", chords: str | Sequence[str] | None = None, seed: int = 0,
              temperature: float = 1.0) -> EvalSet:
    """``n`` melodies sampled from the corpus prior alone (no RL), the baseline the DQN must beat.

    Each step draws a token from ``softmax(log p(a|s) / temperature)`` for the lead role
    in C (``prior``: ``"shipped"`` or an :class:`engine.corpus.prior.PriorModel`, the
    feed-forward prior). The recurrent prior runs as a model: ``qriff evaluate --prior-sample``
    samples it through the runtime (``engine.cli.evaluate.recurrent_prior_set``).
    """
    if isinstance(prior, str):
        from engine.corpus.prior import PriorModel

        prior = PriorModel.load(None if prior == "shipped" else prior)
    ts = theory.parse_time_signature(time_signature)
    scale = theory.parse_scale(scale)
    chord_list = chords.split() if isinstance(chords, str) else (list(chords) if chords else None)
    ctx = observation.MelodyContext.from_music(key=0, scale=scale, bars=bars, time_signature=ts, chords=chord_list,
                                               role="lead", style=np.zeros((0,), np.float32))
    batch = observation.MelodyBatch.create([ctx] * n)
    rng = np.random.default_rng(seed)
    d0 = observation.obs_dim(0)
    for _ in range(ctx.n_steps):
        lp = prior.log_probs(observation.observe(batch)[:, :d0])
        z = lp / max(temperature, 1e-6) + rng.gumbel(size=lp.shape) if temperature > 0 else lp
        batch.append(z.argmax(axis=1))
    seqs = [batch.tokens[i, :ctx.n_steps].copy() for i in range(n)]
    return EvalSet(label=f"corpus prior alone ({n})", sequences=seqs,
                   contexts=[SequenceContext(scale, ts, 0, chord_list)] * n,
                   note=f"{n} x {bars} bars sampled from the corpus prior alone (no RL), temperature {temperature:g}")


def steps_per_bar_of(evset: EvalSet) -> list[int]:
    """Steps per bar of every melody of a set."""
    return [theory.steps_per_bar(c.time_signature) for c in evset.contexts]


def two_sample(evset: EvalSet, reference: EvalSet, seed: int = 0) -> Any:
    """Classifier two-sample test of ``evset`` against ``reference`` (held-out corpus
    openings of the same length): :class:`engine.evaluation.twosample.TwoSampleResult`. Five folds,
    fewer when a side has under 10 melodies (at least 2 a fold)."""
    from engine.evaluation import twosample

    a = twosample.feature_matrix(evset.sequences, steps_per_bar_of(evset))
    b = twosample.feature_matrix(reference.sequences, steps_per_bar_of(reference))
    return twosample.two_sample_test(a, b, seed=seed, folds=max(2, min(5, min(len(a), len(b)) // 2)))


def two_sample_calibration(reference: EvalSet, seed: int = 0) -> Any:
    """The two-sample test between two random halves of ``reference`` (what chance reads)."""
    from engine.evaluation import twosample

    return twosample.calibration(twosample.feature_matrix(reference.sequences, steps_per_bar_of(reference)),
                                 seed=seed, folds=max(2, min(5, len(reference.sequences) // 4)))


def write_histograms_png(path: str | os.PathLike[str], sets: Sequence[EvalSet], reference: EvalSet) -> Path:
    """A PNG of model-vs-corpus histograms: pitch class, interval, note length, notes per bar.

    One panel per feature; in each, the normalised histogram of ``reference`` (the
    held-out corpus) and of every set in ``sets`` side by side.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [reference, *sets]
    hists = [metrics.Histograms.of(r.sequences) for r in rows]
    density = [np.array([structure.notes_per_bar(s, spb) for s, spb in zip(r.sequences, steps_per_bar_of(r))])
               for r in rows]
    top = max(16.0, max(float(d.max()) for d in density))
    edges = np.arange(0, int(np.ceil(top)) + 2) - 0.5
    panels = [
        ("pitch class of onsets (0 = tonic)", [h.pitch_class for h in hists], np.arange(12), [str(i) for i in range(12)]),
        ("melodic interval, semitones", [h.interval for h in hists], np.arange(-12, 13), None),
        ("note length, sixteenths (16 = 16+)", [h.length for h in hists], np.arange(1, 17), None),
        ("notes per bar (one value per melody)", [np.histogram(d, edges)[0] for d in density],
         np.arange(len(edges) - 1), None),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5))
    width = 0.8 / len(rows)
    for ax, (title, counts, xs, ticks) in zip(axes.ravel(), panels):
        for i, (r, c) in enumerate(zip(rows, counts)):
            c = np.asarray(c, np.float64)
            ax.bar(xs + (i - (len(rows) - 1) / 2) * width, c / max(c.sum(), 1e-12), width, label=r.label)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("share")
        if ticks:
            ax.set_xticks(xs, ticks)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("model vs held-out corpus", fontsize=11)
    fig.tight_layout()
    out = Path(path)

    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=90)

    try:
        return atomic_write(out, write)
    finally:
        plt.close(fig)


def clip_tokens(clip: Clip, source: str = "clip") -> np.ndarray:
    """The clip's lead melody as tokens relative to its tonic (int64 ``[bars * steps_per_bar]``).

    Takes the ``lead`` track, else the first track. ClipError when it has no notes or is
    not monophonic (over a quarter of its notes start while another still sounds).
    """
    if not clip.tracks:
        raise ClipError(f"{source} has no tracks: a melody needs at least one track with notes")
    track = next((t for t in clip.tracks if t.role == "lead"), clip.tracks[0])
    notes = sorted(track.notes, key=lambda n: (n.start, -n.pitch))
    if not notes:
        raise ClipError(f"{source}: track {track.role!r} has no notes: a melody needs at least one note")
    overlap = sum(1 for a, b in zip(notes, notes[1:]) if b.start < a.start + a.duration - 0.125)
    if len(notes) > 1 and overlap / (len(notes) - 1) > 0.25:
        raise ClipError(f"{source} is not a melody: {overlap} of {len(notes)} notes of track {track.role!r} start "
                        "while another sounds (chords); qriff evaluates monophonic lead lines")
    steps_per_bar = theory.steps_per_bar(clip.time_signature)
    return notes_to_tokens(notes, clip.bars * steps_per_bar, tonic_pc=theory.parse_key(clip.key), role="lead",
                           steps_per_beat=clip.steps_per_beat)


def generated_tokens(clip: Clip) -> np.ndarray:
    """:func:`clip_tokens` of a clip a model generated, where a clip without notes is all rests
    (it still counts: a musician judges it and a realism test sees it). Other ClipErrors (chords)
    are raised as by :func:`clip_tokens`."""
    track = next((t for t in clip.tracks if t.role == "lead"), clip.tracks[0] if clip.tracks else None)
    if track is None or not track.notes:
        return np.full(int(clip.bars) * theory.steps_per_bar(clip.time_signature), tokens.REST, np.int64)
    return clip_tokens(clip)


def clip_set(folder: str | os.PathLike[str], label: str | None = None) -> EvalSet:
    """Every ``.json``/``.mid``/``.midi`` clip in ``folder`` (not recursive), sorted by name."""
    p = Path(folder)
    if not p.is_dir():
        raise ClipError(f"clip folder {str(p)!r} does not exist or is not a folder")
    files = sorted(f for f in p.iterdir() if f.suffix.lower() in (".json", ".mid", ".midi") and f.name not in
                   ("evaluation.json",))
    if not files:
        raise ClipError(f"clip folder {str(p)!r} holds no clips: expected .json or .mid files "
                        "(e.g. from qriff generate --out DIR)")
    seqs, ctxs = [], []
    for f in files:
        clip = load_clip(f)
        seqs.append(clip_tokens(clip, str(f)))
        ctxs.append(SequenceContext(theory.parse_scale(clip.scale), clip.time_signature, theory.parse_key(clip.key),
                                    list(clip.chords) or None))
    return EvalSet(label=label or p.name or str(p), sequences=seqs, contexts=ctxs,
                   note=f"{len(files)} clips from {p}", names=[f.name for f in files])


def corpus_reference(time_signature: tuple[int, int] | str = (4, 4), scale: str = "major", split: str = "heldout",
                     sources: Sequence[str] | None = None, limit: int | None = None,
                     progress: bool = True) -> tuple[metrics.Histograms, int]:
    """Histograms of whole held-out tunes of one metre and scale family, and how many tunes."""
    from engine.corpus import melodies as corpus

    ts = theory.parse_time_signature(time_signature)
    fam = scale_family(scale)
    tunes = [m for m in corpus.load_corpus(split, sources=sources, limit=limit, progress=progress)
             if m.time_signature == ts and m.scale == fam]
    if not tunes:
        raise EngineError(f"the corpus {split} split has no {ts[0]}/{ts[1]} {fam} tunes to compare with "
                          f"(sources {', '.join(sources) if sources else 'all'})")
    return _histograms_of(tunes), len(tunes)


def reference_for(evset: EvalSet, split: str = "heldout", sources: Sequence[str] | None = None,
                  limit: int | None = None, progress: bool = True) -> tuple[metrics.Histograms, str]:
    """Reference histograms matching a set's metres and scales (mixed in proportion), and a description."""
    groups = Counter((c.time_signature, scale_family(c.scale)) for c in evset.contexts)
    mix = [np.zeros(metrics.N_PC), np.zeros(metrics.N_INTERVAL), np.zeros(metrics.N_LENGTH)]
    parts = []
    for (ts, fam), count in groups.items():
        hist, n_tunes = corpus_reference(ts, fam, split, sources, limit, progress)
        for i, h in enumerate((hist.pitch_class, hist.interval, hist.length)):
            mix[i] += count * h / max(h.sum(), 1e-12)
        parts.append(f"{n_tunes} {ts[0]}/{ts[1]} {fam}")
    return metrics.Histograms(*mix), f"whole {split} tunes: " + ", ".join(parts)


def evaluate_set(evset: EvalSet, reference: metrics.Histograms | None, prior: Any) -> dict[str, float]:
    """:func:`evaluate_sequences` for an :class:`EvalSet` (each sequence in its own context)."""
    return _evaluate(evset.sequences, evset.contexts, reference, prior)



# ------------------------------------------------------------ scale families

def corpus_degree_shares(families: Sequence[str] = scales.FAMILIES, sources: Sequence[str] | None = None,
                         limit: int | None = None, progress: bool = True) -> dict[str, scales.CorpusShare]:
    """The corpus share of each family's characteristic degree (held-out tunes, with the
    fallbacks of :func:`engine.evaluation.scales.corpus_shares`)."""
    from engine.corpus import melodies as corpus

    heldout = corpus.load_corpus("heldout", sources=sources, limit=limit, progress=progress)
    every = corpus.load_corpus("all", sources=sources, limit=limit, progress=progress)
    return scales.corpus_shares(heldout, every, [f for f in families if f in scales.CHARACTERISTIC])


def scale_rows(evset: EvalSet, shares: dict[str, scales.CorpusShare] | None) -> list[dict[str, Any]]:
    """One row per scale family present in ``evset`` (melodies grouped by their scale):
    ``set``, ``scale``, ``degree``, ``n``, ``share``, ``corpus_share``, ``ratio``, ``basis``.
    Scales without a characteristic degree (:data:`engine.evaluation.scales.CHARACTERISTIC`) are left out."""
    groups: dict[str, list[np.ndarray]] = {}
    for seq, c in zip(evset.sequences, evset.contexts):
        groups.setdefault(theory.parse_scale(c.scale), []).append(seq)
    rows = []
    for fam in [f for f in scales.FAMILIES if f in groups]:
        pc, label = scales.CHARACTERISTIC[fam]
        share = scales.degree_share(groups[fam], pc)
        ref = (shares or {}).get(fam)
        rows.append({"set": evset.label, "scale": fam, "degree": f"{label} (pc {pc})", "n": len(groups[fam]),
                     "share": share, "corpus_share": ref.share if ref else math.nan,
                     "ratio": shape.ratio(share, ref.share) if ref else math.nan, "basis": ref.basis if ref else ""})
    return rows


def scale_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`scale_rows` (the target band of major and harmonic minor marked)."""
    lo, hi = scales.TARGET_BAND
    lines = ["| row | scale | characteristic degree | melodies | share of notes | corpus share | ratio | "
             "corpus tunes |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = format_value(r["ratio"], "f")
        if r["scale"] in scales.TARGET_FAMILIES and not math.isnan(r["ratio"]):
            ratio += f" ({'in' if lo <= r['ratio'] <= hi else 'outside'} {lo}-{hi}x)"
        lines.append(f"| {r['set']} | {r['scale']} | {r['degree']} | {r['n']} | {format_value(r['share'], '%')} | "
                     f"{format_value(r['corpus_share'], '%')} | {ratio} | {r['basis'] or 'n/a'} |")
    return "\n".join(lines)

# ------------------------------------------------------------------ output

def format_value(value: float | None, kind: str) -> str:
    """A metric as the table shows it: ``63.3%``, ``0.007%`` (3 significant digits), ``-.16``, ``0.904``, ``600``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if kind == "%":
        return f"{value * 100:.3g}%"
    if kind == "r":
        text = f"{value:.2f}"
        return text.replace("0.", ".", 1) if abs(value) < 1 else text
    if kind == "d":
        return f"{int(value):,}"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def markdown_table(results: dict[str, dict[str, float]], published: bool = True) -> str:
    """Markdown table: one row per metric, RL Tuner's published columns (when ``published``) then ours.

    ``results`` maps a column label to the dict from :func:`evaluate_sequences`. Metrics
    nobody has are left out; RL Tuner published only its 11 statistics (others show —).
    """
    cols = list(PUBLISHED_COLUMNS if published else ()) + list(results)
    lines = ["| metric | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for key, label, kind in ROWS:
        if not any(key in r for r in results.values()) and not (published and key in PUBLISHED):
            continue
        cells = []
        if published:
            pub = PUBLISHED.get(key)
            cells += [format_value(v, kind) if pub else "—" for v in (pub or (None,) * 4)]
        cells += [format_value(r.get(key), kind) if key in r else "—" for r in results.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(out_dir: str | os.PathLike[str], results: dict[str, dict[str, float]],
                  info: dict[str, Any], per_scale: Sequence[dict[str, Any]] = ()) -> tuple[Path, Path]:
    """Write ``evaluation.json`` (every metric, plus ``info`` and the :func:`scale_rows`) and
    ``evaluation.md`` atomically."""
    out = Path(out_dir)

    def clean(v: Any) -> Any:
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, (np.floating, np.integer)):
            return v.item()
        return v

    payload = {"info": info, "published": {"columns": list(PUBLISHED_COLUMNS),
                                           "metrics": {k: list(v) for k, v in PUBLISHED.items()}},
               "results": {label: {k: clean(v) for k, v in r.items()} for label, r in results.items()},
               "per_scale": [{k: clean(v) for k, v in r.items()} for r in per_scale]}
    text = json.dumps(payload, indent=1)
    md = "# qriff evaluation\n\n" + "\n".join(f"- {k}: {v}" for k, v in info.items()) + "\n\n" + \
        markdown_table(results) + "\n"
    if per_scale:
        md += "\n## Characteristic degree per scale family\n\n" + scale_table(per_scale) + "\n"
    j = atomic_write(out / "evaluation.json", lambda tmp: Path(tmp).write_text(text + "\n"))
    m = atomic_write(out / "evaluation.md", lambda tmp: Path(tmp).write_text(md))
    return j, m
