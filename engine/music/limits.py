"""Every limit and default that qriff's front ends share, defined once.

The Python API (:meth:`engine.runtime.policy.Policy.generate`), the ``qriff`` command
line, the OSC bridge's property table and the renderer all read these values, so a
request allowed in one place is allowed in all of them. Imports nothing of qriff but engine.base.
"""

from __future__ import annotations

from engine.base import options as _base_options

# ----------------------------------------------------------------- a generated clip

#: Longest clip, in bars, that the engine writes (also bounds a primer plus its continuation).
MAX_BARS = 16
#: Bars of a clip when none are asked for.
DEFAULT_BARS = 4
#: Variations one ``generate`` call may ask for.
MAX_COUNT = 64
#: Highest seed (variation ``i`` of a request uses ``seed + i``, so ``seed + count - 1`` at most):
#: 2**31 - 1, the largest seed every front end can carry (an OSC int is 32-bit).
MAX_SEED = _base_options.MAX_SEED
#: Highest sampling temperature (0 always takes the best token).
MAX_TEMPERATURE = 5.0
DEFAULT_TEMPERATURE = 1.0
#: Tempo a clip may be generated at, beats per minute (inclusive).
MIN_TEMPO = 20.0
MAX_TEMPO = 300.0
DEFAULT_TEMPO = 120.0
DEFAULT_KEY = "C"
DEFAULT_SCALE = "major"
DEFAULT_TIME_SIGNATURE = (4, 4)

# ------------------------------------------------------------------- a clip file

#: Tempo a clip read from a file (JSON or MIDI, possibly made elsewhere) may carry.
#: Wider than the generation range, so imported MIDI files keep their tempo.
MIN_FILE_TEMPO = 10.0
MAX_FILE_TEMPO = 400.0

# ---------------------------------------------------------------------- rendering

#: Sample rates the renderer writes, Hz.
SAMPLE_RATES = (22050, 32000, 44100, 48000, 88200, 96000)
DEFAULT_SAMPLE_RATE = 44100
#: Audio file formats and the bit depths each takes (``32f``: 32-bit float).
AUDIO_FORMATS: dict[str, tuple[str, ...]] = {"wav": ("16", "24", "32f"), "flac": ("16", "24")}
DEFAULT_AUDIO_FORMAT = "wav"
BIT_DEPTHS = ("16", "24", "32f")
DEFAULT_BIT_DEPTH = "24"
#: Effect preset used when none is named.
DEFAULT_PRESET = "studio"
