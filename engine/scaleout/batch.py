"""``qriff batch SPEC``: many clips generated and rendered with several presets, across Ray workers.

A batch spec is TOML::

    count = 50                     # clips per setting; clip i uses seed + i
    seed = 0                       # first seed (default 0)
    presets = ["studio", "lofi"]   # each clip is rendered once per preset (default ["studio"])
    format = "wav"                 # audio options as in qriff render: format, sample_rate,
    sample_rate = 44100            #   bit_depth, pad, pianoroll (default false here),
    bit_depth = "24"               #   instruments = ["lead=gm:program=81", ...]
    midi = true                    # also write clip.mid beside clip.json (default true)
    model = "runs/x/model.onnx"    # default: the shipped model

    [[setting]]                    # one table per setting; every field but key is optional
    key = "D"
    scale = "dorian"
    style = "hook"
    bars = 4
    # name, tempo, time_signature, chords, roles, temperature, valence, arousal

Every clip is one unit of work: ``Policy.generate(count=1, seed=s)`` for its setting,
written as ``clip.json``, read back and rendered with each preset, exactly as
``qriff generate --seed s --format json`` followed by ``qriff render clip.json --preset P``
would. Units run as Ray tasks; a worker returns the files' bytes, and the driver writes
them under ``OUT/SETTING/SEED/`` (so workers need no shared storage) and marks the unit done
with ``done.json``. A re-run skips the units already done; a unit lost with its node is
retried on another one. ``OUT/manifest.csv`` and ``OUT/manifest.json`` (file, key, scale,
style, seed, preset, loudness...) are written, atomically, once every unit is done.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from engine.base.cluster import ScaleoutError, cluster_cpus, connect, node_id
from engine.base.errors import EngineError
from engine.base.files import atomic_write
from engine.music.limits import MAX_SEED
from engine.music.request import GenerateRequest, OptionError, RenderRequest
from engine.scaleout import read_spec

TOP_KEYS = ("count", "seed", "presets", "format", "sample_rate", "bit_depth", "pad", "pianoroll", "instruments",
            "midi", "model", "setting")
SETTING_KEYS = ("name", "key", "scale", "style", "bars", "tempo", "time_signature", "chords", "roles",
                "temperature", "valence", "arousal")
#: Clips per setting a spec may ask for.
MAX_CLIPS = 1_000_000
MANIFEST_FIELDS = ("file", "key", "scale", "style", "seed", "preset", "loudness", "peak_dbfs", "setting", "bars",
                   "tempo", "clip", "stems", "node")
DONE = "done.json"


@dataclasses.dataclass(frozen=True, eq=False)
class Unit:
    """One clip of one setting: generated once, rendered with every preset."""

    setting: str
    seed: int
    generate: dict[str, Any]
    """Keyword arguments of :meth:`engine.runtime.Policy.generate` (count=1, this seed)."""

    @property
    def folder(self) -> str:
        return f"{self.setting}/{self.seed:06d}"


@dataclasses.dataclass
class BatchSpec:
    """A parsed, validated batch spec."""

    path: Path
    units: list[Unit]
    presets: list[str]
    render: dict[str, Any]
    """Keyword arguments of :func:`engine.audio.render.render_clip` other than the preset."""
    model: str | None
    midi: bool
    settings: dict[str, dict[str, Any]]

    def job(self, unit: Unit) -> dict[str, Any]:
        """Everything that determines a unit's files (a done unit with another job is redone)."""
        return {"generate": unit.generate, "presets": self.presets, "render": self.render, "model": self.model,
                "midi": self.midi}


def _fail(path: Path, message: str) -> ScaleoutError:
    return ScaleoutError(f"batch spec {str(path)!r}: {message}")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


