"""Argument types and option groups shared by several subcommands.

Types raise ``argparse.ArgumentTypeError`` so the parser prints one line naming the
flag, the value and what is allowed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from engine.errors import TheoryError
from engine.music import theory


def bounded_int(lo: int, hi: int) -> Callable[[str], int]:
    """An int type accepting ``lo <= value <= hi``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer (allowed: {lo}-{hi})") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is out of range (allowed: {lo}-{hi})")
        return value

    parse.__name__ = "int"
    return parse


def bounded_float(lo: float, hi: float) -> Callable[[str], float]:
    """A finite float type accepting ``lo <= value <= hi``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number (allowed: {lo:g}-{hi:g})") from None
        if not lo <= value <= hi:  # also rejects NaN
            raise argparse.ArgumentTypeError(f"{text} is out of range (allowed: {lo:g}-{hi:g})")
        return value

    parse.__name__ = "float"
    return parse


def _theory_type(fn: Callable[[str], object]) -> Callable[[str], object]:
    def parse(text: str) -> object:
        try:
            fn(text)
        except TheoryError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    parse.__name__ = fn.__name__
    return parse


key_type = _theory_type(theory.parse_key)
scale_type = _theory_type(theory.parse_scale)
time_signature_type = _theory_type(theory.parse_time_signature)

#: Limits that every front end (CLI, OSC, Python API) enforces.
MAX_BARS = 16
MAX_COUNT = 64
MAX_TEMPERATURE = 5.0


def add_music_options(parser: argparse.ArgumentParser) -> None:
    """Key, scale, bars, tempo, metre and chords: the musical context of a clip."""
    g = parser.add_argument_group("music")
    g.add_argument("--key", default="C", type=key_type, help="tonic: C, C#/Db, ... B (default: C)")
    g.add_argument("--scale", default="major", type=scale_type,
                   help=f"scale or mode: {', '.join(theory.SCALE_NAMES)} (default: major)")
    g.add_argument("--bars", default=4, type=bounded_int(1, MAX_BARS), help=f"clip length in bars, 1-{MAX_BARS} (default: 4)")
    g.add_argument("--tempo", default=120.0, type=bounded_float(20, 300), help="beats per minute, 20-300 (default: 120)")
    g.add_argument("--time-signature", default="4/4", type=time_signature_type,
                   help="metre: " + ", ".join(f"{a}/{b}" for a, b in theory.TIME_SIGNATURES) + " (default: 4/4)")
    g.add_argument("--chords", default=None,
                   help="progression, one chord per bar, looping: symbols 'C G Am F' or numerals 'I V vi IV' "
                        "(default: I V vi IV in major-like scales, i VI III VII in minor)")
