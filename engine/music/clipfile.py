"""Reading a clip file of either kind: clip JSON (``docs/clip-json.md``) or a Standard MIDI File."""

from __future__ import annotations

import os
from pathlib import Path

from engine.base.errors import ClipError
from engine.music.clip import Clip
from engine.music.midi import read_midi

__all__ = ["load_clip"]


def load_clip(path: str | os.PathLike[str]) -> Clip:
    """Read a clip from ``.json`` or ``.mid``/``.midi``; ClipError with the path on failure."""
    p = Path(path)
    if not p.is_file():
        raise ClipError(f"clip file {str(p)!r} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".json":
        return Clip.from_json(p.read_text(), source=str(p))
    if suffix in (".mid", ".midi"):
        return read_midi(p)
    raise ClipError(f"clip file {str(p)!r} has an unknown type {suffix!r}: allowed are .json, .mid, .midi")
