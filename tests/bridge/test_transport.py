"""Reply bursts: every datagram arrives, in order, with or without sendmmsg."""

from __future__ import annotations

import socket

import pytest

from bridge import transport
from bridge.datagrams import encode


@pytest.mark.parametrize("use_sendmmsg", [True, False])
@pytest.mark.parametrize("count", [1, 2, 5, 64])
def test_burst_arrives_in_order(monkeypatch, use_sendmmsg, count):
    if not use_sendmmsg:
        monkeypatch.setattr(transport, "_SENDMMSG", None)
    elif transport._SENDMMSG is None:
        pytest.skip("sendmmsg is Linux-only")
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    datagrams = [encode("/qriff/clip/notes", (i, 60 + i % 12, 0.25 * i, 0.25, 90), "iiffi") for i in range(count)]
    try:
        transport.send_burst(tx, datagrams, rx.getsockname())
        assert [rx.recvfrom(65536)[0] for _ in range(count)] == datagrams
    finally:
        rx.close()
        tx.close()


def test_burst_over_ipv6_loopback():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        rx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        rx.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    rx.settimeout(5)
    tx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    datagrams = [encode("/x", (i,), "i") for i in range(3)]
    try:
        transport.send_burst(tx, datagrams, rx.getsockname()[:2])
        assert [rx.recvfrom(65536)[0] for _ in range(3)] == datagrams
    finally:
        rx.close()
        tx.close()


def test_unreachable_destination_raises_oserror():
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with pytest.raises(OSError):
            transport.send_burst(tx, [b"x" * 70000, b"y"], ("127.0.0.1", 9))  # larger than any datagram
    finally:
        tx.close()
