"""``qriff rec serve``: the recommender as an HTTP JSON service (FastAPI on uvicorn).

Endpoints (the route table :data:`ROUTES` is what ``docs/service.md`` lists):

- ``GET /next?user=&n=`` and ``GET /playlist?user=&steps=``, optionally with
  ``history=`` (repeated) as ``qriff rec next --history``; without a user or history, a
  cold start from popularity.
- ``GET /search?q=&user=&n=``.
- ``POST /events``: plays and skips (:mod:`recommender.events`), stored at once, so the
  listener's next ``/next`` is computed from a history that holds them.
- ``GET /health``, and the OpenAPI description at ``/openapi.json`` (page: ``/docs``).

Bad input is answered 4xx with one line of JSON, ``{"error": "..."}``, worded as the
CLI words it: 400 a bad number, a body that is not JSON, a bad event field; 404 an
unknown user or track; 409 an event already stored; 413 a body too large. A locked or
full database is 503 with ``Retry-After``, and nothing of that request is stored.

Reads run on the event loop, one at a time, on one SQLite connection (a request is a
millisecond or two of numpy, and a thread pool would only add hand-offs). Events go to
the one :class:`~recommender.events.EventWriter` on a single-thread executor, so a
write waiting for a lock held by an ingest never stalls the reads. In WAL mode the
readers see each committed event at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from recommender import catalog
from recommender.api import MAX_N, MAX_STEPS, Recommender
from recommender.errors import ConfigError, RecommenderError

log = logging.getLogger(__name__)

#: Largest request body accepted, in bytes (``--max-body``).
DEFAULT_MAX_BODY = 256 * 1024

#: (method, path, what it does): the service's address space, for the docs and the tests.
ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", "/next", "the n best next tracks for a listener"),
    ("GET", "/playlist", "a playlist of `steps` tracks, each conditioned on the ones before"),
    ("GET", "/search", "tracks matching `q`, re-ranked for a listener"),
    ("POST", "/events", "store plays and skips; the next /next sees them"),
    ("GET", "/health", "liveness, the database, the model and the events counted"),
)

#: Query parameters that take a whole number, with their allowed range (as the CLI's flags).
NUMBERS = {"n": (1, MAX_N), "steps": (1, MAX_STEPS)}


class RequestError(RecommenderError):
    """A request that cannot be answered: ``status`` and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def whole_number(name: str, text: str | None, default: int) -> int:
    """A query parameter as an int within :data:`NUMBERS`; RequestError 400 worded as the CLI's flags."""
    lo, hi = NUMBERS[name]
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise RequestError(400, f"{name} {text!r} is not an integer (allowed: {lo}-{hi})") from None
    if not lo <= value <= hi:
        raise RequestError(400, f"{name} {value} is out of range (allowed: {lo}-{hi})")
    return value


class Reads:
    """The read endpoints over one :class:`Recommender`: checks that make a bad request a 4xx, then the API."""

    def __init__(self, rec: Recommender):
        self.rec = rec

    def _known_user(self, user: str | None) -> str | None:
        if user is None:
            return None
        if catalog.user_id(self.rec.conn, user) is None:
            raise RequestError(404, f"user {user!r} is not in the database: post their plays to /events first, "
                                    "or leave user out (and give history) for a cold start")
        return user

    def _known_history(self, history: list[str] | None) -> list[str] | None:
        if not history:
            return None
        _, unknown = catalog.resolve_tracks(self.rec.conn, history)
        if unknown:
            raise RequestError(404, f"track {unknown[0]!r} is not in the catalog (allowed: a catalog id, a CSV item "
                                    "id or 'Artist - Title' of an ingested track)")
        return history

    def next(self, user: str | None, n: str | None, history: list[str] | None) -> dict:
        count = whole_number("n", n, 10)
        return self.rec.next(self._known_user(user), n=count, history=self._known_history(history)).to_dict()

    def playlist(self, user: str | None, steps: str | None, history: list[str] | None) -> dict:
        count = whole_number("steps", steps, 20)
        return self.rec.playlist(self._known_user(user), steps=count, history=self._known_history(history)).to_dict()

    def search(self, q: str | None, user: str | None, n: str | None) -> dict:
        if q is None:
            raise RequestError(400, "q is missing (allowed: words to look for, e.g. /search?q=bossa+nova)")
        count = whole_number("n", n, 10)
        return self.rec.search(q, user=self._known_user(user), n=count).to_dict()


