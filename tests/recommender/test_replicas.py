"""``qriff rec serve --ray-address``: read replicas on Ray Serve over a simulated two-node cluster
(``ray.cluster_utils.Cluster``). Requests are answered by replicas on both nodes; the replicas answer as
the one-process service does; events reach the one writer and, within a snapshot period, /next; with the
worker node killed, the head keeps answering and every request ends in an answer (retried or an error),
none hangs."""

from __future__ import annotations

import socket
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.ray_cluster import two_node_cluster

pytestmark = pytest.mark.slow
pytest.importorskip("ray.serve")
pytest.importorskip("torch")

from tests.recommender.http_server import Client  # noqa: E402
from tests.recommender.tiny import tiny_trained_db  # noqa: E402

cluster = two_node_cluster()


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return tiny_trained_db(tmp_path_factory.mktemp("replicas"))


@pytest.fixture(scope="module")
def port(cluster, db):
    from ray import serve

    from recommender.replicas import deploy

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    deploy(db, replicas=2, port=free, snapshot_s=2.0, max_replicas_per_node=1)
    yield free
    serve.shutdown()


def get(port: int, path: str, attempts: int = 5, timeout: float = 30.0) -> tuple[int, dict, object, int]:
    """GET on a fresh connection, retried on a 5xx or a dropped connection: (status, headers, body, tries).
    A request that takes longer than ``timeout`` is a hang and fails the test."""
    for attempt in range(1, attempts + 1):
        t0 = time.monotonic()
        try:
            c = Client(port, timeout=timeout)
            status, headers, body = c.call("GET", path)
            c.close()
        except TimeoutError:
            pytest.fail(f"GET {path} hung for {time.monotonic() - t0:.1f} s")
        except (ConnectionError, OSError, ValueError):
            status, headers, body = 599, {}, None
        if status < 500 or attempt == attempts:
            return status, headers, body, attempt
        time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")


def test_both_nodes_answer_and_bad_input_is_worded_as_locally(port, cluster):
    from tests.ray_cluster import alive_nodes

    # The proxy prefers the replica on its own node until that one holds max_ongoing_requests (5):
    # 12 clients at once keep both busy.
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda _: get(port, "/next?user=dana&n=3"), range(120)))
    assert all(status == 200 and len(body["tracks"]) == 3 for status, _, body, _ in results)
    nodes = {headers["x-qriff-node"] for _, headers, _, _ in results}
    assert nodes == alive_nodes()  # one replica on each node, both serving
    status, _, body, _ = get(port, "/next?n=0")
    assert status == 400 and body == {"error": "n 0 is out of range (allowed: 1-1000)"}
    status, _, body, _ = get(port, "/next?user=ghost")
    assert status == 404 and "user 'ghost' is not in the database" in body["error"]


def test_events_reach_the_writer_and_then_next(port, db):
    status, _, before, _ = get(port, "/next?user=dana&n=3")
    top = before["tracks"][0]["id"]
    c = Client(port)
    status, _, body = c.call("POST", "/events", {"user": "dana", "item": top, "timestamp": 1_800_000_000})
    assert status == 201 and body["stored"] == 1
    status, _, body = c.call("POST", "/events", {"user": "dana", "item": "no-such"})
    assert status == 404 and "not in the catalog" in body["error"]
    c.close()
    with sqlite3.connect(db) as conn:  # the one writer wrote the real file
        assert conn.execute("SELECT count(*) FROM events WHERE track_id = ? AND ts = 1800000000", (top,)).fetchone() \
            == (1,)
    deadline = time.monotonic() + 30
    seen = set()
    while len(seen) < 2:  # every replica's next snapshot holds the play
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(lambda _: get(port, "/next?user=dana&n=3"), range(24)))
        seen |= {h["x-qriff-node"] for _, h, b, _ in results if top not in [t["id"] for t in b["tracks"]]}
        assert time.monotonic() < deadline, f"replicas {seen} reflect the play after 30 s; snapshots every 2 s"
        time.sleep(0.2)


def test_a_node_dies_and_the_other_keeps_answering(port, cluster):
    from tests.ray_cluster import alive_nodes

    head = cluster.head_node
    worker = next(n for n in cluster.list_all_nodes() if n is not head)
    with ThreadPoolExecutor(8) as pool:  # requests in flight on the worker's replica when it dies
        futures = [pool.submit(get, port, "/next?user=eli&n=2") for _ in range(160)]
        while sum(f.done() for f in futures) < 20:
            time.sleep(0.05)
        cluster.remove_node(worker)
        results = [f.result() for f in futures]
    assert all(status == 200 for status, *_ in results), [r[:1] + r[3:] for r in results if r[0] != 200]
    served = {headers["x-qriff-node"] for _, headers, _, _ in results[-10:]}
    assert served <= alive_nodes() and len(alive_nodes()) == 1


def test_cli_replicas_on_a_local_ray(db):
    """``qriff rec serve --replicas 1`` as a user runs it: a private local Ray, answers, Ctrl-C takes it down."""
    import os
    import signal
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "rec", "serve", "--db", str(db), "--port", str(free),
                             "--replicas", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                status, headers, body = Client(free, timeout=10).call("GET", "/next?user=eli&n=2")
                if status == 200:
                    break
            except (OSError, ValueError):  # not listening yet, or Serve's plain-text 404 until the app is deployed
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the service did not come up"
            time.sleep(0.5)
        assert len(body["tracks"]) == 2 and headers["x-qriff-node"]
        status, _, body = Client(free).call("POST", "/events", {"user": "eli", "item": 7, "timestamp": 1_850_000_000})
        assert status == 201
        assert "from 1 Ray Serve replicas" in proc.stdout.readline()  # deployed: Ctrl-C now stops a running service
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
