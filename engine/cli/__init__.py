"""The ``qriff`` command line.

Each subcommand lives in its own module with a ``register(subparsers)`` function that
adds its parser and sets ``func``. Engine commands are listed here; the bridge and the
recommender contribute theirs through the ``qriff.commands`` entry-point group, so the
engine never imports them.

Bad input exits with status 2 and one line on stderr that names the flag or value and
what is allowed; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import NoReturn

from engine.base.errors import EngineError, QriffError

log = logging.getLogger(__name__)

#: Engine subcommand modules, in the order ``qriff --help`` lists them.
ENGINE_COMMANDS = (
    "engine.cli.generate",
    "engine.cli.evaluate",
    "engine.cli.train",
    "engine.cli.export",
    "engine.cli.render",
    "engine.cli.corpus",
    "engine.cli.batch",
    "engine.cli.feedback",
    "engine.cli.tune",
)


class QriffArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``qriff generate: error: argument --bars: ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class UsageError(EngineError):
    """A flag combination or value the parser could not check by itself."""


def build_parser() -> argparse.ArgumentParser:
    """The full ``qriff`` parser with every available subcommand."""
    from engine import __version__

    parser = QriffArgumentParser(
        prog="qriff",
        description="qriff: melodies from deep Q-learning, OSC to your DAW, audio stems, and a DQN recommender.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'qriff COMMAND --help' for the flags of one command.",
    )
    parser.add_argument("--version", action="version", version=f"qriff {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=QriffArgumentParser)
    for name in ENGINE_COMMANDS:
        importlib.import_module(name).register(sub)
    for ep in sorted(entry_points(group="qriff.commands"), key=lambda e: e.name):
        try:
            ep.load()(sub)
        except ImportError as exc:  # a package whose optional dependencies are missing
            log.debug("command %s unavailable: %s", ep.name, exc)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qriff`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    _single_thread_blas()
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except QriffError as exc:  # the engine's, the bridge's and the recommender's errors
        print(f"qriff {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"qriff {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``qriff ... | head``): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _single_thread_blas() -> None:
    """Limit numpy's BLAS to one thread for the whole command.

    qriff's matrices are small (the prior and Q-network MLPs, ALS factors): on two cores
    a second BLAS thread made them 10-20x slower, and implicit recommends the same.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


if __name__ == "__main__":
    sys.exit(main())
