"""qriff engine: music theory, the melody MDP and its rewards, the corpus prior, the
evaluation suite, DQN training and ONNX export, and the onnxruntime policy.

The runtime path (``Policy``, clips, rendering) never imports torch.
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import TYPE_CHECKING, Any

from engine import _moved
from engine.errors import EngineError
from engine.music.clip import Clip, Note, Track, load_clip

__version__ = "0.1.0"

_moved.install()  # engine.env, engine.render, ...: the 0.1 paths still import

if os.environ.get("CI"):
    # pyfluidsynth (imported by pretty_midi) prints where it found libfluidsynth to
    # stdout when CI is set, which would corrupt qriff's own output there. Import it
    # once, quietly; later imports reuse the module.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(ImportError, OSError):
        import fluidsynth  # noqa: F401

__all__ = ["Clip", "EngineError", "Note", "Policy", "Track", "__version__", "load_clip"]

if TYPE_CHECKING:
    from engine.runtime.policy import Policy


def __getattr__(name: str) -> Any:
    # Policy pulls in onnxruntime: load it only when asked for.
    if name == "Policy":
        from engine.runtime.policy import Policy

        return Policy
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
