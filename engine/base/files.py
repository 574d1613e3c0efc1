"""Writing files so that a reader never sees half of one.

Every file qriff writes (clips, models, stems, checkpoints, reports) goes to a
temporary name beside its final name and is renamed into place when complete
(``os.replace`` is atomic on one file system): an interrupted or failed write leaves
the old file, or nothing, under the final name.

The temporary file is created with ``os.open(..., 0o666)``, so the final file gets the
permissions ``open()`` would give it under the process umask, without reading the
umask (``os.umask`` changes it for every thread while it is read). Names carry the
process, the thread and a counter, so concurrent writers never share one.

Example::

    atomic_write("out/clip.json", clip.to_json())
    atomic_write("out/roll.png", lambda tmp: figure.savefig(tmp, format="png"))  # a writer wanting a path
"""

from __future__ import annotations

import itertools
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

__all__ = ["StagedFiles", "atomic_write", "highest_number"]

_counter = itertools.count()
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def _create_temporary(final: Path) -> tuple[Path, int]:
    """A new, empty temporary file beside ``final`` and its open descriptor.

    The folder is made only when it is missing (one failed ``open`` instead of a
    ``mkdir`` on every call: the OSC bridge writes a few files per request).
    """
    while True:
        tmp = final.with_name(f".{final.name}.{os.getpid()}-{threading.get_ident()}-{next(_counter)}.part")
        try:
            return tmp, os.open(tmp, _FLAGS, 0o666)
        except FileNotFoundError:
            final.parent.mkdir(parents=True, exist_ok=True)
            return tmp, os.open(tmp, _FLAGS, 0o666)
        except FileExistsError:  # left behind by a killed process that had our pid: take the next name
            continue


def _discard(tmp: Path) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


def atomic_write(path: str | os.PathLike[str], data: bytes | str | Callable[[Path], object], *,
                 replace: bool = True) -> Path:
    """Write ``path`` atomically; returns it as a ``Path``.

    ``data`` is the content (``str`` is written as UTF-8) or a function that writes a
    file given its path (``lambda tmp: figure.savefig(tmp)``); the function must write
    to exactly that path. A missing folder is made. On any error the temporary file is
    removed and the error propagates.

    ``replace=False`` never replaces an existing file: the complete file is linked
    into place (``os.link`` fails atomically when the name exists), and
    ``FileExistsError`` is raised if something, even another process's file written
    a moment ago, holds the name.
    """
    final = Path(path)
    tmp, fd = _create_temporary(final)
    try:
        if callable(data):
            os.close(fd)
            fd = -1
            data(tmp)
        else:
            view = memoryview(data.encode("utf-8") if isinstance(data, str) else data)
            while view:
                view = view[os.write(fd, view):]
            os.close(fd)
            fd = -1
        if replace:
            os.replace(tmp, final)
        else:
            os.link(tmp, final)
            _discard(tmp)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        _discard(tmp)
        raise
    return final


def highest_number(folder: str | os.PathLike[str], pattern: str) -> int:
    """The largest number in the names of ``folder``'s entries matching ``pattern``; -1 when none (or no folder).

    ``pattern`` is a regular expression whose first group is the number, matched
    against whole names (``r"clip-(\\d+)(?:\\.mid|\\.json)?"``). New files numbered after it
    never take the name of an existing one.
    """
    rx = re.compile(pattern)
    best = -1
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return -1
    for name in names:
        m = rx.fullmatch(name)
        if m:
            best = max(best, int(m.group(1)))
    return best


class StagedFiles:
    """Several files in one folder that appear together or not at all.

    :meth:`path` hands out a temporary path for each final name; :meth:`commit` renames
    them all into place, :meth:`abort` removes them.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self._staged: list[tuple[Path, Path]] = []  # (temporary, final)

    def path(self, final_name: str) -> Path:
        """A temporary path to write ``final_name``'s content to."""
        tmp, fd = _create_temporary(self.folder / final_name)
        os.close(fd)
        self._staged.append((tmp, self.folder / final_name))
        return tmp

    def commit(self) -> list[Path]:
        """Rename every staged file to its final name; returns the final paths."""
        done = [final for _, final in self._staged]
        for tmp, final in self._staged:
            os.replace(tmp, final)
        self._staged.clear()
        return done

    def abort(self) -> None:
        """Remove every staged file not yet committed."""
        for tmp, _ in self._staged:
            _discard(tmp)
        self._staged.clear()
