"""The module paths of qriff 0.1, from before the engine was split into layers.

Code written against 0.1 imports ``engine.env``, ``engine.render`` and so on (README
showed several of them). Each old path resolves to the very module object that now
lives in its layer, so attributes, monkeypatches and ``isinstance`` checks behave the
same under both names. New code imports the new paths.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

#: Old module path -> where the module lives now.
MOVED = {
    "engine.theory": "engine.music.theory",
    "engine.tokens": "engine.music.tokens",
    "engine.clip": "engine.music.clip",
    "engine.observation": "engine.mdp.observation",
    "engine.styles": "engine.mdp.styles",
    "engine.rewards": "engine.mdp.rewards",
    "engine.env": "engine.mdp.env",
    "engine.prior": "engine.corpus.prior",
    "engine.rl": "engine.learn.rl",
    "engine.model": "engine.learn.model",
    "engine.train": "engine.learn.train",
    "engine.export": "engine.learn.export",
    "engine.evaluate": "engine.evaluation.evaluate",
    "engine.metrics": "engine.evaluation.metrics",
    "engine.policy": "engine.runtime.policy",
    "engine.render": "engine.audio.render",
    "engine.effects": "engine.audio.effects",
    "engine.instruments": "engine.audio.instruments",
    "engine.voices": "engine.audio.voices",
    "engine.pianoroll": "engine.audio.pianoroll",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers an old path with the module at its new path (imported once, shared)."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(MOVED[spec.name])
        spec.loader_state = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system stamped the old name's spec on the shared module: give the
        # module its own spec back, so that reloads and pickles use the real path.
        module.__spec__ = module.__spec__.loader_state


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once), ahead of any finder that could
    still see an old file at an old path (an editable install of 0.1)."""
    if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedModuleFinder())
