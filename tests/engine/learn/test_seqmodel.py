"""The recurrent network: history rebuilt from tokens, step == sequence, and G starting at zero."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.learn.seqmodel import KLPolicyNet, SeqConfig, SeqNet, StepModule, g_network_from_prior
from engine.learn.seqprior_training import history_onehot
from engine.mdp import observation, styles
from engine.music import tokens
from tests.engine.observed import observed_rows

torch.set_num_threads(1)
D0 = observation.obs_dim(0)
H = observation.HISTORY * tokens.N_ACTIONS


@pytest.mark.parametrize("ts", [(4, 4), (6, 8)])
def test_history_onehot_equals_the_observation_history(ts):
    rng = np.random.default_rng(1)
    ctx = observation.MelodyContext.from_music(key=0, scale="dorian", bars=3, time_signature=ts, role="lead",
                                               style=np.zeros(0, np.float32))
    seq = rng.integers(0, tokens.N_ACTIONS, ctx.n_steps)
    obs = observed_rows(ctx, seq)
    rebuilt = history_onehot(torch.from_numpy(seq)[None])[0].numpy()
    np.testing.assert_array_equal(rebuilt, obs[:, :H])


def test_step_by_step_equals_the_whole_sequence():
    torch.manual_seed(0)
    net = SeqNet(SeqConfig(obs_dim=D0, embed=16, hidden=8, head=16))
    x = torch.randn(3, 7, D0)
    whole, last = net(x)
    h = net.zero_state(3)
    for t in range(7):
        y, h = net.step(x[:, t], h)
        torch.testing.assert_close(y, whole[:, t], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, last)


def test_g_network_starts_at_zero_so_the_kl_policy_is_the_prior():
    torch.manual_seed(0)
    n_style = len(styles.BUILTIN_TERMS)
    prior = SeqNet(SeqConfig(obs_dim=D0, embed=16, hidden=8, head=16))
    g = g_network_from_prior(prior, observation.obs_dim(n_style))
    policy = KLPolicyNet(prior, g)
    x = torch.rand(2, 5, observation.obs_dim(n_style))
    assert float(g(x)[0].detach().abs().max()) == 0.0
    torch.testing.assert_close(policy(x), torch.log_softmax(prior(x[..., :D0])[0], -1))
    # the G body is the prior's: the style columns start with zero weight
    assert float(g.inp.weight[:, D0:].detach().abs().max()) == 0.0
    torch.testing.assert_close(g.inp.weight[:, :D0], prior.inp.weight)
    # the exported step form carries both states
    step = StepModule(policy)
    q, s = step(x[:, 0], policy.zero_state(2))
    assert q.shape == (2, tokens.N_ACTIONS) and s.shape == (2, prior.state_size + g.state_size)
    assert not any(p.requires_grad for p in prior.parameters())


def test_recurrent_export_round_trips_through_the_runtime(tmp_path):
    from engine.learn.seqexport import export_seq_model
    from engine.runtime import Policy

    torch.manual_seed(0)
    terms = styles.BUILTIN_TERMS
    prior = SeqNet(SeqConfig(obs_dim=D0, embed=16, hidden=8, head=16))
    g = g_network_from_prior(prior, observation.obs_dim(len(terms)))
    with torch.no_grad():  # a G that is not zero, so the test sees it
        g.out.weight.normal_(0, 0.5)
    net = KLPolicyNet(prior, g)
    path = tmp_path / "seq.onnx"
    report = export_seq_model(net, path, terms, model_id="seq-unit", train_command="qriff train --algo kl")
    assert report is not None and report.ok and report.greedy_identical
    policy = Policy.load(path)
    assert policy.info.recurrent and policy.info.state_size == 16
    assert policy.info.metadata["git_commit"] and "folk" in policy.info.metadata["style_presets"]
    a = policy.generate(bars=2, count=3, seed=5, style="hook")
    b = policy.generate(bars=2, count=1, seed=6, style="hook")
    assert a[1].tracks[0].notes == b[0].tracks[0].notes  # variation i == seed + i, state and all
    # a primer's steps still advance the state: continuing a clip differs from starting fresh
    cont = policy.generate(bars=2, seed=5, primer=a[0])[0]
    assert cont.bars == 4
