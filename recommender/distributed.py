"""Data-parallel training of the recommender's network on Ray Train (torch over gloo, CPU).

A thin wrapper around :class:`recommender.train.Trainer`: every Ray Train worker builds
the same ``Trainer`` (same seed, so the same initial weights), takes its shard of every
batch and runs the trainer's own :meth:`~recommender.train.Trainer.step` (network, loss,
optimizer, target network unchanged). Gradients are averaged across workers by
``torch.distributed.all_reduce`` over gloo as each parameter's gradient is accumulated,
before the step's clipping and Adam update, as DDP does (the trainer calls the network's
``encode``/``q_values`` heads rather than ``forward``, which DDP's wrapper needs). The
global batch is the configured ``batch_size`` split across workers, so the run takes the
same steps as the single-process one.

The candidates (implicit's ALS/BPR) are fitted once, in the driver, exactly as
single-process training fits them; only the DQN is data-parallel. Ray is the optional
``ray`` extra; :func:`engine.base.cluster.connect` joins a cluster or starts a local Ray.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

STATE_FILE = "net.pt"


def _average_gradients(net: Any, world: int) -> None:
    """All-reduce (mean) each parameter's gradient over the process group once backward has accumulated it."""
    import torch.distributed as dist

    def hook(p: Any) -> None:
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad.div_(world)

    for p in net.parameters():
        if p.requires_grad:
            p.register_post_accumulate_grad_hook(hook)


def shard_steps(n_windows: int, batch_size: int, world: int, rank: int, order: np.ndarray) -> list[np.ndarray]:
    """This rank's window indices for each step of one epoch (``order``: the epoch's permutation).

    Each global batch of ``batch_size`` windows is cut into ``world`` near-equal parts; a last
    batch smaller than ``world`` is dropped on every rank alike (each rank must take every step).
    """
    steps = []
    for s in range(math.ceil(n_windows / batch_size)):
        batch = order[s * batch_size:(s + 1) * batch_size]
        if len(batch) < world:
            continue
        steps.append(np.array_split(batch, world)[rank])
    return steps


def _worker_loop(cfg: dict[str, Any]) -> None:
    """One Ray Train worker: the trainer's steps on this rank's shards; rank 0 reports the weights."""
    import ray
    import ray.train
    import torch

    from recommender.train import Trainer

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    data, config = ray.get(cfg["data"]), cfg["config"]
    trainer = Trainer(data, config, checkpoint_dir=None, progress=False)
    # Same initial weights on every rank (the Trainer seeds torch); from here each rank draws
    # its own dropout masks and sampled tracks.
    trainer.rng = np.random.default_rng([config.seed, rank])
    torch.manual_seed(int(np.random.SeedSequence([config.seed, rank]).generate_state(1)[0]))
    _average_gradients(trainer.net, world)
    epoch_rng = np.random.default_rng(config.seed)  # the same permutation on every rank
    n_win = len(trainer.win_items)
    history = []
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        trainer.net.train()
        sums: dict[str, float] = {}
        steps = shard_steps(n_win, config.batch_size, world, rank, epoch_rng.permutation(n_win))
        for idx in steps:
            logs = trainer.step(torch.from_numpy(trainer.win_items[idx]), torch.from_numpy(trainer.win_outs[idx]),
                                torch.from_numpy(trainer.win_ends[idx]),
                                trainer.user_feats[torch.from_numpy(trainer.win_users[idx])])
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
        history.append({k: v / max(len(steps), 1) for k, v in sums.items()}
                       | {"epoch": epoch, "seconds": time.perf_counter() - t0})
    # One report, with the weights from rank 0 (every rank holds the same ones) and its epoch log.
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if rank == 0:
            torch.save(trainer.net.state_dict(), Path(tmp) / STATE_FILE)
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report({"history": history}, checkpoint=checkpoint)


def fit_data_parallel(data: Any, config: Any, *, workers: int = 2, address: str | None = None,
                      storage: str | Path | None = None) -> tuple[Any, list[dict[str, float]]]:
    """Train ``Trainer(data, config)``'s network on ``workers`` Ray Train workers.

    Returns the trained network (eval mode, on this process) and the per-epoch log of
    rank 0. ``storage``: where Ray Train keeps the run (must be shared by every node of a
    multi-node cluster); default a temporary folder.
    """
    import torch

    from engine.base.cluster import ScaleoutError, cluster_cpus, connect
    from recommender.train import build_net

    with connect(address, workers) as ray, tempfile.TemporaryDirectory(prefix="qriff-rec-ray-") as tmp:
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer

        if cluster_cpus(ray) < workers:
            raise ScaleoutError(f"--workers {workers} is more than the {cluster_cpus(ray)} CPUs of the Ray cluster")
        trainer = TorchTrainer(
            _worker_loop, train_loop_config={"data": ray.put(data), "config": config},
            torch_config=TorchConfig(backend="gloo"),
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=False, resources_per_worker={"CPU": 1}),
            run_config=RunConfig(name="rec-train", storage_path=str(Path(storage or tmp).resolve())))
        result = trainer.fit()
        if result.error is not None or result.checkpoint is None:
            raise ScaleoutError(f"data-parallel training failed: {result.error}")
        with result.checkpoint.as_directory() as d:
            state = torch.load(Path(d) / STATE_FILE, weights_only=True)
        history = list(result.metrics["history"])
    net = build_net(data, config)
    net.load_state_dict(state)
    net.eval()
    return net, history


def data_parallel_fit(workers: int, address: str | None = None) -> Any:
    """``fit(data, config)`` for :func:`recommender.train.train_database`: :func:`fit_data_parallel` there.

    Checks that Ray is installed and the address answers before any data is loaded.
    """
    from engine.base.cluster import check_reachable, require_ray

    require_ray("--ray-address/--workers" if address else "--workers")
    if address:
        check_reachable(address)

    def fit(data: Any, config: Any) -> tuple[Any, list[dict[str, float]]]:
        return fit_data_parallel(data, config, workers=workers, address=address)

    return fit
