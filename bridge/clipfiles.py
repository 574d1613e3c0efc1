"""Writing the server's clip files fast: an atomic write without directory probing, and the JSON.

* :func:`atomic_bytes`: temporary file, then rename, like ``engine.music.clip.atomic_write``
  but without creating the parent folder on every call (the server creates its output
  folder once) and without ``mkstemp``'s retries: on a busy disk every directory
  operation costs milliseconds, and writer threads creating files in one folder queue
  up on its lock.
* :func:`write_clip_json`: the same object as :meth:`engine.music.clip.Clip.to_dict` (the
  design.md contract), built without ``dataclasses.asdict`` and serialized compactly by
  the C JSON encoder. tests/test_bridge_smf.py checks both give the same object.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from engine.music.clip import Clip


def atomic_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it (the folder is made only if missing).

    An interrupted write leaves nothing under the final name. Returns the path.
    """
    final = Path(path)
    tmp = final.with_name(f".{final.name}.{os.getpid()}-{threading.get_ident()}.part")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        fd = os.open(tmp, flags, 0o644)
    except FileNotFoundError:  # the folder was removed while the server ran: make it again
        final.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, flags, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return final


def write_clip_json(clip: Clip, path: str | os.PathLike[str]) -> Path:
    """Write the clip JSON atomically (compact); returns the path."""
    return atomic_bytes(path, (json.dumps(clip.to_dict(), separators=(",", ":")) + "\n").encode("utf-8"))
