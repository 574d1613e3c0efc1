"""``qriff serve``: the OSC bridge on the command line.

Registered through the ``qriff.commands`` entry point (see pyproject.toml), so the
engine's CLI never imports the bridge.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from bridge.ableton import LIVE_PORT
from engine.base.options import bounded_int

log = logging.getLogger(__name__)


def _port(allow_zero: bool) -> Any:
    lo = 0 if allow_zero else 1

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a port number (allowed: {lo}-65535)") from None
        if not lo <= value <= 65535:
            raise argparse.ArgumentTypeError(f"{value} is out of range (allowed: {lo}-65535)")
        return value

    parse.__name__ = "port"
    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (allowed: 0.05-30)") from None
    if not 0.05 <= value <= 30:
        raise argparse.ArgumentTypeError(f"{text} is out of range (allowed: 0.05-30 seconds)")
    return value


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a network: give CIDR like 192.168.1.0/24 or an "
                                         "address like 10.0.0.5") from None


def register(subparsers: Any) -> None:
    """Add ``qriff serve`` to the ``qriff`` parser."""
    p = subparsers.add_parser(
        "serve", help="OSC bridge for Max/MSP, Pure Data, TouchOSC and Ableton Live",
        description="Serve clips over OSC (UDP). Requests carry a request id first and every reply echoes it; "
                    "see the address table in docs/osc-and-live.md or 'qriff serve --address-table'. Stop with Ctrl-C "
                    "(SIGINT) or SIGTERM.")
    net = p.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1",
                     help="interface to bind; anything but loopback exposes qriff to your network (a warning is "
                          "printed; restrict senders with --allow; default: 127.0.0.1)")
    net.add_argument("--port", type=_port(True), default=9000, help="UDP port to listen on, 0 = any free port (default: 9000)")
    net.add_argument("--reply-port", type=_port(True), default=0,
                     help="send replies to this port on the sender's host (Max [udpreceive], Pd [netreceive]); "
                          "0 = the port the request came from (default). Requests may override it with "
                          "reply_port N")
    net.add_argument("--allow", type=_network, action="append", default=[], metavar="CIDR",
                     help="accept requests only from this network (repeatable); default: loopback only when bound "
                          "to loopback, everyone otherwise")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for .mid/.json clips and stems (default: the user data folder, e.g. "
                        "~/.local/share/qriff/clips)")
    p.add_argument("--model", default=None,
                   help="the model to generate with first: an ONNX file or a model id of /qriff/list/models, e.g. a "
                        "personal model from 'qriff tune' (default: the model shipped with qriff); clients switch "
                        "with /qriff/set/model")
    p.add_argument("--queue", type=bounded_int(1, 4096), default=64,
                   help="generate/render jobs allowed to wait, 1-4096; beyond that requests get "
                        "/qriff/error id busy (default: 64)")
    p.add_argument("--workers", type=bounded_int(1, 16), default=1, help="threads running generate/render jobs, 1-16 (default: 1)")
    p.add_argument("--writers", type=bounded_int(1, 16), default=4,
                   help="threads writing clip files while the next clips are generated, 1-16 (default: 4)")
    p.add_argument("--address-table", action="store_true", help="print the OSC address table (markdown) and exit")
    live = p.add_argument_group("Ableton Live (AbletonOSC)")
    live.add_argument("--live-host", default="127.0.0.1", help="host running Live with AbletonOSC (default: 127.0.0.1)")
    live.add_argument("--live-port", type=_port(False), default=LIVE_PORT, help="AbletonOSC's listening port (default: 11000)")
    live.add_argument("--no-create-scenes", dest="create_scenes", action="store_false",
                      help="when the target track has no empty clip slot from the requested one, report an error "
                           "instead of adding a scene at the end of the set")
    live.add_argument("--live-timeout", type=_seconds, default=1.0, help="seconds to wait for each AbletonOSC answer, 0.05-30 (default: 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit status."""
    from bridge import protocol
    from bridge.server import Server, ServerConfig, default_out_dir
    from bridge.source import PolicySource

    if args.address_table:
        sys.stdout.write(protocol.address_table_markdown())
        return 0
    config = ServerConfig(host=args.host, port=args.port, reply_port=args.reply_port,
                          out_dir=args.out if args.out is not None else default_out_dir(), allow=tuple(args.allow),
                          queue_size=args.queue, workers=args.workers, writers=args.writers,
                          live_host=args.live_host,
                          live_port=args.live_port, live_create_scenes=args.create_scenes,
                          live_timeout=args.live_timeout)
    source = PolicySource(args.model)
    server = Server(config, source)
    host, port = server.bind()  # a busy port or unusable --out is reported first (cheap checks)
    source.load()  # then a missing or stale model, now rather than on the first request
    if not server.binds_loopback():
        allowed = ", ".join(str(n) for n in args.allow) or "everyone"
        print(f"qriff serve: warning: listening on {host}:{port} exposes qriff to the network "
              f"(accepting requests from {allowed}; restrict with --allow CIDR)", file=sys.stderr)

    def stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        server.stop(wait=False)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(f"qriff serve: listening on {host}:{port} (model {source.model_id}, clips in {server.out_dir})",
          file=sys.stderr, flush=True)
    server.serve_forever()
    print("qriff serve: stopped", file=sys.stderr, flush=True)
    return 0
