"""``qriff train``: train the melody Q-network (needs the ``train`` extra: torch)."""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
from pathlib import Path

from engine.cli.options import bounded_int
from engine.errors import EngineError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train the melody DQN (torch) and export it to ONNX",
        description="Train the melody Q-network with double DQN on the vectorised melody MDP. Writes "
                    "config.json, checkpoint.pt, replay.npz, train_log.csv, eval_log.csv, curves.png, "
                    "metrics.json and model.onnx into --out. Ctrl-C writes a checkpoint; --resume continues.",
        epilog="Examples: qriff train                       (the shipped model's recipe, into runs/default)\n"
               "          qriff train --preset tiny --out /tmp/t   (a smoke run of a few seconds)\n"
               "          qriff train --set gamma=0.8 --set 'env={\"bars\": [2, 4]}' --out runs/exp1\n"
               "          qriff train --resume --out runs/default",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    # engine.learn.train imports torch: the preset names are checked when the command runs, so that
    # building the parser (for every qriff command) stays torch-free.
    p.add_argument("--preset", default="default",
                   help="starting configuration: default (the recipe of the shipped model) or tiny "
                        "(a smoke run of a few seconds) (default: default)")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="a config.json (e.g. from an earlier run) to start from instead of a preset")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a TrainConfig field; VALUE is JSON or a bare string (repeatable), "
                        "e.g. --set gamma=0.8 --set hidden=[128,128]")
    p.add_argument("--out", default=None, metavar="DIR", help="run directory (default: runs/PRESET)")
    p.add_argument("--steps", type=bounded_int(1, 10**9), default=None, help="environment steps in total")
    p.add_argument("--envs", type=bounded_int(1, 4096), default=None, help="parallel environments")
    p.add_argument("--seed", type=bounded_int(0, 2**31 - 1), default=None, help="random seed (default: 0)")
    p.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt if it exists")
    p.add_argument("--no-export", action="store_true", help="do not export model.onnx at the end")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
    from engine.cli.sweep import add_sweep_options

    add_sweep_options(p)
    from engine.cli.train_kl import add_kl_options

    add_kl_options(p)
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace):
    """The TrainConfig the flags ask for."""
    from engine.learn.train import TrainConfig, TrainError, preset_config

    if args.config:
        path = Path(args.config)
        try:
            base = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise TrainError(f"--config {args.config!r} is not a readable JSON file: {exc}") from None
        cfg = TrainConfig.from_dict(base)
    else:
        cfg = preset_config(args.preset)
    overrides = {}
    fields = set(cfg.to_dict())
    for item in args.set:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or name not in fields:
            raise TrainError(f"--set {item!r} is not FIELD=VALUE with a TrainConfig field: allowed fields are "
                             f"{', '.join(sorted(fields))}")
        try:
            overrides[name] = json.loads(text)
        except json.JSONDecodeError:
            overrides[name] = text
    d = {**cfg.to_dict(), **overrides}
    if args.out:
        d["out_dir"] = args.out
    elif not args.config and "out_dir" not in overrides:
        d["out_dir"] = f"runs/{args.preset}"
    if args.steps is not None:
        d["total_steps"] = args.steps
    if args.envs is not None:
        d["n_envs"] = args.envs
    if args.seed is not None:
        d["seed"] = args.seed
    d["resume"] = bool(args.resume)
    d["export"] = not args.no_export
    d["quiet"] = bool(args.quiet)
    d["command"] = _command(args)
    try:
        cfg = TrainConfig.from_dict(d)
    except TypeError as exc:
        raise TrainError(f"bad train config: {exc}") from None
    cfg.validate()
    return cfg


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _command(args: argparse.Namespace) -> str:
    """The canonical ``qriff train`` command line for these flags (recorded in the model)."""
    parts = ["qriff", "train"]
    if args.config:
        parts += ["--config", args.config]
    elif args.preset != "default":
        parts += ["--preset", args.preset]
    for item in args.set:
        parts += ["--set", item]
    for flag, value in (("--out", args.out), ("--steps", args.steps), ("--envs", args.envs), ("--seed", args.seed)):
        if value is not None:
            parts += [flag, str(value)]
    parts += [flag for flag, on in (("--resume", args.resume), ("--no-export", args.no_export)) if on]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    if args.algo != "mlp":
        from engine.cli.train_kl import run_kl

        return run_kl(args)
    if args.sweep:
        from engine.cli.sweep import run_sweep_command

        return run_sweep_command(args)
    try:
        from engine.learn.train import train
    except ImportError as exc:
        raise EngineError(f"training needs torch (pip install 'qriff[train]'): {exc}") from None
    cfg = build_config(args)
    # A job scheduler's SIGTERM gets the same treatment as Ctrl-C: checkpoint, then stop.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        result = train(cfg)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if result.interrupted:
        print(f"qriff train: interrupted at {result.env_steps} steps; checkpoint {result.checkpoint}; "
              f"continue with: qriff train --resume --out {cfg.out_dir}", file=sys.stderr)
        return 130
    if not args.quiet:
        print(f"trained {result.env_steps} env steps, {result.grad_steps} gradient steps in "
              f"{result.wall_s / 60:.1f} min; checkpoint {result.checkpoint}"
              + (f"; model {result.model}" if result.model else ""))
    return 0
