"""qriff engine: melodies from deep Q-learning, in layers (see docs, Development).

The public API other packages (the OSC bridge, the recommender) and users build on,
each loaded on first use (PEP 562), so ``import engine`` costs nothing:

* :class:`Clip`, :class:`Track`, :class:`Note`, :func:`load_clip`: the clip and its files;
* :class:`Policy`, :func:`available_models`, :class:`ModelEntry`: the onnxruntime policy
  and the models it can load;
* :mod:`limits <engine.music.limits>`: every limit and default the front ends share;
* :func:`atomic_write`, :class:`StagedFiles`: writing files a reader never sees half of;
* :func:`midi_bytes`, :func:`write_midi`: clips as Standard MIDI Files;
* :class:`EngineError`: the base of every error the engine raises on bad input.

The runtime path (``Policy``, clips, rendering) never imports torch. The generic pieces
(files, errors, option types, the Ray connection, DQN building blocks) live in
:mod:`engine.base`, which imports nothing else of qriff.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_PUBLIC = {
    "Clip": "engine.music.clip",
    "Note": "engine.music.clip",
    "Track": "engine.music.clip",
    "load_clip": "engine.music.clipfile",
    "midi_bytes": "engine.music.midi",
    "write_midi": "engine.music.midi",
    "limits": "engine.music.limits",
    "atomic_write": "engine.base.files",
    "StagedFiles": "engine.base.files",
    "EngineError": "engine.base.errors",
    "ModelEntry": "engine.runtime",
    "Policy": "engine.runtime",
    "available_models": "engine.runtime",
}

__all__ = ["Clip", "EngineError", "ModelEntry", "Note", "Policy", "StagedFiles", "Track", "__version__",
           "atomic_write", "available_models", "limits", "load_clip", "midi_bytes", "write_midi"]

if TYPE_CHECKING:
    from engine.base.errors import EngineError
    from engine.base.files import StagedFiles, atomic_write
    from engine.music import limits
    from engine.music.clip import Clip, Note, Track
    from engine.music.clipfile import load_clip
    from engine.music.midi import midi_bytes, write_midi
    from engine.runtime import ModelEntry, Policy, available_models


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = importlib.import_module(module) if module == f"engine.music.{name}" else \
        getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return __all__
