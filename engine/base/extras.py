"""The optional parts of qriff and the one error a missing one raises.

``pip install qriff`` is the runtime (generate, render, serve, the recommender's
``next``/``playlist``, search). Training, evaluation, SoundFonts, Ray and the service
are extras (``pyproject.toml``); code that needs one imports it through :func:`require`
when it runs, so a runtime install never imports it and a user who asks for it gets one
line naming the extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from engine.base.errors import EngineError

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(EngineError, ImportError):
    """A library of an optional extra is not installed."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """``module`` imported, or MissingExtraError: ``{purpose} needs {library}, which is not installed:
    pip install 'qriff[{extra}]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        library = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] != library:
            raise  # the library is there but broken: its own error says more
        raise MissingExtraError(f"{purpose} needs {library}, which is not installed: "
                                f"pip install 'qriff[{extra}]'") from None
