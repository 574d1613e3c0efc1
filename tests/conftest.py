"""Shared fixtures. ``require_tool`` skips a test when a system tool is missing on a
developer machine, and fails it under CI (``CI=true``), where .ci/run installs them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str) -> None:
    """Skip (developer machine) or fail (CI) because ``what`` is not installed."""
    if IN_CI:
        pytest.fail(f"{what} is required in CI but missing (.ci/system-deps should install it)")
    pytest.skip(f"{what} not installed")


@pytest.fixture
def require_tool():
    """Call with an executable name; returns its path or skips/fails."""

    def need(name: str) -> str:
        path = shutil.which(name)
        if not path:
            missing(f"tool {name!r}")
        return path  # type: ignore[return-value]

    return need


def run_qriff(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """Run the ``qriff`` CLI in a subprocess (as a user would) and capture its output."""
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=kw.pop("cwd", ROOT), **kw)


@pytest.fixture
def qriff():
    return run_qriff


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private corpus cache folder (``QRIFF_CACHE_DIR``) for one test module."""
    path = tmp_path_factory.mktemp("qriff-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QRIFF_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="session", autouse=True)
def _private_feedback_store(tmp_path_factory):
    """No test (nor a CLI it starts) records verdicts in the real user data folder."""
    path = tmp_path_factory.mktemp("feedback") / "feedback.sqlite"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QRIFF_FEEDBACK_DB", str(path))
        yield path
