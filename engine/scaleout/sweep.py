"""Sweeps: a grid of training runs over Ray Tune (``qriff train --sweep FILE``).

A sweep file is TOML::

    preset = "tiny"                  # or config = "runs/x/config.json"; the base config
    metric = "folk.overlap_interval" # STYLE.METRIC of the final evaluation, or episode_return
    mode = "max"                     # max or min
    seeds = [0, 1, 2]                # every grid point runs once per seed
    retries = 2                      # a trial that dies (error, lost node) is run again
    style = "folk"                   # base of the style.TERM weights below (default folk)

    [set]                            # TrainConfig fields fixed for every trial
    total_steps = 20000

    [grid]                           # one list per swept key: their product x seeds
    gamma = [0.8, 0.9]               # a TrainConfig field
    "env.bars" = [[1, 2], [2, 4]]    # an EnvConfig field (TrainConfig.env)
    "style.motif" = [0, 2]           # a style weight: the training style becomes "folk,motif=2"

Each trial is a plain :func:`engine.learn.train.train` run built by the same code as
``qriff train`` (:func:`engine.learn.recipe.config_from_flags`), so a trial's result is
the one that ``qriff train`` with the trial's recorded command gives. Trials write into
``OUT/trials/trial-NNN`` (on a multi-node cluster ``OUT`` must be storage every node
sees, as Ray Tune requires); the sweep writes ``OUT/results.md``, ``OUT/results.json``,
``OUT/metric.png`` and copies the best trial's model to ``OUT/best.onnx``.

What keeps a sweep from costing more than its trials (``docs/scaling.md`` has the
figures): the workers run at the caller's priority, not Ray's default +15
(:func:`engine.base.cluster.connect`, and :func:`engine.base.cluster.match_priority` in each
trial); Tune reuses a trial's actor for the next trial (``reuse_actors``), so a worker
imports torch and the engine once, not once per trial (each trial reports its
``import_s``, 0 on a reused worker, and its ``nice``).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

from engine.base.cluster import ScaleoutError, cluster_cpus, connect, match_priority, node_id, process_priority
from engine.base.errors import EngineError
from engine.music.clip import atomic_write
from engine.music.limits import MAX_SEED
from engine.scaleout import read_spec

log = logging.getLogger(__name__)

TOP_KEYS = ("preset", "config", "metric", "mode", "seeds", "retries", "style", "cpus_per_trial", "set", "grid")
#: Files of a trial that the results point at (the rest of the run directory stays too).
MODEL_FILE = "model.onnx"


@dataclasses.dataclass
class Trial:
    """One training run of the sweep."""

    name: str
    params: dict[str, Any]
    """Swept key -> value of this trial (``seed`` included)."""
    config: dict[str, Any]
    """The resolved TrainConfig as a dict."""
    command: str
    """The plain ``qriff train`` command that reproduces this trial."""


@dataclasses.dataclass
class SweepSpec:
    """A parsed, validated sweep file."""

    path: Path
    out: Path
    metric: str
    mode: str
    swept: list[str]
    trials: list[Trial]
    retries: int = 2
    cpus_per_trial: float = 1.0


def _fail(path: Path, message: str) -> ScaleoutError:
    return ScaleoutError(f"sweep file {str(path)!r}: {message}")


def load_sweep(path: str | Path, out: str | Path) -> SweepSpec:
    """Parse and validate a sweep file; every trial's config is checked before anything runs."""
    from engine.learn.recipe import config_from_flags
    from engine.learn.train import TrainConfig, TrainError, preset_config
    from engine.mdp import styles
    from engine.mdp.env import EnvConfig

    path = Path(path)
    doc = read_spec(path, "sweep file", TOP_KEYS)
    if "preset" in doc and "config" in doc:
        raise _fail(path, "give preset or config, not both")
    mode = doc.get("mode", "max")
    if mode not in ("max", "min"):
        raise _fail(path, f"mode {mode!r} is not allowed: max or min")
    seeds = doc.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and 0 <= s <= MAX_SEED for s in seeds):
        raise _fail(path, f"seeds {seeds!r} is not a non-empty list of integers 0-{MAX_SEED}")
    retries = doc.get("retries", 2)
    if not isinstance(retries, int) or not 0 <= retries <= 100:
        raise _fail(path, f"retries {retries!r} is not an integer 0-100")
    cpus = doc.get("cpus_per_trial", 1)
    if not isinstance(cpus, (int, float)) or not 0 < cpus <= 1024:
        raise _fail(path, f"cpus_per_trial {cpus!r} is not a number > 0")
    fixed, grid = doc.get("set", {}), doc.get("grid", {})
    if not isinstance(fixed, dict) or not isinstance(grid, dict):
        raise _fail(path, "set and grid must be tables ([set], [grid])")

    preset, config = doc.get("preset", "default"), doc.get("config")
    try:
        base = TrainConfig.from_dict(json.loads(Path(config).read_text())) if config else preset_config(preset)
    except (OSError, json.JSONDecodeError) as exc:
        raise _fail(path, f"config {config!r} is not a readable JSON file ({exc})") from None
    except TrainError as exc:
        raise _fail(path, str(exc)) from None
    train_fields = set(base.to_dict()) - {"seed", "out_dir", "resume", "quiet", "command", "export"}
    env_fields = {f.name for f in dataclasses.fields(EnvConfig)}
    style_base = doc.get("style", "folk")
    for name in fixed:
        if name not in train_fields:
            raise _fail(path, f"unknown key 'set.{name}': allowed are TrainConfig fields {', '.join(sorted(train_fields))}")
    for key, values in grid.items():
        kind, _, sub = key.partition(".")
        ok = (key in train_fields and key != "env") or (kind == "env" and sub in env_fields) or \
             (kind == "style" and sub in styles.BUILTIN_TERMS)
        if not ok:
            raise _fail(path, f"unknown key 'grid.{key}': allowed are TrainConfig fields, env.FIELD "
                              f"({', '.join(sorted(env_fields))}) and style.TERM ({', '.join(styles.BUILTIN_TERMS)})")
        if not isinstance(values, list) or not values:
            raise _fail(path, f"grid.{key} must be a non-empty list of values")
    if "env.style" in grid and any(k.startswith("style.") for k in grid):
        raise _fail(path, "grid has both env.style and style.TERM keys: use one")

    out = Path(out).expanduser().resolve()  # trials run with Ray's working directory, not ours
    swept = list(grid) + (["seed"] if len(seeds) > 1 else [])
    trials: list[Trial] = []
    for values in itertools.product(*grid.values()):
        point = dict(zip(grid, values))
        env = {**base.env, **fixed.get("env", {})}
        env.update({k.split(".", 1)[1]: v for k, v in point.items() if k.startswith("env.")})
        weights = {k.split(".", 1)[1]: v for k, v in point.items() if k.startswith("style.")}
        if weights or "style" in doc:
            env["style"] = ",".join([style_base, *(f"{t}={w:g}" for t, w in weights.items())])
        overrides = {**{k: v for k, v in fixed.items() if k != "env"},
                     **{k: v for k, v in point.items() if "." not in k}}
        if env != base.env:
            overrides["env"] = env
        for seed in seeds:
            name = f"trial-{len(trials):03d}"
            try:  # trials run without a progress bar
                cfg = config_from_flags(preset=preset, config=config, seed=seed, out=str(out / "trials" / name),
                                        sets=[f"{k}={json.dumps(v)}" for k, v in overrides.items()], quiet=True)
                EnvConfig(**{k: _tupled(v) for k, v in cfg.env.items()}).validated()
            except EngineError as exc:  # TrainError, and EnvConfig and style errors, name the bad field
                raise _fail(path, f"{name} ({_describe(point, seed)}): {exc}") from None
            trials.append(Trial(name=name, params={**point, "seed": seed}, config=cfg.to_dict(), command=cfg.command))
    metric = doc.get("metric")
    if not isinstance(metric, str):
        raise _fail(path, "metric is missing: e.g. metric = \"folk.overlap_interval\" (STYLE.METRIC) or episode_return")
    _check_metric(path, metric, trials)
    return SweepSpec(path=path, out=out, metric=metric, mode=mode, swept=swept, trials=trials, retries=retries,
                     cpus_per_trial=float(cpus))


