"""A TrainConfig from the flags of ``qriff train``, and the command line that gives it back.

``qriff train`` and every trial of ``qriff train --sweep`` build their config here, so
a sweep trial is exactly the run its recorded command reproduces. The flags: a starting
point (``preset`` or a ``config`` JSON file), ``FIELD=VALUE`` overrides (VALUE is JSON
or a bare string), then ``out``, ``steps``, ``envs``, ``seed``, ``resume``, ``export``
and ``quiet``.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from pathlib import Path

from engine.learn.train import TrainConfig, TrainError, preset_config


def config_from_flags(*, preset: str = "default", config: str | None = None, sets: Sequence[str] = (),
                      out: str | None = None, steps: int | None = None, envs: int | None = None,
                      seed: int | None = None, resume: bool = False, export: bool = True,
                      quiet: bool = False) -> TrainConfig:
    """The validated TrainConfig these flags ask for, its ``command`` set; TrainError names a bad flag."""
    if config:
        try:
            base = json.loads(Path(config).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise TrainError(f"--config {config!r} is not a readable JSON file: {exc}") from None
        cfg = TrainConfig.from_dict(base)
    else:
        cfg = preset_config(preset)
    overrides = {}
    fields = set(cfg.to_dict())
    for item in sets:
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
    if out:
        d["out_dir"] = out
    elif not config and "out_dir" not in overrides:
        d["out_dir"] = f"runs/{preset}"
    if steps is not None:
        d["total_steps"] = steps
    if envs is not None:
        d["n_envs"] = envs
    if seed is not None:
        d["seed"] = seed
    d["resume"] = bool(resume)
    d["export"] = bool(export)
    d["quiet"] = bool(quiet)
    d["command"] = train_command(preset=preset, config=config, sets=sets, out=out, steps=steps, envs=envs,
                                 seed=seed, resume=resume, export=export)
    try:
        cfg = TrainConfig.from_dict(d)
    except TypeError as exc:
        raise TrainError(f"bad train config: {exc}") from None
    cfg.validate()
    return cfg


def train_command(*, preset: str = "default", config: str | None = None, sets: Sequence[str] = (),
                  out: str | None = None, steps: int | None = None, envs: int | None = None,
                  seed: int | None = None, resume: bool = False, export: bool = True) -> str:
    """The canonical ``qriff train`` command line for these flags (recorded in the model)."""
    parts = ["qriff", "train"]
    if config:
        parts += ["--config", config]
    elif preset != "default":
        parts += ["--preset", preset]
    for item in sets:
        parts += ["--set", item]
    for flag, value in (("--out", out), ("--steps", steps), ("--envs", envs), ("--seed", seed)):
        if value is not None:
            parts += [flag, str(value)]
    parts += [flag for flag, on in (("--resume", resume), ("--no-export", not export)) if on]
    return shlex.join(parts)
