"""OSC bridge benchmark: throughput and a garbage soak, on loopback, in one run.

Targets (issues 5 and 11):

1. throughput: >= 200 four-bar generate requests/s sustained for a few seconds, every
   request answered with its whole clip (no busy refusal, no lost datagram), with the
   server parsing and building OSC through python-osc. The server's CPU time per
   answered clip is reported beside it (this process is the server; the client runs
   in another process, as Max or Pd would).
2. soak: 100,000 garbage datagrams (random bytes, truncated OSC, unknown type tags,
   oversized strings, NaN/inf values, unknown addresses, broken bundles) into a
   ``qriff serve`` process, then a ping answered within 100 ms, resident memory grown by
   less than 20 MB.

The earlier latency budget (request -> last reply within 3x a python-osc echo round
trip beyond the clip's own generation) is retired: a millisecond is inaudible here.

Prints a table; exits 1 when a target is missed.

    .venv/bin/python bench/bench_bridge.py [--model PATH] [--seconds 4] [--rate 250] [--soak 100000]

Without ``--model`` the shipped model is used; if the package has none yet, an
untrained network of the default architecture is exported (same cost per step).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import random
import re
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pythonosc.osc_message import OscMessage  # noqa: E402
from pythonosc.osc_message_builder import OscMessageBuilder  # noqa: E402

from bridge.datagrams import encode  # noqa: E402
from bridge.server import Server, ServerConfig  # noqa: E402
from bridge.source import PolicySource  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def osc(address: str, *args: object) -> bytes:
    b = OscMessageBuilder(address)
    for a in args:
        b.add_arg(a)
    return b.build().dgram


def model_path(arg: str | None, tmp: Path) -> Path:
    """The model to serve: --model, the shipped one, or an exported untrained network."""
    from engine.runtime import DEFAULT_MODEL_PATH

    if arg:
        return Path(arg)
    if DEFAULT_MODEL_PATH.is_file():
        return DEFAULT_MODEL_PATH
    import torch

    from engine.learn.export import export_model
    from engine.learn.model import ModelConfig, QNetwork
    from engine.mdp import observation, styles

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = QNetwork(ModelConfig(obs_dim=observation.obs_dim(len(styles.BUILTIN_TERMS)))).eval()
    path = tmp / "untrained.onnx"
    export_model(net, path, styles.BUILTIN_TERMS, train_config={"bench": "bridge"}, model_id="bench-untrained")
    print(f"note: no shipped model yet; using an untrained network of the default architecture ({path})")
    return path


class Client:
    """A loopback UDP client with a big receive buffer."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind(("127.0.0.1", 0))

    def recv(self, timeout: float = 5.0) -> OscMessage:
        self.sock.settimeout(timeout)
        return OscMessage(self.sock.recvfrom(65536)[0])


def client_process(conn, server_address: tuple[str, int]) -> None:
    """The requester side, in its own process: runs what the parent asks and sends the results back."""
    while True:
        cmd = conn.recv()
        if cmd[0] == "throughput":
            _, rate, seconds, seeded = cmd
            conn.send(throughput(server_address, rate, seconds, seeded))
        else:
            return


# ------------------------------------------------------------------ throughput

