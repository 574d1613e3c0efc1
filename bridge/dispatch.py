"""Requests to handlers: a dispatcher built from the address table in :mod:`bridge.protocol`.

Like python-osc's ``Dispatcher.map(address, handler, *args)``, every address is mapped
to a handler and the fixed arguments it is called with: each method of
:data:`~bridge.protocol.METHODS` to the handler it carries, each property's
``/qriff/get/<name>`` (and ``/qriff/set/<name>`` when writable) to the generic property
handlers with the property, each list to the list handler with its name. Unlike
python-osc's, matching is exact: an OSC address pattern (``/qriff/set/*``) from the
network would otherwise fan one datagram out to many handlers.

The server turns a decoded message into a :class:`~bridge.protocol.Request` in three steps:
the reply port first (:func:`reply_port_of`, so that even an error reaches a Max or
Pd listener), then the request id (:func:`split_request`), then the options of the
method (:func:`options_of`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bridge import protocol
from bridge.datagrams import Message
from bridge.errors import BridgeError, RequestError
from bridge.protocol import PREFIX, Context, Request

Address = tuple[str, int]


@dataclass(frozen=True)
class Route:
    """A handler and the fixed arguments it gets after ``(ctx, request)``."""

    handler: Callable[..., None]
    args: tuple[Any, ...] = ()

    def __call__(self, ctx: Context, request: Request) -> None:
        self.handler(ctx, request, *self.args)


class Dispatcher:
    """Exact address -> :class:`Route`."""

    def __init__(self) -> None:
        self._map: dict[str, Route] = {}

    def map(self, address: str, handler: Callable[..., None], *args: Any) -> None:
        """Route ``address`` to ``handler(ctx, request, *args)``; an address is mapped once."""
        if address in self._map:
            raise ValueError(f"{address} is already mapped")
        self._map[address] = Route(handler, args)

    def route(self, address: str) -> Route:
        """The route of ``address``; RequestError ``unknown_address`` naming what exists instead."""
        found = self._map.get(address)
        if found is None:
            raise unknown_address(address)
        return found

    @property
    def addresses(self) -> list[str]:
        return list(self._map)


def from_table() -> Dispatcher:
    """Every request address of the table, routed."""
    d = Dispatcher()
    for m in protocol.METHODS:
        d.map(m.address, m.handler)
    for p in protocol.PROPERTIES.values():
        d.map(f"{PREFIX}/get/{p.name}", protocol.get_property, p)
        if p.writable:
            d.map(f"{PREFIX}/set/{p.name}", protocol.set_property, p)
    for name in protocol.LISTS:
        d.map(f"{PREFIX}/list/{name}", protocol.list_property, name)
    return d


def unknown_address(address: str) -> RequestError:
    """The error for an address that is not in the table, with what the sender probably meant."""
    for kind in ("get", "set"):
        if address.startswith(f"{PREFIX}/{kind}/"):
            name = address[len(PREFIX) + len(kind) + 2:]
            prop = protocol.PROPERTIES.get(name)
            if kind == "set":
                known = ", ".join(p.name for p in protocol.PROPERTIES_RW)
                hint = " is read-only" if prop is not None else " is not a property"
                return RequestError(f"{address}: {name!r}{hint}; writable: {known}", code="unknown_address")
            return RequestError(f"{address}: {name!r} is not a property; properties are "
                                f"{', '.join(protocol.PROPERTIES)}", code="unknown_address")
    if address.startswith(f"{PREFIX}/list/"):
        return RequestError(f"{address} is not known: lists are {', '.join(protocol.LISTS)}", code="unknown_address")
    return RequestError(f"address {address!r} is not known: see /qriff/list/properties and the address "
                        f"table in docs/osc-and-live.md (methods: {', '.join(m.address for m in protocol.METHODS)})", code="unknown_address")


def reply_port_of(msg: Message) -> int | None:
    """The reply port the message asks for, honoured before anything else is checked; None if none.

    Anywhere after the request id, the string ``reply_port`` followed by a port 1-65535
    names it (the first such pair wins), whether or not the rest of the message pairs up
    or is valid at all: the error about a bad request must reach a Max or Pd listener too.
    """
    args = msg.args
    for i in range(1, len(args) - 1):
        if _is_reply_port_name(args[i]):
            port = _port(args[i + 1])
            if port is not None:
                return port
    return None


def split_request(msg: Message) -> tuple[Any, str, list[Any]]:
    """``(id, its type tag, the arguments after it)``; a trailing ``reply_port N`` of a non-method is dropped.

    RequestError when the id is missing or of an unusable type.
    """
    args, tags = list(msg.args), msg.tags
    if protocol.method(msg.address) is None and _trailing_reply_port(msg):
        args, tags = args[:-2], tags[:-2]
    rid, rtag = protocol.check_request_id(msg.address, args, tags)
    return rid, rtag, args[1:]


def options_of(address: str, args: Sequence[Any]) -> dict[str, Any]:
    """The options of a method's request (none for properties and lists).

    A method's fixed arguments come first and are returned under their names, unparsed
    (the handler checks them); an optional one is present when what follows would
    otherwise not pair up. The rest are key/value options.
    """
    method = protocol.method(address)
    if method is None:
        return {}
    required = [a for a in method.args if not a.optional]
    optional = [a for a in method.args if a.optional]
    if len(args) < len(required):
        usage = " ".join(f"[{a.name}]" if a.optional else a.name for a in method.args)
        raise RequestError(f"{address}: expected id {usage} after the address, got {len(args)} values after the id "
                           f"(e.g. {address} 1 000001-0.json keep)")
    fixed = list(required)
    extra = len(args) - len(required)
    for arg in optional:
        if extra % 2 == 1:
            fixed.append(arg)
            extra -= 1
    out: dict[str, Any] = {a.name: v for a, v in zip(fixed, args)}
    out.update(protocol.parse_options(address, args[len(fixed):], method.options))
    return out


def _is_reply_port_name(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() == "reply_port"


def _trailing_reply_port(msg: Message) -> bool:
    """Whether a get, set or list request ends in ``reply_port N`` after its id (and a set's value)."""
    args = msg.args
    least = 4 if msg.address.startswith(f"{PREFIX}/set/") else 3
    return len(args) >= least and _is_reply_port_name(args[-2])


def _port(value: Any) -> int | None:
    """``value`` as a reply port 1-65535, or None when it is not one."""
    try:
        return protocol.as_int("reply_port", value, 1, 65535)
    except BridgeError:
        return None
