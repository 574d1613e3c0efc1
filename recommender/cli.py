"""``qriff rec ingest|train|next|playlist|evaluate`` and ``qriff search``.

Registered through the ``qriff.commands`` entry points (``register_rec``,
``register_search``). Every command takes ``--db PATH`` (default: ``recommender.db``
in the user data directory) and ``--json``. Bad input raises
:class:`~recommender.errors.RecommenderError`, which ``qriff`` prints as one line with
exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from engine.base.options import MAX_SEED, add_ray_options, bounded_float, bounded_int
from recommender.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)


def _common(p: argparse.ArgumentParser, model: bool = False) -> None:
    from recommender.schema import DEFAULT_LOCK_TIMEOUT

    p.add_argument("--db", type=Path, default=None,
                   help="SQLite database (default: recommender.db in the user data directory)")
    if model:
        p.add_argument("--model", type=Path, default=None, help="model file (default: <db name>.model.npz beside the db)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of text")
    p.add_argument("--lock-timeout", type=bounded_float(0, 3600), default=DEFAULT_LOCK_TIMEOUT,
                   help=f"seconds to wait for another process's lock on the db (default: {DEFAULT_LOCK_TIMEOUT:g})")


def _db(args: argparse.Namespace) -> Path:
    from recommender.schema import default_db_path

    return Path(args.db).expanduser() if args.db else default_db_path()


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2) if args.json else text)


def register_rec(subparsers: Any) -> None:
    """Add ``qriff rec`` and its subcommands."""
    rec = subparsers.add_parser("rec", help="music recommender: ingest listening history, train, next, playlist",
                                description="The DQN music recommender: listening history as state, playlist "
                                            "steps as actions.")
    sub = rec.add_subparsers(dest="rec_command", metavar="SUBCOMMAND", parser_class=type(rec))
    rec.set_defaults(func=lambda a: (rec.print_help(), 0)[1])

    p = sub.add_parser("ingest", help="load listening exports into the database",
                       description="Load Spotify extended streaming history (JSON), ListenBrainz exports (JSON lines), "
                                   "Last.fm-1K scrobbles (TSV: user, ISO time, artist mbid, artist, track mbid, track) "
                                   "or a CSV with a header (user,item,timestamp[,ms_played,duration_ms,skipped,title,"
                                   "artist,album,tags]). Re-ingesting a file adds nothing twice; every row is stored "
                                   "or rejected with its reason and line number.")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="export files")
    p.add_argument("--format", default="auto", choices=("auto", "spotify", "listenbrainz", "lastfm", "csv"),
                   help="file format (default: auto-detect from the file's start)")
    p.add_argument("--user", default="me", help="listener name for formats without a user field (default: me)")
    p.add_argument("--completed-fraction", type=bounded_float(0.01, 1.0), default=0.8,
                   help="share of a track's duration that counts as completed when only ms_played says (default 0.8)")
    p.add_argument("--skip-ms", type=bounded_int(0, 3_600_000), default=30_000,
                   help="without a duration, plays shorter than this many ms are skips (default 30000)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _common(p)
    p.set_defaults(func=run_ingest)

    p = sub.add_parser("train", help="train the DQN (and ALS candidates) on the database",
                       description="Fit ALS candidates, then train the DQN offline (double Q-learning with "
                                   "session ends, CQL for tracks never shown, plus SQN's supervised head) on every "
                                   "user's history. Seeded, checkpointed (resumes an "
                                   "interrupted run with the same config), progress bar.")
    _common(p, model=True)
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=bounded_int(1, 10_000), default=10, help="passes over the data (default 10)")
    g.add_argument("--batch-size", type=bounded_int(1, 65_536), default=128, help="windows per step (default 128)")
    g.add_argument("--lr", type=bounded_float(1e-6, 1.0), default=2e-3, help="Adam learning rate (default 2e-3)")
    g.add_argument("--gamma", type=bounded_float(0.0, 0.99), default=0.8,
                   help="discount within a session (default 0.8; 0 values only the next track)")
    g.add_argument("--session-gap", type=bounded_float(1.0, 1e9), default=1800.0,
                   help="seconds between plays that end a session: no value is carried past it (default 1800)")
    g.add_argument("--unshown-weight", type=bounded_float(0.0, 100.0), default=0.1,
                   help="weight of the conservative term for tracks the logs never tried (default 0.1)")
    g.add_argument("--q-weight", type=bounded_float(0.0, 100.0), default=1.0,
                   help="weight of the Q-learning loss; 0 = supervised only (default 1)")
    g.add_argument("--q-encoder-grad", type=bounded_float(0.0, 1.0), default=1.0,
                   help="share of the Q-loss gradient reaching the shared encoder and item vectors; 0 keeps "
                        "next-item ranking exactly the supervised model's (default 1)")
    g.add_argument("--rank-by", choices=("q", "sqn", "blend"), default="sqn",
                   help="what ranks 'next': the supervised head shaped by Q-learning (sqn), Q, or their sum "
                        "(default sqn); playlists and search always use Q")
    g.add_argument("--encoder", choices=("gru", "attention"), default="gru", help="history encoder (default gru)")
    g.add_argument("--dim", type=bounded_int(4, 1024), default=64, help="state and item vector width (default 64)")
    g.add_argument("--max-history", type=bounded_int(1, 1000), default=50, help="events the state sees (default 50)")
    g.add_argument("--candidates", choices=("als", "bpr"), default="als", help="candidate model (default als)")
    g.add_argument("--factors", type=bounded_int(1, 1024), default=64, help="ALS/BPR factors (default 64)")
    g.add_argument("--seed", type=bounded_int(0, MAX_SEED), default=0, help="random seed (default 0)")
    g.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    r = p.add_argument_group("reward per event outcome")
    r.add_argument("--reward-completed", type=bounded_float(-100, 100), default=1.0, help="default 1")
    r.add_argument("--reward-skipped", type=bounded_float(-100, 100), default=0.0, help="default 0")
    r.add_argument("--reward-unknown", type=bounded_float(-100, 100), default=0.5, help="default 0.5")
    r.add_argument("--continue-bonus", type=bounded_float(-100, 100), default=0.5,
                   help="added when the listener stays in the session after a track (default 0.5)")
    add_ray_options(p, workers_help="data-parallel workers on Ray Train, each one CPU (default: one process, "
                                    "no Ray; 2 or more, or --ray-address, trains on Ray)")
    p.set_defaults(func=run_train)

    for name, helptext in (("next", "the next tracks for a listener"),
                           ("playlist", "a playlist, each step conditioned on the previous ones")):
        p = sub.add_parser(name, help=helptext, description=helptext.capitalize() + ". An unknown user starts cold "
                           "from --history or from popularity, and the output says so.")
        p.add_argument("--user", default=None, help="listener name as ingested")
        if name == "next":
            p.add_argument("--n", type=bounded_int(1, 1000), default=10, help="how many tracks, 1-1000 (default 10)")
        else:
            p.add_argument("--steps", type=bounded_int(1, 500), default=20, help="playlist length, 1-500 (default 20)")
        p.add_argument("--history", nargs="*", default=None, metavar="ID",
                       help="tracks just heard (catalog ids as printed, CSV item ids or 'Artist - Title'); "
                            "unknown ids are ignored with a warning")
        _common(p, model=True)
        p.set_defaults(func=run_next if name == "next" else run_playlist)

    _register_serve(sub)

    p = sub.add_parser("evaluate", help="offline evaluation against baselines and ablations (HR/NDCG, full ranking)",
                       description="Leave-last-out by timestamp, full ranking with seen items filtered, HR and NDCG "
                                   "at 5/10/20 for most-popular, implicit ALS, item-kNN, GRU4Rec (ids, and with the "
                                   "DQN's inputs), the DQN and its ablations (gamma 0, no Q-loss, ranked by Q), "
                                   "trained in the same run, mean and std over seeds. Sampled metrics are shown "
                                   "beside. --tune picks every family's config on a validation split first; "
                                   "--simulate adds the simulator's table. --env recsim instead logs sessions of RecSim's "
                                   "interest-evolution world, trains on them through ingest and train, and plays "
                                   "it against myopic, ablations and a known-model planner (docs/recommender.md).")
    p.add_argument("--env", choices=("logs", "recsim"), default="logs",
                   help="'logs': the offline protocol on --dataset (default); 'recsim': train on logged sessions "
                        "of RecSim's interest-evolution world (pip install 'qriff[recsim]') and play it")
    p.add_argument("--dataset", default="movielens-100k",
                   help="'movielens-100k' (from the recbole==1.2.1 wheel) or an export file / .db to evaluate on")
    p.add_argument("--models", default="all",
                   help="comma-separated subset of most-popular,als,item-knn,gru4rec,dqn (default: all)")
    p.add_argument("--epochs", type=bounded_int(1, 10_000), default=None, help="training epochs (default: train's)")
    p.add_argument("--encoder", choices=("gru", "attention"), default=None, help="DQN encoder (default gru)")
    p.add_argument("--seed", type=bounded_int(0, MAX_SEED), default=0, help="first random seed (default 0)")
    p.add_argument("--seeds", type=bounded_int(1, 100), default=1,
                   help="seeds per row, reported as mean and std (default 1; the bench uses 3)")
    p.add_argument("--tune", type=bounded_int(0, 100), default=0, metavar="TRIALS",
                   help="configs tried per model family on a validation split (each user's second-to-last "
                        "event) before the test; neural trials are read after 10, 20 and 30 epochs "
                        "(default 0: no tuning, defaults)")
    p.add_argument("--simulate", action="store_true",
                   help="also fit a simulator on the logs and play sessions with every policy")
    p.add_argument("--sim-users", type=bounded_int(1, 1_000_000), default=200,
                   help="listeners per simulated seed (default 200)")
    p.add_argument("--rollout-sessions", type=bounded_int(0, 100), default=2,
                   help="simulated sessions per user added to the DQN's training data (default 2)")
    p.add_argument("--out", type=Path, default=None, help="also write the table (.md) and metrics (.json) here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    g = p.add_argument_group("--env recsim")
    g.add_argument("--candidates", type=bounded_int(2, 1000), default=None,
                   help="documents offered each step, drawn from the pool (default 10)")
    g.add_argument("--pool", type=bounded_int(2, 100_000), default=None,
                   help="documents in the fixed pool, the catalog (default 200)")
    g.add_argument("--time-budget", type=bounded_float(1.0, 10_000.0), default=None, metavar="MIN",
                   help="each listener's session budget in minutes (default 60, about 30 steps a session; "
                        "RecSim's own utility-model users have 200)")
    g.add_argument("--logged-episodes", type=bounded_int(2, 1_000_000), default=None, metavar="K",
                   help="sessions the behaviour policy logs a seed, the DQN's training data (default 1000)")
    g.add_argument("--behaviour", choices=("random", "myopic", "mixed"), default=None,
                   help="the logging policy (default mixed: myopic, half the steps uniform)")
    g.add_argument("--episodes", type=bounded_int(1, 1_000_000), default=None,
                   help="evaluation listeners a seed, the same for every policy (default 100)")
    g.add_argument("--online-episodes", type=bounded_int(0, 1_000_000), default=None,
                   help="sessions the DQN plays online for the rollouts row (default 300; 0: no row)")
    g.add_argument("--gamma", type=bounded_float(0.0, 0.99), default=None, help="the DQN's discount (default 0.99)")
    g.add_argument("--negative-control", action="store_true",
                   help="also run with quality giving no time back (RecSim's long-horizon mechanism off)")
    _common(p)
    p.set_defaults(func=run_evaluate)


def _register_serve(sub: Any) -> None:
    p = sub.add_parser("serve", help="the recommender as an HTTP JSON service (next, playlist, search, events)",
                       description="HTTP JSON service: GET /next, /playlist, /search, POST /events (plays and skips, "
                                   "stored at once), GET /health, OpenAPI at /docs. Binds 127.0.0.1 unless --host "
                                   "says otherwise. See docs/service.md.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=bounded_int(1, 65535), default=8000, help="TCP port (default 8000)")
    p.add_argument("--max-body", type=bounded_int(1024, 64 * 1024 * 1024), default=None,
                   help="largest request body in bytes; larger ones get 413 (default 262144)")
    p.add_argument("--db", type=Path, default=None,
                   help="SQLite database (default: recommender.db in the user data directory)")
    p.add_argument("--model", type=Path, default=None, help="model file (default: <db name>.model.npz beside the db)")
    p.add_argument("--lock-timeout", type=bounded_float(0, 3600), default=1.0,
                   help="seconds an event waits for another process's lock on the db before the request gets 503 "
                        "with Retry-After (default 1)")
    g = p.add_argument_group("scale-out (Ray Serve; pip install 'qriff[ray]')")
    g.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                   help="serve the read endpoints from replicas on this Ray cluster (HOST:PORT, ray://HOST:PORT or "
                        "auto); events still go to one writer on this machine")
    g.add_argument("--replicas", type=bounded_int(1, 1024), default=None, metavar="N",
                   help="read replicas on Ray Serve, each with the model and a catalog snapshot (default 2 with "
                        "--ray-address; without it, starts a local Ray)")
    g.add_argument("--snapshot-s", type=bounded_float(1, 86400), default=30.0,
                   help="seconds between a replica's catalog snapshots: how long a posted play may take to reach "
                        "/next on Ray Serve (default 30)")
    p.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ConfigError("the service needs FastAPI and uvicorn: pip install 'qriff[serve]'") from None
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: anyone who can reach it can read and post listening data", args.host)
    from recommender.service import DEFAULT_MAX_BODY

    max_body = args.max_body or DEFAULT_MAX_BODY
    if args.ray_address or args.replicas:
        from recommender.replicas import serve_on_ray

        serve_on_ray(_db(args), args.model, address=args.ray_address, replicas=args.replicas or 2, host=args.host,
                     port=args.port, lock_timeout=args.lock_timeout, max_body=max_body,
                     snapshot_s=args.snapshot_s)
        return 0
    from recommender.service import LocalService, serve_local

    service = LocalService(_db(args), args.model, lock_timeout=args.lock_timeout, max_body=max_body)
    print(f"serving {service.rec.db} on http://{args.host}:{args.port} (OpenAPI: /docs); Ctrl-C stops", flush=True)
    serve_local(service, args.host, args.port)
    return 0


#: ``--env recsim`` flags and what they mean for the offline (``--env logs``) protocol: none.
RECSIM_FLAGS = ("candidates", "pool", "time_budget", "logged_episodes", "behaviour", "episodes", "online_episodes",
                "gamma", "negative_control")


def register_search(subparsers: Any) -> None:
    """Add ``qriff search``."""
    p = subparsers.add_parser("search", help="search the catalog, re-ranked for a listener",
                              description="Full-text search (FTS5, bm25 over title, artist, album, tags). With "
                                          "--user or --history the best text matches are re-ranked by the "
                                          "listener's Q-values. Any text is safe: quotes and FTS operators are "
                                          "searched as words.")
    p.add_argument("query", help="words to look for")
    p.add_argument("--user", default=None, help="listener to re-rank for")
    p.add_argument("--history", nargs="*", default=None, metavar="ID", help="tracks just heard (as in 'rec next')")
    p.add_argument("--n", type=bounded_int(1, 1000), default=10, help="how many results, 1-1000 (default 10)")
    _common(p, model=True)
    p.set_defaults(func=run_search)


# ------------------------------------------------------------------------ commands

def run_ingest(args: argparse.Namespace) -> int:
    from recommender.ingest import ingest_files
    from recommender.rewards import OutcomeRule

    rule = OutcomeRule(args.completed_fraction, args.skip_ms)
    reports = ingest_files(_db(args), args.paths, args.format, args.user, rule,
                           progress=False if args.quiet or args.json else None, lock_timeout=args.lock_timeout)
    totals = {k: sum(getattr(r, k) for r in reports) for k in ("rows_in", "stored", "rejected")}
    text = "\n".join(r.summary() for r in reports)
    if len(reports) > 1:
        text += f"\ntotal: {totals['rows_in']} rows in = {totals['stored']} stored + {totals['rejected']} rejected"
    _emit(args, {"db": str(_db(args)), "files": [r.to_dict() for r in reports], "total": totals}, text)
    return 0


def run_train(args: argparse.Namespace) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ConfigError("training needs torch: pip install 'qriff[train]'") from None
    from recommender.candidates import CandidateConfig
    from recommender.model import NetConfig
    from recommender.rewards import RewardConfig
    from recommender.train import TrainConfig, train_database

    config = TrainConfig(net=NetConfig(dim=args.dim, encoder=args.encoder, max_history=args.max_history),
                         reward=RewardConfig(args.reward_completed, args.reward_skipped, args.reward_unknown),
                         epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, gamma=args.gamma,
                         q_weight=args.q_weight, q_encoder_grad=args.q_encoder_grad, rank_by=args.rank_by,
                         seed=args.seed,
                         session_gap=args.session_gap, unshown_weight=args.unshown_weight,
                         continue_bonus=args.continue_bonus)
    cand = CandidateConfig(kind=args.candidates, factors=args.factors, seed=args.seed)
    fit = None
    if args.ray_address or (args.workers or 1) > 1:
        from recommender.distributed import data_parallel_fit

        fit = data_parallel_fit(args.workers or 2, args.ray_address)
    art = train_database(_db(args), args.model, config, cand, progress=False if args.quiet or args.json else None,
                         resume=not args.no_resume, lock_timeout=args.lock_timeout, fit=fit)
    from recommender.artifact import default_model_path

    path = args.model or default_model_path(_db(args))
    info = dict(art.info)
    last = info["history"][-1] if info["history"] else {}
    text = (f"trained on {info['events']} events, {info['users']} users, {info['tracks']} tracks in "
            f"{info['seconds']:.1f} s; final loss {last.get('loss', float('nan')):.4f}; model: {path}")
    _emit(args, {"model": str(path), **info}, text)
    return 0


def _rec_text(r: Any, title: str) -> str:
    lines = []
    if r.cold_start:
        how = "from the history given" if r.source == "history" else "from popularity"
        lines.append(f"cold start ({how}): {r.user!r} has no listening history in the database"
                     if r.user else f"cold start ({how}): no user given")
    lines += [f"warning: {w}" for w in r.warnings]
    lines.append(title)
    for i, t in enumerate(r.tracks, 1):
        extra = f" [{t.album}]" if t.album else ""
        lines.append(f"{i:3d}. {t.label()}{extra}  (id {t.id}, score {t.score:.3f})")
    if not r.tracks:
        lines.append("  (nothing found)")
    return "\n".join(lines)


def _recommender(args: argparse.Namespace, require_model: bool = True):
    from recommender.api import Recommender

    return Recommender(_db(args), args.model, lock_timeout=args.lock_timeout, require_model=require_model)


def _check_history(args: argparse.Namespace) -> None:
    if args.history is not None and not args.history and args.user is None:
        raise ConfigError("--history is empty and no --user given: name tracks after --history, or pass --user")


def run_next(args: argparse.Namespace) -> int:
    _check_history(args)
    with _recommender(args) as rec:
        r = rec.next(args.user, n=args.n, history=args.history)
    _emit(args, r.to_dict(), _rec_text(r, f"next for {args.user or 'anonymous listener'}:"))
    return 0


def run_playlist(args: argparse.Namespace) -> int:
    _check_history(args)
    with _recommender(args) as rec:
        r = rec.playlist(args.user, steps=args.steps, history=args.history)
    _emit(args, r.to_dict(), _rec_text(r, f"playlist of {len(r.tracks)} for {args.user or 'anonymous listener'}:"))
    return 0


def run_search(args: argparse.Namespace) -> int:
    with _recommender(args, require_model=False) as rec:
        r = rec.search(args.query, user=args.user, n=args.n, history=args.history)
    title = f"search {args.query!r}" + (f" for {args.user}" if args.user else "") + ":"
    r_text = _rec_text(r, title) if (args.user or args.history) else "\n".join(
        [f"warning: {w}" for w in r.warnings] + [title] + [f"{i:3d}. {t.label()}  (id {t.id}, score {t.score:.3f})"
                                                         for i, t in enumerate(r.tracks, 1)]
        + ([] if r.tracks else ["  (nothing found)"]))
    _emit(args, r.to_dict(), r_text)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    if args.env == "recsim":
        return run_evaluate_recsim(args)
    given = [f"--{f.replace('_', '-')}" for f in RECSIM_FLAGS if getattr(args, f) not in (None, False)]
    if given:
        raise ConfigError(f"{', '.join(given)} only apply to --env recsim (got --env {args.env}): add --env recsim")
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ConfigError("evaluation trains models and needs torch: pip install 'qriff[train]'") from None
    from recommender.evaluation import MODELS, default_dqn_config, evaluate, evaluate_simulator, tune

    models = MODELS if args.models == "all" else tuple(m.strip() for m in args.models.split(",") if m.strip())
    bad = [m for m in models if m not in MODELS]
    if bad or not models:
        raise ConfigError(f"--models {args.models!r} names unknown models (allowed: {', '.join(MODELS)})")
    data, name = _dataset(args)
    cfg = default_dqn_config()
    if args.epochs:
        cfg.epochs = args.epochs
    if args.encoder:
        cfg.net.encoder = args.encoder
    cfg.seed = args.seed
    progress = not (args.quiet or args.json) and sys.stderr.isatty()
    tuned = tune(data, args.tune, seed=args.seed, progress=progress, dqn_config=cfg) if args.tune else None
    res = evaluate(data, name, cfg, models=models, progress=progress, seed=args.seed, seeds=args.seeds, tuned=tuned)
    res.notes.append(f"DQN config: {json.dumps(asdict(tuned.dqn if tuned and tuned.dqn else cfg), sort_keys=True)}")
    out: dict[str, Any] = {"offline": res.to_dict()}
    text = res.table()
    if args.simulate:
        sim = evaluate_simulator(data, cfg, eval_users=args.sim_users, seeds=args.seeds, seed=args.seed,
                                 rollout_sessions=args.rollout_sessions, tuned=tuned, progress=progress)
        out["simulator"] = sim.to_dict()
        text += "\n\n" + sim.table()
    return _report(args, out, text)


def _dataset(args: argparse.Namespace):
    from recommender.dataset import load_movielens_100k

    if args.dataset == "movielens-100k":
        return load_movielens_100k(), "MovieLens-100K"
    path = Path(args.dataset).expanduser()
    if not path.exists():
        raise DatasetError(f"--dataset {args.dataset!r} is neither 'movielens-100k' nor an existing file")
    import tempfile

    from recommender.catalog import load_interactions
    from recommender.schema import connect

    if path.suffix in (".db", ".sqlite", ".sqlite3"):
        conn = connect(path, create=False, timeout=args.lock_timeout)
    else:
        from recommender.ingest import ingest_file

        tmp = tempfile.TemporaryDirectory(prefix="qriff-eval-")
        conn = connect(Path(tmp.name) / "eval.db")
        ingest_file(conn, path, progress=False)
    try:
        data, _ = load_interactions(conn)
    finally:
        conn.close()
    return data, path.name


def run_evaluate_recsim(args: argparse.Namespace) -> int:
    from recommender.recsim_env import RecSimConfig
    from recommender.recsim_eval import EPOCHS as default_epochs
    from recommender.recsim_eval import RecSimEvalConfig, default_train_config, evaluate_recsim

    if args.dataset != "movielens-100k" or args.simulate or args.tune or args.models != "all":
        raise ConfigError("--dataset, --models, --tune and --simulate belong to the offline protocol, not "
                          "--env recsim (which makes its own logs): drop them")
    world = RecSimConfig(candidates=args.candidates or 10, pool=args.pool or 200,
                         time_budget=args.time_budget or 60.0, seed=args.seed)
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ConfigError("evaluation trains models and needs torch: pip install 'qriff[train]'") from None
    train = default_train_config(gamma=0.99 if args.gamma is None else args.gamma,
                                 epochs=args.epochs or default_epochs, candidates=world.candidates)
    if args.encoder:
        train.net.encoder = args.encoder
    cfg = RecSimEvalConfig(world=world, logged_episodes=args.logged_episodes or 1000,
                           behaviour=args.behaviour or "mixed", episodes=args.episodes or 100, seeds=args.seeds,
                           online_episodes=300 if args.online_episodes is None else args.online_episodes,
                           train=train)
    progress = not (args.quiet or args.json) and sys.stderr.isatty()
    res = evaluate_recsim(cfg, progress=progress)
    out: dict[str, Any] = {"recsim": res.to_dict()}
    text = res.table()
    if args.negative_control:
        from dataclasses import replace

        ctrl = evaluate_recsim(replace(cfg, world=replace(world, quality_affects_budget=False), ablations=False),
                               progress=progress)
        out["negative_control"] = ctrl.to_dict()
        text += "\n\n" + ctrl.table("Negative control (quality gives no time back)")
    return _report(args, out, text)


def _report(args: argparse.Namespace, out: dict[str, Any], text: str) -> int:
    """Write ``--out`` (.md and .json, atomically) when asked, then print the report."""
    if args.out:
        from engine.base.files import atomic_write

        base = Path(args.out)
        atomic_write(base.with_suffix(".md"), lambda p: Path(p).write_text(text + "\n"))
        atomic_write(base.with_suffix(".json"), lambda p: Path(p).write_text(json.dumps(out, indent=2)))
    _emit(args, out, text)
    return 0
