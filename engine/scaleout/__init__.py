"""Scale-out on Ray: sweeps of training runs (Ray Tune, :mod:`engine.scaleout.sweep`) and
batch generate-and-render (Ray tasks, :mod:`engine.scaleout.batch`).

The connection to Ray (local or a cluster, worker priority) is :mod:`engine.base.cluster`,
shared with the recommender. This package holds what the sweep and the batch share: the
reading of their TOML specs.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from engine.base.cluster import ScaleoutError

__all__ = ["read_spec"]


def read_spec(path: Path, what: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    """The TOML table of a sweep file or batch spec (``what`` names it in errors), with
    every top-level key checked against ``allowed``; raises :class:`ScaleoutError`."""
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ScaleoutError(f"{what} {str(path)!r}: cannot be read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScaleoutError(f"{what} {str(path)!r}: is not valid TOML ({exc})") from None
    unknown = sorted(set(doc) - set(allowed))
    if unknown:
        raise ScaleoutError(f"{what} {str(path)!r}: unknown key {unknown[0]!r}: allowed are {', '.join(allowed)}")
    return doc
