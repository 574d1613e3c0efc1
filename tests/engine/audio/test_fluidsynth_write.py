"""The one place qriff reaches into pyfluidsynth: libfluidsynth's float writer.

pyfluidsynth's public API renders 16-bit integers only; qriff renders float32 through
``fluidsynth._fl.fluid_synth_write_float`` on ``Synth.synth``. If a pyfluidsynth release
renames either, these tests fail (and :func:`engine.audio.instruments.fluid_write_float`
raises an InstrumentError naming the fix) instead of SoundFont renders crashing.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest

from engine.audio import instruments
from tests.conftest import ROOT

fluidsynth = pytest.importorskip("fluidsynth", exc_type=ImportError)


def test_pyfluidsynth_still_exposes_the_float_writer_and_the_synth_handle():
    assert isinstance(getattr(fluidsynth, "_fl", None), ctypes.CDLL), \
        "pyfluidsynth no longer loads libfluidsynth as fluidsynth._fl: update engine.audio.instruments.fluid_write_float"
    write = instruments.fluid_write_float()
    # As the renderer makes it: reverb and chorus off. With them on, a synth with no SoundFont
    # can write -inf from its effect buffers (seen under CI=true, depending on memory layout).
    synth = fluidsynth.Synth(samplerate=44100.0, **{"synth.reverb.active": 0, "synth.chorus.active": 0})
    try:
        assert isinstance(synth.synth, int | ctypes.c_void_p), "Synth.synth is no longer the fluid_synth_t handle"
        left, right = np.ones(64, np.float32), np.ones(64, np.float32)
        assert write(synth.synth, 64, left.ctypes.data, 0, 1, right.ctypes.data, 0, 1) == 0
        # It wrote (the ones are gone) silence (FluidSynth may keep a -1e-8 offset against denormals).
        assert np.abs(left).max() < 1e-5 and np.abs(right).max() < 1e-5, "a silent synth did not write silence"
    finally:
        synth.delete()


def test_a_missing_float_writer_is_one_clear_error(monkeypatch):
    class Library:  # a pyfluidsynth whose library lacks the function
        pass

    monkeypatch.setattr(fluidsynth, "_fl", Library())
    with pytest.raises(instruments.InstrumentError, match=r"no longer exposes libfluidsynth.*pip install"):
        instruments.fluid_write_float()


def test_fluidsynth_is_imported_quietly_under_ci():
    """pyfluidsynth prints where it found libfluidsynth when CI is set; qriff's stdout stays clean."""
    code = "from engine.audio.instruments import import_fluidsynth; import_fluidsynth(); print('done')"
    env = {**os.environ, "CI": "true", "PYTHONPATH": str(ROOT)}
    loud = subprocess.run([sys.executable, "-c", "import fluidsynth"], env=env, capture_output=True, text=True,
                          timeout=60)
    quiet = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert quiet.stdout == "done\n"
    assert loud.stdout.strip(), "control: pyfluidsynth printed nothing under CI, so this test shows nothing"