def throughput(server: tuple[str, int], rate: float, seconds: float, seeded: bool) -> dict[str, float]:
    """Offer ``rate`` 4-bar generate requests/s for ``seconds``; count what comes back."""
    client = Client(server)
    n = int(rate * seconds)
    ends: dict[int, float] = {}
    errors: dict[str, int] = {}
    done = threading.Event()

    def receive() -> None:
        client.sock.settimeout(0.2)
        idle_since = None
        while not done.is_set() or idle_since is None or time.perf_counter() - idle_since < 10:
            try:
                data = client.sock.recvfrom(65536)[0]
            except TimeoutError:
                if done.is_set() and len(ends) + sum(errors.values()) >= n:
                    return
                idle_since = idle_since or time.perf_counter()
                continue
            idle_since = None
            msg = OscMessage(data)
            if msg.address == "/qriff/clip/end":
                ends[msg.params[0]] = time.perf_counter()
            elif msg.address == "/qriff/error":
                errors[msg.params[1]] = errors.get(msg.params[1], 0) + 1

    rx = threading.Thread(target=receive, daemon=True)
    rx.start()
    t0 = time.perf_counter()
    for i in range(n):
        target = t0 + i / rate
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        args = ("bars", 4, "seed", 10_000 + i) if seeded else ("bars", 4)
        client.sock.sendto(osc("/qriff/generate", i, *args), client.server)
    sent_for = time.perf_counter() - t0
    done.set()
    rx.join(timeout=60)
    last = max(ends.values(), default=t0)
    return {"sent": n, "offered_rate": n / sent_for, "completed": len(ends), "busy": errors.get("busy", 0),
            "errors": sum(errors.values()), "lost": n - len(ends) - sum(errors.values()),
            "rate": len(ends) / max(last - t0, 1e-9)}


# ------------------------------------------------------------------ soak

def garbage_pool(rng: random.Random, size: int = 4000) -> list[bytes]:
    """Malformed and hostile datagrams of every kind the server must survive."""
    valid = encode("/qriff/generate", (7, "key", "D", "bars", 4), "isssi")
    pool: list[bytes] = []
    for i in range(size):
        kind = i % 8
        if kind == 0:
            pool.append(rng.randbytes(rng.randint(1, 600)))
        elif kind == 1:
            pool.append(valid[:rng.randint(1, len(valid) - 1)])
        elif kind == 2:
            pool.append(b"/qriff/ping\x00,x" + bytes([rng.randint(65, 122)]) + b"\x00" + rng.randbytes(8))
        elif kind == 3:
            pool.append(encode("/qriff/generate", (1, "style", "x" * rng.randint(2000, 7000)), "iss"))
        elif kind == 4:
            pool.append(encode("/qriff/generate", (2, "temperature", math.nan, "tempo", math.inf), "isfsf"))
        elif kind == 5:
            pool.append(encode(f"/qriff/{rng.randbytes(6).hex()}", (3,), "i"))
        elif kind == 6:
            pool.append(b"#bundle\x00" + rng.randbytes(8) + struct.pack(">i", rng.randint(-5, 9999)) + b"/x\x00\x00")
        else:
            pool.append(b"/" + b"a" * 9000)
    return pool


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def soak(model: Path, out: Path, count: int) -> dict[str, float]:
    """Garbage into a ``qriff serve`` subprocess; returns ping latency and RSS growth."""
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--port", "0", "--out", str(out),
                             "--model", str(model)], cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        assert proc.stderr is not None
        port = None
        while port is None:
            line = proc.stderr.readline()
            if not line:
                raise SystemExit("qriff serve did not start")
            m = re.search(r"listening on \S+:(\d+)", line)
            port = int(m.group(1)) if m else None
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep its log pipe drained
        client = Client(("127.0.0.1", port))
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # garbage comes from here; its replies pile up unread
        sink.bind(("127.0.0.1", 0))

        def ping(rid: int) -> float:
            t0 = time.perf_counter()
            client.sock.sendto(osc("/qriff/ping", rid), client.server)
            while True:
                msg = client.recv(10)
                if msg.address == "/qriff/pong" and msg.params[0] == rid:
                    return time.perf_counter() - t0

        # warm up: a generate (loads everything), then let the allocator settle
        client.sock.sendto(osc("/qriff/generate", 1, "bars", 4, "seed", 1), client.server)
        while client.recv(30).address != "/qriff/clip/end":
            pass
        pool = garbage_pool(random.Random(5))
        for i in range(2000):
            sink.sendto(pool[i % len(pool)], client.server)
        ping(2)
        before = rss_kb(proc.pid)
        t0 = time.perf_counter()
        for i in range(count):
            sink.sendto(pool[i % len(pool)], client.server)
            if i % 1000 == 999:
                ping(10 + i)  # flow control: the server has read everything sent so far
                drain(sink)
        elapsed = time.perf_counter() - t0
        after_ping = statistics.median(ping(10_000_000 + k) for k in range(5))
        after = rss_kb(proc.pid)
        client.sock.sendto(osc("/qriff/get/malformed", 3), client.server)
        malformed = client.recv().params[1]
        return {"datagrams": count, "seconds": elapsed, "ping_ms": after_ping * 1e3,
                "rss_growth_mb": (after - before) / 1024, "rss_mb": after / 1024, "malformed": malformed}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def drain(sock: socket.socket) -> None:
    sock.setblocking(False)
    try:
        while True:
            sock.recvfrom(65536)
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)


