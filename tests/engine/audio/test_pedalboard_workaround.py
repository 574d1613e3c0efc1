"""The one place qriff reaches into pedalboard: its parameter ignore list, during a VST3 load.

If pedalboard renames or stops consulting ``PARAMETER_NAME_REGEXES_TO_IGNORE``, these tests
fail: DPF-built VST3 instruments would then load in ~30 s instead of ~1 s.
"""

from __future__ import annotations

import inspect
import logging

import pytest
from pedalboard import _pedalboard

from engine.audio import instruments
from engine.audio.instruments import MIDI_CC_PARAMETER, PEDALBOARD_IGNORE_LIST, midi_cc_parameters_hidden


def test_pedalboard_still_has_and_consults_the_ignore_list():
    ignored = getattr(_pedalboard, PEDALBOARD_IGNORE_LIST, None)
    assert isinstance(ignored, set), (
        f"pedalboard {_pedalboard.__dict__.get('__version__', '')} has no set {PEDALBOARD_IGNORE_LIST}: "
        "update engine.audio.instruments.midi_cc_parameters_hidden (look for a public option first)")
    assert PEDALBOARD_IGNORE_LIST in inspect.getsource(_pedalboard.ExternalPlugin._get_parameters), \
        "pedalboard no longer reads the ignore list when it lists a plugin's parameters"
    assert any(p.match("MIDI CC 12") for p in ignored), "pedalboard's own JUCE pattern is gone"


def test_the_pattern_is_there_only_during_the_block():
    ignored = getattr(_pedalboard, PEDALBOARD_IGNORE_LIST)
    before = set(ignored)
    with midi_cc_parameters_hidden():
        assert MIDI_CC_PARAMETER in ignored
        with midi_cc_parameters_hidden():  # nested (a load inside a parameter change): still there
            assert MIDI_CC_PARAMETER in ignored
        assert MIDI_CC_PARAMETER in ignored
    assert ignored == before
    with pytest.raises(RuntimeError), midi_cc_parameters_hidden():
        raise RuntimeError("a failing load")
    assert ignored == before, "restored after an error too"


@pytest.mark.parametrize("name, hidden", [("MIDI Ch. 1 CC 0", True), ("MIDI Ch. 16 CC 129", True),
                                          ("Cutoff", False), ("MIDI Ch. 1 CC 7 (volume)", False)])
def test_the_pattern_matches_dpf_names_the_way_pedalboard_matches(name, hidden):
    assert bool(MIDI_CC_PARAMETER.match(name)) is hidden


def test_a_renamed_list_only_warns(monkeypatch, caplog):
    monkeypatch.delattr(_pedalboard, PEDALBOARD_IGNORE_LIST)
    with caplog.at_level(logging.WARNING, logger=instruments.__name__), midi_cc_parameters_hidden():
        pass
    assert "load slowly" in caplog.text
