"""Where the bridge gets its clips: the :class:`ClipSource` protocol and the real policies.

The server only needs an object that generates clips with a model (``generate(request,
model=ID) -> list[Clip]``, :meth:`engine.runtime.policy.Policy.generate` on that model),
says which model is current (``model_id``), lists the models it can switch to and
switches (``select``). :class:`PolicySource` is the production source: onnxruntime
policies, loaded on first use (so ``qriff serve --help`` stays fast) and kept in a small
cache, so switching back to a model is instant.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from bridge.errors import BridgeError
from engine.base.errors import ModelError
from engine.music.clip import Clip
from engine.music.request import GenerateRequest

log = logging.getLogger(__name__)

#: Policies a :class:`PolicySource` keeps loaded (the current one included). The shipped model
#: takes about 4 MB on disk and a few times that in onnxruntime.
CACHED_MODELS = 4


@runtime_checkable
class ClipSource(Protocol):
    """Anything that generates clips with a chosen model, as :class:`PolicySource` does."""

    @property
    def model_id(self) -> str:
        """Id of the current model: the one new requests generate with (``/qriff/get/model``)."""
        ...

    def models(self) -> list[str]:
        """Model ids the server can switch to (``/qriff/list/models``), read afresh."""
        ...

    def style_terms(self, model: str) -> tuple[str, ...]:
        """The style terms ``model`` reads; BridgeError as :meth:`select`."""
        ...

    def select(self, model: str) -> str:
        """Make ``model`` the current model; returns its id. BridgeError ``not_found`` for an id that is
        not listed, ``model`` for a file that does not load; the current model then stays."""
        ...

    def generate(self, request: GenerateRequest | None = None, /, *, model: str | None = None,
                 **options: Any) -> list[Clip]:
        """``request.count`` clips from ``model`` (None: the current one); keyword options build the
        request, as for the policy. EngineError subclasses on what depends on the model (its roles,
        its style terms)."""
        ...


class PolicySource:
    """onnxruntime melody policies as a clip source.

    ``path`` is the first current model: an ONNX file, a model id of
    :func:`engine.available_models`, or None for the model shipped with qriff. Other
    models are found by id in :func:`engine.available_models` (the shipped models and the
    user's models folder, read again whenever the list is asked for), so a model ``qriff
    tune`` writes while the server runs can be selected without a restart. At most
    ``cache_size`` policies stay loaded, the current one always among them (one more for a
    moment when a queued request needs a model dropped since it was queued); onnxruntime
    sessions are shared by the worker threads (they are thread-safe for ``run``).
    """

    def __init__(self, path: str | Path | None = None, cache_size: int = CACHED_MODELS) -> None:
        self._path = path
        self.cache_size = max(1, cache_size)
        self._current: Any = None
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._pinned: dict[str, Path] = {}  # the first model, when its file is not in available_models
        self._listed: dict[str, Path] = {}  # id -> file, from the latest reading of the models folder
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ loading
    def load(self) -> None:
        """Load the first model now (raises engine.base.errors.ModelError if it is missing or corrupt)."""
        with self._lock:
            if self._current is not None:
                return
        from engine import Policy

        policy = Policy.load(self._path)
        with self._lock:
            if self._current is None:
                self._current = policy
                self._remember(policy)
                if policy.info.model_id not in self._scan():
                    self._pinned[policy.info.model_id] = Path(policy.path)
                log.info("loaded model %s", policy.info.model_id)

    @property
    def policy(self) -> Any:
        """The current :class:`engine.runtime.policy.Policy`."""
        if self._current is None:
            self.load()
        return self._current

    @property
    def model_id(self) -> str:
        return str(self.policy.info.model_id)

    def _scan(self) -> dict[str, Path]:
        """Read the models folder again (engine.available_models reads a file only when it changed)."""
        from engine import available_models

        self._listed = {entry.model_id: entry.path for entry in available_models()}
        return self._listed

    def _remember(self, policy: Any) -> None:
        """Put ``policy`` in the cache (lock held), dropping the least recently used others; never the
        current policy, nor ``policy`` itself (it is about to be used)."""
        new = policy.info.model_id
        self._cache[new] = policy
        self._cache.move_to_end(new)
        keep = {new} | ({self._current.info.model_id} if self._current is not None else set())
        for old in list(self._cache):
            if len(self._cache) <= self.cache_size:
                break
            if old not in keep:
                del self._cache[old]

    def _policy(self, model: str) -> Any:
        """The policy of ``model``, from the cache or loaded from its file; BridgeError as :meth:`select`."""
        if self._current is None:
            self.load()  # the first model is loaded before any other
        with self._lock:
            cached = self._cache.get(model)
            if cached is not None:
                self._cache.move_to_end(model)
                return cached
            path = self._pinned.get(model) or self._listed.get(model)
        if path is None:
            path = self._scan().get(model)
        if path is None:
            raise BridgeError(f"model {model!r} is not known: allowed are {', '.join(self.models())} (see "
                              "/qriff/list/models)", code="not_found")
        from engine import Policy

        try:
            policy = Policy.load(path)
        except (ModelError, OSError) as exc:
            raise BridgeError(f"model {model!r} could not be loaded from {str(path)!r} ({exc}); still generating "
                              f"with {self.model_id!r}", code="model") from None
        if policy.info.model_id != model:
            raise BridgeError(f"model {model!r}: the file {str(path)!r} now holds model "
                              f"{policy.info.model_id!r}; still generating with {self.model_id!r} (list the models "
                              "again)", code="model")
        log.info("loaded model %s from %s", model, path)
        with self._lock:
            self._remember(policy)
        return policy

    # ------------------------------------------------------------------ the source
    def models(self) -> list[str]:
        """The first model when its file is outside the models folder, then every model
        engine.available_models() finds (the folder read again), then the current model if
        its file has gone since it was loaded."""
        current = self.model_id
        with self._lock:
            pinned = list(self._pinned)
        return list(dict.fromkeys([*pinned, *self._scan(), current]))

    def style_terms(self, model: str) -> tuple[str, ...]:
        return tuple(self._policy(model).info.style_terms)

    def select(self, model: str) -> str:
        policy = self._policy(model)
        with self._lock:
            self._current = policy
            self._remember(policy)  # the old current one may go now
        log.info("generating with model %s", model)
        return model

    def generate(self, request: GenerateRequest | None = None, /, *, model: str | None = None,
                 **options: Any) -> list[Clip]:
        policy = self.policy if model is None else self._policy(model)
        return list(policy.generate(request, **options))
