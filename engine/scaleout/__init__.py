"""Scale-out on Ray: sweeps of training runs (Ray Tune) and batch generate-and-render (Ray tasks).

Ray is an optional extra (``pip install 'qriff[ray]'``). Nothing here imports it at module
level: :func:`require_ray` does, and turns its absence into one clear error. The same
holds for the recommender's data-parallel training (:mod:`recommender.distributed`),
which uses :func:`connect` too.

:func:`connect` starts a local Ray (``address=None``, ``workers`` CPUs) or joins a
running cluster (``address="HOST:PORT"``, ``"auto"`` or ``"ray://HOST:PORT"``). An
address that does not answer within ``timeout`` seconds is an error, not a hang.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.errors import EngineError

log = logging.getLogger(__name__)

#: Seconds to wait for a ``--ray-address`` to answer before giving up.
CONNECT_TIMEOUT_S = 10.0

INSTALL_HINT = "pip install 'qriff[ray]'"


class ScaleoutError(EngineError):
    """Ray is missing, a cluster is unreachable, or a sweep/batch spec is invalid."""


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


def require_ray(flag: str = "this command") -> Any:
    """The ``ray`` module, or a ScaleoutError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ScaleoutError(f"{flag} needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``HOST:PORT`` or ``ray://HOST:PORT``; None for ``auto``."""
    text = address.removeprefix("ray://")
    if text == "auto":
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ScaleoutError(f"--ray-address {address!r} is not HOST:PORT, ray://HOST:PORT or auto "
                            "(e.g. 10.0.0.5:6379)")
    return host, int(port)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """ScaleoutError unless something accepts TCP connections at ``address`` within ``timeout`` s."""
    hp = _host_port(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=timeout):
            pass
    except OSError as exc:
        raise ScaleoutError(f"--ray-address {address!r} is not reachable within {timeout:g} s ({exc.strerror or exc}): "
                            "start the cluster with 'ray start --head' or leave --ray-address out for a local "
                            "Ray") from None


@contextlib.contextmanager
def connect(address: str | None = None, workers: int | None = None, *, flag: str = "--ray-address",
            timeout: float = CONNECT_TIMEOUT_S) -> Iterator[Any]:
    """Ray, started locally with ``workers`` CPUs (``address`` None) or joined at ``address``.

    Shuts down what it started on exit. If Ray is already initialised in this process
    (a test's cluster, a notebook), it is used as it is and left running.
    """
    ray = require_ray(flag if address else "scale-out")
    if ray.is_initialized():
        yield ray
        return
    # Ray's start-up notices only with -vv.
    kwargs: dict[str, Any] = {"include_dashboard": False,
                              "logging_level": logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.ERROR,
                              "log_to_driver": log.isEnabledFor(logging.DEBUG)}
    if address:
        check_reachable(address, timeout)
        kwargs["address"] = address
    else:
        # "local": a Ray of our own, even when another one (a 'ray start', a test cluster) runs on this machine.
        kwargs.update(address="local", num_cpus=workers or os.cpu_count() or 1)
    try:
        ray.init(**kwargs)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ScaleoutError(f"{flag} {address!r} could not be joined: {first}" if address
                            else f"could not start a local Ray: {first}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def cluster_cpus(ray: Any) -> int:
    """CPUs the connected Ray cluster offers in total."""
    return int(ray.cluster_resources().get("CPU", 0))


def node_id() -> str:
    """The Ray node this code runs on (hex id), or ``local`` outside Ray."""
    try:
        import ray
        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except ImportError:
        pass
    return "local"
