"""Argument types and option groups shared by several subcommands.

Types raise ``argparse.ArgumentTypeError`` so the parser prints one line naming the
flag, the value and what is allowed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from engine.errors import EngineError
from engine.music import limits, theory
from engine.music.request import OptionError
from engine.scaleout import CONNECT_TIMEOUT_S

T = TypeVar("T")


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


def checked_text(check: Callable[[str], object], name: str | None = None) -> Callable[[str], str]:
    """An argparse type that keeps the text once ``check(text)`` accepts it; the
    EngineError ``check`` raises becomes argparse's one-line error."""

    def parse(text: str) -> str:
        try:
            check(text)
        except EngineError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    parse.__name__ = name or check.__name__
    return parse


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


def add_ray_options(parser: argparse.ArgumentParser,
                    workers_help: str = "CPUs of the local Ray (default: all cores); ignored with --ray-address"
                    ) -> argparse._ArgumentGroup:
    """``--ray-address`` and ``--workers``: where the work runs."""
    g = parser.add_argument_group("scale-out (Ray; pip install 'qriff[ray]')")
    g.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                   help="join a running Ray cluster (HOST:PORT of 'ray start --head', ray://HOST:PORT or auto); "
                        f"an address that does not answer within {CONNECT_TIMEOUT_S:g} s is an error. "
                        "Default: start a local Ray")
    g.add_argument("--workers", type=bounded_int(1, 4096), default=None, metavar="N", help=workers_help)
    return g
