"""Item features: what the DQN knows about a track besides its id.

``[tags hashed | artist hashed | collaborative factors]``, each block L2-normalised:
tags (genres) and artist are hashed into fixed buckets (crc32, stable across
processes), and the candidate model's item factors (ALS) carry the collaborative
signal. A track ingested after training has tags and artist but no factors (zeros):
its vector then comes from the content blocks alone.
"""

from __future__ import annotations

import zlib

import numpy as np

TAG_BUCKETS = 32
ARTIST_BUCKETS = 64


def _hashed(values: list[list[str]], buckets: int) -> np.ndarray:
    out = np.zeros((len(values), buckets), np.float32)
    for i, vs in enumerate(values):
        for v in vs:
            v = v.strip().casefold()
            if v:
                out[i, zlib.crc32(v.encode()) % buckets] = 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1.0)


def split_tags(tags: str) -> list[str]:
    """Tags stored as ``"a, b"`` (or space-separated single words) into a list."""
    return [t for t in (tags.split(",") if "," in tags else tags.split()) if t.strip()]


def content_features(tags: list[str], artists: list[str]) -> np.ndarray:
    """float32 ``[K, TAG_BUCKETS + ARTIST_BUCKETS]`` for K tracks' tag strings and artist names."""
    return np.concatenate([_hashed([split_tags(t) for t in tags], TAG_BUCKETS),
                           _hashed([[a] if a else [] for a in artists], ARTIST_BUCKETS)], axis=1)


def normalised(factors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32."""
    f = np.asarray(factors, np.float32)
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-6)


def with_factors(content: np.ndarray, factors: np.ndarray | None) -> np.ndarray:
    """Append L2-normalised collaborative factors ``[K, f]`` (rows of zeros for unknown tracks)."""
    if factors is None:
        return np.asarray(content, np.float32)
    return np.concatenate([content, normalised(factors)], axis=1).astype(np.float32)
