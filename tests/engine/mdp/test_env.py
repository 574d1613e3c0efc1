"""The melody MDP: gymnasium contract, vectorised vs single agreement, episode lengths,
progression looping, auto-reset and bad configuration."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from engine.base.errors import EngineError
from engine.mdp import observation, styles
from engine.mdp.env import EnvConfig, MelodyEnv, VecMelodyEnv, sample_episode
from engine.mdp.observation import MelodyContext
from engine.music import theory, tokens
from engine.music.limits import MAX_BARS


def small(**kw) -> EnvConfig:
    return EnvConfig(**{"bars": (1, 2), **kw})


@pytest.mark.filterwarnings("ignore:.*alternative render modes")
def test_check_env_passes():
    env = MelodyEnv(small())
    check_env(env, skip_render_check=True)
    check_env(MelodyEnv(small(style="hook"), render_mode="ansi"))


def test_spaces_and_render():
    env = MelodyEnv(small(), render_mode="ansi")
    obs, info = env.reset(seed=3)
    assert env.action_space.n == 38
    assert obs.shape == env.observation_space.shape == (observation.obs_dim(len(styles.BUILTIN_TERMS)),)
    assert obs.dtype == np.float32 and env.observation_space.contains(obs)
    assert isinstance(info["context"], MelodyContext)
    for a in (14, 1, 0, 16):
        obs, reward, term, trunc, info = env.step(a)
        assert env.observation_space.contains(obs)
        assert set(info["terms"]) == set(styles.BUILTIN_TERMS)
        assert isinstance(reward, float) and not trunc
    assert env.render() == "+0 - . +2"


@pytest.mark.parametrize("seed", [0, 7])
def test_vec_row_zero_matches_single_env(seed):
    """Row 0 of VecMelodyEnv(n, seed) plays the episodes of MelodyEnv.reset(seed=seed)."""
    cfg = small(bars=(1, 3))
    vec = VecMelodyEnv(3, cfg, seed=seed)
    single = MelodyEnv(cfg)
    rng = np.random.default_rng(seed)
    vobs = vec.reset()
    sobs, _ = single.reset(seed=seed)
    episodes = 0
    for _ in range(150):
        np.testing.assert_array_equal(vobs[0], sobs)
        acts = rng.integers(0, 38, 3)
        vobs, vrew, vdone, info = vec.step(acts)
        sobs, srew, term, _, sinfo = single.step(int(acts[0]))
        assert vrew[0] == pytest.approx(srew, abs=1e-6)
        np.testing.assert_allclose(info["terms"][0], list(sinfo["terms"].values()), atol=1e-6)
        assert bool(vdone[0]) == term
        if term:
            np.testing.assert_array_equal(info["final_obs"][0], sobs)
            np.testing.assert_array_equal(info["tokens"][list(info["done_rows"]).index(0)], sinfo["tokens"])
            sobs, _ = single.reset()
            episodes += 1
    assert episodes >= 3


def test_rows_do_not_depend_on_batch_size():
    cfg = small()
    a, b = VecMelodyEnv(2, cfg, seed=5), VecMelodyEnv(5, cfg, seed=5)
    oa, ob = a.reset(), b.reset()
    rng = np.random.default_rng(0)
    for _ in range(60):
        np.testing.assert_array_equal(oa, ob[:2])
        acts = rng.integers(0, 38, 5)
        oa, ra, da, _ = a.step(acts[:2])
        ob, rb, db, _ = b.step(acts)
        np.testing.assert_array_equal(ra, rb[:2])
        np.testing.assert_array_equal(da, db[:2])


def test_reset_seed_is_reproducible():
    env = VecMelodyEnv(4, small(), seed=0)
    first = env.reset(seed=11)
    env.step(np.zeros(4, np.int64))
    np.testing.assert_array_equal(env.reset(seed=11), first)
    assert not np.array_equal(env.reset(seed=12), first)


@pytest.mark.parametrize("ts,bars,steps", [((4, 4), 1, 16), ((4, 4), 16, 256), ((3, 4), 1, 12), ((3, 4), 16, 192),
                                           ((4, 4), 3, 48), ((3, 4), 2, 24), ((6, 8), 2, 24), ((2, 4), 3, 24)])
def test_episode_lengths(ts, bars, steps):
    env = MelodyEnv(EnvConfig(bars=(bars, bars), time_signatures=(ts,), style="folk"))
    env.reset(seed=0)
    n = 0
    term = False
    while not term:
        _, _, term, _, info = env.step(tokens.HOLD if n else tokens.TONIC_TOKEN)
        n += 1
    assert n == steps and len(info["tokens"]) == steps
    with pytest.raises(EngineError, match="call reset"):
        env.step(0)


def test_vec_episode_lengths_and_returns():
    cfg = EnvConfig(bars=(1, 1), time_signatures=((4, 4), (3, 4)), ts_probs=(0.5, 0.5), style="folk")
    env = VecMelodyEnv(8, cfg, seed=2)
    env.reset()
    returns = np.zeros(8)
    steps = np.zeros(8, int)
    seen = set()
    rng = np.random.default_rng(1)
    for _ in range(100):
        _, r, done, info = env.step(rng.integers(0, 38, 8))
        returns += r
        steps += 1
        for row, toks in zip(info["done_rows"], info["tokens"]):
            assert steps[row] == info["episode_length"][row] == len(toks)
            assert info["episode_return"][row] == pytest.approx(returns[row], abs=1e-3)
            seen.add(len(toks))
            returns[row] = 0
            steps[row] = 0
        assert (np.flatnonzero(done) == info["done_rows"]).all()
    assert seen == {12, 16}


def test_progression_loops_over_bars():
    cfg = EnvConfig(bars=(6, 6), scales=("major",), time_signatures=((3, 4),), progressions=("I IV V",),
                    roles=("lead",), style="folk")
    ctx, _ = sample_episode(cfg.validated(), np.random.default_rng(0))
    roots = ctx.chord_root_per_step.reshape(6, 12)
    assert (roots == roots[:, :1]).all()              # one chord a bar
    assert roots[:, 0].tolist() == [0, 5, 7, 0, 5, 7]  # I IV V I IV V
    env = VecMelodyEnv(1, cfg, seed=0)
    obs = env.reset()
    offsets, col = {}, 0
    for name, width in observation.layout(0):
        offsets[name] = col
        col += width
    start = offsets["chord"] + 12  # the chord root one-hot
    seen = []
    for t in range(72):
        if t % 12 == 0:
            seen.append(int(np.argmax(obs[0, start:start + 12])))
        obs, *_ = env.step(np.array([tokens.HOLD]))
    assert seen == [0, 5, 7, 0, 5, 7]


def test_default_progressions_follow_the_scale():
    cfg = EnvConfig(bars=(4, 4), scales=("dorian",), style="folk").validated()
    rng = np.random.default_rng(0)
    for _ in range(20):
        ctx, _ = sample_episode(cfg, rng)
        choices = {theory.DEFAULT_PROGRESSIONS["dorian"], "i ii i IV", "i VII IV i"}
        symbols = " ".join(c.symbol for c in ctx.chords)
        assert symbols in choices


def test_sampled_styles_vary_and_fixed_style_is_fixed():
    env = VecMelodyEnv(16, small(), seed=0)
    env.reset()
    assert len({tuple(w) for w in env.weights}) > 4
    np.testing.assert_allclose(env.batch.style * styles.MAX_WEIGHT, env.weights, rtol=1e-6)
    env = VecMelodyEnv(4, small(style="hook"), seed=0)
    env.reset()
    hook = [styles.parse_style("hook")[t] for t in styles.BUILTIN_TERMS]
    np.testing.assert_allclose(env.weights, np.tile(hook, (4, 1)))


def test_roles_and_metres_follow_probabilities():
    cfg = EnvConfig(roles=("lead", "bass"), role_probs=(1.0, 0.0), time_signatures=((4, 4), (3, 4)),
                    ts_probs=(0.0, 1.0))
    env = VecMelodyEnv(10, cfg, seed=0)
    env.reset()
    assert (env.batch.role == 0).all() and (env.batch.steps_per_bar == 12).all()


def test_reset_options_fix_context_and_style():
    env = MelodyEnv(small())
    ctx = MelodyContext.from_music(key="D", scale="minor", bars=1, chords="i iv", role="bass",
                                   style=np.zeros(len(styles.BUILTIN_TERMS)))
    obs, info = env.reset(seed=0, options={"context": ctx, "style": "ambient"})
    assert info["context"].n_steps == 16 and info["context"].role == "bass"
    np.testing.assert_allclose(env.weights[0], [styles.parse_style("ambient")[t] for t in styles.BUILTIN_TERMS])
    with pytest.raises(EngineError, match="unknown reset options"):
        env.reset(options={"bars": 3})


@pytest.mark.parametrize("kw,match", [
    ({"bars": (0, 2)}, r"EnvConfig.bars \(0, 2\) is not valid"),
    ({"bars": (3, 2)}, r"EnvConfig.bars \(3, 2\)"),
    ({"bars": (1, MAX_BARS + 1)}, f"1 <= min <= max <= {MAX_BARS}"),
    ({"scales": ("major", "lydianish")}, "scale 'lydianish' is not known"),
    ({"scales": ()}, "scales is empty"),
    ({"time_signatures": ((5, 4),)}, r"time signature \(5, 4\) is not supported"),
    ({"ts_probs": (1.0,)}, r"EnvConfig.ts_probs \(1.0,\) is not valid"),
    ({"roles": ("lead", "pad")}, "role 'pad' is not known"),
    ({"role_probs": (-1, 2)}, "role_probs"),
    ({"progressions": ("I V vi IV", "I X")}, "'I X'"),
    ({"style": "hook,motif=9"}, "out of range"),
    ({"terms": ("key", "sparkles")}, "reward term 'sparkles' is not known"),
])
def test_bad_config(kw, match):
    with pytest.raises(EngineError, match=match):
        VecMelodyEnv(2, EnvConfig(**kw))


def test_bad_actions_and_sizes():
    env = VecMelodyEnv(2, small())
    with pytest.raises(EngineError, match="before reset"):
        env.step(np.zeros(2, np.int64))
    env.reset()
    with pytest.raises(EngineError, match="action 38 is out of range"):
        env.step(np.array([0, 38]))
    with pytest.raises(EngineError, match=r"shape \(3,\)"):
        env.step(np.zeros(3, np.int64))
    with pytest.raises(EngineError, match="n_envs 0 is not valid"):
        VecMelodyEnv(0)
    from engine.mdp.rewards import RewardFunction
    with pytest.raises(EngineError, match="differ from EnvConfig.terms"):
        VecMelodyEnv(2, small(), reward=RewardFunction(("key",)))
    with pytest.raises(EngineError, match="render_mode 'human'"):
        MelodyEnv(render_mode="human")
