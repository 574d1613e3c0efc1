"""``make test``'s documentation build fails on a broken link: its own command, run on a copy
of the pages with one broken link, must fail (``mkdocs build --strict --quiet`` would not: quiet
hides the warnings that strict turns into a failure)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _make_docs_command() -> list[str]:
    """The mkdocs command of the Makefile's test target, with this environment's mkdocs."""
    line = next(text.strip() for text in (ROOT / "Makefile").read_text().splitlines()
                if "mkdocs build" in text and not text.strip().startswith("#"))
    words = line.split()
    i = next(k for k, w in enumerate(words) if w.endswith("/mkdocs"))
    mkdocs = Path(sys.executable).parent / "mkdocs"
    if not mkdocs.exists():
        if os.environ.get("CI"):
            pytest.fail(f"mkdocs is not installed beside {sys.executable}: pip install -e '.[docs]'")
        pytest.skip("mkdocs is not installed (the docs extra)")
    return [str(mkdocs), *words[i + 1:]]


def _copy(tmp: Path) -> Path:
    site = tmp / "repo"
    site.mkdir()
    shutil.copytree(ROOT / "docs", site / "docs")
    for name in ("mkdocs.yml", "README.md"):  # README: the pages include its drawing of the layers
        shutil.copy(ROOT / name, site / name)
    return site


def _build(command: list[str], where: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(command, cwd=where, env=env, capture_output=True, text=True, timeout=300)


def test_the_docs_build_of_make_test_fails_on_a_broken_link_and_passes_without(tmp_path):
    command = _make_docs_command()
    assert "--strict" in command and "--quiet" not in command and "-q" not in command
    repo = _copy(tmp_path)
    good = _build(command, repo)
    assert good.returncode == 0, good.stderr[-2000:]
    page = repo / "docs" / "taste.md"
    page.write_text(page.read_text() + "\n[a page that is not there](nosuch.md)\n")
    bad = _build(command, repo)
    assert bad.returncode != 0 and "nosuch.md" in bad.stderr, bad.stderr[-2000:]