def _tupled(value: Any) -> Any:
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


def _describe(params: dict[str, Any], seed: int | None = None) -> str:
    items = [f"{k}={json.dumps(v)}" for k, v in params.items() if k != "seed"]
    return ", ".join(items + ([f"seed={seed}"] if seed is not None else []))


def metric_names(eval_corpus: bool) -> list[str]:
    """The metric names one evaluated style reports (those of :func:`engine.evaluation.evaluate.evaluate_sequences`)."""
    import numpy as np

    from engine.evaluation.evaluate import evaluate_sequences

    probe = [np.full(16, 14), np.tile([14, 1], 8)]
    names = evaluate_sequences(probe, reference=probe if eval_corpus else None, prior="shipped")
    return sorted(k for k, v in names.items() if isinstance(v, (int, float, np.floating)))


def _check_metric(path: Path, metric: str, trials: list[Trial]) -> None:
    if metric == "episode_return":
        return
    style, _, name = metric.partition(".")
    for t in trials:
        if style not in t.config["eval_styles"]:
            raise _fail(path, f"metric {metric!r}: style {style!r} is not evaluated in {t.name}: its eval_styles are "
                              f"{', '.join(t.config['eval_styles'])} (metric is STYLE.METRIC or episode_return)")
        if not t.config["eval_clips"]:
            raise _fail(path, f"metric {metric!r}: {t.name} has eval_clips=0, so nothing is evaluated")
    names = metric_names(all(t.config["eval_corpus"] for t in trials))
    if name not in names:
        raise _fail(path, f"metric {metric!r}: {name!r} is not a metric of the evaluation: allowed are "
                          f"{', '.join(names)}")


