"""qriff engine: melodies from deep Q-learning, in layers (see README, Development).

The public API other packages (the OSC bridge, the recommender) and users build on:

* :class:`Clip`, :class:`Track`, :class:`Note`, :func:`load_clip`: the clip and its files;
* :class:`Policy`, :func:`available_models`: the onnxruntime policy and the models it
  can load (imported on first use: they pull in onnxruntime);
* :mod:`limits <engine.music.limits>`: every limit and default the front ends share;
* :func:`atomic_write`, :class:`StagedFiles`: writing files a reader never sees half of;
* :func:`midi_bytes`, :func:`write_midi`: clips as Standard MIDI Files;
* :class:`EngineError`: the base of every error the engine raises on bad input.

The runtime path (``Policy``, clips, rendering) never imports torch.
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import TYPE_CHECKING, Any

from engine import _moved
from engine.errors import EngineError
from engine.files import StagedFiles, atomic_write
from engine.music import limits
from engine.music.clip import Clip, Note, Track, load_clip
from engine.music.midi import midi_bytes, write_midi

__version__ = "0.1.0"

_moved.install()  # engine.env, engine.render, ...: the 0.1 paths still import

if os.environ.get("CI"):
    # pyfluidsynth (imported by pretty_midi) prints where it found libfluidsynth to
    # stdout when CI is set, which would corrupt qriff's own output there. Import it
    # once, quietly; later imports reuse the module.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(ImportError, OSError):
        import fluidsynth  # noqa: F401

__all__ = ["Clip", "EngineError", "ModelEntry", "Note", "Policy", "StagedFiles", "Track", "__version__",
           "atomic_write", "available_models", "limits", "load_clip", "midi_bytes", "write_midi"]

if TYPE_CHECKING:
    from engine.runtime import ModelEntry, Policy, available_models

_RUNTIME_NAMES = ("ModelEntry", "Policy", "available_models")


def __getattr__(name: str) -> Any:
    # The runtime pulls in onnxruntime: load it only when asked for.
    if name in _RUNTIME_NAMES:
        import engine.runtime

        return getattr(engine.runtime, name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