def read_body_limit(max_body: int) -> Callable[[Any], Awaitable[Any]]:
    """An async function: the request's body decoded as JSON, or RequestError 413/400 (the CLI's wording)."""

    async def read(request: Any) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body:
            raise RequestError(413, f"the body is {int(declared)} bytes, over the limit (allowed: at most {max_body} "
                                    "bytes): send fewer events per request")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                raise RequestError(413, f"the body is over {max_body} bytes, the limit (allowed: at most {max_body} "
                                        "bytes): send fewer events per request")
            chunks.append(chunk)
        raw = b"".join(chunks)
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            why = f"{exc.msg} at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) \
                else "not UTF-8"
            raise RequestError(400, f"the body is not JSON ({why}): send one event object or a list of them") from None

    return read


Store = Callable[[Any], Awaitable[Any]]
"""Stores a decoded /events body; returns an :class:`~recommender.events.Outcome` (the writer's)."""


def create_app(reads: Reads, store: Store, health: Callable[[], dict], max_body: int = DEFAULT_MAX_BODY,
               node: str | None = None) -> FastAPI:
    """The FastAPI application: ``reads`` answers the GETs, ``store`` the events, ``health()`` adds to /health.

    ``node`` (the Ray node id of a replica) is sent back as the ``X-Qriff-Node`` header.
    """
    __version__ = _version()

    app = FastAPI(title="qriff recommender", version=__version__,
                  description="The next track for a listener, playlists, search, and plays and skips posted back. "
                              "Errors are `{\"error\": \"one line\"}` with a 4xx (bad input) or 503 (locked or "
                              "full database; see Retry-After).")
    extra = {"X-Qriff-Node": node} if node else {}
    read_body = read_body_limit(max_body)

    def reply(status: int, body: dict, headers: dict | None = None) -> JSONResponse:
        return JSONResponse(body, status_code=status, headers={**extra, **(headers or {})})

    @app.exception_handler(RequestError)
    async def request_error(_: Request, exc: RequestError) -> JSONResponse:
        return reply(exc.status, {"error": str(exc)})

    @app.exception_handler(ConfigError)
    async def config_error(_: Request, exc: ConfigError) -> JSONResponse:
        return reply(400, {"error": str(exc)})

    @app.exception_handler(RecommenderError)
    async def recommender_error(_: Request, exc: RecommenderError) -> JSONResponse:
        locked = "locked" in str(exc)
        return reply(503 if locked else 500, {"error": str(exc)}, {"Retry-After": "1"} if locked else None)

    @app.exception_handler(sqlite3.Error)
    async def database_error(_: Request, exc: sqlite3.Error) -> JSONResponse:
        busy = any(w in str(exc) for w in ("locked", "busy"))
        log.error("database error while reading: %s", exc)
        return reply(503 if busy else 500, {"error": f"the database could not be read ({exc}): try again"},
                     {"Retry-After": "1"} if busy else None)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body"))
        return reply(400, {"error": f"{where or 'request'}: {first.get('msg', 'is not valid')}"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        routes = ", ".join(f"{m} {p}" for m, p, _ in ROUTES)
        msg = (f"{request.method} {request.url.path} is not an endpoint (allowed: {routes})" if exc.status_code in
               (404, 405) else str(exc.detail))
        return reply(exc.status_code, {"error": msg})

    user_q = Query(None, description="listener name as ingested (or as posted to /events)")
    hist_q = Query(None, description="tracks just heard (catalog ids, CSV item ids or 'Artist - Title'); repeat it")

    @app.get("/next", summary=ROUTES[0][2])
    async def next_(user: str | None = user_q,
                    n: str | None = Query(None, description=f"how many tracks, 1-{MAX_N} (default 10)"),
                    history: list[str] | None = hist_q) -> JSONResponse:
        return reply(200, reads.next(user, n, history))

    @app.get("/playlist", summary=ROUTES[1][2])
    async def playlist(user: str | None = user_q,
                       steps: str | None = Query(None, description=f"playlist length, 1-{MAX_STEPS} (default 20)"),
                       history: list[str] | None = hist_q) -> JSONResponse:
        return reply(200, reads.playlist(user, steps, history))

    @app.get("/search", summary=ROUTES[2][2])
    async def search(q: str | None = Query(None, description="words to look for (any text is safe)"),
                     user: str | None = user_q,
                     n: str | None = Query(None, description=f"how many results, 1-{MAX_N} (default 10)")
                     ) -> JSONResponse:
        return reply(200, reads.search(q, user, n))

    @app.post("/events", summary=ROUTES[3][2], status_code=201,
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                  "oneOf": [{"$ref": "#/components/schemas/Event"},
                            {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}]}}}}})
    async def events(request: Request) -> JSONResponse:
        body = await read_body(request)
        out = await store(body)
        return reply(out.status, out.body, out.headers)

    @app.get("/health", summary=ROUTES[4][2])
    async def health_() -> JSONResponse:
        return reply(200, {"status": "ok", "version": __version__, **health()})

    schema = app.openapi()
    schema.setdefault("components", {}).setdefault("schemas", {})["Event"] = EVENT_SCHEMA
    return app


