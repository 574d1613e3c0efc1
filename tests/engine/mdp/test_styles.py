"""Styles: presets, term=weight overrides, mood dials, the observation vector, the
training distribution, and bad specs."""

from __future__ import annotations

import numpy as np
import pytest

from engine.base.errors import EngineError, StyleError
from engine.mdp import styles

TERMS = styles.BUILTIN_TERMS


def test_presets_use_known_terms_within_range():
    assert {"folk", "hook", "chorale", "ambient"} <= set(styles.PRESETS)
    for name, weights in styles.PRESETS.items():
        assert set(weights) <= set(TERMS), name
        assert all(-styles.MAX_WEIGHT <= w <= styles.MAX_WEIGHT for w in weights.values())


@pytest.mark.parametrize("spec", [None, "", "  ", "folk", "FOLK"])
def test_default_is_folk(spec):
    w = styles.parse_style(spec)
    assert list(w) == list(TERMS)
    assert w == {t: styles.PRESETS["folk"].get(t, 0.0) for t in TERMS}


def test_preset_with_overrides():
    w = styles.parse_style("hook,prior=0.5, motif = 3")
    assert w["prior"] == 0.5 and w["motif"] == 3.0
    assert w["leap"] == styles.PRESETS["hook"]["leap"]
    assert w["rests"] == 0.0


def test_overrides_alone_start_from_the_default_preset():
    w = styles.parse_style("rests=2")
    assert w["rests"] == 2.0 and w["prior"] == styles.PRESETS["folk"]["prior"]


def test_mapping_is_absolute():
    w = styles.parse_style({"key": 2, "motif": -1.5})
    assert w["key"] == 2.0 and w["motif"] == -1.5
    assert sum(abs(v) for v in w.values()) == 3.5


def test_custom_terms_list():
    w = styles.parse_style("hook,sparkle=1", TERMS + ("sparkle",))
    assert w["sparkle"] == 1.0 and list(w)[-1] == "sparkle"


@pytest.mark.parametrize("spec,match", [
    ("techno", "style 'techno' is not known: presets are folk, hook, chorale, ambient"),
    ("motif=2,hook", "style preset 'hook' must come first"),
    ("hook,folk", "style preset 'folk' must come first"),
    ("sparkle=1", "style term 'sparkle' is not known: allowed are key, chord"),
    ("=1", "style term '' is not known"),
    ("motif=lots", "style weight 'lots' for 'motif' is not a number"),
    ("motif=", "style weight '' for 'motif' is not a number"),
    ("motif=6", "style weight 6 for 'motif' is out of range \\(allowed: -5 to 5\\)"),
    ("motif=-5.5", "out of range"),
    ("motif=nan", "out of range"),
    ({"motif": 10}, "out of range"),
    ({"nope": 1}, "style term 'nope' is not known"),
])
def test_bad_styles(spec, match):
    with pytest.raises(StyleError, match=match):
        styles.parse_style(spec)
    assert issubclass(StyleError, EngineError)


@pytest.mark.parametrize("valence,arousal,changes", [
    (0.0, 0.0, {}),
    (1.0, 0.0, {"chord": 0.75, "cadence": 0.5, "register": 0.3}),
    (-1.0, 0.0, {"chord": -0.75, "cadence": -0.5, "register": -0.3, "key": -0.3}),
    (0.0, 1.0, {"density": 1.0, "rests": -0.5, "register": 0.3, "motif": 0.5}),
    (0.0, -1.0, {"density": -1.0, "rests": 0.5, "register": -0.3}),
    (0.5, 0.5, {"chord": 0.375, "cadence": 0.25, "register": 0.3, "density": 0.5, "rests": -0.25, "motif": 0.25}),
])
def test_mood_mapping(valence, arousal, changes):
    base = styles.parse_style("folk")
    moved = styles.apply_mood(base, valence, arousal)
    for t in TERMS:
        assert moved[t] == pytest.approx(base[t] + changes.get(t, 0.0)), t


def test_mood_clips_to_range():
    moved = styles.apply_mood({"density": 4.5, "chord": -5.0}, 0.0, 1.0)
    assert moved["density"] == styles.MAX_WEIGHT
    assert styles.apply_mood({"chord": -5.0}, -1.0)["chord"] == -styles.MAX_WEIGHT


@pytest.mark.parametrize("valence,arousal,name", [(1.5, 0, "valence"), (0, -2, "arousal"), (float("nan"), 0, "valence")])
def test_mood_out_of_range(valence, arousal, name):
    with pytest.raises(StyleError, match=f"{name} .* is out of range \\(allowed: -1 to 1\\)"):
        styles.apply_mood(styles.parse_style("folk"), valence, arousal)


def test_style_vector_scaled_in_term_order():
    v = styles.style_vector(styles.parse_style("hook"))
    assert v.dtype == np.float32 and v.shape == (len(TERMS),)
    assert v[TERMS.index("motif")] == pytest.approx(styles.PRESETS["hook"]["motif"] / 5)
    assert np.abs(v).max() <= 1.0
    assert styles.style_vector({"a": 5.0, "b": -5.0}, ("b", "a", "c")).tolist() == [-1.0, 1.0, 0.0]


def test_sample_style_is_varied_bounded_and_reproducible():
    rng = np.random.default_rng(0)
    draws = [styles.sample_style(rng) for _ in range(300)]
    assert all(list(d) == list(TERMS) for d in draws)
    arr = np.array([[d[t] for t in TERMS] for d in draws])
    assert np.abs(arr).max() <= styles.MAX_WEIGHT
    assert len({tuple(np.round(r, 6)) for r in arr}) == 300
    # every preset's signature shows up: e.g. rests are weighted only by ambient (and moods)
    assert (arr[:, TERMS.index("rests")] > 0.5).mean() > 0.1
    assert (arr[:, TERMS.index("bar_repeat")] > 1.0).mean() > 0.1      # the hook
    assert (arr[:, TERMS.index("note_length")] > 1.0).mean() > 0.1     # the chorale
    again = [styles.sample_style(np.random.default_rng(0)) for _ in range(1)]
    assert again[0] == draws[0]


def test_docs_pages_list_every_built_in_term():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    page = (root / "docs" / "rewards.md").read_text()
    listed = re.findall(r"^\| (\w+) \| ", page.split("## Terms")[1].split("##")[0], re.M)
    assert listed[1:] == list(TERMS)  # the first row is the table's head
    guide = (root / "docs" / "generation.md").read_text()  # the user's guide to styles
    rows = set(re.findall(r"^\| ([\w /]+) \| ", guide, re.M))
    named = {t for row in rows for t in row.split(" / ")}
    assert set(TERMS) <= named, set(TERMS) - named