def load_batch(path: str | Path) -> BatchSpec:
    """Parse a batch spec and check every setting by generating its first clip (so an
    impossible setting fails here, before any worker starts) and every preset by loading it."""
    from engine.audio.effects import load_preset
    from engine.audio.instruments import parse_instrument_arg
    from engine.music.limits import DEFAULT_AUDIO_FORMAT, DEFAULT_BIT_DEPTH, DEFAULT_SAMPLE_RATE
    from engine.runtime import Policy

    path = Path(path)
    doc = read_spec(path, "batch spec", TOP_KEYS)
    count, seed = doc.get("count"), doc.get("seed", 0)
    if not isinstance(count, int) or not 1 <= count <= MAX_CLIPS:
        raise _fail(path, f"count {count!r} is not an integer 1-{MAX_CLIPS} (clips per setting)")
    if not isinstance(seed, int) or seed < 0 or seed + count - 1 > MAX_SEED:
        raise _fail(path, f"seed {seed!r} is not an integer >= 0 with seed + count - 1 <= {MAX_SEED}")
    presets = doc.get("presets", ["studio"])
    if not isinstance(presets, list) or not presets or len(set(map(str, presets))) != len(presets):
        raise _fail(path, f"presets {presets!r} is not a non-empty list of distinct preset names or files")
    instruments = doc.get("instruments", [])
    for key in ("pad", "pianoroll", "midi"):
        if not isinstance(doc.get(key, False), bool):
            raise _fail(path, f"{key} {doc[key]!r} is not true or false")
    try:
        for text in instruments:
            parse_instrument_arg(text)
        for p in presets:
            load_preset(p)
        policy = Policy.load(doc.get("model"))
    except EngineError as exc:
        raise _fail(path, str(exc)) from None
    render = {"instruments": list(instruments), "sample_rate": doc.get("sample_rate", DEFAULT_SAMPLE_RATE),
              "fmt": doc.get("format", DEFAULT_AUDIO_FORMAT), "bit_depth": str(doc.get("bit_depth", DEFAULT_BIT_DEPTH)),
              "pad": doc.get("pad", False), "pianoroll": doc.get("pianoroll", False)}
    try:
        RenderRequest.from_mapping(render)
    except OptionError as exc:
        raise _fail(path, exc.for_field({"fmt": "format"}.get(exc.field, exc.field))) from None

    tables = doc.get("setting")
    if not isinstance(tables, list) or not tables:
        raise _fail(path, "no [[setting]] tables: give at least one, e.g. [[setting]] key = \"C\" scale = \"major\"")
    settings: dict[str, dict[str, Any]] = {}
    for i, table in enumerate(tables):
        bad = sorted(set(table) - set(SETTING_KEYS))
        if bad:
            raise _fail(path, f"setting {i + 1}: unknown key {bad[0]!r}: allowed are {', '.join(SETTING_KEYS)}")
        gen = {k: v for k, v in table.items() if k != "name"}
        if "roles" in gen:
            gen["roles"] = tuple(gen["roles"]) if isinstance(gen["roles"], list) else (gen["roles"],)
        name = _slug(str(table.get("name") or f"{i:02d}-{gen.get('key', 'C')}-{gen.get('scale', 'major')}-"
                                               f"{gen.get('style') or 'default'}"))
        if name in settings:
            raise _fail(path, f"setting {i + 1}: name {name!r} is used twice: give each setting its own name")
        try:
            # the request checks every value; the model what depends on it (its roles and style terms)
            policy.generate(GenerateRequest.from_mapping({**gen, "count": 1, "seed": seed}, fill_from_primer=False))
        except EngineError as exc:
            raise _fail(path, f"setting {i + 1} ({name}) is impossible: {exc}") from None
        settings[name] = gen
    units = [Unit(name, s, {**gen, "count": 1, "seed": s}) for name, gen in settings.items()
             for s in range(seed, seed + count)]
    return BatchSpec(path=path, units=units, presets=[str(p) for p in presets], render=render, model=doc.get("model"),
                     midi=doc.get("midi", True), settings=settings)


# ------------------------------------------------------------------------- work

_POLICIES: dict[str | None, Any] = {}


def make_unit(job: dict[str, Any], unit: Unit) -> dict[str, Any]:
    """Generate and render one unit in a scratch folder; return its files (bytes) and rows.

    Runs in a Ray worker (or in-process with ``--local``); the loaded policy is kept per
    process, so a worker loads the model once.
    """
    from engine.audio.render import render_clip
    from engine.music.clipfile import load_clip
    from engine.music.midi import write_midi
    from engine.runtime import Policy

    model = job["model"]
    if model not in _POLICIES:
        _POLICIES[model] = Policy.load(model)
    clip = _POLICIES[model].generate(**job["generate"])[0]
    files: dict[str, bytes] = {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="qriff-batch-") as tmp:
        root = Path(tmp)
        written = clip.write_json(root / "clip.json")
        if job["midi"]:
            write_midi(clip, root / "clip.mid")
        clip = load_clip(written)  # rendered from the file, as 'qriff render clip.json' would
        for preset in job["presets"]:
            pdir = _slug(Path(preset).stem)
            result = render_clip(clip, root / pdir, preset=preset, quiet=True, **job["render"])
            stems = [f"{pdir}/{p.name}" for p in result.stems.values()]
            rows.append({"file": f"{pdir}/{result.mix.name}", "key": clip.key, "scale": clip.scale,
                         "style": job["generate"].get("style") or "default",
                         "seed": clip.seed, "preset": preset, "loudness": round(result.loudness_lufs, 2),
                         "peak_dbfs": round(result.peak_dbfs, 2), "bars": clip.bars, "tempo": clip.tempo,
                         "clip": "clip.json", "stems": ";".join(stems)})
        for p in sorted(root.rglob("*")):
            if p.is_file():
                files[p.relative_to(root).as_posix()] = p.read_bytes()
    node = node_id()
    return {"files": files, "rows": [{**r, "node": node} for r in rows]}


