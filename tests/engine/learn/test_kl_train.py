"""KL control: the soft backup, the zero-reward fixed point, and a short run that learns."""

from __future__ import annotations

import pytest
import torch

from engine.learn.kl_train import KLConfig, KLTrainError, soft_targets, train_kl
from engine.learn.seqmodel import SeqConfig, SeqNet
from engine.mdp import observation

torch.set_num_threads(1)


def tiny_prior(seed: int = 0) -> SeqNet:
    torch.manual_seed(seed)
    return SeqNet(SeqConfig(obs_dim=observation.obs_dim(0), embed=16, hidden=8, head=16))


def test_soft_backup_of_the_prior_is_zero_and_the_hard_one_is_a_max():
    lp = torch.log_softmax(torch.randn(2, 4, 38), -1)
    zero = torch.zeros(2, 4, 38)
    mask = torch.ones(2, 4)
    y = soft_targets("kl", zero, lp, torch.zeros(2, 4), mask, kl_coef=0.5, gamma=0.9)
    torch.testing.assert_close(y, torch.zeros(2, 4), atol=1e-6, rtol=0)
    g = torch.randn(2, 4, 38)
    rew = torch.randn(2, 4)
    mask[1, 2:] = 0  # row 1 ends after its second step
    y = soft_targets("kl", g, lp, rew, mask, kl_coef=2.0, gamma=0.9)
    v = torch.logsumexp(lp + g, -1)
    assert torch.isclose(y[0, 0], rew[0, 0] / 2 + 0.9 * v[0, 1])
    assert torch.isclose(y[1, 1], rew[1, 1] / 2)  # last step: no bootstrap
    assert torch.isclose(y[0, 3], rew[0, 3] / 2)
    yd = soft_targets("dqn", g, lp, rew, mask, kl_coef=1.0, gamma=0.5)
    assert torch.isclose(yd[0, 0], rew[0, 0] + 0.5 * g[0, 1].max())


def test_with_the_theory_terms_at_zero_the_policy_stays_the_prior():
    prior = tiny_prior()
    cfg = KLConfig(episodes=80, n_envs=16, bars=(1, 2), learning_starts=16, updates_per_episode=0.5,
                   batch_episodes=8, replay_episodes=64, theory_weight=0.0, quiet=True)
    net, log = train_kl(cfg, prior)
    assert log["updates"] >= 20
    assert float(net.g.out.weight.detach().abs().max()) == 0.0 and float(net.g.out.bias.detach().abs().max()) == 0.0
    x = torch.rand(3, 6, net.obs_dim)
    torch.testing.assert_close(net(x), torch.log_softmax(prior(x)[0], -1))


def test_a_short_run_moves_the_policy_towards_the_reward():
    """A style that pays only for rests: the trained policy rests more often than the prior."""
    prior = tiny_prior(1)
    cfg = KLConfig(episodes=400, n_envs=32, bars=(1, 1), learning_starts=32, updates_per_episode=0.5,
                   batch_episodes=16, replay_episodes=256, style="rests=5", kl_coef=0.2, lr=3e-3, quiet=True, log_every=100,
                   gamma=0.5)
    net, log = train_kl(cfg, prior)
    first, last = log["history"][0]["mean_return"], log["history"][-1]["mean_return"]
    assert last > first + 1.0, log["history"]


@pytest.mark.parametrize("field,value", [("kl_coef", 0.0), ("mode", "ppo"), ("gamma", 1.5), ("bars", (2, 1))])
def test_bad_config_is_refused_with_the_field_named(field, value):
    with pytest.raises(KLTrainError, match=f"KLConfig.{field}"):
        KLConfig(**{field: value}).validate()


def _saved_tiny_prior(tmp_path):
    from engine.learn.seqprior_training import save_seq_prior

    return save_seq_prior(tiny_prior(), {"test_nll": 3.0}, tmp_path / "tiny-prior.pt")


@pytest.mark.slow
def test_cli_trains_and_exports_a_kl_model_and_its_validation_scores(qriff, tmp_path, cache):
    import json
    import os

    from engine.learn.kl_select import validation_scores
    from engine.runtime import Policy

    prior = _saved_tiny_prior(tmp_path)
    out = tmp_path / "run"
    env = {**os.environ, "QRIFF_CACHE_DIR": str(cache)}
    r = qriff("train", "--algo", "kl", "--prior", str(prior), "--episodes", "40", "--kl", "0.5", "--out", str(out),
              "--val-clips", "0", "-q", timeout=600, env=env)
    assert r.returncode == 0, r.stderr
    policy = Policy.load(out / "model.onnx")
    assert policy.info.recurrent
    assert policy.info.metadata["train_command"].startswith("qriff train --algo kl --kl 0.5 --episodes 40")
    assert json.loads(policy.info.metadata["train_config"])["kl_coef"] == 0.5
    scores = validation_scores(out / "model.onnx", n=24, limit=80, bars=2, split="train")
    assert 0.0 <= scores["auc"] <= 1.0 and scores["clips"] == 24
    assert scores["auc"] > 0.8  # an untrained tiny prior is easy to tell from real tunes
    # the model is not silently replaced by a second run into the same folder
    r = qriff("train", "--algo", "kl", "--prior", str(prior), "--episodes", "40", "--out", str(out), env=env)
    assert r.returncode == 2 and "exists" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_cli_refuses_mlp_flags_and_a_missing_prior(qriff, tmp_path):
    r = qriff("train", "--algo", "kl", "--preset", "tiny", "--out", str(tmp_path / "a"))
    assert r.returncode == 2 and "--preset" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = qriff("train", "--algo", "kl", "--prior", str(tmp_path / "none.pt"), "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and "qriff corpus prior" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_prior_of_another_observation_contract_is_refused_with_what_to_retrain(tmp_path):
    from engine.base.errors import ModelError
    from engine.learn.seqprior_training import load_seq_prior

    path = _saved_tiny_prior(tmp_path)
    blob = torch.load(path, weights_only=True)
    blob["meta"]["obs_version"] = 1
    torch.save(blob, path)
    with pytest.raises(ModelError, match="observation version 1.*qriff corpus prior --out"):
        load_seq_prior(path)


def test_episode_replay_keeps_whole_episodes_in_a_ring_and_pads_with_a_mask():
    import numpy as np

    from engine.learn.kl_train import EpisodeReplay

    replay = EpisodeReplay(2, 4, seed=0, steps={"obs": ((3,), np.float16), "act": ((), np.int64)},
                           episode={"coef": (1.0, np.float32)})
    replay.add(obs=np.full((2, 3), 0.5), act=np.array([7, 8]))
    replay.add(obs=np.full((4, 3), 1.5), act=np.array([1, 2, 3, 4]), coef=0.25)
    b = replay.sample(2)
    order = np.argsort(b["mask"].sum(1).numpy())  # the 2-step episode, then the 4-step one
    assert b["obs"].dtype.is_floating_point and b["obs"].shape == (2, 4, 3) and str(b["obs"].dtype) == "torch.float32"
    assert b["mask"].dtype == torch.bool and b["mask"][order[0]].tolist() == [True, True, False, False]
    assert b["act"][order[0]].tolist() == [7, 8, 0, 0] and b["act"][order[1]].tolist() == [1, 2, 3, 4]
    assert b["coef"][order].tolist() == [1.0, 0.25]  # the default, then the given value
    replay.add(obs=np.zeros((1, 3)), act=np.array([5]))  # a third episode replaces the oldest
    b = replay.sample(2)
    assert replay.size == 2 and sorted(b["mask"].sum(1).tolist()) == [1, 4] and b["obs"].shape[1] == 4
