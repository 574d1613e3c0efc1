"""A small trained catalog for the tests that serve it (the service and its Ray replicas)."""

from __future__ import annotations

from pathlib import Path

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "rec"


def tiny_trained_db(folder: Path) -> Path:
    """``folder/music.db``: the fixture listening logs ingested, and a tiny DQN and ALS trained on them."""
    from recommender.candidates import CandidateConfig
    from recommender.ingest import ingest_files
    from recommender.model import NetConfig
    from recommender.train import TrainConfig, train_database

    path = folder / "music.db"
    ingest_files(path, sorted(FIX.iterdir()), progress=False)
    train_database(path, config=TrainConfig(net=NetConfig(dim=8, max_history=6), epochs=2, batch_size=8),
                   cand_config=CandidateConfig(factors=4, iterations=3), progress=False)
    return path
