"""Styles: weight vectors over the named reward terms, with presets and mood dials.

A style says how much each reward term counts. The weights are part of the
observation, so one trained network follows whichever style is requested at
generation time. A style is written as a preset name (``folk``), ``term=weight`` pairs
(``motif=2,rests=0.5``), or both (``hook,prior=0.5``), plus two mood dials:

* valence (-1 dark .. +1 bright): raises chord-tone consonance, cadences and the upper
  register when positive; lowers them, and relaxes the in-key weight a little (more
  chromatic colour), when negative.
* arousal (-1 calm .. +1 busy): maps onto note density (more onsets, fewer holds and
  rests), register (higher) and fewer long notes when positive; the opposite when
  negative.

The exact mapping is :func:`apply_mood`; docs/generation.md reproduces it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from engine.base.errors import StyleError

#: The built-in reward terms, in the order their weights enter the observation.
#: Custom terms registered with :func:`engine.mdp.rewards.register_term` are appended.
BUILTIN_TERMS: tuple[str, ...] = (
    "key",           # pitch in the scale
    "chord",         # chord tones on strong beats
    "cadence",       # tonic at the start and at phrase ends
    "leap",          # leaps resolved, no double leaps
    "repetition",    # no excessive repetition (penalty)
    "autocorr",      # low autocorrelation at lags 1-3 (penalty)
    "motif",         # >= 3 distinct pitches in the last 8 steps
    "repeat_motif",  # the last 8-step motif repeats an earlier one
    "intervals",     # preferred intervals: steps and consonant leaps
    "range",         # unique highest and lowest note, stay in register
    "contour",       # direction changes after runs, arch shape
    "density",       # + busier (onsets), - sparser
    "rests",         # + rests and breathing space, - continuous
    "register",      # + higher, - lower within the role's range
    "prior",         # closeness to the corpus: the KL coefficient's multiplier (KL models), log p(a|s) (MLP)
    "bar_repeat",    # riff: repeat the bar one or two bars back, vary a third copy
    "phrase_return", # bars 5-6 answer bars 1-2, bars 7-8 end differently
    "rhythm_motif",  # strike where the bar one or two back struck
    "phrase_cadence",  # land on a chord tone and hold at phrase ends
    "crowding",      # soft cap: a note beyond 6 per bar costs
    "pace",          # soft floor: a bar of fewer than 2 different pitches costs
    "note_length",   # short notes charged: 16ths most, 8ths a little
    "span",          # a note stretching the range past an octave costs
    "steps",         # a bar that moves by step at least once
)

#: The style term of a personal model tuned to the musician's verdicts (``qriff tune``):
#: how much the learned taste counts (0: the shipped model's behaviour, negative: away from it).
#: Only tuned models read it; it is not a reward term of training.
TASTE_TERM = "taste"

#: Weights of terms that are not 0 when a style does not mention them (for models that read them).
TERM_DEFAULTS: dict[str, float] = {TASTE_TERM: 1.0}

#: The largest absolute weight a style may give a term.
MAX_WEIGHT = 5.0

#: Named presets. Missing terms weigh 0.
PRESETS: dict[str, dict[str, float]] = {
    # Default: real folk-like melodies. The corpus prior leads (through the KL coefficient, or as
    # the reward's prior term for the MLP model); theory keeps it clean without paying per note;
    # structure terms, judged once a bar, make it return to its ideas (answer bars 1-2 in bars
    # 5-6, reuse rhythms, land at phrase ends) at about the corpus's density (pace and crowding
    # keep 2-6 notes a bar). Lighter penalties on 8ths, crowding and small leaps (which real
    # tunes pay too) or more weight on repeating bars let copied bars, trills and scales
    # out-earn real tunes (the degenerate-melody suite), so they stay.
    "folk": {"prior": 1.0, "key": 1.0, "chord": 0.5, "cadence": 1.0, "leap": 0.5, "repetition": 0.5, "contour": 0.5,
             "intervals": 0.5, "range": 0.2, "phrase_return": 0.5, "rhythm_motif": 0.5, "density": 0.25,
             "phrase_cadence": 0.5, "crowding": 0.5, "pace": 1.0, "note_length": 0.5, "steps": 1.0},
    # A riff: a 1-2 bar figure restated with variation on the bar (bar_repeat pays a varied
    # restatement most, a third identical copy costs), chord tones on the beats, RL Tuner's
    # leap and repetition rules strict. Crowding keeps it off wall-to-wall 16ths.
    "hook": {"prior": 0.2, "key": 5.0, "chord": 3.0, "cadence": 2.0, "leap": 5.0, "repetition": 5.0,
             "motif": 0.5, "repeat_motif": 1.0, "intervals": 1.0, "range": 2.0, "bar_repeat": 1.5,
             "rhythm_motif": 2.0, "crowding": 2.5, "pace": 2.0, "note_length": 2.0, "density": 1.0, "steps": 1.0},
    # Bach-chorale-like soprano lines: chord tones, quarters and halves, within an octave.
    "chorale": {"prior": 0.5, "key": 1.5, "chord": 1.5, "cadence": 1.5, "leap": 1.5, "repetition": 1.0,
                "intervals": 1.0, "contour": 0.5, "phrase_cadence": 1.0, "phrase_return": 0.5, "crowding": 1.0,
                "pace": 2.0, "note_length": 1.5, "span": 2.0, "steps": 1.5},
    # Sparse, floating: 2-3 long notes a bar, a breath of rest in most bars, in key.
    "ambient": {"prior": 0.1, "key": 2.0, "chord": 1.0, "intervals": 1.0, "repetition": 0.5, "rests": 2.0,
                "density": -1.0, "register": 0.3, "crowding": 1.0, "pace": 1.5, "span": 0.5, "note_length": 1.0,
                "steps": 1.5, "contour": 0.5},
}
DEFAULT_STYLE = "folk"


def parse_style(spec: str | Mapping[str, float] | None, terms: Sequence[str] = BUILTIN_TERMS) -> dict[str, float]:
    """Resolve a style spec into ``{term: weight}`` over ``terms``.

    ``spec`` is ``None`` (the default preset), a preset name, ``term=w`` pairs separated by
    commas, a preset followed by overrides (``hook,prior=0.5``), or a mapping.
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        spec = DEFAULT_STYLE
    weights = dict.fromkeys(terms, 0.0)
    weights.update({t: w for t, w in TERM_DEFAULTS.items() if t in weights})
    if isinstance(spec, Mapping):
        items: list[str] = [f"{k}={v}" for k, v in spec.items()]
    else:
        items = [p.strip() for p in str(spec).split(",") if p.strip()]
    base_given = False
    for i, item in enumerate(items):
        if "=" not in item:
            if i != 0:
                raise StyleError(f"style preset {item!r} must come first in {spec!r}, before term=weight overrides")
            name = item.lower()
            if name not in PRESETS:
                raise StyleError(f"style {item!r} is not known: presets are {', '.join(PRESETS)}, "
                                 f"or give term=weight pairs with terms {', '.join(terms)}")
            weights.update({k: v for k, v in PRESETS[name].items() if k in weights})
            base_given = True
            continue
        term, _, value = item.partition("=")
        term = term.strip()
        if term not in weights:
            raise StyleError(f"style term {term!r} is not known: allowed are {', '.join(terms)}")
        try:
            w = float(value)
        except ValueError:
            raise StyleError(f"style weight {value!r} for {term!r} is not a number "
                             f"(allowed: -{MAX_WEIGHT:g} to {MAX_WEIGHT:g})") from None
        if not -MAX_WEIGHT <= w <= MAX_WEIGHT:
            raise StyleError(f"style weight {value} for {term!r} is out of range (allowed: -{MAX_WEIGHT:g} to {MAX_WEIGHT:g})")
        weights[term] = w
    if not base_given and not isinstance(spec, Mapping):
        # Overrides alone start from the default preset, as a musician would expect.
        base = parse_style(DEFAULT_STYLE, terms)
        for item in items:
            base[item.partition("=")[0].strip()] = weights[item.partition("=")[0].strip()]
        weights = base
    return weights


