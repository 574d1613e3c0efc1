"""The observation: pinned on hand-made melodies, checked against a plain per-row
reference, and the fast paths (incremental features, context tables, row subsets,
direct token writes, row resets) against the slow ones."""

from __future__ import annotations

import numpy as np
import pytest

from engine.base.errors import EngineError, TheoryError
from engine.mdp import observation, styles
from engine.mdp.observation import MelodyBatch, MelodyContext, melody_features, observe, observe_rows
from engine.music import theory, tokens

R, H = 0, 1
C4, E4, G4, A4, C5 = 14, 18, 21, 23, 26
FOLK = styles.style_vector(styles.parse_style("folk"))


def segments(row: np.ndarray, n_style: int = len(styles.BUILTIN_TERMS)) -> dict[str, np.ndarray]:
    out, col = {}, 0
    for name, width in observation.layout(n_style):
        out[name] = row[col:col + width]
        col += width
    assert col == len(row)
    return out


def onehot(n: int, i: int) -> list[float]:
    v = [0.0] * n
    v[i] = 1.0
    return v


def batch_of(seq: list[int], **kw) -> MelodyBatch:
    kw.setdefault("style", FOLK)
    ctx = MelodyContext.from_music(**kw)
    b = MelodyBatch.create([ctx])
    for tok in seq:
        b.append(np.array([tok]))
    return b


# ------------------------------------------------------------ pinned, hand-worked

def test_layout_and_dim():
    assert observation.obs_dim(0) == 907
    assert observation.obs_dim(20) == 927
    assert observation.layout_string(2).startswith("history:608,last_pitch:37,note_age:1,")
    assert observation.layout(3)[-1] == ("style", 3)


def test_empty_melody():
    s = segments(observe(batch_of([], bars=2, chords="I V vi IV"))[0])
    assert not s["history"].any()
    assert s["last_pitch"].tolist() == onehot(37, 36)
    assert s["note_age"].tolist() == [1.0]
    assert s["last_interval"].tolist() == onehot(26, 25)
    assert s["pending_leap"].tolist() == [0, 0]
    assert s["bar_pos"].tolist() == onehot(16, 0)
    assert s["beat"].tolist() == onehot(4, 3)
    assert s["phrase"].tolist() == onehot(8, 0)
    assert s["edges"].tolist() == [1, 0, 0]
    assert s["steps_left"].tolist() == onehot(17, 16) + [0.0]
    assert s["scale"].tolist() == [1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1]
    assert s["chord"][:12].tolist() == [1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0]     # C
    assert s["chord"][12:24].tolist() == onehot(12, 0)
    assert s["chord"][24:].tolist() == [0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1]    # next bar: G
    assert s["role"].tolist() == [1, 0] and s["metre"].tolist() == [1, 0, 0, 0]
    assert not s["stats"].any()
    np.testing.assert_allclose(s["style"], FOLK)


def test_eight_steps_into_a_melody():
    seq = [C4, H, E4, R, G4, H, H, A4]
    s = segments(observe(batch_of(seq, bars=2, chords="I V vi IV"))[0])
    hist = s["history"].reshape(16, 38)
    assert not hist[:8].any()
    assert [int(np.argmax(h)) for h in hist[8:]] == seq and hist[8:].sum() == 8
    assert s["last_pitch"].tolist() == onehot(37, A4 - 2)
    assert s["note_age"].tolist() == [1 / 16]
    assert s["last_interval"].tolist() == onehot(26, 12 + 2)   # G4 -> A4
    assert s["bar_pos"].tolist() == onehot(16, 8)
    assert s["beat"].tolist() == onehot(4, 2)                  # half bar in 4/4
    assert s["edges"].tolist() == [0, 0, 0]
    assert s["steps_left"].tolist() == onehot(17, 16) + [0.25]
    np.testing.assert_allclose(s["stats"], [23 / 37, 14 / 37, 1, 1, 4 / 8, 1 / 8, 3 / 8, 4 / 8])


