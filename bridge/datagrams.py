"""OSC datagrams through python-osc, with a thin strict layer for hostile input, and note chunking.

Parsing and building are python-osc's (:class:`~pythonosc.osc_message.OscMessage`,
:class:`~pythonosc.osc_message_builder.OscMessageBuilder` and the primitives of
:mod:`pythonosc.parsing.osc_types`). python-osc is lenient where a server facing the
network must not be, so :func:`decode` adds what it lacks, and nothing more:

* a size bound, and a refusal of empty datagrams;
* bundle framing walked here, before python-osc sees an element: every element size
  must be a positive multiple of 4 inside the datagram (python-osc loops forever on a
  negative size), nesting is bounded and so is the number of messages;
* type tags python-osc does not know are refused (it logs them and skips, which
  misreads every argument after them);
* the arguments must fill the message exactly (python-osc ignores trailing bytes);
* python-osc's three unrelated ``ParseError`` classes, and the ``UnicodeDecodeError``
  it lets through, all become one :class:`~bridge.errors.MalformedDatagram` that says
  what was wrong.

Replies that carry notes are chunked so that no datagram exceeds
:data:`MAX_DATAGRAM` bytes, a size Max's ``[udpreceive]`` and Pd's
``[netreceive -u -b]`` accept without truncation (a small, fixed bound also keeps one
lost datagram from losing a whole clip).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from pythonosc import osc_bundle, osc_message
from pythonosc.osc_message_builder import BuildError, OscMessageBuilder
from pythonosc.parsing import osc_types

from bridge.errors import MalformedDatagram

#: The largest datagram the bridge sends, in bytes.
MAX_DATAGRAM = 1024
#: Notes per ``/qriff/clip/notes`` reply (32 * 4 values + the id stay under MAX_DATAGRAM).
NOTES_PER_CHUNK = 32
#: The largest datagram the server reads; longer ones are rejected as malformed.
MAX_INCOMING = 8192
#: How deeply bundles may nest, and how many messages one datagram may carry.
MAX_BUNDLE_DEPTH = 4
MAX_MESSAGES = 64

_INT = struct.Struct(">i")
_MISSING = object()

#: OSC type tags python-osc parses (and so the bridge accepts); ``[`` ``]`` delimit arrays.
SUPPORTED_TAGS = "ihfdsbrmtTFN[]"
#: Bytes each fixed-size type occupies in a message.
_FIXED_SIZE = {"i": 4, "f": 4, "r": 4, "m": 4, "h": 8, "d": 8, "t": 8, "T": 0, "F": 0, "N": 0, "[": 0, "]": 0}


@dataclass(frozen=True)
class Message:
    """One decoded OSC message: ``address``, decoded ``args`` and their OSC ``tags``.

    ``tags`` has one character per top-level argument (``i`` int32, ``f`` float32,
    ``s`` string...; an array counts as one argument tagged ``[``), so a reply can
    echo a request id with the type it arrived in.
    """

    address: str
    args: tuple[Any, ...]
    tags: str


def _padded(size: int) -> int:
    return (size + 3) & ~3


def _string_size(text: str) -> int:
    return _padded(len(text.encode("utf-8")) + 1)


def _check_layout(data: bytes, pos: int, tags: str, args: list[Any]) -> None:
    """The arguments python-osc read from ``data[pos:]`` must fill it exactly, blobs as declared."""
    flat: list[Any] = []

    def walk(values: list[Any]) -> None:
        for v in values:
            if isinstance(v, list):
                walk(v)
            else:
                flat.append(v)

    walk(args)
    # python-osc yields a value for every tag but the array brackets: True, False and None
    # for T, F and N, so each of those takes its place in the sequence like any other value.
    values = iter(flat)
    for tag in tags:
        if tag in "[]":
            continue
        value = next(values, _MISSING)
        if value is _MISSING:
            raise MalformedDatagram(f"type tags ',{tags}' name more arguments than the datagram of "
                                    f"{len(data)} bytes holds")
        if tag == "s":
            pos += _string_size(cast(str, value))
        elif tag == "b":
            declared = _INT.unpack_from(data, pos)[0] if pos + 4 <= len(data) else None
            if declared != len(cast(bytes, value)):
                raise MalformedDatagram(f"blob at byte {pos} declares {declared} bytes, which the datagram of "
                                        f"{len(data)} bytes does not hold")
            pos += 4 + _padded(len(cast(bytes, value)))
        else:
            pos += _FIXED_SIZE[tag]
    if pos != len(data):
        what = "left over after the last argument" if pos < len(data) else "missing at the end"
        raise MalformedDatagram(f"{abs(len(data) - pos)} bytes {what} (type tags ',{tags}', "
                                f"datagram of {len(data)} bytes)")


def _top_level_tags(tags: str) -> str:
    """One tag per top-level argument: an array ``[...]`` becomes ``[``."""
    out, depth = [], 0
    for tag in tags:
        if tag == "[":
            if depth == 0:
                out.append("[")
            depth += 1
        elif tag == "]":
            depth -= 1
        elif depth == 0:
            out.append(tag)
    return "".join(out)


def decode_message(data: bytes) -> Message:
    """Decode one OSC message (not a bundle) with python-osc; MalformedDatagram on any defect."""
    if not data.startswith(b"/"):
        raise MalformedDatagram("an OSC message must start with an address beginning with '/'")
    if b"\x00" not in data:
        raise MalformedDatagram(f"the address is not NUL-terminated (datagram of {len(data)} bytes)")
    try:
        address, pos = osc_types.get_string(data, 0)
        tags = ""
        if pos < len(data):
            tags, _ = osc_types.get_string(data, pos)
            if not tags.startswith(","):
                raise MalformedDatagram(f"type tag string {tags[:16]!r} must start with ','")
            tags = tags[1:]
            unknown = sorted(set(tags) - set(SUPPORTED_TAGS))
            if unknown:
                raise MalformedDatagram(f"type tag {unknown[0]!r} is not supported: allowed are "
                                        f"{', '.join(SUPPORTED_TAGS)}")
        msg = osc_message.OscMessage(data)
        args = msg.params
    except UnicodeDecodeError:
        raise MalformedDatagram("a string of the message is not valid UTF-8") from None
    except (osc_message.ParseError, osc_types.ParseError) as exc:
        raise MalformedDatagram(f"not a valid OSC message: {_reason(exc)}") from None
    except (ValueError, OverflowError, IndexError, TypeError, struct.error) as exc:  # what python-osc lets escape
        raise MalformedDatagram(f"not a valid OSC message: {type(exc).__name__}: {exc}") from None
    _check_layout(data, _string_size(address) + (_string_size("," + tags) if tags or pos < len(data) else 0),
                  tags, args)
    return Message(address, tuple(args), _top_level_tags(tags))


def _reason(exc: Exception) -> str:
    """python-osc wraps its errors in each other; the innermost text says what was wrong."""
    while exc.args and isinstance(exc.args[-1], Exception):
        exc = exc.args[-1]
    return str(exc.args[0]) if exc.args else type(exc).__name__


def decode(data: bytes) -> list[Message]:
    """Decode a datagram (a message or a bundle, nested up to MAX_BUNDLE_DEPTH) into messages."""
    if len(data) > MAX_INCOMING:
        raise MalformedDatagram(f"datagram of {len(data)} bytes is too long (allowed: up to {MAX_INCOMING})")
    if not data:
        raise MalformedDatagram("empty datagram")
    out: list[Message] = []
    _decode_into(bytes(data), out, 0)
    return out


def _need(data: bytes, pos: int, size: int, what: str) -> None:
    if pos + size > len(data):
        raise MalformedDatagram(f"{what} at byte {pos} needs {size} bytes but the datagram ends at {len(data)}")


def _decode_into(data: bytes, out: list[Message], depth: int) -> None:
    if not osc_bundle.OscBundle.dgram_is_bundle(data):
        if len(out) >= MAX_MESSAGES:
            raise MalformedDatagram(f"datagram holds more than {MAX_MESSAGES} messages")
        out.append(decode_message(data))
        return
    if depth >= MAX_BUNDLE_DEPTH:
        raise MalformedDatagram(f"bundles nested deeper than {MAX_BUNDLE_DEPTH}")
    _need(data, 8, 8, "bundle time tag")
    pos = 16  # "#bundle\0" + 8-byte time tag (ignored: requests run as soon as they arrive)
    while pos < len(data):
        _need(data, pos, 4, "bundle element size")
        size = _INT.unpack_from(data, pos)[0]
        pos += 4
        if size <= 0 or size % 4:
            raise MalformedDatagram(f"bundle element size {size} at byte {pos - 4} is not a positive multiple of 4")
        _need(data, pos, size, "bundle element")
        _decode_into(data[pos:pos + size], out, depth + 1)
        pos += size


# ----------------------------------------------------------------------- encoding

def encode(address: str, args: Sequence[Any] = (), tags: str | None = None) -> bytes:
    """Build one OSC message with python-osc's OscMessageBuilder.

    Types follow the Python values (python-osc's guess: bool ``T``/``F``, int ``i`` or
    ``h`` beyond 32 bits, float ``f``, str ``s``, bytes ``b``, None ``N``) unless
    ``tags`` gives one character per argument.
    """
    builder = OscMessageBuilder(address)
    if tags is None:
        for value in args:
            builder.add_arg(value)
    else:
        if len(tags) != len(args):
            raise ValueError(f"{len(tags)} type tags for {len(args)} arguments")
        for tag, value in zip(tags, args):
            if tag == "i" or tag == "h":
                value = int(value)
            elif tag == "f" or tag == "d":
                value = float(value)
            elif tag == "s":
                value = str(value)
            elif tag in "TF":
                value = tag == "T"
            builder.add_arg(value, tag)
    try:
        return builder.build().dgram
    except BuildError as exc:
        raise ValueError(f"cannot build {address}: {exc}") from None


# ------------------------------------------------------------------------ chunking

def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of at most ``size`` items (none for an empty sequence)."""
    if size < 1:
        raise ValueError(f"chunk size {size} must be at least 1")
    for start in range(0, len(items), size):
        yield items[start:start + size]
