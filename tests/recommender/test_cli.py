"""``qriff rec ...`` and ``qriff search`` as a user runs them (subprocesses on the fixtures)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every test runs qriff rec/search in subprocesses

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "rec"


@pytest.fixture(scope="module")
def trained_db(tmp_path_factory):
    pytest.importorskip("torch")
    from recommender.candidates import CandidateConfig
    from recommender.ingest import ingest_files
    from recommender.model import NetConfig
    from recommender.train import TrainConfig, train_database

    db = tmp_path_factory.mktemp("rec") / "music.db"
    ingest_files(db, sorted(FIX.iterdir()), progress=False)
    train_database(db, config=TrainConfig(net=NetConfig(dim=8, max_history=6), epochs=2, batch_size=8),
                   cand_config=CandidateConfig(factors=4, iterations=3), progress=False)
    return db


def _json(proc):
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_ingest_json_and_text(qriff, tmp_path):
    db = tmp_path / "x.db"
    out = _json(qriff("rec", "ingest", *map(str, sorted(FIX.iterdir())), "--db", str(db), "--json"))
    assert out["total"] == {"rows_in": 40, "stored": 27, "rejected": 13}
    again = qriff("rec", "ingest", str(FIX / "generic_events.csv"), "--db", str(db))
    assert again.returncode == 0
    assert "13 rows in = 0 stored + 13 rejected" in again.stdout and "duplicate" in again.stdout


def test_train_command_writes_model(qriff, tmp_path):
    pytest.importorskip("torch")
    db = tmp_path / "t.db"
    assert qriff("rec", "ingest", str(FIX / "generic_events.csv"), "--db", str(db), "--quiet").returncode == 0
    out = _json(qriff("rec", "train", "--db", str(db), "--epochs", "1", "--dim", "8", "--max-history", "4",
                      "--factors", "4", "--json"))
    assert Path(out["model"]).exists() and out["events"] == 8


def test_next_for_known_user(qriff, trained_db):
    out = _json(qriff("rec", "next", "--user", "ana.listens", "--n", "3", "--db", str(trained_db), "--json"))
    assert out["cold_start"] is False and out["source"] == "model"
    assert len(out["tracks"]) == 3 and all({"id", "title", "artist", "score"} <= set(t) for t in out["tracks"])
    heard = {"Águas de Março", "Garota de Ipanema", "Chega de Saudade", "Wave", "Desafinado"}
    assert not heard & {t["title"] for t in out["tracks"]}  # recent history is not repeated


def test_cold_start_is_said(qriff, trained_db):
    out = _json(qriff("rec", "next", "--user", "newcomer", "--db", str(trained_db), "--json"))
    assert out["cold_start"] is True and out["source"] == "popularity" and out["tracks"]
    text = qriff("rec", "next", "--user", "newcomer", "--db", str(trained_db))
    assert text.returncode == 0 and "cold start (from popularity)" in text.stdout


def test_unknown_history_ids_are_warned_and_ignored(qriff, trained_db):
    out = _json(qriff("rec", "next", "--history", "trk-001", "no-such-track", "Radiohead - Kid A",
                      "--db", str(trained_db), "--json"))
    assert out["source"] == "history" and out["cold_start"] is True
    assert any("no-such-track" in w for w in out["warnings"])
    assert "Kid A" not in {t["title"] for t in out["tracks"]}


def test_playlist_has_distinct_steps(qriff, trained_db):
    out = _json(qriff("rec", "playlist", "--user", "dana", "--steps", "6", "--db", str(trained_db), "--json"))
    ids = [t["id"] for t in out["tracks"]]
    assert len(ids) == 6 and len(set(ids)) == 6


def test_search_text_with_fts_syntax_is_safe(qriff, trained_db):
    out = _json(qriff("search", 'AND "jazz NEAR(x', "--db", str(trained_db), "--json"))
    assert {t["title"] for t in out["tracks"]} >= {"So What", "Blue in Green"}


def test_search_finds_and_reranks(qriff, trained_db):
    out = _json(qriff("search", "jobim", "--db", str(trained_db), "--json"))
    assert [t["title"] for t in out["tracks"]] == ["Wave"]
    out = _json(qriff("search", "radio", "--user", "rob_lb", "--db", str(trained_db), "--json"))
    assert {t["artist"] for t in out["tracks"]} == {"Radiohead"} and out["cold_start"] is False


@pytest.mark.parametrize("args,needle", [
    (["rec", "next", "--user", "dana", "--n", "0"], "--n: 0 is out of range (allowed: 1-1000)"),
    (["rec", "playlist", "--user", "dana", "--steps", "9999"], "--steps: 9999 is out of range"),
    (["rec", "next", "--history"], "--history is empty"),
    (["rec", "ingest", "README.md"], "unknown format (allowed: spotify, listenbrainz, lastfm, csv)"),
    (["rec", "ingest", "nope.json"], "no such file"),
    (["rec", "ingest", "x.csv", "--format", "xml"], "invalid choice: 'xml'"),
    (["search", "x", "--n", "-3"], "--n: -3 is out of range"),
])
def test_bad_input_exits_2_with_one_line(qriff, trained_db, args, needle):
    proc = qriff(*args, "--db", str(trained_db))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr


def test_missing_db_and_model_are_clear(qriff, tmp_path):
    proc = qriff("rec", "next", "--user", "x", "--db", str(tmp_path / "none.db"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "qriff rec ingest" in proc.stderr
    db = tmp_path / "m.db"
    qriff("rec", "ingest", str(FIX / "generic_events.csv"), "--db", str(db), "--quiet")
    proc = qriff("rec", "next", "--user", "dana", "--db", str(db))
    assert proc.returncode == 2 and "no trained model" in proc.stderr
    out = _json(qriff("search", "jazz", "--db", str(db), "--json"))  # search works without a model
    assert out["tracks"]


def test_locked_db_exits_2(qriff, tmp_path):
    db = tmp_path / "l.db"
    qriff("rec", "ingest", str(FIX / "generic_events.csv"), "--db", str(db), "--quiet")
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        proc = qriff("rec", "ingest", str(FIX / "lastfm_1k_sample.tsv"), "--db", str(db), "--lock-timeout", "0.3")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert proc.returncode == 2 and "locked by another process (waited 0.3 s)" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_evaluate_simulate_json_has_offline_ablations_and_simulator_rows(qriff, tmp_path):
    """Listeners who skip 30% of plays at random and leave after any track with odds 0.15: the simulator fit
    on 32 of the 40 users must find both, pass its calibration on the 8 held out, and leave no policy room
    to beat another by much (nothing here rewards a choice)."""
    pytest.importorskip("torch")
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path / "plays.csv"
    lines = ["user,item,timestamp,skipped"]
    for u in range(40):
        i = int(rng.integers(20))
        for s in range(4):
            for k in range(30):
                i = (i + 1) % 20 if rng.random() < 0.8 else int(rng.integers(20))
                lines.append(f"u{u},t{i},{1_600_000_000 + s * 86_400 + k * 200},"
                             f"{'true' if rng.random() < 0.3 else 'false'}")
                if rng.random() < 0.15:
                    break
    path.write_text("\n".join(lines) + "\n")
    out = _json(qriff("rec", "evaluate", "--dataset", str(path), "--epochs", "1", "--simulate", "--sim-users", "8",
                      "--rollout-sessions", "1", "--json", timeout=300))
    rows = out["offline"]["models"]
    for row in ("als", "gru4rec (DQN's inputs)", "dqn", "dqn, gamma 0", "dqn, no Q-loss", "dqn, ranked by Q",
                "dqn, Q gradient stopped at the encoder", "dqn, full Q gradient into the encoder"):
        assert 0.0 <= rows[row]["full"]["NDCG@10"] <= 1.0, row
    # untuned, the supervised baseline with the DQN's inputs is the DQN's network without the Q-loss
    assert rows["gru4rec (DQN's inputs)"]["per_seed"] == rows["dqn, no Q-loss"]["per_seed"]
    sim = out["simulator"]["simulator"]
    assert (sim["train_users"], sim["eval_users"], out["simulator"]["users"]) == (32, 8, 8)
    cal = sim["calibration"]
    assert cal["held_out_users"] == 8 and cal["passed"], cal
    assert abs(cal["skip_rate_real"] - 0.3) < 0.1 and abs(cal["skip_rate_sim"] - 0.3) < 0.1
    assert abs(cal["session_length_sim"] - 1 / 0.15) < 2.5  # untruncated: the leaving odds' mean length
    leave = list(sim["p_leave"].values())
    assert abs(np.mean(leave) - 0.15) < 0.05
    pol = out["simulator"]["policies"]
    assert {"greedy ALS", "completion rate in the training logs, ALS candidates", "dqn, by Q on ALS candidates",
            "dqn, gamma 0", "random ALS candidate", "planner (knows the simulator; ceiling)"} <= set(pol)
    assert all(0 <= p["mean"] <= p["length"] <= 20 for p in pol.values())
    means = [p["mean"] for p in pol.values()]
    assert max(means) - min(means) < 2.0
    bad = qriff("rec", "evaluate", "--dataset", str(path), "--seeds", "0")
    assert bad.returncode == 2 and "--seeds" in bad.stderr and "Traceback" not in bad.stderr
