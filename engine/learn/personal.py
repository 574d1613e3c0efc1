"""A personal model: from the musician's verdicts to a tuned model in the user's models folder.

:func:`make_personal_model` is what ``qriff tune`` runs:

1. read the newest verdicts from the feedback store (:mod:`engine.feedback`) and turn
   each clip into its lead melody's tokens;
2. fit the reward model (:func:`engine.evaluation.taste.fit_reward_model`), refusing
   when there are too few verdicts; it reads the clip descriptors, the two-sample features
   or the base model's own embedding of each clip in its setting
   (:mod:`engine.learn.embedding`), whichever validation picks;
3. tune the base model (the shipped one unless told) toward it with KL control
   (:func:`engine.learn.tune.tune_policy`);
4. write, in the user's models folder (``$QRIFF_MODEL_DIR``, else ``models/`` in the
   platformdirs user data folder): ``NAME.onnx`` (the model, id ``NAME``), ``NAME.pt``
   (its torch weights), ``NAME.taste.json`` (the reward model, its held-out AUC and
   calibration, the tuning log; :func:`load_reward_model` reads it back, with its network
   when it reads the embedding) and ``NAME.calibration.png``. The ``.onnx`` is written
   last, so a model qriff lists is always complete; no existing file is replaced.

Every check that can refuse (name, KL coefficient, base model, store, verdict counts)
runs before anything is written.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from engine.base.errors import ClipError, EngineError
from engine.base.files import atomic_write
from engine.evaluation.evaluate import clip_tokens
from engine.evaluation.taste import (
    EMBEDDING,
    RewardModel,
    TasteError,
    check_verdict_counts,
    fit_reward_model,
    plot_calibration,
    representations_of,
)
from engine.feedback import FeedbackStore
from engine.learn.embedding import ClipEmbedder
from engine.learn.tune import DEFAULT_KL, TuneConfig, TuneContext, check_kl, tune_policy, tuned_terms
from engine.music import theory
from engine.music.clip import Clip
from engine.runtime import DEFAULT_MODEL_PATH, Policy, available_models, user_models_dir

log = logging.getLogger(__name__)

#: The torch weights of the shipped model (the ONNX file cannot be read back into torch).
SHIPPED_POLICY_WEIGHTS = DEFAULT_MODEL_PATH.with_name("default-policy.pt")
#: What a personal model may be called: its file name and model id.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DEFAULT_NAME = "personal"


@dataclass(frozen=True)
class PersonalModel:
    """What :func:`make_personal_model` wrote and measured."""

    model_id: str
    path: Path
    files: tuple[Path, ...]
    reward: RewardModel
    verdicts: int
    skipped: int
    tune_seconds: float
    tune_cpu_seconds: float


@dataclass(frozen=True)
class Base:
    """The model a personal model is tuned from: its id, ONNX file, torch weights and commit."""

    model_id: str
    onnx: Path
    weights: Path
    commit: str
    style_terms: tuple[str, ...]


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or name.endswith((".onnx", ".pt")):
        raise EngineError(f"--out {name!r} is not a valid model name: allowed 1-64 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit, without a file extension (e.g. --out my-taste)")
    return name


def output_paths(name: str, folder: Path | None = None) -> dict[str, Path]:
    folder = folder if folder is not None else user_models_dir()
    return {"onnx": folder / f"{name}.onnx", "weights": folder / f"{name}.pt",
            "taste": folder / f"{name}.taste.json", "plot": folder / f"{name}.calibration.png"}


def check_output(name: str, folder: Path | None = None) -> dict[str, Path]:
    """The files a personal model ``name`` would write; EngineError when any exists or the id is taken."""
    paths = output_paths(check_name(name), folder)
    taken = [str(p) for p in paths.values() if p.exists()]
    if taken:
        raise EngineError(f"--out {name!r}: {taken[0]} exists, and qriff never replaces a model: pick another name "
                          "or delete the old files first")
    if any(e.model_id == name for e in available_models()):
        raise EngineError(f"--out {name!r} is already a model's id: pick another name")
    return paths


def resolve_base(model: str | None) -> Base:
    """The base model by id or path (None: the shipped model); EngineError when it is unknown or
    has no torch weights beside it (``NAME.pt``, or ``default-policy.pt`` for the shipped model)."""
    onnx = DEFAULT_MODEL_PATH
    if model is not None:
        found = next((e.path for e in available_models() if e.model_id == model), None)
        if found is None and Path(model).is_file():
            found = Path(model)
        if found is None:
            ids = ", ".join(e.model_id for e in available_models())
            raise EngineError(f"--base {model!r} is not a known model: allowed are {ids} (or a .onnx path), or leave "
                              "--base out for the shipped model")
        onnx = found
    weights = SHIPPED_POLICY_WEIGHTS if onnx.resolve() == DEFAULT_MODEL_PATH.resolve() else onnx.with_suffix(".pt")
    if not weights.is_file():
        raise EngineError(f"--base {model!r}: its torch weights {str(weights)!r} are missing, and tuning starts from "
                          "them: tune the shipped model (leave --base out) or a model 'qriff tune' wrote")
    info = Policy.load(onnx).info
    if not info.recurrent:
        raise EngineError(f"--base {model!r} is a feed-forward model: tuning needs a recurrent KL model such as "
                          "the shipped one")
    return Base(info.model_id, onnx, weights, info.metadata.get("git_commit", "unknown"), info.style_terms)


def read_verdicts(store_path: Path | None, limit: int | None) -> tuple[list[Clip], np.ndarray, list[np.ndarray], int]:
    """The newest ``limit`` verdicts (all when None) as clips, labels (1 keep) and lead tokens,
    and how many were skipped (clips that are not melodies). Never creates a store."""
    with FeedbackStore(store_path, create=False) as store:
        rows = list(store.verdicts())
    if limit is not None:
        rows = rows[-limit:]
    clips, labels, seqs, skipped = [], [], [], 0
    for row in rows:
        try:
            clip = Clip.from_dict(row.clip, f"verdict {row.clip_id[:12]}")
            seq = clip_tokens(clip, f"verdict {row.clip_id[:12]}")
        except ClipError as exc:
            log.warning("skipping a verdict: %s", exc)
            skipped += 1
            continue
        clips.append(clip)
        labels.append(1 if row.verdict == "keep" else 0)
        seqs.append(seq)
    return clips, np.array(labels, np.int64), seqs, skipped


def contexts_of(clips: list[Clip], terms: tuple[str, ...]) -> list[TuneContext]:
    """Where the tuner plays: the settings of the judged clips (style terms the base does not read dropped)."""
    out = []
    for c in clips:
        out.append(TuneContext(key=c.key, scale=c.scale, bars=int(c.bars), time_signature=(int(c.time_signature[0]), int(c.time_signature[1])),
                               chords=tuple(c.chords), style={k: float(v) for k, v in c.style.items() if k in terms}))
    return out


def make_personal_model(name: str = DEFAULT_NAME, *, store: Path | None = None, verdicts: int | None = None,
                        kl: float = DEFAULT_KL, seed: int = 0, base: str | None = None, episodes: int | None = None,
                        quiet: bool = False, folder: Path | None = None, command: str = "") -> PersonalModel:
    """Verdicts -> reward model -> tuned model files (see the module doc); EngineError, with nothing
    written, on bad input."""
    paths = check_output(name, folder)
    kl = check_kl(kl)
    b = resolve_base(base)
    clips, y, seqs, skipped = read_verdicts(store, verdicts)
    check_verdict_counts(y)
    spbs = [theory.steps_per_bar(c.time_signature) for c in clips]
    embedder = ClipEmbedder.from_weights(b.weights, b.model_id)
    reward = fit_reward_model(representations_of(seqs, spbs, embedder, clips), y, seed=seed, embedder=embedder)
    log.info("reward model: %s", reward.summary())

    def score(s: list[np.ndarray], spb: list[int], contexts: list[TuneContext] | None = None) -> np.ndarray:
        # the log-odds are clipped: a clip far outside what was judged must not dominate the tuning
        return np.clip(reward.score(s, spb, contexts), -5.0, 5.0)

    from engine.learn.seqexport import export_seq_model
    from engine.learn.seqmodel import load_policy, save_policy

    cfg = TuneConfig(seed=seed, kl_coef=kl, quiet=quiet, extra={"command": command})
    if episodes is not None:
        cfg.episodes = episodes
    t0 = time.perf_counter()
    net, tune_log = tune_policy(load_policy(b.weights), b.style_terms, contexts_of(clips, b.style_terms), score, cfg)
    seconds = time.perf_counter() - t0
    provenance = {"algo": "tune", "base_model": b.model_id, "base_commit": b.commit, "verdicts": int(len(y)),
                  "kept": int(y.sum()), "skipped_verdicts": skipped, "reward_heldout_auc": reward.heldout_auc,
                  "reward_representation": reward.representation, "kl_coef": kl, "seed": seed,
                  "tune": asdict(cfg)}
    metrics = {"tune_seconds": round(seconds, 1), "tune_cpu_seconds": tune_log["cpu_seconds"],
               "episodes": tune_log["episodes"], "updates": tune_log["updates"],
               "reward_calibration": reward.calibration}
    paths["onnx"].parent.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    try:  # all four files or none: a failed export (parity) takes the others back
        save_policy(net, paths["weights"], {"command": command, **provenance})
        written.append(paths["weights"])
        atomic_write(paths["taste"], json.dumps({"model_id": name, **provenance, "reward_model": reward.to_dict(),
                                                 "tune_log": tune_log}, indent=1) + "\n", replace=False)
        written.append(paths["taste"])
        atomic_write(paths["plot"], lambda tmp: plot_calibration(reward, tmp), replace=False)
        written.append(paths["plot"])
        export_seq_model(net, paths["onnx"], tuned_terms(b.style_terms), train_config=provenance,
                         train_metrics=metrics, model_id=name, train_command=command, overwrite=False)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    return PersonalModel(model_id=name, path=paths["onnx"], files=tuple(paths.values()), reward=reward,
                         verdicts=int(len(y)), skipped=skipped, tune_seconds=seconds,
                         tune_cpu_seconds=float(tune_log["cpu_seconds"]))


def load_reward_model(path: Path | str) -> RewardModel:
    """The reward model a personal model was tuned on, from its ``NAME.taste.json``, ready to
    :meth:`~engine.evaluation.taste.RewardModel.score`. One reading the ``embedding`` gets its
    network attached: the weights file it recorded, else the personal model's own ``NAME.pt``
    (tuning copies the base's prior unchanged), else the base model's weights by id; TasteError
    (an EngineError) when none holds that network, or the file is not a taste model."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        reward = RewardModel.from_dict(data["reward_model"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TasteError(f"{str(path)!r} is not a taste model ({exc}): give the NAME.taste.json that "
                         "'qriff tune' wrote") from exc
    if reward.representation != EMBEDDING:
        return reward
    if reward.embedding is None:
        raise TasteError(f"{str(path)!r}: the reward model reads the {EMBEDDING} but does not say of which "
                         "network: refit it (qriff tune)")
    candidates = [path.with_name(path.name.removesuffix(".taste.json") + ".pt")]
    base_id = reward.embedding.get("base_model")
    if base_id:
        try:
            candidates.append(resolve_base(str(base_id)).weights)
        except EngineError:
            pass  # the base is gone too: from_source names the missing weights
    return reward.with_embedder(ClipEmbedder.from_source(reward.embedding, candidates))


__all__ = ["DEFAULT_NAME", "PersonalModel", "SHIPPED_POLICY_WEIGHTS", "check_name", "check_output",
           "load_reward_model", "make_personal_model", "read_verdicts", "resolve_base"]
