"""The clip JSON the server writes beside each .mid, built for the hot path.

:func:`write_clip_json` writes :meth:`engine.Clip.to_dict` (the contract of
docs/clip-json.md) compactly with the C JSON encoder, through the engine's one
atomic write (:func:`engine.atomic_write`). tests/bridge/test_clipfiles.py reads it back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from engine import Clip, atomic_write


def write_clip_json(clip: Clip, path: str | os.PathLike[str]) -> Path:
    """Write the clip JSON atomically (compact); returns the path."""
    return atomic_write(path, (json.dumps(clip.to_dict(), separators=(",", ":")) + "\n").encode("utf-8"))