def test_last_step_with_a_leap_down():
    seq = [C4] + [H] * 29 + [C5]     # the melody's last step (31) follows C4 -> C5
    s = segments(observe(batch_of(seq + [E4], bars=2, chords="I V vi IV"))[0])
    assert s["steps_left"].tolist() == onehot(17, 0) + [1.0]  # complete: past the end
    s = segments(observe(batch_of(seq, bars=2, chords="I V vi IV"))[0])
    assert s["last_interval"].tolist() == onehot(26, 24)      # +12
    assert s["pending_leap"].tolist() == [1, 0]
    assert s["note_age"].tolist() == [1 / 16]
    assert s["bar_pos"].tolist() == onehot(16, 15) and s["beat"].tolist() == onehot(4, 0)
    assert s["phrase"].tolist() == onehot(8, 1)
    assert s["edges"].tolist() == [0, 1, 1]
    assert s["steps_left"].tolist() == onehot(17, 1) + [31 / 32]
    assert s["chord"][12:24].tolist() == onehot(12, 7)        # under G
    assert s["chord"][24:].tolist() == s["chord"][:12].tolist()  # no next bar: the same chord
    np.testing.assert_allclose(s["stats"][:4], [26 / 37, 14 / 37, 1, 1])
    s = segments(observe(batch_of(seq[:-2], bars=2, chords="I V vi IV"))[0])
    assert s["edges"].tolist() == [0, 1, 0] and s["steps_left"].tolist()[:17] == onehot(17, 3)
    assert s["note_age"].tolist() == [1.0]                   # C4 struck 29 steps ago
    assert s["last_interval"].tolist() == onehot(26, 25)     # only one note so far


def test_bass_in_three_four_minor():
    seq = [C4, H, H, H, C4 + 3, H, H, H, C4 - 2]   # tonic, minor third up, then a fourth down
    b = batch_of(seq, key="A", scale="minor", bars=4, time_signature="3/4", chords="i iv V", role="bass")
    s = segments(observe(b)[0])
    assert s["role"].tolist() == [0, 1] and s["metre"].tolist() == onehot(4, 1)
    assert s["bar_pos"].tolist() == onehot(16, 9) and s["beat"].tolist() == onehot(4, 0)
    assert s["scale"].tolist() == [1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0]
    assert s["chord"][:12].tolist() == [1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0]   # i under bar 0
    assert s["chord"][24:].tolist() == [1, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0]   # iv next
    assert s["last_interval"].tolist() == onehot(26, 12 - 5)
    np.testing.assert_allclose(s["stats"], [17 / 37, 12 / 37, 1, 1, 3 / 9, 0, 6 / 9, 2 / 8])


def test_lookback_and_repeat_runs():
    bar = [C4, H, E4, H, G4, H, H, H, A4, H, H, H, G4, H, H, H]
    seq = bar + bar[:5]                                  # bar 2 repeats bar 1 so far
    s = segments(observe(batch_of(seq, bars=6))[0])
    lb = s["lookback"].reshape(3, 38)
    assert lb[0].tolist() == onehot(38, H) and not lb[1].any() and not lb[2].any()   # bar[5] one bar back
    assert s["repeating"].tolist() == [5 / 16, 0, 0, 1, 0, 0, 5 / 16, 0]
    seq = bar * 4 + [C4, H, A4]                          # bar 5 starts like bar 1, then differs at its 3rd step
    s = segments(observe(batch_of(seq, bars=6))[0])
    assert [int(np.argmax(x)) for x in s["lookback"].reshape(3, 38)] == [H, H, H]
    assert s["repeating"].tolist() == [0, 0, 0, 1, 1, 1, 1, 1]  # A4 strikes where E4 did: the rhythm run goes on
    assert s["phrase"].tolist() == onehot(8, 4)


# -------------------------------------------------- an independent plain reference

