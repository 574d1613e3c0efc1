"""The qriff model file: an ONNX Q-network whose metadata says what it was trained on.

``docs/onnx-metadata.md`` describes the file. This module opens one with onnxruntime,
checks that its metadata, input and output match this version of qriff
(:func:`read_model_info`), and lists the models qriff can load (:func:`available_models`):
the ones shipped in ``engine/models/`` and any ``.onnx`` file in the user's model folder
(``$QRIFF_MODEL_DIR``, else ``models/`` in ``platformdirs.user_data_dir("qriff")``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.base.errors import ModelError
from engine.base.sessions import single_thread_session
from engine.mdp import observation
from engine.music import tokens

log = logging.getLogger(__name__)

#: Format of a feed-forward model (metadata ``qriff_model``): ``obs -> q_values``.
MODEL_FORMAT = "1"
#: Format of a recurrent model: ``(obs, state) -> (q_values, state_out)``, the state carried
#: by the caller from step to step (zeros at a clip's first step); ``state_size`` in the metadata.
RECURRENT_FORMAT = "2"
#: Formats this qriff reads.
READABLE_FORMATS = (MODEL_FORMAT, RECURRENT_FORMAT)
#: Folder of the models shipped inside the package.
SHIPPED_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
#: The model used when none is named.
DEFAULT_MODEL_PATH = SHIPPED_MODELS_DIR / "default.onnx"

_HINT = "re-export it with 'qriff export' from this version of qriff"


@dataclass(frozen=True)
class ModelInfo:
    """What an ONNX model's metadata says about it."""

    model_id: str
    obs_version: int
    obs_dim: int
    style_terms: tuple[str, ...]
    roles: tuple[str, ...]
    scales: tuple[str, ...]
    train_config: dict[str, Any]
    train_metrics: dict[str, Any]
    created: str
    metadata: dict[str, str]
    state_size: int = 0
    """Width of the recurrent state (0: a feed-forward model)."""

    @property
    def recurrent(self) -> bool:
        return self.state_size > 0


@dataclass(frozen=True)
class ModelEntry:
    """A model qriff can load: its id (from the metadata) and its file."""

    model_id: str
    path: Path
    shipped: bool


def user_models_dir() -> Path:
    """The user's model folder: ``$QRIFF_MODEL_DIR``, else ``<user data dir>/models``."""
    base = os.environ.get("QRIFF_MODEL_DIR")
    if base:
        return Path(base).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("qriff")) / "models"


def open_session(data: bytes, where: str) -> Any:
    """An onnxruntime session (one thread, CPU) on the model bytes; ModelError if they are not ONNX."""
    try:
        return single_thread_session(data)
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{where} is not a valid ONNX model ({first[:200]}): re-export it with 'qriff export'") \
            from None


def has_qriff_metadata(session: Any) -> bool:
    """True when the session's model carries qriff metadata (any format version)."""
    return "qriff_model" in session.get_modelmeta().custom_metadata_map


def read_model_info(session: Any, path: Path, digest: str) -> ModelInfo:
    """The model's :class:`ModelInfo`; ModelError naming what does not match this qriff.

    ``digest`` (of the file's bytes) names a model whose metadata has no ``model_id``.
    """
    meta = dict(session.get_modelmeta().custom_metadata_map)
    where = f"model {str(path)!r}"
    fmt = meta.get("qriff_model")
    if fmt not in READABLE_FORMATS:
        raise ModelError(f"{where} is not a qriff model of format {' or '.join(READABLE_FORMATS)} "
                         f"(metadata qriff_model={fmt!r}): {_HINT}")
    try:
        style_terms = tuple(json.loads(meta["style_terms"]))
        roles = tuple(json.loads(meta["roles"]))
        scales = tuple(json.loads(meta["scales"]))
        actions = list(json.loads(meta["actions"]))
        obs_version = int(meta["obs_version"])
        train_config = json.loads(meta.get("train_config", "{}"))
        train_metrics = json.loads(meta.get("train_metrics", "{}"))
        state_size = int(meta["state_size"]) if fmt == RECURRENT_FORMAT else 0
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelError(f"{where} has missing or malformed metadata ({exc}): {_HINT}") from None
    if obs_version != observation.OBS_VERSION:
        raise ModelError(f"{where} was trained on observation version {obs_version}, this qriff builds "
                         f"version {observation.OBS_VERSION}: {_HINT} or retrain it")
    if meta.get("obs_layout") != observation.layout_string(len(style_terms)):
        raise ModelError(f"{where} has observation layout {meta.get('obs_layout')!r}, expected "
                         f"{observation.layout_string(len(style_terms))!r}: {_HINT} or retrain it")
    if actions != tokens.action_names():
        raise ModelError(f"{where} has {len(actions)} actions that differ from this qriff's "
                         f"{tokens.N_ACTIONS} tokens: {_HINT}")
    bad_roles = [r for r in roles if r not in tokens.ROLES]
    if bad_roles or not roles:
        raise ModelError(f"{where} lists roles {list(roles)}, allowed are {', '.join(tokens.ROLES)}: {_HINT}")
    d = observation.obs_dim(len(style_terms))
    _check_io(session, where, d, state_size)
    model_id = meta.get("model_id") or f"{path.stem}-{digest}"
    return ModelInfo(model_id=model_id, obs_version=obs_version, obs_dim=d, style_terms=style_terms,
                     roles=roles, scales=scales, train_config=train_config, train_metrics=train_metrics,
                     created=meta.get("created", ""), metadata=meta, state_size=state_size)