# ---------------------------------------------------------------------- running

def _run_trial(config: dict[str, Any]) -> None:
    """Ray Tune's trainable: one plain training run, its final metrics reported once.

    ``config["caller_nice"]`` is the sweep command's nice value: a worker left at Ray's
    +15 is brought back to it (see :func:`engine.base.cluster.match_priority`).
    """
    entered = time.perf_counter()
    nice = match_priority(config["caller_nice"])
    from ray import tune

    from engine.learn.train import TrainConfig, train  # imported once per worker: Tune reuses the actor

    import_s = time.perf_counter() - entered
    trial = config["trial"]
    result = train(TrainConfig.from_dict(trial["config"]))
    metrics = result.metrics
    report: dict[str, Any] = {"trial": trial["name"], "node": node_id(), "env_steps": result.env_steps,
                              "train_wall_s": result.wall_s, "nice": nice, "pid": os.getpid(),
                              "import_s": import_s,
                              "episode_return": metrics.get("episode_return")}
    for style, values in (metrics.get("eval") or {}).items():
        report.update({f"{style}.{k}": v for k, v in values.items()})
    tune.report(report)


def run_sweep(spec: SweepSpec, *, address: str | None = None, workers: int | None = None,
              quiet: bool = False) -> dict[str, Any]:
    """Run every trial of ``spec`` on Ray Tune; write the results; return the results document."""
    start = time.perf_counter()
    # Tune's own tables and hints would interleave with the progress bar: the results table says it all.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    with connect(address, workers) as ray:
        from ray import tune

        if cluster_cpus(ray) < spec.cpus_per_trial:
            raise ScaleoutError(f"the Ray cluster has {cluster_cpus(ray)} CPUs, fewer than cpus_per_trial="
                                f"{spec.cpus_per_trial:g}")
        spec.out.mkdir(parents=True, exist_ok=True)  # only once Ray is there: a bad address leaves nothing
        bar = _ProgressBar(len(spec.trials), quiet)
        tuner = tune.Tuner(
            tune.with_resources(_run_trial, {"cpu": spec.cpus_per_trial}),
            param_space={"trial": tune.grid_search([dataclasses.asdict(t) for t in spec.trials]),
                         "caller_nice": process_priority()},
            tune_config=tune.TuneConfig(metric=spec.metric, mode=spec.mode, reuse_actors=True,
                                        trial_dirname_creator=_trial_dirname),
            run_config=tune.RunConfig(name="tune", storage_path=str((spec.out / "ray").resolve()), verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=spec.retries),
                                      callbacks=[bar.callback()]))
        try:
            grid = tuner.fit()
        finally:
            bar.close()
        by_name: dict[str, Any] = {}
        for r in (grid[i] for i in range(len(grid))):  # a ResultGrid indexes its results
            name = r.config["trial"]["name"] if r.config else None
            if name is not None:
                by_name[name] = r
    doc = _results(spec, by_name, time.perf_counter() - start)
    _write_outputs(spec, doc)
    return doc


def _trial_dirname(trial: Any) -> str:
    return f"{trial.config['trial']['name']}-{trial.trial_id}"


