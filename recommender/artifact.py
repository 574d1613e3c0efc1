"""The trained model file (``<db>.model.npz``): everything ``next``, ``playlist`` and
``search`` need at run time, as plain numpy arrays (no torch, no pickle).

Holds the exported network (:mod:`recommender.scoring`), the catalog id of each dense
item index, the candidate model's factors (ALS) with the user names they belong to,
track popularity for cold starts, and the training config and metrics as JSON.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.base.files import atomic_write
from recommender.errors import ModelMissingError

ARTIFACT_VERSION = 1


def default_model_path(db: str | Path) -> Path:
    """Where ``qriff rec train`` writes the model of database ``db``: beside it, ``<name>.model.npz``."""
    p = Path(db)
    return p.with_name(p.stem + ".model.npz")


@dataclass
class ModelArtifact:
    """A trained recommender. Arrays: ``track_ids`` int64 ``[n_items + 1]`` (catalog id per index, 0
    for padding), ``user_factors`` ``[n_users, f]`` and ``item_factors`` ``[n_items + 1, f]`` (ALS,
    row 0 padding), ``popularity`` float32 ``[n_items + 1]`` (events per track)."""

    weights: dict[str, np.ndarray]
    track_ids: np.ndarray
    user_names: list[str]
    user_factors: np.ndarray
    item_factors: np.ndarray
    popularity: np.ndarray
    candidate_config: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    """Training config, metrics, data sizes, creation time (JSON-able)."""

    def save(self, path: str | Path) -> Path:
        arrays: dict[str, Any] = {f"net/{k}": v for k, v in self.weights.items()}
        arrays.update(track_ids=self.track_ids, user_names=np.array(self.user_names, dtype=str),
                      user_factors=self.user_factors, item_factors=self.item_factors, popularity=self.popularity,
                      candidate_config=np.array(json.dumps(self.candidate_config)),
                      info=np.array(json.dumps(self.info)), artifact_version=np.array(ARTIFACT_VERSION))

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

        return atomic_write(path, write)

    @classmethod
    def load(cls, path: str | Path) -> ModelArtifact:
        p = Path(path)
        if not p.exists():
            raise ModelMissingError(f"no trained model at {p}: run 'qriff rec train' first (or pass --model PATH)")
        try:
            z = np.load(p, allow_pickle=False)
            version = int(z["artifact_version"])
            if version != ARTIFACT_VERSION:
                raise ModelMissingError(f"model {p} has format {version}, this qriff reads {ARTIFACT_VERSION}: "
                                        "retrain with 'qriff rec train'")
            weights = {k[4:]: z[k] for k in z.files if k.startswith("net/")}
            return cls(weights, z["track_ids"], [str(u) for u in z["user_names"]], z["user_factors"],
                       z["item_factors"], z["popularity"], json.loads(str(z["candidate_config"])),
                       json.loads(str(z["info"])))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise ModelMissingError(f"model {p} is unreadable ({exc}): retrain with 'qriff rec train'") from None
