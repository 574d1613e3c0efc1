"""``qriff rec serve --ray-address ADDR --replicas N``: the read endpoints on Ray Serve.

Each read replica (:class:`Reader`, one CPU) holds the model and its own snapshot of the
catalog in a local file, and answers ``/next``, ``/playlist``, ``/search`` and
``/health`` with the same FastAPI app as the one-process service
(:func:`recommender.service.create_app`), so the two cannot answer differently.

Events go to the one writer: :class:`WriterActor`, one Ray actor pinned to the machine
that holds the SQLite file (the one this command runs on), which runs an
:class:`~recommender.events.EventWriter` one request at a time. Why one: SQLite allows
one writer at a time per file, and a file on one machine cannot be written from
another; several writers would only queue for the same lock, and a copy per replica
would split one listener's history across files. So writes scale with one core and
one disk (see docs/service.md for what that bounds), reads with the replicas.

A replica's snapshot is a consistent copy of the database taken by the writer (SQLite's
online backup) when the replica starts, then every ``snapshot_s`` seconds: a play
posted through Ray Serve reaches ``/next`` within that period, where the one-process
service shows it at once.

Failures: the Serve proxy ends any request after ``request_timeout_s`` (an error, not a
hang). A replica lost with its node fails the requests it held (5xx; a client
retries), and Serve starts a new replica on a live node. A writer that cannot be
reached is answered 503 with ``Retry-After``: events are never acknowledged unless
committed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
from ray import serve
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from recommender.errors import ConfigError
from recommender.events import EventWriter, Outcome
from recommender.service import DEFAULT_MAX_BODY, Reads, create_app

log = logging.getLogger(__name__)

APP_NAME = "qriff"
WRITER_NAME = "qriff-events-writer"
#: Seconds the Serve proxy lets a request run before answering it with an error.
REQUEST_TIMEOUT_S = 10.0


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class WriterActor:
    """The one writer (see the module doc); a sync actor runs one call at a time."""

    def __init__(self, db: str, model: str | None, lock_timeout: float):
        from recommender.artifact import default_model_path

        self.writer = EventWriter(db, lock_timeout=lock_timeout, source="ray-serve:/events")
        self.model = Path(model) if model else default_model_path(db)

    def store(self, body: Any) -> Outcome:
        return self.writer.store(body)

    def counts(self) -> dict:
        return self.writer.counts()

    def snapshot(self) -> bytes:
        return self.writer.snapshot()

    def model_bytes(self) -> bytes:
        return self.model.read_bytes()


@serve.ingress()
class Reader:
    """One read replica: the model and a catalog snapshot in a private folder, the FastAPI app over them."""

    async def __init__(self, writer: Any, max_body: int = DEFAULT_MAX_BODY, snapshot_s: float = 30.0):
        from recommender.api import Recommender

        self.writer = writer
        self.max_body = max_body
        self.snapshot_s = snapshot_s
        self.dir = Path(tempfile.mkdtemp(prefix="qriff-replica-"))
        self.node = ray.get_runtime_context().get_node_id()
        (self.dir / "model.npz").write_bytes(await writer.model_bytes.remote())
        db = await self._fetch_snapshot()
        self.reads = Reads(Recommender(db, self.dir / "model.npz"))
        self.taken = time.time()
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def _fetch_snapshot(self) -> Path:
        path = self.dir / f"catalog-{time.time_ns()}.db"
        await asyncio.to_thread(path.write_bytes, await self.writer.snapshot.remote())
        return path

    async def _refresh_forever(self) -> None:
        from recommender.api import Recommender

        while True:
            await asyncio.sleep(self.snapshot_s)
            try:
                db = await self._fetch_snapshot()
                # opening a large catalog takes a while: off the loop, which keeps answering from the old one
                rec = await asyncio.to_thread(Recommender, db, self.dir / "model.npz")
            except Exception as exc:  # the writer's node may be gone: keep answering from the old snapshot
                log.warning("replica %s keeps its snapshot of %.0f s ago: %s", self.node[:8], time.time() - self.taken,
                            exc)
                continue
            old, self.reads.rec = self.reads.rec, rec
            self.taken = time.time()
            old.close()
            for stale in Path(old.db).parent.glob(Path(old.db).name + "*"):
                stale.unlink(missing_ok=True)

    async def _store(self, body: Any) -> Outcome:
        try:
            return await self.writer.store.remote(body)
        except ray.exceptions.RayTaskError as exc:  # the writer ran and failed: its error, not an outage
            cause = exc.as_instanceof_cause()
            return Outcome(500, {"error": f"the event writer failed ({str(cause).strip().splitlines()[-1][:200]}): "
                                          "nothing was stored"})
        except ray.exceptions.RayError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return Outcome(503, {"error": f"the event writer is not reachable ({first[:200]}): nothing was stored; "
                                          "send the events again in 5 s"}, {"Retry-After": "5"})

    def _health(self) -> dict:
        return {"db": f"snapshot {self.reads.rec.db.name}", "snapshot_age_s": round(time.time() - self.taken, 1),
                "node": self.node, "pid": os.getpid()}

    def __serve_build_asgi_app__(self) -> Any:
        return create_app(self.reads, self._store, self._health, max_body=self.max_body, node=self.node)


def deploy(db: str | Path, model: str | Path | None = None, *, replicas: int = 2, host: str = "127.0.0.1",
           port: int = 8000, lock_timeout: float = 1.0, max_body: int = DEFAULT_MAX_BODY, snapshot_s: float = 30.0,
           max_replicas_per_node: int | None = None, proxy_location: str = "HeadOnly") -> Any:
    """Start the writer on this node and ``replicas`` readers on the connected Ray; returns the writer's handle.

    Ray must be initialised. The proxy listens on ``host:port`` (``HeadOnly``: on the
    head node; ``EveryNode``: on each node, for a load balancer in front).
    """
    from recommender.schema import connect

    db = Path(db).expanduser()
    connect(db, create=False).close()  # a missing or foreign file is one clear error here, not in an actor
    here = ray.get_runtime_context().get_node_id()
    try:
        writer = WriterActor.options(
            name=WRITER_NAME, get_if_exists=False,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False),
        ).remote(str(db), str(model) if model else None, lock_timeout)
    except ValueError:  # the name is taken
        raise ConfigError(f"another 'qriff rec serve' already runs on this Ray cluster (its writer actor "
                          f"{WRITER_NAME!r} exists): stop it first, since one cluster serves one catalog") from None
    ray.get(writer.counts.remote())  # opened the database, or raise its error now
    serve.start(proxy_location=proxy_location,
                http_options={"host": host, "port": port, "request_timeout_s": REQUEST_TIMEOUT_S})
    options: dict[str, Any] = {"num_replicas": replicas, "ray_actor_options": {"num_cpus": 1}}
    if max_replicas_per_node:
        options["max_replicas_per_node"] = max_replicas_per_node
    reader = serve.deployment(Reader, name="qriff-reader", **options)
    serve.run(reader.bind(writer, max_body, snapshot_s), name=APP_NAME, route_prefix="/")
    return writer


def serve_on_ray(db: str | Path, model: str | Path | None = None, *, address: str | None, replicas: int,
                 host: str, port: int, lock_timeout: float, max_body: int, snapshot_s: float) -> None:
    """``qriff rec serve --ray-address``: deploy, print where, serve until Ctrl-C, then take it all down."""
    from engine.base.cluster import connect

    with connect(address, workers=replicas + 1, flag="--ray-address"):
        try:
            deploy(db, model, replicas=replicas, host=host, port=port, lock_timeout=lock_timeout, max_body=max_body,
                   snapshot_s=snapshot_s)
            print(f"serving {db} from {replicas} Ray Serve replicas on http://{host}:{port} (events: one writer on "
                  "this machine); Ctrl-C stops", flush=True)
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:  # how a service is stopped: not an error
            pass
        finally:
            serve.shutdown()  # the writer actor goes with the Ray this command joined or started
