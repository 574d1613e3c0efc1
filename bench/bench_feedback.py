"""Keep/discard feedback over OSC: every verdict stored, fast enough, in flat memory (issue 18).

A ``qriff serve`` server runs in this process (the shipped model makes the clips); a
client in another process, as Max or Pd would be, sends ``/qriff/feedback id clip
keep|discard [stars]`` over loopback UDP with up to ``--window`` requests in flight and
counts the ``/qriff/feedback/stored`` answers.

Targets:

1. none lost: all ``--verdicts`` (10,000) acknowledged, and the store's ``revisions``
   add up to exactly that many (a clip judged again keeps its last verdict, and counts);
2. rate: >= 500 verdicts/s end to end. Reported beside it, as the ceiling of the same
   client and socket: ``/qriff/ping`` requests/s in the same run (ratio feedback/ping);
3. flat memory: the server's resident memory grows by at most 4 MB between the first
   20% of the verdicts and the end (sampled every 1,000).

Prints a table; exits 1 when a target is missed.

    .venv/bin/python bench/bench_feedback.py [--verdicts 10000] [--window 32] [--clips 160]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pythonosc.osc_message import OscMessage  # noqa: E402

from bridge.datagrams import encode  # noqa: E402
from bridge.server import Server, ServerConfig  # noqa: E402
from bridge.source import PolicySource  # noqa: E402

RATE_TARGET = 500.0
RSS_GROWTH_MB = 4.0


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def client(server: tuple[str, int], clips: list[str], verdicts: int, window: int, kind: str, out) -> None:
    """Send ``verdicts`` requests (feedback, or pings for the ceiling) with ``window`` in flight."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5.0)
    acked = errors = sent = 0
    t0 = time.perf_counter()
    while acked + errors < verdicts:
        while sent < verdicts and sent - (acked + errors) < window:
            if kind == "ping":
                data = encode("/qriff/ping", (sent,), "i")
            else:
                verdict = "keep" if sent % 3 else "discard"
                args, tags = [sent, clips[sent % len(clips)], verdict], "iss"
                if sent % 2:
                    args.append(1 + sent % 5)
                    tags += "i"
                data = encode("/qriff/feedback", (*args, "source", "osc"), tags + "ss")
            sock.sendto(data, server)
            sent += 1
        try:
            reply, _ = sock.recvfrom(65536)
        except TimeoutError:
            break  # a lost datagram: reported as missing
        address = OscMessage(reply).address
        if address == "/qriff/error":
            errors += 1
        else:
            acked += 1
    out.put({"acked": acked, "errors": errors, "sent": sent, "seconds": time.perf_counter() - t0})


def run_client(address, clips, verdicts, window, kind):
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=client, args=(address, clips, verdicts, window, kind, q))
    proc.start()
    result = q.get(timeout=600)
    proc.join()
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--verdicts", type=int, default=10_000)
    ap.add_argument("--window", type=int, default=32, help="requests in flight (default 32)")
    ap.add_argument("--clips", type=int, default=160, help="distinct clips judged (default 160)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "feedback.sqlite"
        cfg = ServerConfig(port=0, out_dir=Path(tmp) / "clips", feedback_store=store)
        source = PolicySource()
        source.load()
        with Server(cfg, source) as srv:
            # clips to judge, written by the server itself
            made = 0
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(30)
            clips: list[str] = []
            while made < args.clips:
                n = min(16, args.clips - made)
                sock.sendto(encode("/qriff/generate", (made, "bars", 2, "variations", n), "isisi"), srv.address)
                while True:
                    m = OscMessage(sock.recvfrom(65536)[0])
                    if m.address == "/qriff/clip/end":
                        clips.append(Path(m.params[4]).name)
                        if m.params[1] == n - 1:
                            break
                    elif m.address == "/qriff/error":
                        raise SystemExit(f"generate failed: {m.params}")
                made += n
            sock.close()

            ping = run_client(srv.address, clips, args.verdicts, args.window, "ping")
            samples: list[tuple[int, float]] = []
            stop = threading.Event()

            served0 = srv.read("served")

            def sample() -> None:  # progress from the server's own count: no reader of the store in here
                while not stop.is_set():
                    samples.append((srv.read("served") - served0, rss_mb()))
                    stop.wait(0.1)

            sampler = threading.Thread(target=sample, daemon=True)
            rss0 = rss_mb()
            sampler.start()
            fb = run_client(srv.address, clips, args.verdicts, args.window, "feedback")
            stop.set()
            sampler.join()
            rss1 = rss_mb()
        with sqlite3.connect(store) as db:
            rows, revisions = db.execute("SELECT count(*), sum(revisions) FROM verdicts").fetchone()

    fb_rate = fb["acked"] / fb["seconds"]
    ping_rate = ping["acked"] / ping["seconds"]
    early = [rss for n, rss in samples if n <= args.verdicts * 0.2]
    base = max(early) if early else rss0
    growth = max([rss for _, rss in samples] + [rss1]) - base
    lost = args.verdicts - fb["acked"]
    ok_lost = lost == 0 and fb["errors"] == 0 and revisions == args.verdicts and rows == len(set(clips))
    ok_rate = fb_rate >= RATE_TARGET
    ok_mem = growth <= RSS_GROWTH_MB
    print("| target | measured | goal | met |\n|---|---|---|---|")
    print(f"| verdicts stored | {fb['acked']:,} acked, {fb['errors']} errors, store revisions {revisions:,} on "
          f"{rows} clips | {args.verdicts:,}, none lost | {'yes' if ok_lost else 'NO'} |")
    print(f"| rate | {fb_rate:,.0f} verdicts/s (ping ceiling {ping_rate:,.0f}/s, ratio {fb_rate / ping_rate:.2f}) "
          f"| >= {RATE_TARGET:.0f}/s | {'yes' if ok_rate else 'NO'} |")
    print(f"| memory | RSS {base:.1f} MB after 20% -> peak {base + growth:.1f} MB (+{growth:.2f} MB) "
          f"| <= +{RSS_GROWTH_MB:g} MB | {'yes' if ok_mem else 'NO'} |")
    by_k = {}
    for n, rss in samples:
        by_k.setdefault(n // 1000, rss)
    print("RSS (MB) at each 1,000 verdicts: " + " ".join(f"{v:.1f}" for _, v in sorted(by_k.items())))
    print(f"window {args.window}, {len(clips)} clips, {len(samples)} memory samples; load "
          f"{os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    return 0 if ok_lost and ok_rate and ok_mem else 1


if __name__ == "__main__":
    sys.exit(main())
