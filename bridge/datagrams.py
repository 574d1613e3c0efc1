"""OSC 1.0 datagrams: a strict decoder, a small encoder, and note chunking.

The decoder never trusts its input: every length is checked against the datagram,
strings must be NUL-terminated and padded to 4 bytes, and any problem raises
:class:`~bridge.errors.MalformedDatagram` naming what was wrong and where. python-osc
is used by clients and tests; the server uses this codec because python-osc's parser
logs unknown type tags through the root logger and raises several exception types.

Replies that carry notes are chunked so that no datagram exceeds
:data:`MAX_DATAGRAM` bytes, a size Max's ``[udpreceive]`` and Pd's
``[netreceive -u -b]`` accept without truncation (both read far larger packets; a
small, fixed bound also keeps one lost datagram from losing a whole clip).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

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

_BUNDLE_TAG = b"#bundle\x00"
_INT = struct.Struct(">i")
_INT64 = struct.Struct(">q")
_FLOAT = struct.Struct(">f")
_DOUBLE = struct.Struct(">d")

#: OSC type tags the decoder understands.
SUPPORTED_TAGS = "ifsbhdtcTFNIS"


@dataclass(frozen=True)
class Message:
    """One decoded OSC message: ``address``, decoded ``args`` and their OSC ``tags``.

    ``tags`` has one character per argument (``i`` int32, ``f`` float32, ``s``
    string...), so a reply can echo a request id with the type it arrived in.
    """

    address: str
    args: tuple[Any, ...]
    tags: str


def _read_string(data: bytes, pos: int, what: str) -> tuple[str, int]:
    end = data.find(b"\x00", pos)
    if end < 0:
        raise MalformedDatagram(f"{what} at byte {pos} is not NUL-terminated (datagram of {len(data)} bytes)")
    nxt = (end + 4) & ~3
    if nxt > len(data):
        raise MalformedDatagram(f"{what} at byte {pos} is not padded to a multiple of 4 bytes")
    try:
        text = data[pos:end].decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedDatagram(f"{what} at byte {pos} is not valid UTF-8") from None
    return text, nxt


def _need(data: bytes, pos: int, size: int, what: str) -> None:
    if pos + size > len(data):
        raise MalformedDatagram(f"{what} at byte {pos} needs {size} bytes but the datagram ends at {len(data)}")


def decode_message(data: bytes) -> Message:
    """Decode one OSC message (not a bundle); MalformedDatagram on any defect."""
    if not data.startswith(b"/"):
        raise MalformedDatagram("an OSC message must start with an address beginning with '/'")
    address, pos = _read_string(data, 0, "address")
    if pos == len(data):
        return Message(address, (), "")  # OSC 1.0 allows a message without a type tag string
    tags, pos = _read_string(data, pos, "type tag string")
    if not tags.startswith(","):
        raise MalformedDatagram(f"type tag string {tags[:16]!r} must start with ','")
    tags = tags[1:]
    args: list[Any] = []
    for tag in tags:
        if tag == "i":
            _need(data, pos, 4, "int32")
            args.append(_INT.unpack_from(data, pos)[0])
            pos += 4
        elif tag == "f":
            _need(data, pos, 4, "float32")
            args.append(_FLOAT.unpack_from(data, pos)[0])
            pos += 4
        elif tag in "sS":
            text, pos = _read_string(data, pos, "string")
            args.append(text)
        elif tag == "b":
            _need(data, pos, 4, "blob size")
            size = _INT.unpack_from(data, pos)[0]
            if size < 0:
                raise MalformedDatagram(f"blob at byte {pos} has a negative size {size}")
            pos += 4
            _need(data, pos, size, "blob")
            args.append(bytes(data[pos:pos + size]))
            pos = (pos + size + 3) & ~3
            if pos > len(data):
                raise MalformedDatagram("blob is not padded to a multiple of 4 bytes")
        elif tag == "h":
            _need(data, pos, 8, "int64")
            args.append(_INT64.unpack_from(data, pos)[0])
            pos += 8
        elif tag == "d":
            _need(data, pos, 8, "float64")
            args.append(_DOUBLE.unpack_from(data, pos)[0])
            pos += 8
        elif tag == "t":
            _need(data, pos, 8, "time tag")
            args.append(_INT64.unpack_from(data, pos)[0])
            pos += 8
        elif tag == "c":
            _need(data, pos, 4, "char")
            args.append(chr(_INT.unpack_from(data, pos)[0] & 0x7F))
            pos += 4
        elif tag == "T":
            args.append(True)
        elif tag == "F":
            args.append(False)
        elif tag == "N":
            args.append(None)
        elif tag == "I":
            args.append(math.inf)
        else:
            raise MalformedDatagram(f"type tag {tag!r} is not supported: allowed are {', '.join(SUPPORTED_TAGS)}")
    if pos != len(data):
        raise MalformedDatagram(f"{len(data) - pos} bytes left over after the last argument")
    return Message(address, tuple(args), tags)


def decode(data: bytes) -> list[Message]:
    """Decode a datagram (a message or a bundle, nested up to MAX_BUNDLE_DEPTH) into messages."""
    if len(data) > MAX_INCOMING:
        raise MalformedDatagram(f"datagram of {len(data)} bytes is too long (allowed: up to {MAX_INCOMING})")
    if not data:
        raise MalformedDatagram("empty datagram")
    out: list[Message] = []
    _decode_into(bytes(data), out, 0)
    return out


def _decode_into(data: bytes, out: list[Message], depth: int) -> None:
    if not data.startswith(_BUNDLE_TAG):
        if len(out) >= MAX_MESSAGES:
            raise MalformedDatagram(f"datagram holds more than {MAX_MESSAGES} messages")
        out.append(decode_message(data))
        return
    if depth >= MAX_BUNDLE_DEPTH:
        raise MalformedDatagram(f"bundles nested deeper than {MAX_BUNDLE_DEPTH}")
    pos = 16  # "#bundle\0" + 8-byte time tag (ignored: requests run as soon as they arrive)
    _need(data, 8, 8, "bundle time tag")
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

def _pad(raw: bytes) -> bytes:
    return raw + b"\x00" * (4 - len(raw) % 4)


def encode_string(text: str) -> bytes:
    """An OSC string: UTF-8, NUL-terminated, padded to 4 bytes."""
    return _pad(text.encode("utf-8"))


def encode(address: str, args: Sequence[Any] = (), tags: str | None = None) -> bytes:
    """Encode one OSC message.

    Types follow the Python values (bool ``T``/``F``, int ``i`` or ``h`` beyond 32
    bits, float ``f``, str ``s``, bytes ``b``, None ``N``) unless ``tags`` gives one
    character per argument (``i``, ``f``, ``s``, ``h``, ``d``, ``T``, ``F``...).
    The body is packed with a single ``struct.pack`` call (a clip's note list is the
    hot path of every reply).
    """
    if tags is None:
        tags = "".join(_tag_of(v) for v in args)
    elif len(tags) != len(args):
        raise ValueError(f"{len(tags)} type tags for {len(args)} arguments")
    fmt: list[str] = [">"]
    values: list[Any] = []
    for tag, value in zip(tags, args):
        if tag == "i":
            fmt.append("i")
            values.append(int(value))
        elif tag == "f":
            fmt.append("f")
            values.append(float(value))
        elif tag in "sS":
            raw = str(value).encode("utf-8")
            fmt.append(f"{(len(raw) + 4) & ~3}s")  # NUL-terminated, padded to 4 bytes
            values.append(raw)
        elif tag == "h":
            fmt.append("q")
            values.append(int(value))
        elif tag == "d":
            fmt.append("d")
            values.append(float(value))
        elif tag == "b":
            blob = bytes(value)
            fmt.append(f"i{(len(blob) + 3) & ~3}s")
            values += (len(blob), blob)
        elif tag not in "TFNI":
            raise ValueError(f"type tag {tag!r} cannot be encoded")
    return encode_string(address) + encode_string("," + tags) + struct.pack("".join(fmt), *values)


def _tag_of(value: Any) -> str:
    if value is True:
        return "T"
    if value is False:
        return "F"
    if value is None:
        return "N"
    if isinstance(value, int):
        return "i" if -(2**31) <= value < 2**31 else "h"
    if isinstance(value, float):
        return "f"
    if isinstance(value, str):
        return "s"
    if isinstance(value, (bytes, bytearray)):
        return "b"
    raise TypeError(f"{type(value).__name__} {value!r} has no OSC type (allowed: bool, int, float, str, bytes, None)")


def encode_bundle(messages: Sequence[bytes]) -> bytes:
    """A bundle (time tag "immediately") holding already encoded messages."""
    parts = [_BUNDLE_TAG, _INT64.pack(1)]
    for m in messages:
        parts.append(_INT.pack(len(m)))
        parts.append(m)
    return b"".join(parts)


# ------------------------------------------------------------------------ chunking

def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of at most ``size`` items (none for an empty sequence)."""
    if size < 1:
        raise ValueError(f"chunk size {size} must be at least 1")
    for start in range(0, len(items), size):
        yield items[start:start + size]