def _check_io(session: Any, where: str, d: int, state_size: int) -> None:
    """ModelError unless the graph's inputs and outputs are those of its format."""
    want_in = [("obs", d)] + ([("state", state_size)] if state_size else [])
    want_out = [("q_values", tokens.N_ACTIONS)] + ([("state_out", state_size)] if state_size else [])
    ins, outs = session.get_inputs(), session.get_outputs()
    if len(ins) != len(want_in) or any(i.name != n or i.type != "tensor(float)" or len(i.shape) != 2 or i.shape[1] != w
                                       for i, (n, w) in zip(ins, want_in)):
        got = ", ".join(f"{i.name} {i.type} {i.shape}" for i in ins)
        want = ", ".join(f"'{n}' tensor(float) [batch, {w}]" for n, w in want_in)
        raise ModelError(f"{where} has inputs [{got}], expected {'one input' if len(want_in) == 1 else 'inputs'} "
                         f"{want}: {_HINT}")
    if len(outs) != len(want_out) or any(o.name != n or len(o.shape) != 2 or o.shape[1] != w
                                         for o, (n, w) in zip(outs, want_out)):
        got = ", ".join(f"{o.name} {o.type} {o.shape}" for o in outs)
        want = ", ".join(f"'{n}' [batch, {w}]" for n, w in want_out)
        raise ModelError(f"{where} has outputs [{got}], expected {'one output' if len(want_out) == 1 else 'outputs'} "
                         f"{want}: {_HINT}")


def load_model_bytes(data: bytes, path: Path, where: str) -> tuple[Any, ModelInfo]:
    """Open and check model bytes: ``(session, info)``; ModelError on any mismatch.

    ``path`` names the model (its stem is the id when the metadata has none); ``where``
    names it in an error about bytes that are not ONNX.
    """
    session = open_session(data, where)
    return session, read_model_info(session, path, hashlib.sha256(data).hexdigest()[:12])


def load_model_file(path: Path) -> tuple[Any, ModelInfo]:
    """Open and check one model file: ``(session, info)``; ModelError on any mismatch."""
    return load_model_bytes(path.read_bytes(), path, f"model file {str(path)!r}")


# ``available_models`` reads each file once while its size and time stay the same.
_ENTRIES: dict[Path, tuple[tuple[int, int], ModelEntry | None]] = {}


def _entry(path: Path, shipped: bool) -> ModelEntry | None:
    try:
        stat = path.stat()
    except OSError as exc:  # a dangling link, or a file removed since the folder was listed
        log.warning("skipping %s: %s", path, exc)
        return None
    stamp = (stat.st_size, stat.st_mtime_ns)
    cached = _ENTRIES.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        _, info = load_model_file(path)
        entry: ModelEntry | None = ModelEntry(info.model_id, path, shipped)
    except (ModelError, OSError) as exc:  # not a qriff model, or not readable
        log.warning("skipping %s: %s", path, exc)
        entry = None
    _ENTRIES[path] = (stamp, entry)
    return entry


def available_models() -> list[ModelEntry]:
    """The models qriff can load: shipped ones first (the default first), then the user's.

    A file that is not a loadable qriff model is skipped with a warning; of two files
    with the same model id, the first listed wins.
    """
    found: list[ModelEntry] = []
    seen: set[str] = set()
    shipped = sorted(SHIPPED_MODELS_DIR.glob("*.onnx"), key=lambda p: (p != DEFAULT_MODEL_PATH, p.name))
    user_dir = user_models_dir()
    user = sorted(user_dir.glob("*.onnx")) if user_dir.is_dir() else []
    for path, is_shipped in [*((p, True) for p in shipped), *((p, False) for p in user)]:
        entry = _entry(path.resolve(), is_shipped)
        if entry is not None and entry.model_id not in seen:
            seen.add(entry.model_id)
            found.append(entry)
    return found


def find_model(model: str | os.PathLike[str] | None) -> Path:
    """The file of ``model``: ``None`` for the shipped default, a path, or a model id of
    :func:`available_models`. ModelError when it is none of these."""
    if model is None:
        if not DEFAULT_MODEL_PATH.is_file():
            raise ModelError(f"the shipped model {str(DEFAULT_MODEL_PATH)!r} is missing: reinstall qriff, or train "
                             "one with 'qriff train' and pass it with --model PATH")
        return DEFAULT_MODEL_PATH
    path = Path(model)
    if path.is_file():
        return path
    if isinstance(model, str):
        for entry in available_models():
            if entry.model_id == model:
                return entry.path
    raise ModelError(f"model file {str(path)!r} does not exist: give the path of a .onnx file written by "
                     f"'qriff export' or the id of a model in {str(user_models_dir())!r} "
                     "(or leave --model out for the shipped model)")