def reference_row(b: MelodyBatch, r: int) -> np.ndarray:
    """observe() for one row, written as plainly as possible from the module docstring."""
    seq = [int(x) for x in b.tokens[r, : b.step[r]]]
    n, spb, t = int(b.n_steps[r]), int(b.steps_per_bar[r]), len(seq)
    ts = observation._TS_LIST[b.ts_index[r]]
    parts: list[list[float]] = []
    hist = []
    for k in range(16):
        pos = t - 16 + k
        hist += onehot(38, seq[pos]) if pos >= 0 else [0.0] * 38
    parts.append(hist)
    pitches = [(i, x) for i, x in enumerate(seq) if x >= 2]
    parts.append(onehot(37, pitches[-1][1] - 2 if pitches else 36))
    parts.append([min(t - pitches[-1][0], 16) / 16 if pitches else 1.0])
    if len(pitches) >= 2:
        iv = max(-12, min(12, pitches[-1][1] - pitches[-2][1]))
        parts += [onehot(26, iv + 12), [float(iv >= 7), float(iv <= -7)]]
    else:
        parts += [onehot(26, 25), [0.0, 0.0]]
    cur = min(t, n - 1)
    bar = cur // spb
    parts += [onehot(16, cur % spb), onehot(4, theory.beat_strength(cur % spb, ts)), onehot(8, bar % 8),
              [float(t == 0), float(bar == n // spb - 1), float(t == n - 1)], onehot(17, min(max(n - t, 0), 16)),
              [t / n], list(b.scale_mask[r]), list(b.chord_mask[r, cur]), onehot(12, int(b.chord_root[r, cur])),
              list(b.chord_mask[r, min((bar + 1) * spb, n - 1)]), onehot(2, int(b.role[r])),
              onehot(4, int(b.ts_index[r]))]
    p = [x for _, x in pitches]
    parts.append([max(p) / 37 if p else 0.0, min(p) / 37 if p else 0.0, float(bool(p) and p.count(max(p)) == 1),
                  float(bool(p) and p.count(min(p)) == 1), len(p) / max(t, 1), seq.count(0) / max(t, 1),
                  seq.count(1) / max(t, 1), len({x for x in seq[-8:] if x >= 2}) / 8])
    for k in (1, 2, 4):  # lookback: the token k bars back at step t
        src = t - k * spb
        parts.append(onehot(38, seq[src]) if src >= 0 and t < n else [0.0] * 38)

    def run(same) -> float:  # newest steps (up to 16) that match, counted back from t - 1
        count = 0
        for i in range(t - 1, max(t - 17, -1), -1):
            if not same(i):
                break
            count += 1
        return count / 16

    parts.append([run(lambda i, k=k: i - k * spb >= 0 and seq[i] == seq[i - k * spb]) for k in (1, 2, 4)])
    parts.append([float(t >= k * spb) for k in (1, 2, 4)])
    parts.append([run(lambda i, k=k: i - k * spb >= 0 and (seq[i] >= 2) == (seq[i - k * spb] >= 2)) for k in (1, 2)])
    parts.append(list(b.style[r]))
    return np.array([x for part in parts for x in part], np.float32)


def random_batch(rng: np.random.Generator, size: int) -> MelodyBatch:
    contexts = []
    for i in range(size):
        contexts.append(MelodyContext.from_music(
            key=int(rng.integers(12)), scale=theory.SCALE_NAMES[int(rng.integers(len(theory.SCALE_NAMES)))],
            bars=int(rng.integers(1, 7)), time_signature=list(theory.TIME_SIGNATURES)[i % 4],
            role=tokens.ROLES[i % 2], style=styles.style_vector(styles.sample_style(rng))))
    return MelodyBatch.create(contexts)


@pytest.mark.parametrize("seed", range(3))
def test_matches_plain_reference_at_every_step(seed):
    rng = np.random.default_rng(seed)
    b = random_batch(rng, 6)
    pool = np.array([R, H, H, 2, 10, 14, 16, 21, 26, 37])
    while True:
        obs = observe(b)
        for r in range(b.size):
            np.testing.assert_allclose(obs[r], reference_row(b, r), rtol=1e-6, atol=1e-7)
        active = b.step < b.n_steps
        if not active.any():
            break
        acts = rng.choice(pool, size=b.size)
        back = b.step - b.steps_per_bar * rng.choice([1, 2, 4], size=b.size)  # often repeat an earlier bar
        copy = (back >= 0) & (rng.random(b.size) < 0.5)
        acts = np.where(copy, b.tokens[np.arange(b.size), np.maximum(back, 0)], acts)
        b.append(acts, active)


# ------------------------------------------------------ fast paths vs slow paths

@pytest.mark.parametrize("seed", range(3))
def test_incremental_features_equal_a_full_scan(seed):
    rng = np.random.default_rng(seed)
    b = random_batch(rng, 5)
    b.features(reward=True)  # start tracking reward features too
    for _ in range(int(b.n_steps.max())):
        active = (b.step < b.n_steps) & (rng.random(b.size) < 0.8)
        b.append(rng.integers(0, 38, b.size), active)
        fast, slow = b.features(), melody_features(b.tokens, b.step)
        assert set(fast) == set(slow)
        for k in slow:
            np.testing.assert_array_equal(fast[k], slow[k], err_msg=k)


def test_direct_token_writes_are_noticed():
    rng = np.random.default_rng(4)
    seq = rng.integers(0, 38, 32)
    appended = batch_of(list(seq[:20]), bars=2)
    direct = batch_of([], bars=2)
    observe(direct)
    direct.tokens[0, :20] = seq[:20]
    direct.step[0] = 20
    np.testing.assert_array_equal(observe(direct), observe(appended))
    direct.append(np.array([5]))
    appended.append(np.array([5]))
    np.testing.assert_array_equal(observe(direct), observe(appended))


def test_context_table_and_direct_path_agree(monkeypatch):
    rng = np.random.default_rng(5)
    b = random_batch(rng, 4)
    for _ in range(10):
        b.append(rng.integers(0, 38, 4))
    with_table = observe(b)
    assert b.context_table() is not None
    monkeypatch.setattr(observation, "_MAX_TABLE_CELLS", 0)
    b.context_changed()
    assert b.context_table() is None
    np.testing.assert_array_equal(observe(b), with_table)


def test_observe_rows_and_reset_rows():
    rng = np.random.default_rng(6)
    b = random_batch(rng, 4)
    for _ in range(7):
        b.append(rng.integers(0, 38, 4))
    np.testing.assert_array_equal(observe_rows(b, np.array([2, 0])), observe(b)[[2, 0]])
    ctx = MelodyContext.from_music(scale="dorian", bars=2, time_signature="3/4", role="bass",
                                   style=styles.style_vector(styles.parse_style("hook")))
    b.features(reward=True)
    b.reset_rows(np.array([1]), [ctx])
    fresh = MelodyBatch.create([ctx])
    np.testing.assert_array_equal(observe(b)[1], observe(fresh)[0])
    for _ in range(5):
        acts = rng.integers(0, 38, 4)
        b.append(acts)
        fresh.append(acts[1:2])
    np.testing.assert_array_equal(observe(b)[1], observe(fresh)[0])
    for k, v in melody_features(b.tokens, b.step).items():
        np.testing.assert_array_equal(b.features()[k], v, err_msg=k)


def test_observe_is_pure():
    b = batch_of([C4, E4, H], bars=1)
    tokens_before, step_before = b.tokens.copy(), b.step.copy()
    first = observe(b)
    np.testing.assert_array_equal(observe(b), first)
    np.testing.assert_array_equal(b.tokens, tokens_before)
    np.testing.assert_array_equal(b.step, step_before)


def test_zero_width_style_is_the_style_free_prefix():
    seq = [C4, H, E4, R, G4]
    full = observe(batch_of(seq, bars=1))
    bare = observe(batch_of(seq, bars=1, style=np.zeros(0, np.float32)))
    assert bare.shape == (1, observation.obs_dim(0))
    np.testing.assert_array_equal(full[:, :observation.obs_dim(0)], bare)


# ---------------------------------------------------------------------- bad input

@pytest.mark.parametrize("bars", [0, 17, 2.5, "3", True])
def test_bars_out_of_range(bars):
    with pytest.raises(EngineError, match=f"bars {bars!r} is out of range: allowed are whole numbers 1-16"):
        MelodyContext.from_music(bars=bars, style=FOLK)


@pytest.mark.parametrize("kw,err,match", [
    ({"key": "H"}, TheoryError, "key 'H'"),
    ({"scale": "klezmer"}, TheoryError, "scale 'klezmer' is not known"),
    ({"time_signature": "7/8"}, TheoryError, "time signature '7/8' is not supported"),
    ({"chords": "C Xm"}, TheoryError, "'Xm'"),
    ({"role": "pad"}, EngineError, "role 'pad' is not known"),
])
def test_bad_context(kw, err, match):
    with pytest.raises(err, match=match):
        MelodyContext.from_music(style=FOLK, **kw)


def test_bad_batches():
    with pytest.raises(EngineError, match="no contexts"):
        MelodyBatch.create([])
    a = MelodyContext.from_music(bars=2, style=FOLK)
    b = MelodyContext.from_music(bars=2, style=np.zeros(3, np.float32))
    with pytest.raises(EngineError, match=f"mix style widths {len(styles.BUILTIN_TERMS)} and 3"):
        MelodyBatch.create([a, b])
    with pytest.raises(EngineError, match="batch length 16 is shorter than the longest melody"):
        MelodyBatch.create([a], length=16)
    batch = MelodyBatch.create([a], length=32)
    with pytest.raises(EngineError, match="does not fit a batch of length 32"):
        batch.reset_rows(np.array([0]), [MelodyContext.from_music(bars=3, style=FOLK)])
    with pytest.raises(EngineError, match="got 1 rows but 2 contexts"):
        batch.reset_rows(np.array([0]), [a, a])
