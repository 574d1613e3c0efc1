"""The model table of issue 16: realism, theory, shape, styles and scales, one row per model.

Every model is evaluated with the same settings: ``--clips`` clips (default 512) of 8 bars
in C major, seeds 0..n-1, temperature 1, default style unless stated (``--style``). A
model is an ONNX file loadable by :meth:`engine.runtime.policy.Policy.load` (recurrent or
not: clips always come from ``Policy.generate``) or a corpus prior ``.npz``, sampled alone
(no RL, style ignored: the "prior alone" row). ``--model NAME=PATH[,PATH...]`` gives one
row; several paths are several seeds, reported as mean ± std (and min-max in the JSON).

Rows (``docs/evaluation.md`` defines each measure):

* **realism**: classifier two-sample AUC against held-out Essen openings of the same
  length (4/4 major tunes of the valid + test splits; 0.5 = can't tell); the calibration
  row tells two random halves of those openings apart.
* **theory** (``engine.evaluation.metrics``): notes not in key, leaps resolved (RL
  Tuner's rule as ``metrics.leap_outcomes`` implements it), notes excessively repeated.
* **shape** (``engine.evaluation.shape``), each with its ratio to the Essen openings;
  the issue's band is 0.75-1.25x.
* **hook** (``--style hook --chords "C G Am F"``): near repeat, chord tones on strong
  beats, distinct clips among the first 256, leaps resolved, AUC.
* **chorale**: 16ths, range. **ambient**: notes a bar, rest steps, not in key.
* **scales** (``engine.evaluation.scales``): in major, natural minor, harmonic minor,
  Dorian and Lydian (each with its default progression), the share of the characteristic
  degree and its ratio to the corpus share.

Every target of the issue is marked met (✓) or missed (✗) on the mean over seeds, with
its figure; comparisons "better than the prior alone" use ``--baseline`` (default: the
row whose name starts with "prior"). ``--tradeoff C=PATH[,PATH...]`` (repeatable) evaluates
models trained with KL coefficient C on the default style only and draws coefficient (log
x) against AUC and against the theory rows (``--tradeoff-png``, default
``docs/images/kl-tradeoff.png``). ``--out DIR`` writes ``quality.json`` and ``quality.md``.
Exit status 1 when a target of a ``--model`` row is missed, 2 for bad arguments. Without
``--model`` or ``--tradeoff``, the rows are the shipped model and the shipped prior alone.

    .venv/bin/python bench/bench_quality.py --model mlp=engine/models/default.onnx \\
        --model "prior alone=engine/models/prior.npz" --clips 128 --out /tmp/quality
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.base.errors import EngineError  # noqa: E402
from engine.evaluation import evaluate, metrics, scales, shape  # noqa: E402

HOOK_CHORDS = "C G Am F"
DEFAULT_TRADEOFF_PNG = ROOT / "docs" / "images" / "kl-tradeoff.png"


@dataclass
class Settings:
    """What every model is asked for (the issue's protocol unless shrunk for a quick look)."""

    clips: int = 512
    """Clips per case (default style, each preset, each scale family)."""
    bars: int = 8
    """Bars per clip."""
    key: str = "C"
    """Key of every clip (tokens are read relative to it)."""
    temperature: float = 1.0
    """Sampling temperature."""
    style: str | None = None
    """Style of the "default" case (None: the model's default style)."""
    distinct_of: int = 256
    """The hook's distinct-clips row counts the first this many clips (fewer if --clips is smaller)."""
    families: tuple[str, ...] = scales.FAMILIES
    """Scale families of the per-scale rows."""
    seed: int = 0
    """Clip ``i`` has seed ``seed + i``; also the two-sample test's fold seed."""


#: A model as the bench sees it: (clips, scale, chords or None, style or None, seed) -> token sequences
#: relative to the tonic, each ``bars * 16`` long (4/4).
Generator = Callable[[int, str, "str | None", "str | None", int], list[np.ndarray]]


def onnx_generator(path: str, settings: Settings) -> Generator:
    """Clips from :meth:`Policy.generate` (batches of 64), read back as lead tokens."""
    from engine.runtime import Policy

    policy = Policy.load(path)

    def gen(n: int, scale: str, chords: str | None, style: str | None, seed: int) -> list[np.ndarray]:
        clips = policy.generate_many(n, seed=seed, key=settings.key, scale=scale, bars=settings.bars,
                                     temperature=settings.temperature, chords=chords, style=style)
        return [evaluate.clip_tokens(c) for c in clips]

    return gen


def prior_generator(path: str | None, settings: Settings) -> Generator:
    """The corpus prior sampled alone (no RL; the prior has no style, so ``style`` is ignored)."""
    from engine.corpus.prior import PriorModel

    prior = PriorModel.load(path)

    def gen(n: int, scale: str, chords: str | None, style: str | None, seed: int) -> list[np.ndarray]:
        return evaluate.prior_set(prior, n=n, bars=settings.bars, scale=scale, chords=chords, seed=seed,
                                  temperature=settings.temperature).sequences

    return gen


def generator_for(path: str, settings: Settings) -> Generator:
    """An ONNX model or a prior ``.npz`` (``prior:shipped`` for the shipped prior)."""
    if path == "prior:shipped":
        return prior_generator(None, settings)
    if path.endswith(".npz"):
        return prior_generator(path, settings)
    return onnx_generator(path, settings)


# ------------------------------------------------------------ the reference

@dataclass
class Reference:
    """What models are measured against: held-out Essen openings and the corpus degree shares."""

    openings: evaluate.EvalSet
    """Held-out Essen 4/4 major openings of ``bars`` bars (the two-sample test's other side)."""
    shape: dict[str, float]
    """Shape measures of the openings (their own chords)."""
    calibration_auc: float
    """Two-sample AUC between two random halves of the openings."""
    degree: dict[str, scales.CorpusShare]
    """Corpus share of each family's characteristic degree."""
    note: str = ""


def build_reference(settings: Settings, split: str = "heldout", limit: int | None = None,
                    progress: bool = False) -> Reference:
    """Held-out Essen openings of ``settings.bars`` bars (all there are), their shape and calibration,
    and the corpus degree shares (``limit``: first N tunes a source, for tests and quick looks)."""
    from engine.corpus import melodies as corpus

    openings = evaluate.corpus_set(settings.bars, "major", (4, 4), n=100_000, split=split, sources=["essen"],
                                   seed=settings.seed, limit=limit, progress=progress)
    heldout = corpus.load_corpus(split, limit=limit, progress=progress)
    every = corpus.load_corpus("all", limit=limit, progress=progress)
    return reference_of(openings, scales.corpus_shares(heldout, every, settings.families), settings.seed)


def reference_of(openings: evaluate.EvalSet, degree: dict[str, scales.CorpusShare], seed: int = 0) -> Reference:
    """A :class:`Reference` from openings and degree shares already chosen."""
    sh = shape.shape_stats(openings.sequences, evaluate.frames_of(openings.contexts))
    calib = evaluate.two_sample_calibration(openings, seed=seed)
    return Reference(openings, sh, calib.auc, degree, note=f"{openings.note}; calibration: two halves of "
                     f"{calib.n_per_set} melodies a side")


# ------------------------------------------------------------- measuring

def _set(seqs: list[np.ndarray], scale: str, chords: str | None, label: str) -> evaluate.EvalSet:
    chord_list = chords.split() if chords else None
    return evaluate.EvalSet(label, seqs, [evaluate.SequenceContext(scale, (4, 4), 0, chord_list)] * len(seqs))


def measure(gen: Generator, settings: Settings, ref: Reference, full: bool = True,
            progress: Callable[[str], None] | None = None) -> dict[str, float]:
    """Every row of one model (one seed) as a flat dict (keys: see :data:`COLUMNS`).

    ``full=False`` measures the default style only (realism, theory, shape): the trade-off curve.
    """
    out: dict[str, float] = {}
    n, seed = settings.clips, settings.seed

    def say(what: str) -> None:
        if progress:
            progress(what)

    say("default")
    default = _set(gen(n, "major", None, settings.style, seed), "major", None, "default")
    r = evaluate.evaluate_set(default, None, None)
    out["auc"] = evaluate.two_sample(default, ref.openings, seed=seed).auc
    for k in ("not_in_key", "leaps_resolved", "repeated"):
        out[k] = r[k]
    for k, _, _ in shape.SHAPE_ROWS:
        out[k] = r[k]
        out[f"{k}_ratio"] = shape.ratio(r[k], ref.shape[k])
    if not full:
        return out
    say("hook")
    hook = _set(gen(n, "major", HOOK_CHORDS, "hook", seed), "major", HOOK_CHORDS, "hook")
    h = evaluate.evaluate_set(hook, None, None)
    out.update(hook_near_repeat=h["near_repeat"], hook_chord_tones=h["chord_tones_strong"],
               hook_leaps_resolved=h["leaps_resolved"],
               hook_distinct=metrics.diversity(hook.sequences[:min(settings.distinct_of, n)])["distinct_clips"],
               hook_auc=evaluate.two_sample(hook, ref.openings, seed=seed).auc)
    say("chorale")
    ch = evaluate.evaluate_set(_set(gen(n, "major", None, "chorale", seed), "major", None, "chorale"), None, None)
    out.update(chorale_sixteenth_share=ch["sixteenth_share"], chorale_pitch_range=ch["pitch_range"])
    say("ambient")
    am = evaluate.evaluate_set(_set(gen(n, "major", None, "ambient", seed), "major", None, "ambient"), None, None)
    out.update(ambient_notes_per_bar=am["notes_per_bar"], ambient_silent_share=am["silent_share"],
               ambient_not_in_key=am["not_in_key"])
    for fam in settings.families:
        say(fam)
        seqs = default.sequences if fam == "major" and settings.style is None else gen(n, fam, None, None, seed)
        pc = scales.CHARACTERISTIC[fam][0]
        share = scales.degree_share(seqs, pc)
        out[f"scale_{fam}"] = share
        out[f"scale_{fam}_ratio"] = shape.ratio(share, ref.degree[fam].share)
    return out


def summarise(per_seed: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """key -> {mean, std, min, max, seeds} over seeds (NaN seeds left out; std 0 for one seed)."""
    out = {}
    for k in per_seed[0]:
        vals = np.array([s[k] for s in per_seed if s.get(k) is not None and not math.isnan(s[k])], np.float64)
        if len(vals):
            out[k] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                      "min": float(vals.min()), "max": float(vals.max()), "seeds": len(vals)}
        else:
            out[k] = {"mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan, "seeds": 0}
    return out


# --------------------------------------------------------------- targets

@dataclass
class Target:
    """One target: a row key, a test on its mean, and how to print it."""

    key: str
    text: str
    test: Callable[[float], bool]


def targets(baseline: dict[str, dict[str, float]] | None, settings: Settings) -> list[Target]:
    """The issue's targets as :class:`Target` s (``baseline``: the prior-alone row's summary, or None)."""
    lo, hi = shape.RATIO_BAND
    out = [Target("auc", "AUC <= 0.75", lambda v: v <= 0.75)]
    if baseline is not None:
        b = {k: baseline[k]["mean"] for k in ("auc", "not_in_key", "leaps_resolved", "repeated")}
        out += [Target("auc", f"AUC <= baseline's {b['auc']:.3f}", lambda v, x=b["auc"]: v <= x),
                Target("not_in_key", f"not in key < baseline's {b['not_in_key']:.2%}",
                       lambda v, x=b["not_in_key"]: v < x),
                Target("leaps_resolved", f"leaps resolved > baseline's {b['leaps_resolved']:.3f}",
                       lambda v, x=b["leaps_resolved"]: v > x),
                Target("repeated", f"excessively repeated < baseline's {b['repeated']:.2%}",
                       lambda v, x=b["repeated"]: v < x)]
    out += [Target(f"{k}_ratio", f"{k} within {lo}-{hi}x Essen", shape.in_band) for k in shape.RATIO_KEYS]
    out += [Target("hook_near_repeat", "hook: near repeat >= 0.5", lambda v: v >= 0.5),
            Target("hook_chord_tones", f"hook: chord tones on strong beats >= 0.8 ({HOOK_CHORDS})", lambda v: v >= 0.8),
            Target("hook_distinct", f"hook: >= 99% of {settings.distinct_of} clips distinct", lambda v: v >= 0.99),
            Target("hook_leaps_resolved", "hook: leaps resolved >= 0.9", lambda v: v >= 0.9),
            Target("chorale_sixteenth_share", "chorale: 16ths <= 5%", lambda v: v <= 0.05),
            Target("chorale_pitch_range", "chorale: range <= 12 semitones", lambda v: v <= 12),
            Target("ambient_notes_per_bar", "ambient: <= 3 notes a bar", lambda v: v <= 3),
            Target("ambient_silent_share", "ambient: >= 30% rest steps", lambda v: v >= 0.30),
            Target("ambient_not_in_key", "ambient: not in key <= 0.5%", lambda v: v <= 0.005)]
    lo7, hi7 = scales.TARGET_BAND
    out += [Target(f"scale_{f}_ratio", f"{f}: characteristic degree within {lo7}-{hi7}x the corpus share",
                   lambda v: lo7 <= v <= hi7) for f in scales.TARGET_FAMILIES if f in settings.families]
    return out


def check(summary: dict[str, dict[str, float]], tgts: Sequence[Target]) -> list[dict[str, Any]]:
    """Every target judged on the mean over seeds: ``{target, key, measured, met}`` (NaN misses)."""
    out = []
    for t in tgts:
        v = summary.get(t.key, {}).get("mean", math.nan)
        out.append({"target": t.text, "key": t.key, "measured": v, "met": bool(not math.isnan(v) and t.test(v))})
    return out


# ---------------------------------------------------------------- output

#: (section, key, label, kind): the table's columns in order; kind "%" share, "f" number, "x" ratio.
COLUMNS: list[tuple[str, str, str, str]] = [
    ("realism and theory", "auc", "AUC vs Essen", "f"),
    ("realism and theory", "not_in_key", "not in key", "%"),
    ("realism and theory", "leaps_resolved", "leaps resolved", "f"),
    ("realism and theory", "repeated", "excessively repeated", "%"),
    *[("shape (model, ratio to Essen)", k, label, kind) for k, label, kind in shape.SHAPE_ROWS],
    ("styles", "hook_near_repeat", "hook near repeat", "f"),
    ("styles", "hook_chord_tones", "hook chord tones on strong beats", "%"),
    ("styles", "hook_distinct", "hook distinct clips", "%"),
    ("styles", "hook_leaps_resolved", "hook leaps resolved", "f"),
    ("styles", "hook_auc", "hook AUC", "f"),
    ("styles", "chorale_sixteenth_share", "chorale 16ths", "%"),
    ("styles", "chorale_pitch_range", "chorale range", "f"),
    ("styles", "ambient_notes_per_bar", "ambient notes a bar", "f"),
    ("styles", "ambient_silent_share", "ambient rest steps", "%"),
    ("styles", "ambient_not_in_key", "ambient not in key", "%"),
    *[("scales (characteristic degree, ratio to corpus)", f"scale_{f}",
       f"{f.replace('_', ' ')}: {scales.CHARACTERISTIC[f][1]}", "%") for f in scales.FAMILIES],
]


def _fmt(v: float, kind: str) -> str:
    if v is None or math.isnan(v):
        return "n/a"
    if kind == "%":
        return f"{v * 100:.3g}%"
    if kind == "x":
        return f"{v:.2f}x"
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"


def cell(summary: dict[str, dict[str, float]], key: str, kind: str, marks: dict[str, bool]) -> str:
    """``0.861 ± 0.004 (0.71x) ✓``: mean ± std over seeds, the ratio when there is one, and ✓/✗ per target."""
    s = summary.get(key)
    if s is None:
        return "—"
    text = _fmt(s["mean"], kind)
    if s["seeds"] > 1:
        text += f" ± {_fmt(s['std'], kind)}"
    r = summary.get(f"{key}_ratio")
    if r is not None:
        text += f" ({_fmt(r['mean'], 'x')})"
    for k in (key, f"{key}_ratio"):
        if k in marks:
            text += " ✓" if marks[k] else " ✗"
    return text


def markdown(rows: dict[str, dict[str, Any]], ref: Reference, settings: Settings, head: str) -> str:
    """The model table: one table per section, one row per model, then each row's targets."""
    lines = [head, ""]
    ref_row = {k: {"mean": v, "std": 0.0, "seeds": 1} for k, v in ref.shape.items()}
    ref_row["auc"] = {"mean": ref.calibration_auc, "std": 0.0, "seeds": 1}
    for f, cs in ref.degree.items():
        ref_row[f"scale_{f}"] = {"mean": cs.share, "std": 0.0, "seeds": 1}
    sections = list(dict.fromkeys(c[0] for c in COLUMNS))
    for sec in sections:
        cols = [c for c in COLUMNS if c[0] == sec and (c[1] in ref_row or any(c[1] in r["summary"] for r in rows.values()))]
        lines += [f"### {sec}", "", "| model | seeds | " + " | ".join(c[2] for c in cols) + " |",
                  "|---|---|" + "---|" * len(cols)]
        for name, r in rows.items():
            marks = {t["key"]: t["met"] for t in r["targets"]}
            lines.append(f"| {name} | {r['seeds']} | " + " | ".join(cell(r["summary"], c[1], c[3], marks) for c in cols)
                         + " |")
        ref_cells = [cell(ref_row, c[1], c[3], {}) if c[1] in ref_row else "—" for c in cols]
        label = "Essen openings (AUC: calibration, half vs half; scales: corpus share)"
        lines += [f"| {label} | - | " + " | ".join(ref_cells) + " |", ""]
    lines += ["### targets (on the mean over seeds)", "", "| model | met | missed |", "|---|---|---|"]
    for name, r in rows.items():
        met = sum(t["met"] for t in r["targets"])
        missed = "; ".join(f"{t['target']}: {t['measured']:.4g}" for t in r["targets"] if not t["met"])
        lines.append(f"| {name} | {met} of {len(r['targets'])} | {missed or '-'} |")
    lines += ["", "Corpus shares of the characteristic degrees: "
              + "; ".join(f"{f} {cs.share:.2%} ({cs.basis})" for f, cs in ref.degree.items()),
              f"Reference: {ref.note}.", f"Settings: {json.dumps(asdict(settings))}"]
    return "\n".join(lines)


def write_tradeoff_png(points: dict[float, dict[str, dict[str, float]]], path: str | Path,
                       calibration_auc: float | None = None) -> Path:
    """Two panels over the KL coefficient (log x): AUC against Essen, and the theory rows.

    ``points``: coefficient (> 0) -> :func:`summarise` output of the models trained with it;
    error bars are the std over seeds.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from engine.base.files import atomic_write

    cs = sorted(points)
    if not cs or cs[0] <= 0:
        raise EngineError(f"KL coefficients {cs} must be > 0 for a log axis: give a no-KL model as a --model row")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))

    def series(ax, key, label, scale=1.0, **kw):
        m = [points[c][key]["mean"] * scale for c in cs]
        e = [points[c][key]["std"] * scale for c in cs]
        return ax.errorbar(cs, m, yerr=e, marker="o", capsize=3, label=label, **kw)

    series(a1, "auc", "two-sample AUC vs Essen")
    if calibration_auc is not None:
        a1.axhline(calibration_auc, color="grey", ls=":", label="Essen half vs half")
    a1.axhline(0.75, color="red", ls="--", lw=0.8, label="target 0.75")
    a1.set_ylabel("AUC (0.5 = can't tell)")
    # leaps resolved (~0.8-1) on its own axis, so the small shares stay readable
    handles = [series(a2, "not_in_key", "notes not in key, %", 100),
               series(a2, "repeated", "excessively repeated, %", 100)]
    a2.set_ylabel("percent of steps (lower is better)")
    a3 = a2.twinx()
    handles.append(series(a3, "leaps_resolved", "leaps resolved (right axis)", color="tab:green"))
    a3.set_ylabel("leaps resolved, share (higher is better)")
    a2.legend(handles=handles, fontsize=8)
    a1.legend(fontsize=8)
    for ax in (a1, a2):
        ax.set_xscale("log")
        ax.set_xlabel("KL coefficient c")
    fig.suptitle("KL-controlled Q-learning: realism and theory against the coefficient", fontsize=11)
    fig.tight_layout()
    try:
        return atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    finally:
        plt.close(fig)


# ------------------------------------------------------------------ CLI

@dataclass
class ModelSpec:
    """``NAME=PATH[,PATH...]``: one row, one path per seed."""

    name: str
    paths: list[str] = field(default_factory=list)


def parse_spec(text: str, what: str = "--model") -> ModelSpec:
    """Parse ``NAME=PATH[,PATH...]``; paths must exist (``prior:shipped`` names the shipped prior)."""
    name, sep, rest = text.partition("=")
    paths = [p.strip() for p in rest.split(",") if p.strip()]
    if not sep or not name.strip() or not paths:
        raise argparse.ArgumentTypeError(f"{what} {text!r} is not NAME=PATH[,PATH...]: e.g. "
                                         "mlp=engine/models/default.onnx (several paths: several seeds)")
    for p in paths:
        if p != "prior:shipped" and not Path(p).is_file():
            raise argparse.ArgumentTypeError(f"{what} {name.strip()}: model file {p!r} does not exist "
                                             "(an .onnx model or a prior .npz; prior:shipped for the shipped prior)")
    return ModelSpec(name.strip(), paths)


def parse_tradeoff(text: str) -> tuple[float, ModelSpec]:
    """``C=PATH[,PATH...]`` with C > 0."""
    spec = parse_spec(text, "--tradeoff")
    try:
        c = float(spec.name)
    except ValueError:
        c = math.nan
    if not c > 0 or math.isinf(c):
        raise argparse.ArgumentTypeError(f"--tradeoff {text!r}: the KL coefficient {spec.name!r} must be a number > 0 "
                                         "(the plot's x axis is logarithmic; give a no-KL model as a --model row)")
    return c, spec


def default_models() -> list[ModelSpec]:
    """The rows of a bare run (``bench/run_all.py``): the shipped model and the shipped prior alone."""
    return [ModelSpec("shipped model", [str(ROOT / "engine" / "models" / "default.onnx")]),
            ModelSpec("prior alone", ["prior:shipped"])]


def run_models(specs: Sequence[ModelSpec], settings: Settings, ref: Reference, full: bool = True,
               generators: dict[str, Generator] | None = None, quiet: bool = False) -> dict[str, dict[str, Any]]:
    """name -> {seeds, per_seed, summary} for every spec (``generators``: path -> Generator, to skip loading)."""
    from tqdm import tqdm

    rows = {}
    total = sum(len(s.paths) for s in specs)
    with tqdm(total=total, desc="models", disable=quiet, unit="seed") as bar:
        for spec in specs:
            per_seed = []
            for p in spec.paths:
                gen = (generators or {}).get(p) or generator_for(p, settings)
                per_seed.append(measure(gen, settings, ref, full,
                                        progress=lambda w, n=spec.name: bar.set_postfix_str(f"{n}: {w}")))
                bar.update(1)
            rows[spec.name] = {"seeds": len(per_seed), "paths": spec.paths, "per_seed": per_seed,
                               "summary": summarise(per_seed)}
    return rows


def table(rows: dict[str, dict[str, Any]], ref: Reference, settings: Settings, baseline: str | None) -> None:
    """Judge every row's targets in place (``baseline``: the row the "better than" targets compare with)."""
    base = rows[baseline]["summary"] if baseline else None
    for name, r in rows.items():
        r["targets"] = check(r["summary"], targets(None if name == baseline else base, settings))


def json_safe(v: Any) -> Any:
    """``v`` with NaN as None and numpy scalars as Python numbers (strict JSON)."""
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", type=parse_spec, default=[], metavar="NAME=PATH[,PATH...]",
                    help="a row: an ONNX model or a prior .npz (prior:shipped), several paths = several seeds")
    ap.add_argument("--tradeoff", action="append", type=parse_tradeoff, default=[], metavar="C=PATH[,PATH...]",
                    help="a point of the KL trade-off curve: models trained with coefficient C")
    ap.add_argument("--tradeoff-png", default=str(DEFAULT_TRADEOFF_PNG), metavar="PATH",
                    help=f"where the trade-off PNG goes (default: {DEFAULT_TRADEOFF_PNG.relative_to(ROOT)})")
    ap.add_argument("--baseline", default=None, metavar="NAME",
                    help="the row the 'better than the prior alone' targets compare with "
                         "(default: the row whose name starts with 'prior', if any)")
    ap.add_argument("--clips", type=int, default=512, help="clips per case (default: 512)")
    ap.add_argument("--style", default=None, help="style of the default case (default: the model's default)")
    ap.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default: 1.0)")
    ap.add_argument("--limit", type=int, default=None, metavar="N",
                    help="corpus: first N tunes a source only (quick looks; the reference shrinks too)")
    ap.add_argument("--out", default=None, metavar="DIR", help="also write quality.json and quality.md here")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if not args.model and not args.tradeoff:
        args.model = default_models()
    if args.clips < 10:
        ap.error(f"--clips {args.clips} is too few: the two-sample test needs at least 10 clips (default: 512)")
    names = [m.name for m in args.model]
    if len(set(names)) != len(names):
        ap.error(f"--model names must differ, got {names}")
    baseline = args.baseline or next((n for n in names if n.lower().startswith("prior")), None)
    if baseline is not None and baseline not in names:
        ap.error(f"--baseline {baseline!r} is not a --model row: give one of {', '.join(names) or '(none)'}")
    if args.out and Path(args.out).exists() and (Path(args.out) / "quality.json").exists():
        ap.error(f"--out {args.out!r} already holds quality.json: give a new folder (nothing is overwritten)")
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")  # one BLAS thread: a second only spin-waits on a busy box
    settings = Settings(clips=args.clips, temperature=args.temperature, style=args.style,
                        distinct_of=min(256, args.clips))
    t0 = time.perf_counter()
    try:
        ref = build_reference(settings, limit=args.limit, progress=not args.quiet)
        rows = run_models(args.model, settings, ref, quiet=args.quiet)
        table(rows, ref, settings, baseline)
        curve = {}
        if args.tradeoff:
            specs = [ModelSpec(f"c={c:g}", s.paths) for c, s in args.tradeoff]
            got = run_models(specs, settings, ref, full=False, quiet=args.quiet)
            curve = {c: got[f"c={c:g}"]["summary"] for c, _ in args.tradeoff}
    except EngineError as exc:
        print(f"bench_quality: {exc}", file=sys.stderr)
        return 2
    head = (f"# Model table (issue 16)\n\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {settings.clips} clips "
            f"of {settings.bars} bars in {settings.key} a case, temperature {settings.temperature:g}, style "
            f"{settings.style or 'default'}; {time.perf_counter() - t0:.0f} s")
    text = markdown(rows, ref, settings, head) if rows else head
    print(text)
    if curve:
        png = write_tradeoff_png(curve, args.tradeoff_png, ref.calibration_auc)
        print(f"\nwrote {png}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        payload = {"settings": asdict(settings), "reference": {
            "note": ref.note, "calibration_auc": ref.calibration_auc, "shape": ref.shape,
            "degree": {f: asdict(cs) for f, cs in ref.degree.items()}},
            "models": rows, "tradeoff": {str(c): s for c, s in curve.items()}}
        (out / "quality.json").write_text(json.dumps(json_safe(payload), indent=1, allow_nan=False))
        (out / "quality.md").write_text(text + "\n")
        print(f"wrote {out / 'quality.json'} and {out / 'quality.md'}")
    missed = {n: [t for t in r["targets"] if not t["met"]] for n, r in rows.items()}
    if any(missed.values()):
        print("\nmissed: " + "; ".join(f"{n} {len(m)} of {len(rows[n]['targets'])}" for n, m in missed.items() if m),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
