"""engine.base.files: one atomic write for every file qriff writes."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from engine.base.files import StagedFiles, atomic_write


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_bytes_text_and_writer_functions(tmp_path):
    assert atomic_write(tmp_path / "a.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert atomic_write(tmp_path / "b.txt", "héllo\n").read_text("utf-8") == "héllo\n"
    path = atomic_write(tmp_path / "c.txt", lambda tmp: Path(tmp).write_text("from a writer"))
    assert path == tmp_path / "c.txt" and path.read_text() == "from a writer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.txt", "c.txt"]


def test_a_missing_folder_is_made_and_a_file_is_replaced_whole(tmp_path):
    path = atomic_write(tmp_path / "x" / "y" / "clip.json", "{}")
    assert path.read_text() == "{}"
    atomic_write(path, "new")
    assert path.read_text() == "new" and [p.name for p in path.parent.iterdir()] == ["clip.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = atomic_write(tmp_path / "keep.txt", "old")

    def boom(tmp):
        Path(tmp).write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(path, boom)
    monkeypatch.setattr(os, "write", lambda fd, data: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(OSError, match="I/O error"):
        atomic_write(path, b"bytes")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_final_files_get_the_umask_permissions_from_many_threads(tmp_path):
    old = os.umask(0o027)
    try:
        errors: list[BaseException] = []

        def writer(i: int) -> None:
            try:
                for j in range(40):
                    data = f"{i}-{j}".encode()
                    if j % 2:
                        atomic_write(tmp_path / f"f{i}-{j}", data)
                    else:
                        atomic_write(tmp_path / f"f{i}-{j}", lambda tmp, d=data: Path(tmp).write_bytes(d))
                    atomic_write(tmp_path / "shared", data)  # all threads replace one file too
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        os.umask(old)
    assert not errors
    files = sorted(tmp_path.iterdir())
    assert len(files) == 8 * 40 + 1, "no temporary file is left behind"
    assert {_mode(p) for p in files} == {0o640}
    assert (tmp_path / "f3-7").read_bytes() == b"3-7"


def test_staged_files_appear_together_or_not_at_all(tmp_path):
    staged = StagedFiles(tmp_path)
    staged.path("a.wav").write_bytes(b"a")
    staged.path("b.wav").write_bytes(b"b")
    assert not (tmp_path / "a.wav").exists()
    assert staged.commit() == [tmp_path / "a.wav", tmp_path / "b.wav"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "b.wav"]
    staged.path("c.wav").write_bytes(b"c")
    staged.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "b.wav"]
