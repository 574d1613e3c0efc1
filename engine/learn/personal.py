"""A personal model: from the musician's verdicts to a tuned model in the user's models folder.

:func:`make_personal_model` is what ``qriff tune`` runs:

1. read the newest verdicts from the feedback store (:mod:`engine.feedback`) and turn
   each clip into its lead melody's tokens;
2. fit the reward model (:func:`engine.evaluation.taste.fit_reward_model`), refusing
   when there are too few verdicts; it reads the clip descriptors, the two-sample features
   or the base model's own embedding of each clip in its setting
   (:mod:`engine.learn.embedding`), whichever validation picks;
3. tune the base model (the shipped one unless told) toward it with KL control
   (:func:`engine.learn.tune.tune_policy`), then check the tuned model still sounds like
   music (the **realism guard**, :func:`realism_check`): when its clips are told from corpus
   tunes more easily than the base model's (two-sample AUC up by more than the limit), it is
   tuned again with twice the KL coefficient, at most :data:`GUARD_BACKOFFS` times;
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
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from engine.base.errors import ClipError, EngineError
from engine.base.files import atomic_write
from engine.evaluation.evaluate import clip_tokens, generated_tokens
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
from engine.learn.tune import DEFAULT_KL, KL_RANGE, TuneConfig, TuneContext, check_kl, tune_policy, tuned_terms
from engine.music import theory
from engine.music.clip import Clip
from engine.runtime import DEFAULT_MODEL_PATH, Policy, available_models, user_models_dir

log = logging.getLogger(__name__)

#: The torch weights of the shipped model (the ONNX file cannot be read back into torch).
SHIPPED_POLICY_WEIGHTS = DEFAULT_MODEL_PATH.with_name("default-policy.pt")
#: What a personal model may be called: its file name and model id.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DEFAULT_NAME = "personal"
#: The realism guard's default limit: the rise of the two-sample AUC (tuned clips against corpus
#: openings, over the base model's) above which tuning is repeated with twice the KL coefficient.
#: It is 0.03, below the 0.05 the taste bench allows, as the guard's own estimate (256 clips a side)
#: moves by about 0.02 from seed to seed.
REALISM_GUARD = 0.03
#: Clips of each model the guard generates.
GUARD_CLIPS = 256
#: How many times the guard may double the KL coefficient.
GUARD_BACKOFFS = 2


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
    kl: float = DEFAULT_KL
    """The KL coefficient of the model kept (the realism guard may have doubled the one asked for)."""
    guard: tuple[GuardCheck, ...] = ()
    """The realism guard's checks, in order (empty: no guard)."""


@dataclass(frozen=True)
class GuardCheck:
    """One realism check of the guard: the KL coefficient tuned at and both models' two-sample AUC."""

    kl: float
    auc_base: float
    auc_tuned: float

    @property
    def rise(self) -> float:
        return self.auc_tuned - self.auc_base

    def to_dict(self) -> dict[str, float]:
        return {"kl": self.kl, "auc_base": round(self.auc_base, 4), "auc_tuned": round(self.auc_tuned, 4),
                "rise": round(self.rise, 4)}


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


@dataclass(frozen=True)
class GuardSetting:
    """Where the realism guard generates: a length, a scale and a metre (key C, default style)."""

    bars: int
    scale: str
    time_signature: tuple[int, int]

    def generate_options(self) -> dict[str, object]:
        """As ``Policy.generate`` takes them (and as the model's metadata records them)."""
        return {"bars": self.bars, "scale": self.scale,
                "time_signature": f"{self.time_signature[0]}/{self.time_signature[1]}"}


def guard_setting(clips: list[Clip]) -> GuardSetting:
    """The setting the realism guard generates in: the judged clips' most common length (at most 8
    bars), scale and metre, C as the key (the features are relative to the tonic), default style."""
    from collections import Counter

    bars, scale, ts = Counter((min(int(c.bars), 8), c.scale, (int(c.time_signature[0]), int(c.time_signature[1])))
                              for c in clips).most_common(1)[0][0]
    return GuardSetting(bars, scale, ts)


def guard_reference(setting: GuardSetting, seed: int = 0) -> np.ndarray:
    """Two-sample features of up to 400 corpus openings in ``setting``, from the corpus's *train*
    split (the taste bench measures realism on the held-out split, which the guard never reads);
    EngineError when the corpus has too few there."""
    from engine.evaluation import evaluate, twosample

    ts = setting.time_signature
    ref = evaluate.corpus_set(setting.bars, setting.scale, ts, n=400, split="train", seed=seed, progress=False)
    if len(ref.sequences) < 50:
        raise EngineError(f"the corpus has only {len(ref.sequences)} {ts[0]}/{ts[1]} {setting.scale} tunes of "
                          f"{setting.bars}+ bars in its train split: too few for the realism guard")
    return twosample.feature_matrix(ref.sequences, theory.steps_per_bar(ts))


