"""Where the bridge gets its clips: the :class:`ClipSource` protocol and the real policy.

The server only needs an object with ``generate(request) -> list[Clip]`` (the signature of
:meth:`engine.runtime.policy.Policy.generate`, which takes a :class:`GenerateRequest`), a ``model_id`` and the list of models it serves.
:class:`PolicySource` is the production source: the onnxruntime policy,
loaded once (lazily, so ``qriff serve --help`` stays fast).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from engine.music.clip import Clip
from engine.music.request import GenerateRequest

log = logging.getLogger(__name__)


@runtime_checkable
class ClipSource(Protocol):
    """Anything that generates clips with :meth:`engine.runtime.policy.Policy.generate`'s signature."""

    @property
    def model_id(self) -> str:
        """Id of the model that generates the clips (reported by ``/qriff/get/model``)."""
        ...

    def models(self) -> list[str]:
        """Model ids the server can generate with (``/qriff/list/models``)."""
        ...

    def generate(self, request: GenerateRequest | None = None, /, **options: Any) -> list[Clip]:
        """``request.count`` clips (keyword options build the request, as for the policy);
        EngineError subclasses on what depends on the model (its roles, its style terms)."""
        ...


class PolicySource:
    """The onnxruntime melody policy as a clip source.

    ``path`` is an ONNX model file (None: the model shipped with qriff). Loading
    happens on first use or in :meth:`load`, and the session is shared by the worker
    threads (onnxruntime sessions are thread-safe for ``run``).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self._path = Path(path) if path is not None else None
        self._policy: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the model now (raises engine.base.errors.ModelError if it is missing or corrupt)."""
        with self._lock:
            if self._policy is None:
                from engine import Policy

                self._policy = Policy.load(self._path)
                log.info("loaded model %s", self.model_id)

    @property
    def policy(self) -> Any:
        """The loaded :class:`engine.runtime.policy.Policy`."""
        if self._policy is None:
            self.load()
        return self._policy

    @property
    def model_id(self) -> str:
        if self._policy is None:
            return str(self._path or "default")
        return str(self._policy.info.model_id)

    def models(self) -> list[str]:
        """The loaded model first, then every other model engine.available_models() finds."""
        from engine import available_models

        ids = [self.model_id] + [entry.model_id for entry in available_models()]
        return list(dict.fromkeys(ids))

    def generate(self, request: GenerateRequest | None = None, /, **options: Any) -> list[Clip]:
        return list(self.policy.generate(request, **options))
