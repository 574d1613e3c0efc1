"""qriff's OSC bridge: ``qriff serve`` for Max/MSP, Pure Data, TouchOSC and Ableton Live.

* :mod:`bridge.protocol`: the address table (methods, readable/writable properties).
* :mod:`bridge.datagrams`: the OSC codec and reply chunking.
* :mod:`bridge.server`: the UDP server, its job queue and replies.
* :mod:`bridge.ableton`: pushing clips into Live through AbletonOSC.
* :mod:`bridge.source`: where clips come from (the onnxruntime policy).
"""

from __future__ import annotations

from bridge.errors import BridgeError
from bridge.server import Server, ServerConfig

__all__ = ["BridgeError", "Server", "ServerConfig"]