def realism_auc(policy: Policy, setting: GuardSetting, reference: np.ndarray, seed: int = 0,
                clips: int = GUARD_CLIPS) -> float:
    """Two-sample AUC of ``clips`` clips of ``policy`` in ``setting`` against ``reference`` (features of
    corpus openings); the same seeds for every policy. A clip without notes is all rests, which the
    classifier tells at once."""
    from engine.evaluation import twosample

    made = policy.generate_many(clips, seed=7_000_000 + seed, **setting.generate_options())
    seqs = [generated_tokens(c) for c in made]
    feats = twosample.feature_matrix(seqs, theory.steps_per_bar(setting.time_signature))
    return float(twosample.two_sample_test(feats, reference, seed=seed).auc)


def realism_check(base: Policy, tuned: Policy, setting: GuardSetting, reference: np.ndarray, kl: float,
                  seed: int = 0, clips: int = GUARD_CLIPS, base_auc: float | None = None) -> GuardCheck:
    """Both models' :func:`realism_auc` (``base_auc``: the base's, already measured with these settings)."""
    if base_auc is None:
        base_auc = realism_auc(base, setting, reference, seed, clips)
    return GuardCheck(kl, base_auc, realism_auc(tuned, setting, reference, seed, clips))


def make_personal_model(name: str = DEFAULT_NAME, *, store: Path | None = None, verdicts: int | None = None,
                        kl: float = DEFAULT_KL, seed: int = 0, base: str | None = None, episodes: int | None = None,
                        quiet: bool = False, folder: Path | None = None, command: str = "",
                        realism_guard: float | None = REALISM_GUARD,
                        guard_reference_features: np.ndarray | None = None) -> PersonalModel:
    """Verdicts -> reward model -> tuned model files (see the module doc); EngineError, with nothing
    written, on bad input. ``realism_guard``: the guard's limit (None: no guard);
    ``guard_reference_features``: the corpus openings' features it compares with (None: from the
    corpus, :func:`guard_reference`)."""
    paths = check_output(name, folder)
    kl = check_kl(kl)
    cfg_kl_asked = kl
    if realism_guard is not None and not (isinstance(realism_guard, (int, float)) and 0.0 <= realism_guard <= 1.0):
        raise EngineError(f"--realism-guard {realism_guard!r} is out of range (allowed: 0 to 1, the largest rise "
                          "of the two-sample AUC kept; or --no-realism-guard)")
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

    setting, reference = guard_setting(clips), guard_reference_features
    if realism_guard is not None and reference is None:
        reference = guard_reference(setting, seed)  # before tuning: a corpus without the setting refuses early
    base_net = load_policy(b.weights)
    contexts = contexts_of(clips, b.style_terms)
    checks: list[GuardCheck] = []
    base_policy = Policy.load(b.onnx) if reference is not None else None
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    while True:
        cfg = TuneConfig(seed=seed, kl_coef=kl, quiet=quiet, extra={"command": command})
        if episodes is not None:
            cfg.episodes = episodes
        net, tune_log = tune_policy(base_net, b.style_terms, contexts, score, cfg)
        if realism_guard is None or reference is None or base_policy is None:
            break
        with tempfile.TemporaryDirectory(prefix="qriff-guard-") as tmp:
            export_seq_model(net, Path(tmp) / "tuned.onnx", tuned_terms(b.style_terms), check=False)
            check = realism_check(base_policy, Policy.load(Path(tmp) / "tuned.onnx"), setting, reference, kl, seed,
                                  base_auc=checks[0].auc_base if checks else None)
        checks.append(check)
        ok = check.rise <= realism_guard
        log.info("realism guard at --kl %g: two-sample AUC %.3f -> %.3f (%+.3f, limit %+.3f): %s", kl,
                 check.auc_base, check.auc_tuned, check.rise, realism_guard,
                 "kept" if ok else "tuning again with twice the KL coefficient")
        if ok or len(checks) > GUARD_BACKOFFS or kl * 2 > KL_RANGE[1]:
            break
        kl *= 2
    seconds = time.perf_counter() - t0
    tune_log["cpu_seconds"] = round(time.process_time() - cpu0, 1)
    tune_log["realism_guard"] = {"limit": realism_guard, "setting": setting.generate_options(),
                                 "checks": [c.to_dict() for c in checks], "kl_kept": kl, "passed": bool(checks) and checks[-1].rise <= (realism_guard or 0.0)}
    provenance = {"algo": "tune", "base_model": b.model_id, "base_commit": b.commit, "verdicts": int(len(y)),
                  "kept": int(y.sum()), "skipped_verdicts": skipped, "reward_heldout_auc": reward.heldout_auc,
                  "reward_representation": reward.representation, "kl_coef": kl, "kl_asked": cfg_kl_asked,
                  "realism_guard": tune_log["realism_guard"], "seed": seed,
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
                         tune_cpu_seconds=float(tune_log["cpu_seconds"]), kl=kl, guard=tuple(checks))


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


__all__ = ["DEFAULT_NAME", "GUARD_BACKOFFS", "GUARD_CLIPS", "GuardCheck", "PersonalModel", "REALISM_GUARD",
           "GuardSetting", "guard_reference", "guard_setting", "realism_auc",
           "realism_check", "SHIPPED_POLICY_WEIGHTS", "check_name", "check_output",
           "load_reward_model", "make_personal_model", "read_verdicts", "resolve_base"]