class _ProgressBar:
    """A tqdm bar over finished trials (quiet off a terminal, as every qriff bar)."""

    def __init__(self, total: int, quiet: bool) -> None:
        from tqdm import tqdm

        self.bar = None if quiet else tqdm(total=total, desc="sweep", unit="trial")

    def callback(self) -> Any:
        from ray import tune

        bar = self.bar

        class Done(tune.Callback):
            def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
                if bar is not None:
                    bar.update(1)

            def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
                if bar is not None:
                    bar.update(1)

        return Done()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _results(spec: SweepSpec, by_name: dict[str, Any], wall_s: float) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for t in spec.trials:
        r = by_name.get(t.name)
        metrics = dict(r.metrics or {}) if r is not None else {}
        error = None if r is not None and r.error is None and spec.metric in metrics else \
            (str(r.error).strip().splitlines()[-1] if r is not None and r.error is not None else "no result")
        rows.append({"trial": t.name, "params": t.params, "value": _number(metrics.get(spec.metric)),
                     "node": metrics.get("node"), "train_wall_s": metrics.get("train_wall_s"),
                     "nice": metrics.get("nice"), "pid": metrics.get("pid"), "import_s": metrics.get("import_s"),
                     "metrics": {k: v for k, v in metrics.items() if "." in k or k == "episode_return"},
                     "dir": str(spec.out / "trials" / t.name), "command": t.command, "error": error})
    ok = [r for r in rows if r["value"] is not None]
    ok.sort(key=lambda r: r["value"], reverse=spec.mode == "max")
    best = ok[0]["trial"] if ok else None
    failed = [r for r in rows if r["value"] is None]
    return {"file": str(spec.path), "metric": spec.metric, "mode": spec.mode, "swept": spec.swept, "best": best,
            "wall_s": round(wall_s, 1), "trials": ok + failed}


def _write_outputs(spec: SweepSpec, doc: dict[str, Any]) -> None:
    out = spec.out
    atomic_write(out / "results.json", lambda tmp: Path(tmp).write_text(json.dumps(doc, indent=1)))
    atomic_write(out / "results.md", lambda tmp: Path(tmp).write_text(results_markdown(doc)))
    plot_metric(doc, out / "metric.png")
    if doc["best"] is None:
        raise ScaleoutError(f"every trial of {spec.path} failed (see {out / 'results.md'}); first error: "
                            f"{doc['trials'][0]['error']}")
    model = out / "trials" / doc["best"] / MODEL_FILE
    if model.is_file():
        atomic_write(out / "best.onnx", lambda tmp: shutil.copyfile(model, tmp))
    else:
        log.warning("the best trial %s exported no model (%s missing)", doc["best"], model)


def results_markdown(doc: dict[str, Any]) -> str:
    """The results table: one row per trial, best first, failed trials last."""
    keys = doc["swept"] or ["seed"]
    head = ["rank", "trial", *keys, doc["metric"], "train s", "node", "status"]
    lines = [f"# Sweep {doc['file']}", "", f"Metric: {doc['metric']} ({doc['mode']}); best: {doc['best']}; "
             f"{len(doc['trials'])} trials in {doc['wall_s']:.0f} s.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, r in enumerate(doc["trials"], 1):
        value = f"{r['value']:.4f}" if r["value"] is not None else "-"
        wall = f"{r['train_wall_s']:.1f}" if r["train_wall_s"] is not None else "-"
        cells = [str(i) if r["value"] is not None else "-", r["trial"],
                 *(json.dumps(r["params"].get(k)) for k in keys), value, wall, (r["node"] or "-")[:8],
                 "ok" if r["error"] is None else f"failed: {r['error']}"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += ["", "Reproduce a trial with its command:", ""]
    lines += [f"- {r['trial']}: `{r['command']}`" for r in doc["trials"]]
    return "\n".join(lines) + "\n"


def plot_metric(doc: dict[str, Any], path: Path) -> Path:
    """``metric.png``: the metric against each swept key (points per trial, the mean per value)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = doc["swept"] or ["seed"]
    ok = [r for r in doc["trials"] if r["value"] is not None]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        labels = sorted({json.dumps(r["params"].get(key)) for r in ok}, key=_sort_key)
        numeric = all(_number(json.loads(label)) is not None for label in labels)
        pos = {label: (float(json.loads(label)) if numeric else i) for i, label in enumerate(labels)}
        xs = [pos[json.dumps(r["params"].get(key))] for r in ok]
        ax.scatter(xs, [r["value"] for r in ok], alpha=0.6)
        means = [(pos[label], sum(v := [r["value"] for r in ok if json.dumps(r["params"].get(key)) == label]) / len(v))
                 for label in labels]
        ax.plot([m[0] for m in means], [m[1] for m in means], color="C1", marker="_", label="mean")
        if not numeric:
            ax.set_xticks(list(pos.values()), labels, rotation=20, fontsize=8)
        ax.set_xlabel(key)
        ax.set_ylabel(doc["metric"])
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)
    return path


def _sort_key(label: str) -> tuple[int, float, str]:
    v = _number(json.loads(label))
    return (0, v, "") if v is not None else (1, 0.0, label)
