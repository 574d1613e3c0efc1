"""``qriff train --algo kl|dqn-seq``: the recurrent Q-network with (or without) KL control.

``kl`` is the shipped model's recipe: the recurrent corpus prior (``qriff corpus prior``)
is the reference policy and G-learning tunes the theory terms on top of it. ``dqn-seq``
is the no-KL ablation on the same network. Writes ``config.json``, ``train_log.json``,
``validation.json`` (the coefficient-picking scores on the corpus *valid* split),
``policy.pt`` (the torch weights, for fine-tuning and benchmarks) and ``model.onnx`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path
from typing import Any

from engine.base.errors import EngineError
from engine.base.options import bounded_int

ALGOS = ("mlp", "kl", "dqn-seq")


def add_kl_options(p: argparse.ArgumentParser) -> None:
    """The flags of the recurrent algorithms (the ``mlp`` algorithm ignores them)."""
    g = p.add_argument_group("recurrent models (--algo kl or dqn-seq)")
    g.add_argument("--algo", choices=ALGOS, default="mlp",
                   help="mlp: the feed-forward DQN with the prior as a reward term (default, the earlier recipe); "
                        "kl: recurrent Q-network with KL control against the recurrent prior (the shipped model); "
                        "dqn-seq: the same network without KL (ablation)")
    g.add_argument("--kl", type=float, default=None, metavar="C",
                   help="KL coefficient c: reward / c + log prior (larger stays nearer the corpus; default 1)")
    g.add_argument("--episodes", type=bounded_int(1, 10**8), default=None,
                   help="training episodes (default 12000)")
    g.add_argument("--theory-weight", type=float, default=None, metavar="W",
                   help="multiplier of the theory terms (0: KL only, the policy must stay the prior; default 1)")
    g.add_argument("--prior", default=None, metavar="PATH.pt",
                   help="recurrent prior to start from and stay near (default: engine/models/prior-essen.pt, the "
                        "all-sources prior fine-tuned on the Essen folk songs)")
    g.add_argument("--val-clips", type=bounded_int(0, 4096), default=256,
                   help="clips generated for the validation scores (default 256; 0 skips them)")
    g.add_argument("--val-limit", type=bounded_int(1, 10**6), default=None, metavar="N",
                   help="corpus tunes read for the validation reference (default: all; for quick runs)")


def command_line(args: argparse.Namespace) -> str:
    """The repo-relative ``qriff train`` command that reproduces this run (recorded in the model)."""
    parts = ["qriff", "train", "--algo", args.algo]
    for flag, value in (("--kl", args.kl), ("--episodes", args.episodes), ("--theory-weight", args.theory_weight),
                        ("--prior", args.prior), ("--seed", args.seed)):
        if value is not None:
            parts += [flag, str(value)]
    if args.out:
        out = Path(args.out)
        try:
            out = out.resolve().relative_to(Path.cwd().resolve())
        except ValueError:
            out = Path("runs") / out.name  # a scratch folder outside the repo: record a repo-relative one
        parts += ["--out", str(out)]
    return shlex.join(parts)


def run_kl(args: argparse.Namespace) -> int:
    try:
        import torch  # noqa: F401

        from engine.learn.kl_train import KLConfig, style_terms, train_kl
        from engine.learn.seqexport import export_seq_model
        from engine.learn.seqprior_training import KL_PRIOR_PATH, load_seq_prior
    except ImportError as exc:
        raise EngineError(f"training needs torch (pip install 'qriff[train]'): {exc}") from None
    if args.resume or args.sweep or args.set or args.config or args.preset != "default" or args.steps or args.envs:
        raise EngineError("--preset, --config, --set, --steps, --envs, --resume and --sweep apply to --algo mlp; "
                          f"--algo {args.algo} takes --kl, --episodes, --theory-weight, --prior and --seed")
    out = Path(args.out or f"runs/{args.algo}")
    model_path = out / "model.onnx"
    if model_path.exists():
        raise EngineError(f"{str(model_path)!r} exists: pick another --out, or delete it to retrain")
    cfg = KLConfig(seed=args.seed or 0, mode="kl" if args.algo == "kl" else "dqn", quiet=bool(args.quiet))
    if args.kl is not None:
        cfg.kl_coef = args.kl
    if args.episodes is not None:
        cfg.episodes = args.episodes
    if args.theory_weight is not None:
        cfg.theory_weight = args.theory_weight
    command = command_line(args)
    cfg.extra = {"command": command}
    cfg.validate()
    prior, prior_meta = load_seq_prior(args.prior or KL_PRIOR_PATH)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps({"algo": args.algo, **vars(cfg)}, indent=1, default=list) + "\n")
    t0 = time.perf_counter()
    net, log = train_kl(cfg, prior, out)
    metrics: dict[str, Any] = {"episodes": log["episodes"], "env_steps": log["env_steps"], "updates": log["updates"],
                               "seconds": log["seconds"],
                               "final_mean_return": log["final_mean_return"],
                               "prior_test_nll": prior_meta["metrics"].get("test_nll")}
    from engine.learn.seqmodel import save_policy

    save_policy(net, out / "policy.pt", {"command": command})
    export_seq_model(net, model_path, style_terms(), train_config={"algo": args.algo, **log["config"]},
                     train_metrics=metrics, model_id=f"qriff-{args.algo}-{out.name}", train_command=command)
    if args.val_clips:
        from engine.learn.kl_select import validation_scores

        scores = validation_scores(model_path, n=args.val_clips, seed=cfg.seed, limit=args.val_limit)
        (out / "validation.json").write_text(json.dumps(scores, indent=1) + "\n")
        metrics["validation"] = scores
    if not args.quiet:
        print(f"trained {log['episodes']} episodes, {log['updates']} gradient steps in "
              f"{(time.perf_counter() - t0) / 60:.1f} min; model {model_path}")
        if "validation" in metrics:
            print("validation: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics["validation"].items()
                                             if isinstance(v, float)))
    return 0


__all__ = ["ALGOS", "add_kl_options", "run_kl", "command_line"]
