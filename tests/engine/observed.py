"""The observations of a melody, step by step, as the environment builds them (``observe``)."""

from __future__ import annotations

import numpy as np

from engine.mdp import observation


def observed_rows(ctx: observation.MelodyContext, seq: np.ndarray) -> np.ndarray:
    """``float32 [len(seq), D]``: the observation before every token of ``seq`` in ``ctx``."""
    batch = observation.MelodyBatch.create([ctx])
    rows = []
    for tok in seq:
        rows.append(observation.observe(batch)[0])
        batch.append(np.array([tok]))
    return np.stack(rows)
