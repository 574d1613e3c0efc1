"""The clip JSON file the server writes beside each .mid, built without ``dataclasses.asdict``.

Same object as :meth:`engine.clip.Clip.to_dict` (the design.md contract), serialized
compactly by the C JSON encoder; ``Clip.write_json`` pretty-prints through
``asdict`` and the pure-Python encoder, which costs more than the file write itself
on the server's hot path. tests/test_bridge_smf.py checks both give the same object.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from engine.clip import CLIP_FORMAT, Clip, atomic_write


def clip_dict(clip: Clip) -> dict[str, Any]:
    """The clip JSON object (equal to ``clip.to_dict()``)."""
    return {
        "qriff_clip": CLIP_FORMAT, "key": clip.key, "scale": clip.scale, "tempo": float(clip.tempo),
        "time_signature": list(clip.time_signature), "bars": int(clip.bars),
        "steps_per_beat": int(clip.steps_per_beat), "seed": clip.seed, "model": clip.model,
        "style": dict(clip.style), "chords": list(clip.chords),
        "tracks": [{"role": t.role, "program": int(t.program),
                    "notes": [{"pitch": n.pitch, "start": n.start, "duration": n.duration, "velocity": n.velocity}
                              for n in t.notes]} for t in clip.tracks],
    }


def write_clip_json(clip: Clip, path: str | os.PathLike[str]) -> Path:
    """Write the clip JSON atomically (compact); returns the path."""
    text = json.dumps(clip_dict(clip), separators=(",", ":")) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))