def _store(out: Path, unit: Unit, job: dict[str, Any], made: dict[str, Any]) -> list[dict[str, Any]]:
    """Write a finished unit's files under OUT/SETTING/SEED, then its done.json (last)."""
    folder = out / unit.folder
    for rel, data in made["files"].items():
        atomic_write(folder / rel, lambda tmp, data=data: Path(tmp).write_bytes(data))
    rows = [{**r, "setting": unit.setting, "file": f"{unit.folder}/{r['file']}", "clip": f"{unit.folder}/{r['clip']}",
             "stems": ";".join(f"{unit.folder}/{s}" for s in r["stems"].split(";") if s)} for r in made["rows"]]
    done = {"job": job, "rows": rows}
    atomic_write(folder / DONE, lambda tmp: Path(tmp).write_text(json.dumps(done, indent=1)))
    return rows


def _finished(out: Path, unit: Unit, job: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The rows of a unit a previous run finished with the same job, else None."""
    try:
        done = json.loads((out / unit.folder / DONE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if json.loads(json.dumps(job)) != done.get("job"):
        return None
    rows = done.get("rows") or []
    return rows if all((out / r["file"]).is_file() for r in rows) else None


def run_batch(spec: BatchSpec, out: str | Path, *, address: str | None = None, workers: int | None = None,
              local: bool = False, quiet: bool = False, window: int | None = None) -> dict[str, Any]:
    """Make every unit not already done (in-process with ``local``, else as Ray tasks); write the manifest."""
    from tqdm import tqdm

    out = Path(out)
    start = time.perf_counter()
    rows: dict[Unit, list[dict[str, Any]]] = {}
    todo = []
    for unit in spec.units:
        done = _finished(out, unit, spec.job(unit))
        if done is None:
            todo.append(unit)
        else:
            rows[unit] = done
    skipped = len(rows)
    bar = tqdm(total=len(spec.units), initial=skipped, desc="batch", unit="clip", disable=quiet or None)
    try:
        if local:
            for unit in todo:
                job = spec.job(unit)
                rows[unit] = _store(out, unit, job, make_unit(job, unit))
                bar.update(1)
        elif todo:
            with connect(address, workers) as ray:
                def stored(unit: Unit, made: dict[str, Any]) -> None:
                    rows[unit] = _store(out, unit, spec.job(unit), made)
                    bar.update(1)

                _run_tasks(ray, spec, todo, stored, window or 4 * max(cluster_cpus(ray), 1))
    finally:
        bar.close()
    ordered = [r for unit in spec.units for r in rows[unit]]
    write_manifest(out, ordered)
    return {"units": len(spec.units), "made": len(spec.units) - skipped, "skipped": skipped, "rows": ordered,
            "wall_s": time.perf_counter() - start}


def _run_tasks(ray: Any, spec: BatchSpec, todo: list[Unit], stored: Callable[[Unit, dict[str, Any]], None],
               window: int) -> None:
    """Submit units as Ray tasks, at most ``window`` in flight; store each as it finishes.

    A task whose worker or node dies is re-run by Ray (``max_retries``) on a live node.
    """
    task = ray.remote(num_cpus=1, max_retries=5)(make_unit)
    pending: dict[Any, Unit] = {}
    queue = iter(todo)

    def submit(units: Iterable[Unit]) -> None:
        for unit in units:
            job = spec.job(unit)
            pending[task.remote(job, unit)] = unit

    submit(next(queue) for _ in range(min(window, len(todo))))
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            unit = pending.pop(ref)
            try:
                made = ray.get(ref)
            except ray.exceptions.RayError as exc:  # the unit's own error, or retries used up
                cause = getattr(exc, "cause", None) or exc
                first = (str(cause).strip().splitlines() or [type(cause).__name__])[-1]
                raise ScaleoutError(f"clip {unit.folder} failed: {first} (finished clips are kept; re-run to "
                                    "resume)") from None
            stored(unit, made)
            nxt = next(queue, None)
            if nxt is not None:
                submit([nxt])


def write_manifest(out: Path, rows: list[dict[str, Any]]) -> tuple[Path, Path]:
    """``OUT/manifest.csv`` and ``OUT/manifest.json``, each written atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    csv_path = atomic_write(out / "manifest.csv", lambda tmp: Path(tmp).write_text(buf.getvalue()))
    json_path = atomic_write(out / "manifest.json", lambda tmp: Path(tmp).write_text(json.dumps(rows, indent=1)))
    return csv_path, json_path
