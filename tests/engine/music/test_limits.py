"""engine.music.limits is the one definition the CLI, the policy and the renderer read."""

from __future__ import annotations

import argparse

import pytest

from engine import Policy, limits
from engine.audio.render import RenderError, write_audio
from engine.base.errors import EngineError
from engine.cli import build_parser


def _option(parser: argparse.ArgumentParser, command: str, flag: str) -> argparse.Action:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return next(a for a in sub._actions if flag in a.option_strings)


def test_the_cli_reads_the_limits():
    parser = build_parser()
    assert _option(parser, "render", "--sample-rate").choices == limits.SAMPLE_RATES
    assert _option(parser, "render", "--sample-rate").default == limits.DEFAULT_SAMPLE_RATE
    assert tuple(_option(parser, "render", "--format").choices) == tuple(limits.AUDIO_FORMATS)
    assert _option(parser, "generate", "--bars").default == limits.DEFAULT_BARS
    bars = _option(parser, "generate", "--bars").type
    assert bars(str(limits.MAX_BARS)) == limits.MAX_BARS
    with pytest.raises(argparse.ArgumentTypeError):
        bars(str(limits.MAX_BARS + 1))
    tempo = _option(parser, "generate", "--tempo").type
    assert tempo(str(limits.MAX_TEMPO)) == limits.MAX_TEMPO
    with pytest.raises(argparse.ArgumentTypeError):
        tempo(str(limits.MIN_TEMPO - 1))


@pytest.fixture(scope="module")
def policy():
    return Policy.load()


@pytest.mark.parametrize("kwargs", [{"bars": limits.MAX_BARS + 1}, {"count": limits.MAX_COUNT + 1},
                                    {"temperature": limits.MAX_TEMPERATURE + 0.1},
                                    {"tempo": limits.MAX_TEMPO + 1}, {"tempo": limits.MIN_TEMPO - 1}])
def test_the_policy_refuses_what_the_limits_refuse(policy, kwargs):
    with pytest.raises(EngineError, match="out of range|allowed"):
        policy.generate(**kwargs)


def test_the_policy_takes_the_edges(policy):
    clip = policy.generate(bars=1, tempo=limits.MAX_TEMPO, temperature=limits.MAX_TEMPERATURE)[0]
    assert clip.tempo == limits.MAX_TEMPO


def test_the_renderer_reads_the_limits(tmp_path):
    import numpy as np

    audio = np.zeros((2, 100), np.float32)
    for rate in limits.SAMPLE_RATES:
        write_audio(tmp_path / f"{rate}.wav", audio, rate)
    with pytest.raises(RenderError, match="sample_rate 8000 is not valid"):
        write_audio(tmp_path / "x.wav", audio, 8000)
