"""Speed of the runtime policy, measured side by side in one run (medians of interleaved rounds).

Measures, for a 4-bar clip (64 steps) of the same network:

* ``policy``: ``Policy.generate(bars=4)`` (onnxruntime, incremental observations, clip built);
* ``torch eager``: the same weights in torch, step by step with ``observe()`` and sampling
  in torch, as one would write it without the runtime path;
* ``floor``: 64 bare ``session.run`` calls of the same ONNX session on prepared inputs;
* ``policy x16``: 16 variations of a 4-bar clip in one ``generate`` call.

Targets (issue 16): policy >= 5x faster than torch eager; policy within 1.2x of the floor;
16 variations <= 2x one clip. Prints a table; exits 1 when a target is missed. A recurrent
model (format 2) carries its state through every call: the floor's inputs are the
observations *and* states of a real rollout, and its torch weights are read from the
``.pt`` beside it (``policy.pt`` in a training run, ``default-policy.pt`` for the shipped
model; ``--torch PATH`` to name another).

Every case runs in this one thread (onnxruntime and torch both with one thread), so
the process CPU time of a case is its cost; the targets are checked on the median CPU
time, which a busy shared machine does not inflate (being descheduled for a 10-20 ms
timeslice lands in wall time, not CPU time). Wall-clock medians are printed beside it.

    .venv/bin/python bench/bench_policy.py [--model PATH] [--rounds 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.mdp import observation, styles  # noqa: E402
from engine.runtime.policy import Policy  # noqa: E402


def torch_network(policy: Policy):
    """The ONNX model's weights in the torch QNetwork (same architecture as trained)."""
    import onnx
    import torch
    from onnx import numpy_helper

    from engine.learn.model import ModelConfig, QNetwork

    torch.set_num_threads(1)
    cfg = ModelConfig.from_dict(json.loads(policy.info.metadata["model_config"]))
    net = QNetwork(cfg).eval()
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(policy.path)).graph.initializer}
    state = net.state_dict()
    missing = [k for k in state if k not in inits and k != "prior_scale"]
    if missing:
        raise SystemExit(f"cannot map ONNX initializers onto the torch network: missing {missing}")
    net.load_state_dict({k: torch.from_numpy(np.array(inits[k])) if k in inits else v for k, v in state.items()})
    return net


def torch_recurrent(policy: Policy, path: str | None):
    """The recurrent model's torch policy (prior + G) from its ``.pt`` weights."""
    import torch

    from engine.learn.seqmodel import load_policy

    torch.set_num_threads(1)
    candidates = [Path(path)] if path else [policy.path.with_name(policy.path.stem + "-policy.pt"),
                                            policy.path.with_name("policy.pt")]
    for c in candidates:
        if c.is_file():
            return load_policy(c)
    raise SystemExit(f"no torch weights for {policy.path}: looked for {', '.join(map(str, candidates))}; "
                     "pass --torch PATH (a policy.pt written by qriff train --algo kl)")