def apply_mood(weights: Mapping[str, float], valence: float = 0.0, arousal: float = 0.0) -> dict[str, float]:
    """Shift style weights by the mood dials, each in [-1, 1] (0 leaves the style as is).

    valence v: chord += 0.75 v, cadence += 0.5 v, register += 0.3 v, key -= 0.3 min(v, 0).
    arousal a: density += a, rests -= 0.5 a, register += 0.3 a, motif += 0.5 max(a, 0).
    Results are clipped to the allowed weight range.
    """
    for name, value in (("valence", valence), ("arousal", arousal)):
        if not -1.0 <= value <= 1.0:
            raise StyleError(f"{name} {value} is out of range (allowed: -1 to 1)")
    out = dict(weights)

    def add(term: str, delta: float) -> None:
        if term in out:
            out[term] = float(np.clip(out[term] + delta, -MAX_WEIGHT, MAX_WEIGHT))

    add("chord", 0.75 * valence)
    add("cadence", 0.5 * valence)
    add("register", 0.3 * valence + 0.3 * arousal)
    add("key", 0.3 * min(valence, 0.0))
    add("density", arousal)
    add("rests", -0.5 * arousal)
    add("motif", 0.5 * max(arousal, 0.0))
    return out


def style_vector(weights: Mapping[str, float], terms: Sequence[str] = BUILTIN_TERMS) -> np.ndarray:
    """The observation's style segment: weights in ``terms`` order, scaled to [-1, 1]."""
    return np.array([weights.get(t, 0.0) for t in terms], dtype=np.float32) / np.float32(MAX_WEIGHT)


def sample_style(rng: np.random.Generator, terms: Sequence[str] = BUILTIN_TERMS) -> dict[str, float]:
    """A random training style: a preset (or a blend of two), jittered, with a random mood.

    Training on this distribution is what lets one network follow any preset and the
    mood dials at generation time. Terms outside :data:`BUILTIN_TERMS` (custom terms,
    which no preset mentions) get a weight drawn uniformly from [0, 2] half of the time,
    so a network trained with them learns to follow their weight too.
    """
    names = list(PRESETS)
    a = parse_style(names[rng.integers(len(names))], terms)
    if rng.random() < 0.3:
        b = parse_style(names[rng.integers(len(names))], terms)
        mix = float(rng.random())
        a = {t: mix * a[t] + (1 - mix) * b[t] for t in terms}
    if rng.random() < 0.5:
        a = apply_mood(a, float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1)))
    jitter = rng.uniform(0.8, 1.2, size=len(terms))
    values = np.clip(np.array([a[t] for t in terms], np.float64) * jitter, -MAX_WEIGHT, MAX_WEIGHT)
    out = dict(zip(terms, values.tolist()))
    for t in terms:
        if t not in BUILTIN_TERMS:
            out[t] = float(rng.uniform(0.0, 2.0)) if rng.random() < 0.5 else 0.0
    return out
