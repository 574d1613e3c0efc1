"""qriff's OSC bridge: ``qriff serve`` for Max/MSP, Pure Data, TouchOSC and Ableton Live.

* :mod:`bridge.protocol`: the address table (methods with their handlers, properties, lists).
* :mod:`bridge.dispatch`: the dispatcher built from that table, and request parsing.
* :mod:`bridge.datagrams`: OSC through python-osc with a strict layer for hostile input; chunking.
* :mod:`bridge.server`: the UDP socket and its receive loop.
* :mod:`bridge.jobs`: the bounded job queue and the worker threads.
* :mod:`bridge.delivery`: clip files, reply bursts, Live pushes and error replies.
* :mod:`bridge.verdicts`: ``/qriff/feedback`` verdicts into the feedback store (group commits).
* :mod:`bridge.ableton`: pushing clips into Live through AbletonOSC.
* :mod:`bridge.source`: where clips come from (the onnxruntime policy).

The OSC contract is written out in docs/osc.md.
"""

from __future__ import annotations

from bridge.errors import BridgeError
from bridge.server import Server, ServerConfig

__all__ = ["BridgeError", "Server", "ServerConfig"]
