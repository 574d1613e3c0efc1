"""The recommender as a service (issue 20): ``qriff rec serve`` measured against its baseline in one run.

Catalog: 50,000 synthetic tracks, 5,000 listeners, 300,000 plays (``bench_recommender``'s
generator and untrained-model export: serving cost does not depend on weight values).
The service runs as a user runs it, ``qriff rec serve`` in its own process on 127.0.0.1;
the clients run in this process. Only loopback addresses are used.

1. throughput: ``Recommender.next(user, n=10)`` in a loop in this process (calls/s,
   wall) against ``GET /next?user=&n=10`` over HTTP from ``--clients`` keep-alive
   connections for the same number of calls. Target: HTTP >= 0.5x the loop.
2. load: ``--rate`` requests/s offered open-loop for ``--seconds`` (each request is sent
   at its scheduled time, whether or not earlier ones are answered; latency counts from
   that time, so a stalled server cannot hide its queue). 80% /next, 10% /search with a
   user, 10% POST /events. Target: 0 errors, p99 <= 25 ms.
3. events: ``--events`` POST /events from 8 concurrent clients (2% unknown tracks, 2%
   repeats of an event already sent, both to be rejected; 503s are retried as a client
   must). Targets: rows in = stored + rejected, the database gains exactly the stored
   ones, and /next afterwards reflects them (no listener is offered a track they just
   posted, and every one of the 8 listeners' lists changed).
4. ray: a simulated 2-node ``ray.cluster_utils.Cluster`` (1 CPU each), 2 read replicas:
   both nodes answer; the worker node is killed under load (8 clients), and every request
   ends answered (a 5xx retried up to 5 times, or an error) within the client's 30 s:
   none hangs.

Prints a table; ``--out`` writes it as JSON; exits 1 when a target is missed.

    python bench/bench_service.py [--quick] [--seconds 60] [--rate 200] [--events 20000] [--skip ray,...]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from bench_recommender import report_targets, untrained_catalog  # noqa: E402

ROWS: list[dict] = []
RESULTS: dict = {}


def check(name: str, value: float, target: float, kind: str, detail: str) -> None:
    ok = value >= target if kind == ">=" else value <= target if kind == "<=" else value == target
    ROWS.append({"target": name, "measured": round(value, 4), "need": f"{kind} {target:g}", "ok": bool(ok),
                 "detail": detail})
    print(f"  {name}: {value:.4g} (need {kind} {target:g}) {'ok' if ok else 'MISSED'}; {detail}", flush=True)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ the catalog and its model

def build_catalog(tmp: Path, tracks: int, events: int, users: int) -> tuple[Path, list[str]]:
    """The database and an untrained model over every track (bench_recommender's latency catalog)."""
    db, data, _ = untrained_catalog(tmp, events, tracks, users)
    return db, list(data.user_names)


def copy_catalog(db: Path, folder: Path) -> Path:
    """A copy of ``db`` and its model as ``folder/catalog.db`` (SQLite's backup: consistent, WAL included)."""
    from recommender.artifact import default_model_path

    dest = folder / "catalog.db"
    src, dst = sqlite3.connect(db), sqlite3.connect(dest)
    src.backup(dst)
    src.close()
    dst.close()
    default_model_path(dest).write_bytes(default_model_path(db).read_bytes())
    return dest


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc; all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """``qriff rec serve`` in its own process on 127.0.0.1."""

    def __init__(self, db: Path, *extra: str):
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "rec", "serve", "--db", str(db),
                                      "--port", str(self.port), *extra], env=env, cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while True:
            try:
                if call(self.port, "GET", "/health")[0] == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bench_service.py: qriff rec serve did not start: {self.proc.stderr.read()[-2000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.send_signal(2)  # Ctrl-C: finishes the requests in flight
        self.proc.wait(30)


def call(port: int, method: str, path: str, body: object = None, conn: http.client.HTTPConnection | None = None,
         timeout: float = 30) -> tuple[int, object]:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
    resp = conn.getresponse()
    raw = resp.read()
    if own:
        conn.close()
    return resp.status, json.loads(raw) if raw else None


# ------------------------------------------------------------------ 1. throughput

def bench_throughput(args, db: Path, users: list[str]) -> None:
    from urllib.parse import quote

    from recommender.api import Recommender

    rng = random.Random(1)
    picks = [rng.choice(users) for _ in range(args.calls)]
    with Recommender(db) as rec:
        for u in picks[:50]:
            rec.next(u, n=10)
        t0, c0 = time.perf_counter(), time.thread_time()
        for u in picks:
            rec.next(u, n=10)
        loop_s, loop_cpu = time.perf_counter() - t0, time.thread_time() - c0
    loop_rate = len(picks) / loop_s
    server = Server(db)
    try:
        paths = [f"/next?user={quote(u)}&n=10" for u in picks]
        errors = []

        def client(k: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            for p in paths[k::args.clients]:
                status, _ = call(server.port, "GET", p, conn=conn)
                if status != 200:
                    errors.append(status)
            conn.close()

        with ThreadPoolExecutor(args.clients) as pool:  # warm-up
            list(pool.map(lambda k: call(server.port, "GET", paths[k]), range(50)))
        t0, c0 = time.perf_counter(), cpu_seconds(server.proc.pid)
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(client, range(args.clients)))
        http_s, server_cpu = time.perf_counter() - t0, cpu_seconds(server.proc.pid) - c0
    finally:
        server.stop()
    http_rate = len(paths) / http_s
    cpu_ratio = (loop_cpu / len(picks)) / (server_cpu / len(paths))
    RESULTS["throughput"] = {"loop_calls_s": loop_rate, "http_calls_s": http_rate, "errors": len(errors),
                             "loop_cpu_ms_per_call": loop_cpu / len(picks) * 1e3,
                             "server_cpu_ms_per_request": server_cpu / len(paths) * 1e3}
    check("/next over HTTP / Recommender.next loop, calls/s", http_rate / loop_rate, 0.5, ">=",
          f"{http_rate:.0f} vs {loop_rate:.0f} calls/s ({len(paths)} calls, {args.clients} keep-alive clients, "
          f"{len(errors)} errors; load {load()}). By CPU time, which a shared machine distorts less: "
          f"{server_cpu / len(paths) * 1e3:.2f} ms of the server's CPU a request vs {loop_cpu / len(picks) * 1e3:.2f} "
          f"ms a call in the loop = {cpu_ratio:.2f}x the calls one core serves")
    check("/next over HTTP / Recommender.next loop, by CPU time a call", cpu_ratio, 0.5, ">=",
          "server process CPU (user + system, /proc) per request against the loop's thread CPU per call")


# ------------------------------------------------------------------ 2. load

async def _open_loop(port: int, rate: float, seconds: float, plan: list[tuple[str, str, bytes | None]],
                     timeout: float = 10.0) -> list[tuple[str, int, float]]:
    """Send plan[i] at i / rate seconds; returns (kind, status, latency_s from the scheduled time)."""
    import aiohttp

    out: list[tuple[str, int, float]] = []
    conn = aiohttp.TCPConnector(limit=64, force_close=False)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", connector=conn,
                                     timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        start = time.perf_counter() + 0.2

        async def one(at: float, method: str, path: str, body: bytes | None) -> None:
            kind = "events" if method == "POST" else path.split("?")[0].strip("/")
            try:
                async with session.request(method, path, data=body,
                                           headers={"Content-Type": "application/json"} if body else None) as r:
                    await r.read()
                    status = r.status
            except (aiohttp.ClientError, TimeoutError):
                status = 599
            out.append((kind, status, time.perf_counter() - at))

        tasks = []
        n = int(rate * seconds)
        for i in range(n):
            at = start + i / rate
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            method, path, body = plan[i % len(plan)]
            tasks.append(asyncio.create_task(one(at, method, path, body)))
        await asyncio.gather(*tasks)
    return out


def bench_load(args, db: Path, users: list[str], track_ids: list[int]) -> None:
    from urllib.parse import quote

    rng = random.Random(2)
    words = [r[0] for r in sqlite3.connect(db).execute("SELECT title FROM tracks ORDER BY random() LIMIT 500")]
    plan: list[tuple[str, str, bytes | None]] = []
    n = int(args.rate * args.seconds)
    for i in range(n):
        u = rng.choice(users)
        r = rng.random()
        if r < 0.8:
            plan.append(("GET", f"/next?user={quote(u)}&n=10", None))
        elif r < 0.9:
            plan.append(("GET", f"/search?q={quote(rng.choice(words).split()[0])}&user={quote(u)}", None))
        else:
            ev = {"user": u, "item": rng.choice(track_ids), "timestamp": 1_900_000_000 + i, "ms_played": 200_000}
            plan.append(("POST", "/events", json.dumps(ev).encode()))
    server = Server(db)
    try:
        before = load()
        res = asyncio.run(_open_loop(server.port, args.rate, args.seconds, plan))
    finally:
        server.stop()
    errors = sum(1 for _, s, _ in res if s not in (200, 201))
    lat = np.array([t for _, _, t in res]) * 1e3
    per = {k: np.percentile([t * 1e3 for kk, _, t in res if kk == k], [50, 99]).round(2).tolist()
           for k in ("next", "search", "events")}
    RESULTS["load"] = {"offered": n, "errors": errors, "p50_ms": float(np.percentile(lat, 50)),
                       "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max()), "per_endpoint": per}
    detail = (f"{n} requests at {args.rate:g}/s for {args.seconds:g} s (80% /next, 10% /search, 10% POST /events); "
              f"p50 {np.percentile(lat, 50):.2f} ms, max {lat.max():.1f} ms; p50/p99 ms by endpoint {per}; "
              f"load {before} -> {load()}")
    check("load: errors", errors, 0, "==", detail)
    check("load: p99 latency (ms)", float(np.percentile(lat, 99)), 25.0, "<=", detail)


# ------------------------------------------------------------------ 3. events

def bench_events(args, db: Path, users: list[str], track_ids: list[int]) -> None:
    from urllib.parse import quote

    listeners = users[:8]
    server = Server(db)
    try:
        before_next = {u: [t["id"] for t in call(server.port, "GET", f"/next?user={quote(u)}&n=10")[1]["tracks"]]
                       for u in listeners}
        conn = sqlite3.connect(db)
        rows_before = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        conn.close()
        per = args.events // 8
        tallies = [dict(sent=0, stored=0, rejected=0, retried=0, other=0) for _ in range(8)]

        def client(k: int) -> None:
            rng = random.Random(100 + k)
            user = listeners[k]
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            last = None
            t = tallies[k]
            for i in range(per):
                r = rng.random()
                if r < 0.02:
                    ev = {"user": user, "item": "no-such-track", "timestamp": 1_950_000_000 + i}
                elif r < 0.04 and last is not None:
                    ev = last  # the same event again: a duplicate
                else:
                    ev = {"user": user, "item": rng.choice(track_ids), "timestamp": 1_950_000_000 + k * 10**6 + i,
                          "ms_played": rng.choice([10_000, 230_000]), "duration_ms": 240_000}
                t["sent"] += 1
                while True:
                    status, body = call(server.port, "POST", "/events", ev, conn=conn)
                    if status != 503:
                        break
                    t["retried"] += 1
                    time.sleep(0.05)
                if status == 201:
                    t["stored"] += 1
                    last = ev
                elif status in (404, 409):
                    t["rejected"] += 1
                else:
                    t["other"] += 1
            conn.close()

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        secs = time.perf_counter() - t0
        health = call(server.port, "GET", "/health")[1]["events"]
        # the same writer fed lists: one transaction per 500 events instead of one per event
        lists, size = max(1, args.events // 2000), 500
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        t1 = time.perf_counter()
        list_stored = 0
        for j in range(lists):
            body = [{"user": listeners[(j + i) % 8], "item": track_ids[(j * size + i) % len(track_ids)],
                     "timestamp": 1_990_000_000 + j * size + i} for i in range(size)]
            status, reply = call(server.port, "POST", "/events", body, conn=conn)
            list_stored += reply["stored"] if status == 201 else 0
        list_s = time.perf_counter() - t1
        conn.close()
        after_next = {u: [t["id"] for t in call(server.port, "GET", f"/next?user={quote(u)}&n=10")[1]["tracks"]]
                      for u in listeners}
        conn = sqlite3.connect(db)
        rows_after = conn.execute("SELECT count(*) FROM events").fetchone()[0] - list_stored
        recent = {u: {r[0] for r in conn.execute(
            "SELECT track_id FROM events e JOIN users s ON s.id = e.user_id WHERE s.name = ? "
            "ORDER BY ts DESC, e.id DESC LIMIT 50", (u,))} for u in listeners}
        conn.close()
    finally:
        server.stop()
    sent = sum(t["sent"] for t in tallies)
    stored = sum(t["stored"] for t in tallies)
    rejected = sum(t["rejected"] for t in tallies)
    other = sum(t["other"] for t in tallies)
    offered_recent = sum(len(set(after_next[u]) & recent[u]) for u in listeners)
    changed = sum(after_next[u] != before_next[u] for u in listeners)
    RESULTS["events"] = {"sent": sent, "stored": stored, "rejected": rejected, "other": other,
                         "retried_503": sum(t["retried"] for t in tallies), "seconds": secs,
                         "db_rows_added": rows_after - rows_before, "service_counts": health,
                         "lists_changed": changed, "recent_tracks_offered": offered_recent}
    detail = (f"{sent} events from 8 clients in {secs:.1f} s ({sent / secs:.0f}/s): {stored} stored + {rejected} "
              f"rejected + {other} other; database +{rows_after - rows_before}; service rows_in {health['rows_in']} "
              f"= {health['stored']} + {health['rejected']}; 503s retried {RESULTS['events']['retried_503']}")
    check("events: rows in - (stored + rejected)", sent - stored - rejected, 0, "==", detail)
    check("events: database rows added - stored", rows_after - rows_before - stored, 0, "==", detail)
    check("events: service's rows_in - events sent", health["rows_in"] - sent, 0, "==", detail)
    RESULTS["events"].update(list_events=lists * size, list_stored=list_stored, list_seconds=list_s)
    check("events in lists of 500: stored - sent", list_stored - lists * size, 0, "==",
          f"{lists * size} events as {lists} lists of {size} from one client: {lists * size / list_s:.0f} events/s "
          f"(one at a time from 8 clients: {sent / secs:.0f}/s)")
    check("events: /next lists that changed (of 8)", changed, 8, "==",
          f"and {offered_recent} of the 80 tracks offered were among the listener's 50 latest posted plays "
          "(the history filter keeps them out)")
    check("events: just-posted tracks offered by /next", offered_recent, 0, "==", "must be 0")


# ------------------------------------------------------------------ 4. Ray Serve

def bench_ray(args, db: Path, users: list[str]) -> None:
    from urllib.parse import quote

    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from recommender.replicas import deploy

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = c.add_node(num_cpus=1)
    c.wait_for_nodes()
    ray.init(address=c.address, logging_level="ERROR", log_to_driver=False)
    try:
        port = free_port()
        t0 = time.perf_counter()
        deploy(db, replicas=2, port=port, max_replicas_per_node=1, snapshot_s=30)
        up = time.perf_counter() - t0
        rng = random.Random(3)
        paths = [f"/next?user={quote(rng.choice(users))}&n=10" for _ in range(4000)]
        results: list[tuple[int, str, int, float]] = []
        lock = threading.Lock()
        stop_at = [len(paths)]

        def get(p: str) -> tuple[int, str, int, float]:
            t = time.perf_counter()
            for attempt in range(1, 6):
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    conn.request("GET", p)
                    r = conn.getresponse()
                    r.read()
                    status, node = r.status, r.getheader("x-qriff-node") or ""
                    conn.close()
                except TimeoutError:
                    return 0, "", attempt, time.perf_counter() - t  # hung: 30 s without an answer
                except OSError:
                    status, node = 599, ""
                if status < 500:
                    break
                time.sleep(0.2 * attempt)
            return status, node, attempt, time.perf_counter() - t

        def client(k: int) -> None:
            i = k
            while i < stop_at[0]:
                out = get(paths[i])
                with lock:
                    results.append(out)
                i += 8

        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for th in threads:
            th.start()
        while len(results) < 400:
            time.sleep(0.05)
        before_kill = list(results)
        c.remove_node(worker)
        killed_at = len(results)
        while len(results) < killed_at + 600:
            time.sleep(0.05)
        stop_at[0] = 0
        for th in threads:
            th.join()
        after = results[killed_at:]
        serve.shutdown()
    finally:
        ray.shutdown()
        c.shutdown()
    nodes_before = {n for s, n, _, _ in before_kill if s == 200}
    hung = sum(1 for s, *_ in results if s == 0)
    failed_final = sum(1 for s, *_ in after if s not in (200, 0))
    retried = sum(1 for _, _, a, _ in after if a > 1)
    slowest = max(t for *_, t in after)
    nodes_after = {n for s, n, _, _ in after[-100:] if s == 200}
    RESULTS["ray"] = {"deploy_s": up, "nodes_before_kill": len(nodes_before), "answered_before": len(before_kill),
                      "after_kill": len(after), "retried_after": retried, "errors_after": failed_final, "hung": hung,
                      "slowest_after_s": slowest, "nodes_answering_at_end": len(nodes_after)}
    detail = (f"2 replicas, 8 clients; {len(before_kill)} requests before the kill, {len(after)} after: {retried} "
              f"retried, {failed_final} answered with an error after 5 tries, slowest {slowest:.2f} s; "
              f"deploy {up:.1f} s")
    check("ray: nodes answering before the kill", len(nodes_before), 2, "==", detail)
    check("ray: requests hung (no answer in 30 s)", hung, 0, "==", detail)
    check("ray: nodes answering after the kill", len(nodes_after), 1, "==", "the head's replica")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small catalog, 10 s of load, 2,000 events (a smoke run)")
    ap.add_argument("--seconds", type=float, default=60.0, help="seconds of offered load (default 60)")
    ap.add_argument("--rate", type=float, default=200.0, help="requests/s offered (default 200)")
    ap.add_argument("--events", type=int, default=20_000, help="events posted by 8 clients (default 20000)")
    ap.add_argument("--calls", type=int, default=3000, help="/next calls per throughput side (default 3000)")
    ap.add_argument("--clients", type=int, default=4, help="keep-alive clients for throughput (default 4)")
    ap.add_argument("--skip", default="", help="comma-separated: throughput,load,events,ray")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument("--catalog", type=Path, default=None,
                    help="keep the built catalog in this folder, or reuse the one kept there (saves the build)")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.events, args.calls = min(args.seconds, 10), min(args.events, 2000), min(args.calls, 1000)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    print(f"bench_service.py: load {load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="qriff-bench-svc-") as d:
        tmp = Path(d)
        t0 = time.perf_counter()
        kept = args.catalog / "catalog.db" if args.catalog else None
        if kept and kept.exists():  # a pristine copy from an earlier run: same catalog, no event of that run
            db = copy_catalog(kept, tmp)
            users = [r[0] for r in sqlite3.connect(db).execute("SELECT name FROM users ORDER BY id")]
        else:
            db, users = build_catalog(tmp, 50_000 if not args.quick else 5_000,
                                      300_000 if not args.quick else 30_000, 5_000 if not args.quick else 500)
            if kept:
                kept.parent.mkdir(parents=True, exist_ok=True)
                copy_catalog(db, kept.parent)
        track_ids = [r[0] for r in sqlite3.connect(db).execute("SELECT id FROM tracks")]
        print(f"catalog: {len(track_ids)} tracks, {len(users)} listeners, built in {time.perf_counter() - t0:.0f} s",
              flush=True)
        if "throughput" not in skip:
            bench_throughput(args, db, users)
        if "load" not in skip:
            bench_load(args, db, users, track_ids)
        if "events" not in skip:
            bench_events(args, db, users, track_ids)
        if "ray" not in skip:
            bench_ray(args, db, users)
    return report_targets(ROWS, RESULTS, args.out)


if __name__ == "__main__":
    sys.exit(main())
