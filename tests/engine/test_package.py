"""``import engine`` loads nothing until asked; every public name resolves; one error base for all of qriff."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import engine
from bridge.errors import BridgeError
from engine.base.errors import EngineError, QriffError
from recommender.errors import RecommenderError
from tests.conftest import ROOT


def test_import_engine_loads_nothing_until_a_name_is_used():
    code = ("import sys, engine\n"
            "loaded = sorted(m for m in sys.modules if m.startswith('engine.') or m in "
            "('numpy', 'onnxruntime', 'mido', 'fluidsynth', 'pretty_midi'))\n"
            "assert loaded == [], loaded\n"
            "engine.Clip\n"
            "assert 'engine.music.clip' in sys.modules and 'onnxruntime' not in sys.modules\n"
            "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "CI": "true"})
    assert r.returncode == 0 and r.stdout == "ok\n", r.stdout + r.stderr


@pytest.mark.parametrize("name", engine.__all__)
def test_every_public_name_resolves(name):
    value = getattr(engine, name)
    assert value is not None
    if name == "limits":
        assert value.__name__ == "engine.music.limits"


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'nosuch'"):
        engine.nosuch  # noqa: B018


@pytest.mark.parametrize("error", [EngineError, BridgeError, RecommenderError])
def test_every_package_error_is_a_qriff_error(error):
    assert issubclass(error, QriffError)


def test_the_cli_answers_any_qriff_error_with_one_line_and_status_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "engine.cli", "rec", "next", "--db", str(tmp_path / "none.db"), "--user", "u1"],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("qriff rec: error: database ") and "does not exist" in r.stderr  # a RecommenderError
    assert "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1
