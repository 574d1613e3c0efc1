"""argparse option types and option groups shared by every front end (engine, bridge, recommender).

Types raise ``argparse.ArgumentTypeError`` so the parser prints one line naming the
flag, the value and what is allowed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from engine.base.cluster import CONNECT_TIMEOUT_S
from engine.base.errors import QriffError

__all__ = ["add_ray_options", "bounded_float", "bounded_int", "checked_text"]


#: The highest random seed anywhere in qriff: 2**31 - 1, the largest an OSC int carries, so a
#: seed set in one front end (CLI, OSC, a batch spec) is valid in every other.
#: (:data:`engine.music.limits.MAX_SEED` is this value.)
MAX_SEED = 2**31 - 1


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
    QriffError ``check`` raises becomes argparse's one-line error."""

    def parse(text: str) -> str:
        try:
            check(text)
        except QriffError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    parse.__name__ = name or check.__name__
    return parse


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
