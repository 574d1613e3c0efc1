"""Training throughput of ``qriff train`` against Stable-Baselines3's DQN, side by side in one run.

Both learn on the same melody MDP (``engine.mdp.env``: ours the vectorised ``VecMelodyEnv``
with ``qriff train``'s default environments, SB3 the gymnasium ``MelodyEnv``), with the same
rewards (including the corpus prior), the same minibatch (128) and one torch thread each.
SB3's MLP gets two hidden layers of 256: the size of our network's frozen prior branch
(907-256-256-38) that dominates its forward cost, plus nothing for our 128-wide residual. SB3 keeps its own DQN
defaults otherwise (one environment, a gradient step every 4 environment steps).

Each side runs past its learning start, then the measured phase: environment steps per
second and gradient steps per second, by process CPU time (one thread each, so a busy
shared machine does not distort the ratio) and by wall clock. Target (issue 3): at least
5x SB3's environment steps per second. Exits 1 when missed.

    .venv/bin/python bench/bench_train.py [--ours-steps 64000] [--sb3-steps 4000]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from engine.learn.train import TrainConfig, load_prior, one_blas_thread, train  # noqa: E402


def bench_ours(steps: int, warmup: int) -> dict[str, float]:
    """Env and gradient steps per second of engine.learn.train's loop, after ``warmup`` env steps."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(total_steps=warmup + steps, learning_starts=warmup, log_every=warmup, eval_clips=0,
                          export=False, save_replay=False, checkpoint_every=10**12, quiet=True, out_dir=tmp)
        c0 = time.process_time()
        train(cfg)
        cpu_total = time.process_time() - c0
        rows = list(csv.DictReader(open(Path(tmp) / "train_log.csv")))
    first, last = rows[0], rows[-1]
    env = int(last["env_steps"]) - int(first["env_steps"])
    grad = int(last["grad_steps"]) - int(first["grad_steps"])
    wall = float(last["wall_s"]) - float(first["wall_s"])
    # CPU time of the measured phase: the run's CPU time scaled by the phase's share of wall time
    phase_cpu = cpu_total * wall / max(float(last["wall_s"]), 1e-9)
    return {"env_steps": env, "grad_steps": grad, "wall_s": wall, "cpu_s": phase_cpu,
            "env_per_s_cpu": env / phase_cpu, "grad_per_s_cpu": grad / phase_cpu,
            "env_per_s_wall": env / wall, "grad_per_s_wall": grad / wall}


def bench_sb3(steps: int, warmup: int) -> dict[str, float]:
    """The same for Stable-Baselines3's DQN on the gymnasium MelodyEnv."""
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    from engine.mdp.env import EnvConfig, MelodyEnv
    from engine.mdp.rewards import RewardFunction

    cfg = EnvConfig()
    env = MelodyEnv(cfg, reward=RewardFunction(cfg.terms, prior=load_prior()))
    marks: dict[str, float] = {}

    class Clock(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps == warmup:
                marks.update(t=self.num_timesteps, wall=time.perf_counter(), cpu=time.process_time(),
                             n=self.model._n_updates)
            return True

    model = DQN("MlpPolicy", env, policy_kwargs={"net_arch": [256, 256]}, batch_size=128, buffer_size=100_000,
                learning_starts=warmup, train_freq=4, gradient_steps=1, seed=0, device="cpu", verbose=0)
    model.learn(total_timesteps=warmup + steps, callback=Clock())
    wall, cpu = time.perf_counter() - marks["wall"], time.process_time() - marks["cpu"]
    env_steps, grad = model.num_timesteps - marks["t"], model._n_updates - marks["n"]
    return {"env_steps": env_steps, "grad_steps": grad, "wall_s": wall, "cpu_s": cpu,
            "env_per_s_cpu": env_steps / cpu, "grad_per_s_cpu": grad / cpu,
            "env_per_s_wall": env_steps / wall, "grad_per_s_wall": grad / wall}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ours-steps", type=int, default=32_000, help="measured env steps of qriff train")
    ap.add_argument("--sb3-steps", type=int, default=4_000, help="measured env steps of SB3 DQN")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    with one_blas_thread():  # the same numpy threading for both sides (train() sets it for ours)
        sb3 = bench_sb3(args.sb3_steps, warmup=1_000)
    ours = bench_ours(args.ours_steps, warmup=TrainConfig().learning_starts + TrainConfig().n_envs * 10)
    print("| trainer | env steps | grad steps | CPU s | env steps/s (CPU) | grad steps/s (CPU) | "
          "env steps/s (wall) | grad steps/s (wall) |")
    print("|---|---|---|---|---|---|---|---|")
    cfg = TrainConfig()
    for name, r in ((f"qriff train ({cfg.n_envs} envs, batch {cfg.batch_size}, {cfg.gradient_steps} grad step / "
                     f"{cfg.n_envs * cfg.train_every} env steps)", ours),
                    ("SB3 DQN (1 env, batch 128, 1 grad step / 4 env steps)", sb3)):
        print(f"| {name} | {r['env_steps']:,} | {r['grad_steps']:,} | {r['cpu_s']:.1f} | {r['env_per_s_cpu']:,.0f} | "
              f"{r['grad_per_s_cpu']:,.1f} | {r['env_per_s_wall']:,.0f} | {r['grad_per_s_wall']:,.1f} |")
    env_ratio = ours["env_per_s_cpu"] / sb3["env_per_s_cpu"]
    grad_ratio = ours["grad_per_s_cpu"] / sb3["grad_per_s_cpu"]
    wall_ratio = ours["env_per_s_wall"] / sb3["env_per_s_wall"]
    print(f"\nenv steps/s: {env_ratio:.1f}x SB3 (CPU time), {wall_ratio:.1f}x (wall); "
          f"grad steps/s: {grad_ratio:.2f}x SB3 (CPU time)")
    print(f"target env steps/s >= 5x SB3: {'met' if env_ratio >= 5 else 'MISSED'}")
    return 0 if env_ratio >= 5 else 1


if __name__ == "__main__":
    sys.exit(main())
