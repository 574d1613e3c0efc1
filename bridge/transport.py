"""Sending a burst of reply datagrams with one system call where the OS allows it.

A clip goes back as several datagrams (begin, track, notes chunks, end). Sent one by
one, the first wakes the requester, and on a busy machine the scheduler may hand the
CPU to it before the rest are out: every later datagram then waits for the server to
be scheduled again. Linux's ``sendmmsg(2)`` queues the whole burst in one call, so the
requester's wake-up can only come after it. Elsewhere (or if the call is refused) the
datagrams are sent with ``sendto`` one after another.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import socket
import struct
import sys
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.POINTER(_IoVec)), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t), ("msg_flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


def _load_sendmmsg() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sendmmsg
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.POINTER(_MMsgHdr), ctypes.c_uint, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_SENDMMSG = _load_sendmmsg()


def _sockaddr(family: int, dest: tuple[str, int]) -> bytes:
    host, port = dest[0], dest[1]
    if family == socket.AF_INET:
        return struct.pack("=H", socket.AF_INET) + struct.pack(">H", port) + socket.inet_aton(host) + bytes(8)
    return (struct.pack("=H", socket.AF_INET6) + struct.pack(">H", port) + bytes(4)
            + socket.inet_pton(socket.AF_INET6, host.split("%")[0]) + bytes(4))


def send_burst(sock: socket.socket, datagrams: Sequence[bytes], dest: tuple[str, int]) -> None:
    """Send ``datagrams`` to ``dest`` in order; one ``sendmmsg`` call on Linux. OSError as ``sendto`` raises."""
    if _SENDMMSG is None or len(datagrams) < 2:
        for data in datagrams:
            sock.sendto(data, dest)
        return
    try:
        name = _sockaddr(sock.family, dest)
    except OSError:  # a host name rather than an address: let sendto resolve it
        for data in datagrams:
            sock.sendto(data, dest)
        return
    n = len(datagrams)
    name_buf = ctypes.create_string_buffer(name, len(name))
    bufs = [ctypes.create_string_buffer(d, len(d)) for d in datagrams]
    iovs = (_IoVec * n)(*[_IoVec(ctypes.cast(b, ctypes.c_void_p), len(d)) for b, d in zip(bufs, datagrams)])
    msgs = (_MMsgHdr * n)()
    for i in range(n):
        hdr = msgs[i].msg_hdr
        hdr.msg_name = ctypes.cast(name_buf, ctypes.c_void_p)
        hdr.msg_namelen = len(name)
        hdr.msg_iov = ctypes.pointer(iovs[i])
        hdr.msg_iovlen = 1
    sent = _SENDMMSG(sock.fileno(), msgs, n, 0)
    if sent < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"sendmmsg to {dest[0]}:{dest[1]} failed: {os.strerror(err)}")
    for data in datagrams[sent:]:  # the kernel may take fewer than asked
        sock.sendto(data, dest)
