"""The engine's music options (key, scale, metre, chords...), shared by several subcommands.

The generic types (:func:`bounded_int`, :func:`bounded_float`, :func:`checked_text`) and
the Ray options live in :mod:`engine.base.options`, which the bridge and the recommender
use too. Types raise ``argparse.ArgumentTypeError`` so the parser prints one line naming
the flag, the value and what is allowed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from engine.base.errors import EngineError
from engine.base.options import bounded_float, bounded_int, checked_text
from engine.music import limits, theory
from engine.music.request import OptionError

T = TypeVar("T")


#: The flag of each request field, where it is not ``--`` plus the field with ``-`` for ``_``.
REQUEST_FLAGS = {"fmt": "--format", "count": "--count", "instruments": "--instrument"}


def build_request(make: Callable[[Mapping[str, Any]], T], values: Mapping[str, Any],
                  flags: Mapping[str, str] | None = None) -> T:
    """``make(values)`` (a request's ``from_mapping``), its OptionError naming the flag (``--bars``)
    instead of the field: the one check every front end shares, in the CLI's words."""
    try:
        return make(values)
    except OptionError as exc:
        flag = {**REQUEST_FLAGS, **(flags or {})}.get(exc.field, "--" + exc.field.replace("_", "-"))
        raise EngineError(exc.for_field(flag)) from None


key_type = checked_text(theory.parse_key)
scale_type = checked_text(theory.parse_scale)
time_signature_type = checked_text(theory.parse_time_signature)

def _default_chords_help() -> str:
    by_progression: dict[str, list[str]] = {}
    for scale, numerals in theory.DEFAULT_PROGRESSIONS.items():
        by_progression.setdefault(numerals, []).append(scale)
    return "; ".join(f"{numerals} in {', '.join(scales)}" for numerals, scales in by_progression.items())


def add_music_options(parser: argparse.ArgumentParser) -> None:
    """Key, scale, bars, tempo, metre and chords: the musical context of a clip."""
    g = parser.add_argument_group("music")
    num, den = limits.DEFAULT_TIME_SIGNATURE
    g.add_argument("--key", default=limits.DEFAULT_KEY, type=key_type,
                   help=f"tonic: C, C#/Db, ... B (default: {limits.DEFAULT_KEY})")
    g.add_argument("--scale", default=limits.DEFAULT_SCALE, type=scale_type,
                   help=f"scale or mode: {', '.join(theory.SCALE_NAMES)} (default: {limits.DEFAULT_SCALE})")
    g.add_argument("--bars", default=limits.DEFAULT_BARS, type=bounded_int(1, limits.MAX_BARS),
                   help=f"clip length in bars, 1-{limits.MAX_BARS} (default: {limits.DEFAULT_BARS})")
    g.add_argument("--tempo", default=limits.DEFAULT_TEMPO, type=bounded_float(limits.MIN_TEMPO, limits.MAX_TEMPO),
                   help=f"beats per minute, {limits.MIN_TEMPO:g}-{limits.MAX_TEMPO:g} (default: {limits.DEFAULT_TEMPO:g})")
    g.add_argument("--time-signature", default=f"{num}/{den}", type=time_signature_type,
                   help="metre: " + ", ".join(f"{a}/{b}" for a, b in theory.TIME_SIGNATURES) + f" (default: {num}/{den})")
    g.add_argument("--chords", default=None,
                   help="progression, one chord per bar, looping: symbols 'C G Am F' or numerals 'I V vi IV' "
                        f"(default, by scale: {_default_chords_help()})")
