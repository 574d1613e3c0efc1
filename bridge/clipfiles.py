"""The server's clip folder and the clip JSON it writes beside each .mid.

:class:`ClipFolder` keeps the output folder's bookkeeping: the request numbers clips are
named after, the clips of the last generate, and clip names from the network resolved
inside the folder (nothing from the network chooses a path).

:func:`write_clip_json` writes :meth:`engine.Clip.to_dict` (the contract of
docs/clip-json.md) compactly with the C JSON encoder, through the engine's one
atomic write (:func:`engine.base.files.atomic_write`). tests/bridge/test_clipfiles.py reads it back.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from bridge.errors import RequestError
from engine.base.files import atomic_write, highest_number
from engine.music.clip import Clip


def write_clip_json(clip: Clip, path: str | os.PathLike[str]) -> Path:
    """Write the clip JSON atomically (compact); returns the path."""
    return atomic_write(path, (json.dumps(clip.to_dict(), separators=(",", ":")) + "\n").encode("utf-8"))


class ClipFolder:
    """The output folder (an absolute path): clip numbering, the last generate's clips, names resolved inside it.

    Thread-safe: the workers, the writer threads and the receive loop share one.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._number = 0
        self._last: list[str] = []

    def continue_numbering(self) -> None:
        """Number the next clips after the highest request number already in the folder.

        A server restarted on the same folder (the default one is shared by every run)
        must never write over the clips of an earlier session.
        """
        highest = highest_number(self.path, r"(\d+)-\d+\.(?:mid|json)")
        with self._lock:
            self._number = max(self._number, highest)

    def next_number(self) -> int:
        """The request number of the next generate's clips (``<number>-<variation>.mid``)."""
        with self._lock:
            self._number += 1
            return self._number

    def remember(self, names: list[str]) -> None:
        """``names``: the clips of the generate just delivered, the default of a later render or push."""
        with self._lock:
            self._last = list(names)

    def default_clip(self, name: str | None) -> str:
        """``name`` when a request gave one, else the first clip of the last generate; RequestError if none."""
        if name:
            return name
        with self._lock:
            last = list(self._last)
        if not last:
            raise RequestError("no clip given and none generated yet: send /qriff/generate first or name a clip "
                               "with 'clip NAME'", code="not_found")
        return last[0]

    def clip_path(self, name: str) -> Path:
        """The clip file ``name`` of the folder; RequestError if it is outside it or missing."""
        path = (self.path / name).resolve()
        if path.parent != self.path:
            raise RequestError(f"clip {name!r} is not a file of the output folder {self.path}", code="bad_value")
        if not path.is_file():
            raise RequestError(f"clip {name!r} does not exist in {self.path} (use a name from a "
                               "/qriff/clip/end reply)", code="not_found")
        return path