#: The /events body for OpenAPI (see :mod:`recommender.events` for the rules).
EVENT_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["user"],
    "properties": {
        "user": {"type": "string", "description": "listener name; a new name is a new listener"},
        "item": {"oneOf": [{"type": "string"}, {"type": "integer"}],
                 "description": "the track: catalog id, CSV item id or 'Artist - Title' (or give artist and title)"},
        "artist": {"type": "string"}, "title": {"type": "string"},
        "timestamp": {"oneOf": [{"type": "number"}, {"type": "string"}],
                      "description": "unix s/ms or ISO 8601 (default: now); makes a retried request safe"},
        "ms_played": {"type": "integer", "minimum": 0},
        "duration_ms": {"type": "integer", "minimum": 1},
        "skipped": {"type": "boolean"},
        "reason_end": {"type": "string", "description": "Spotify's end reason, e.g. trackdone, fwdbtn"},
    },
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("qriff")
    except PackageNotFoundError:
        return "unknown"


class LocalService:
    """The service in one process: a :class:`Recommender` for the reads, an :class:`EventWriter` on its own thread."""

    def __init__(self, db: str | Path, model: str | Path | None = None, lock_timeout: float = 1.0,
                 max_body: int = DEFAULT_MAX_BODY):
        from recommender.artifact import default_model_path
        from recommender.events import EventWriter

        self.rec = Recommender(db, model, lock_timeout=lock_timeout)
        self.model_path = Path(model).expanduser() if model else default_model_path(self.rec.db)
        try:
            self.writer = EventWriter(self.rec.db, lock_timeout=lock_timeout)
        except BaseException:
            self.rec.close()
            raise
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qriff-events")
        self.app = create_app(Reads(self.rec), self._store, self._health, max_body=max_body)

    async def _store(self, body: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, self.writer.store, body)

    def _health(self) -> dict:
        return {"db": str(self.rec.db), "model": str(self.model_path),
                "events": self.writer.counts()}

    def close(self) -> None:
        self.pool.shutdown(wait=True)  # every event accepted is committed before the connections close
        self.writer.close()
        self.rec.close()


def serve_local(service: LocalService, host: str = "127.0.0.1", port: int = 8000, log_level: str = "warning") -> None:
    """Run ``service`` under uvicorn until interrupted (Ctrl-C finishes the requests in flight, then stops)."""
    import uvicorn

    try:
        uvicorn.run(service.app, host=host, port=port, log_level=log_level, access_log=False)
    finally:
        service.close()
