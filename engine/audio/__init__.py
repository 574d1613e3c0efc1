"""Audio: clips rendered to stems (``render``) with built-in voices (``voices``), SoundFont
and VST3 instruments (``instruments``), effect presets (``effects``) and piano-roll
pictures (``pianoroll``). Builds on :mod:`engine.music` only."""