def torch_eager_clip(net, ctx: observation.MelodyContext, seed: int, states: list | None = None) -> np.ndarray:
    """One clip, step by step: observe() -> torch forward -> softmax sample (torch).

    A recurrent ``net`` (a KL policy) carries its state; ``states`` collects the state fed
    at every step when given."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    batch = observation.MelodyBatch.create([ctx])
    out = np.zeros(ctx.n_steps, np.int64)
    recurrent = hasattr(net, "zero_state")
    state = net.zero_state(1) if recurrent else None
    with torch.no_grad():
        for t in range(ctx.n_steps):
            x = torch.from_numpy(observation.observe(batch))
            if recurrent:
                if states is not None:
                    states.append(state.numpy().copy())
                q, _, state = net.step(x, state)
            else:
                q = net(x)
            a = torch.multinomial(torch.softmax(q, dim=1), 1, generator=gen)[:, 0].numpy()
            out[t] = a[0]
            batch.append(a)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="ONNX model (default: the shipped model)")
    ap.add_argument("--rounds", type=int, default=200, help="interleaved rounds; the median is reported")
    ap.add_argument("--torch", default=None, metavar="PATH.pt", help="a recurrent model's torch weights")
    args = ap.parse_args(argv)

    policy = Policy.load(args.model)
    terms = policy.info.style_terms
    ctx = observation.MelodyContext.from_music(bars=4, style=styles.style_vector(styles.parse_style(None, terms), terms))
    net = torch_recurrent(policy, args.torch) if policy.info.recurrent else torch_network(policy)
    # The floor's inputs: the observations (and states) of a real rollout, prepared up front.
    states: list = []
    seq = torch_eager_clip(net, ctx, 0, states)
    batch = observation.MelodyBatch.create([ctx])
    prepared = []
    for t in range(ctx.n_steps):
        feed = {"obs": observation.observe(batch).copy()}
        if policy.info.recurrent:
            feed["state"] = states[t]
        prepared.append(feed)
        batch.append(seq[t:t + 1])
    sess = policy.session

    def run_policy(i: int) -> None:
        policy.generate(bars=4, count=1, seed=i)

    def run_policy16(i: int) -> None:
        policy.generate(bars=4, count=16, seed=i)

    def run_floor(i: int) -> None:
        for feed in prepared:
            sess.run(None, feed)

    prepared16 = [{k: np.repeat(v, 16, axis=0) for k, v in feed.items()} for feed in prepared]

    def run_floor16(i: int) -> None:
        for feed in prepared16:
            sess.run(None, feed)

    def run_torch(i: int) -> None:
        torch_eager_clip(net, ctx, i)

    cases = {"policy (1 clip)": run_policy, "floor (64 session.run)": run_floor,
             "torch eager (1 clip)": run_torch, "policy (16 variations)": run_policy16,
             "floor x16 (64 session.run, batch 16)": run_floor16}
    for fn in cases.values():  # warm up
        for i in range(3):
            fn(i)
    times: dict[str, list[float]] = {k: [] for k in cases}
    walls: dict[str, list[float]] = {k: [] for k in cases}
    for r in range(args.rounds):
        for label, fn in cases.items():
            w0, t0 = time.perf_counter(), time.process_time()
            fn(r)
            times[label].append(time.process_time() - t0)
            walls[label].append(time.perf_counter() - w0)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    wall = {k: statistics.median(v) * 1e3 for k, v in walls.items()}

    p1, floor, eager, p16 = (med["policy (1 clip)"], med["floor (64 session.run)"], med["torch eager (1 clip)"],
                             med["policy (16 variations)"])
    print(f"model {policy.info.model_id} ({policy.path}), 4 bars = {ctx.n_steps} steps, obs width "
          f"{policy.info.obs_dim}, {args.rounds} interleaved rounds, medians\n")
    print("| case | median CPU ms | p10 CPU ms | p90 CPU ms | median wall ms |")
    print("|---|---|---|---|---|")
    for k, v in times.items():
        q = np.percentile(np.array(v) * 1e3, [10, 90])
        print(f"| {k} | {med[k]:.2f} | {q[0]:.2f} | {q[1]:.2f} | {wall[k]:.2f} |")
    checks = [
        ("torch eager / policy >= 5x", eager / p1, wall["torch eager (1 clip)"] / wall["policy (1 clip)"],
         eager / p1 >= 5.0),
        ("policy / floor <= 1.2x", p1 / floor, wall["policy (1 clip)"] / wall["floor (64 session.run)"],
         p1 / floor <= 1.2),
        ("16 variations / 1 clip <= 2x", p16 / p1, wall["policy (16 variations)"] / wall["policy (1 clip)"],
         p16 / p1 <= 2.0),
    ]
    print("\n| target | measured (CPU) | wall-clock ratio | met |")
    print("|---|---|---|---|")
    for label, value, wall_ratio, ok in checks:
        print(f"| {label} | {value:.2f}x | {wall_ratio:.2f}x | {'yes' if ok else 'NO'} |")
    f16 = med["floor x16 (64 session.run, batch 16)"]
    print(f"\nthe network alone at batch 16 costs {f16 / floor:.2f}x batch 1: 16 variations cannot cost less than "
          f"{f16 / p1:.2f}x one clip with this network (the rest, {(p16 - f16) / p16:.0%}, is observations and sampling)")
    missed = [label for label, _, _, ok in checks if not ok]
    if missed:
        print(f"\nmissed: {'; '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
