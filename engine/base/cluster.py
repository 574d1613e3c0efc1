"""The Ray connection: start a local Ray or join a cluster, at the caller's priority.

Ray is an optional extra (``pip install 'qriff[ray]'``). Nothing here imports it at module
level: :func:`require_ray` does, and turns its absence into one clear error. Used by the
engine's scale-out (:mod:`engine.scaleout`: sweeps and batch) and by the recommender's
data-parallel training and replicas.

:func:`connect` starts a local Ray (``address=None``, ``workers`` CPUs) or joins a
running cluster (``address="HOST:PORT"``, ``"auto"`` or ``"ray://HOST:PORT"``). An
address that does not answer within ``timeout`` seconds is an error, not a hang.

Worker priority: Ray renices every worker process by +15 (its ``worker_niceness``
setting) so that its own daemons stay responsive. A qriff worker is a training run or a
render, the very work the user asked for, and on a machine with anything else running
a +15 process gets a fraction of a core (a trial trained 15-25% slower in a Ray worker
than in the calling process at load ~3, and far slower under heavier load; see
``docs/scaling.md``). :func:`connect` therefore has Ray start its workers at the
caller's own priority (:data:`WORKER_ENV`), unless ``RAY_worker_niceness`` is already
set in the environment, which then wins. On a Ray that was initialised elsewhere,
:func:`match_priority` (called by each sweep trial) lowers the worker's nice value back
to the caller's where the operating system allows it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

from engine.base.errors import EngineError

log = logging.getLogger(__name__)

#: Seconds to wait for a ``--ray-address`` to answer before giving up.
CONNECT_TIMEOUT_S = 10.0

INSTALL_HINT = "pip install 'qriff[ray]'"

#: Ray's setting for the nice increment of its worker processes (default +15), as an
#: environment variable of the raylet (local Ray) or of each worker (joined cluster).
NICENESS_VAR = "RAY_worker_niceness"
#: The environment qriff's Ray workers start with: the caller's priority, not +15.
WORKER_ENV = {NICENESS_VAR: "0"}


class ScaleoutError(EngineError):
    """Ray is missing, a cluster is unreachable, or a sweep/batch spec is invalid."""


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
    own_niceness = NICENESS_VAR not in os.environ
    if address:
        check_reachable(address, timeout)
        kwargs["address"] = address
        if own_niceness:  # the cluster's raylets are not ours: each of this job's workers gets the setting
            kwargs["runtime_env"] = {"env_vars": dict(WORKER_ENV)}
    else:
        # "local": a Ray of our own, even when another one (a 'ray start', a test cluster) runs on this machine.
        kwargs.update(address="local", num_cpus=workers or os.cpu_count() or 1)
    try:
        # A local raylet inherits this environment, and its workers (the pre-started ones too) inherit the raylet's.
        with _environment(WORKER_ENV if own_niceness and not address else {}):
            ray.init(**kwargs)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ScaleoutError(f"{flag} {address!r} could not be joined: {first}" if address
                            else f"could not start a local Ray: {first}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` set in ``os.environ`` for the duration (for child processes), then restored."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def process_priority() -> int:
    """This process's nice value (0 normal, 19 lowest)."""
    return os.getpriority(os.PRIO_PROCESS, 0)


def match_priority(nice: int) -> int:
    """Lower this process's nice value to ``nice`` if it is higher (a Ray worker at +15); returns the value now.

    Raising a process's priority needs privileges (root or ``RLIMIT_NICE``); where the
    system refuses, the worker stays as it is and a warning names the fix.
    """
    now = process_priority()
    if now > nice:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
            now = process_priority()
        except OSError:
            log.warning("this Ray worker runs at nice %d, the caller at %d, and cannot be raised back: it gets less "
                        "CPU than the same work in the caller. Start the cluster with %s=0 in its environment",
                        now, nice, NICENESS_VAR)
    return now


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