# ------------------------------------------------------------------ main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="ONNX model (default: the shipped model)")
    ap.add_argument("--seconds", type=float, default=4.0, help="throughput run length (default 4 s)")
    ap.add_argument("--rate", type=float, default=250.0, help="offered generate requests/s (default 250)")
    ap.add_argument("--soak", type=int, default=100_000, help="garbage datagrams (default 100,000)")
    args = ap.parse_args(argv)
    rows: list[tuple[str, str, str, bool | None]] = []

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = model_path(args.model, tmp)
        source = PolicySource(model)
        source.load()
        server = Server(ServerConfig(port=0, out_dir=tmp / "out", queue_size=256), source).start()
        # Clients run in another process, as Max or Pd would: no shared interpreter lock with the server.
        ctx = multiprocessing.get_context("spawn")
        conn, child_conn = ctx.Pipe()
        child = ctx.Process(target=client_process, args=(child_conn, server.address))
        child.start()
        try:
            conn.send(("throughput", 50.0, 0.5, False))  # warm-up of every path
            conn.recv()
            cpu0 = time.process_time()  # this process = the server (clients run in the child)
            conn.send(("throughput", args.rate, args.seconds, False))
            tp = conn.recv()
            cpu_per_clip = (time.process_time() - cpu0) / max(1, tp["completed"])
            ok = tp["rate"] >= 200 and tp["completed"] == tp["sent"]
            rows.append((f"throughput, default seeds ({tp['sent']} requests offered at {tp['offered_rate']:.0f}/s)",
                         f"{tp['rate']:.0f} clips/s, {tp['completed']} answered, {tp['busy']} busy, "
                         f"{tp['lost']} lost", ">= 200/s, none lost", ok))
            rows.append(("  server CPU time per answered clip (all threads, python-osc encoding included)",
                         f"{cpu_per_clip * 1e3:.2f} ms = {1 / cpu_per_clip:.0f} clips/s per free core", "info",
                         None))
            conn.send(("throughput", args.rate, args.seconds, True))
            tps = conn.recv()
            rows.append((f"throughput, explicit seeds (no batching, {tps['sent']} offered)",
                         f"{tps['rate']:.0f} clips/s, {tps['completed']} answered, {tps['busy']} busy, "
                         f"{tps['lost']} lost", "info", None))
        finally:
            conn.send(("stop",))
            child.join(timeout=30)
            server.stop()

        s = soak(model, tmp / "soak", args.soak)
        rows.append((f"soak: {s['datagrams']:,} garbage datagrams in {s['seconds']:.1f} s "
                     f"({s['malformed']:,} counted malformed)", f"ping {s['ping_ms']:.2f} ms after",
                     "<= 100 ms", s["ping_ms"] <= 100))
        rows.append(("soak: resident memory growth", f"{s['rss_growth_mb']:+.1f} MB (RSS {s['rss_mb']:.0f} MB)",
                     "< 20 MB", s["rss_growth_mb"] < 20))

    print(f"\nqriff OSC bridge benchmark ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} CPUs, loadavg {os.getloadavg()[0]:.1f}, model {source.model_id})\n")
    print("| measure | value | target | ok |")
    print("|---|---|---|---|")
    for name, value, target, passed in rows:
        mark = "" if passed is None else ("yes" if passed else "**MISSED**")
        print(f"| {name} | {value} | {target} | {mark} |")
    missed = [r for r in rows if r[3] is False]
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
