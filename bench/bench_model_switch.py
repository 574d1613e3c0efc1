"""Switching the served model over OSC: back and forth is instant once a model is loaded (issue 21).

A ``qriff serve`` server runs in this process with the real policies; a client sends
``/qriff/set/model`` over loopback UDP and times each answer. Measured in the same run:

* ping: ``/qriff/ping`` round trips, the baseline (the receive loop doing no work);
* cached switch: back and forth between two shipped models already loaded;
* first switch: to a model not loaded yet (a new server each round, so the file is read
  and an onnxruntime session built every time).

Target: a cached switch costs at most 2x a ping (median round trips): it loads nothing.
The first switch is reported beside it (it blocks the receive loop while it loads).

Prints a table; exits 1 when the target is missed. ``--cache 1`` (one model kept loaded,
so every switch loads again) is the negative control: it must miss the target.

    .venv/bin/python bench/bench_model_switch.py [--switches 400] [--first 8] [--cache 4]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pythonosc.osc_message import OscMessage  # noqa: E402

from bridge.datagrams import encode  # noqa: E402
from bridge.server import Server, ServerConfig  # noqa: E402
from bridge.source import CACHED_MODELS, PolicySource  # noqa: E402
from engine.runtime import available_models  # noqa: E402

CACHED_RATIO_TARGET = 2.0
A, B = "qriff-default-3", "qriff-default-2"  # the shipped recurrent and feed-forward models


def round_trip(sock: socket.socket, server: tuple[str, int], address: str, *args: object) -> tuple[float, list]:
    """Seconds from sending ``address 1 args...`` to its answer; the answer's arguments."""
    tags = "i" + "".join("s" if isinstance(a, str) else "i" for a in args)
    data = encode(address, (1, *args), tags)
    t0 = time.perf_counter()
    sock.sendto(data, server)
    reply, _ = sock.recvfrom(65536)
    seconds = time.perf_counter() - t0
    msg = OscMessage(reply)
    if msg.address == "/qriff/error":
        raise SystemExit(f"{address} {args}: {msg.params}")
    return seconds, list(msg.params)


def serve(out: Path, first: str, cache: int = CACHED_MODELS) -> Server:
    source = PolicySource(first, cache_size=cache)
    return Server(ServerConfig(port=0, out_dir=out, feedback_store=out / "fb.sqlite"), source).start()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--switches", type=int, default=400, help="cached switches (and pings) to time (default: 400)")
    ap.add_argument("--first", type=int, default=8, help="first switches to time, one new server each (default: 8)")
    ap.add_argument("--cache", type=int, default=CACHED_MODELS,
                    help=f"models kept loaded (default: {CACHED_MODELS}, the server's); 1 = the negative control")
    args = ap.parse_args()
    ids = [e.model_id for e in available_models()]
    if A not in ids or B not in ids:
        print(f"needs the shipped models {A} and {B}; found {ids}", file=sys.stderr)
        return 2
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10.0)
    with tempfile.TemporaryDirectory() as tmp:
        first = []
        for i in range(args.first):
            srv = serve(Path(tmp) / f"first-{i}", B)
            try:
                round_trip(sock, srv.address, "/qriff/get/model")  # the first model is loaded by now
                first.append(round_trip(sock, srv.address, "/qriff/set/model", A)[0])
            finally:
                srv.stop()
        srv = serve(Path(tmp) / "cached", A, args.cache)
        try:
            round_trip(sock, srv.address, "/qriff/set/model", B)  # both loaded from here on
            pings, switches = [], []
            for i in range(args.switches):
                pings.append(round_trip(sock, srv.address, "/qriff/ping")[0])
                seconds, reply = round_trip(sock, srv.address, "/qriff/set/model", A if i % 2 == 0 else B)
                assert reply[1] == (A if i % 2 == 0 else B), reply
                switches.append(seconds)
        finally:
            srv.stop()
    ping_ms, cached_ms = statistics.median(pings) * 1e3, statistics.median(switches) * 1e3
    first_ms = statistics.median(first) * 1e3
    ratio = cached_ms / ping_ms
    ok = ratio <= CACHED_RATIO_TARGET
    print(f"{os.cpu_count()} CPUs, loadavg {os.getloadavg()[0]:.1f}; {args.switches} switches {A} <-> {B} "
          f"(cache {args.cache}), {args.first} first switches")
    print("| what | median round trip (ms) | p90 (ms) |")
    print("|---|---|---|")
    print(f"| ping (baseline) | {ping_ms:.3f} | {statistics.quantiles(pings, n=10)[-1] * 1e3:.3f} |")
    print(f"| cached switch | {cached_ms:.3f} | {statistics.quantiles(switches, n=10)[-1] * 1e3:.3f} |")
    print(f"| first switch (loads {A}) | {first_ms:.1f} | {max(first) * 1e3:.1f} (max) |")
    print(f"cached switch / ping = {ratio:.2f} (target <= {CACHED_RATIO_TARGET:g}): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
