"""The OSC address table, defined once: methods, readable and writable properties.

Like AbletonOSC, the address space is built from lists, so the server, the docs'
table (:func:`address_table_markdown`) and the patch checks in the tests cannot drift
apart:

* :data:`METHODS`: requests that do something (``/qriff/ping``, ``/qriff/generate``...).
* :data:`PROPERTIES_R` and :data:`PROPERTIES_RW`: session defaults read with
  ``/qriff/get/<name> id`` and (writable ones) changed with ``/qriff/set/<name> id value``.
  Both reply on the request's own address with ``id value``, as AbletonOSC does. One
  writable property is held by the server rather than the session defaults: ``model``,
  the model that generates (``/qriff/set/model id MODEL`` switches it).
* :data:`LISTS`: ``/qriff/list/<name> id`` replies ``id item item ...``.
* :data:`REPLIES`: what the server sends back, including ``/qriff/error id code message``.

Every request carries a request id first (int, float or string); every reply echoes
it with the OSC type it arrived in. Options are key/value pairs after the id
(``/qriff/generate 7 key D scale dorian bars 4``), which is what a Max message box or
a Pd ``[oscformat]`` sends naturally. Numbers may arrive as int or float (Pd and
TouchOSC send floats); an integral float is accepted where an int is expected.

Argument kinds in the table: ``i`` int, ``f`` float (int accepted), ``s`` string,
``n`` int or name, ``*`` the request id (int, float or string, echoed as received).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bridge.errors import BridgeError, RequestError
from engine import __version__, limits
from engine.base.errors import EngineError
from engine.feedback import FeedbackError, parse_stars, parse_verdict
from engine.mdp import styles
from engine.music import request as schema
from engine.music import theory, tokens
from engine.music.request import GenerateRequest, OptionError

PREFIX = "/qriff"

# Limits of clips and rendering are the engine's (engine.limits, shared with the CLI and
# the Python API); these are the bridge's own.
#: Variations per request, Magenta Studio's range (bounds the reply volume of one request;
#: at most limits.MAX_COUNT).
MAX_VARIATIONS = 16
MAX_LIVE_INDEX = 999
#: A clip name from the network: a plain file name inside the output folder.
CLIP_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class Arg:
    """One positional argument (after the request id) of a request or reply.

    ``kind``: ``i`` int, ``f`` float, ``s`` string, ``n`` int or name, ``*`` any
    (the request id). ``repeat`` marks a trailing group that repeats (note quadruples).
    """

    name: str
    kind: str
    doc: str = ""
    repeat: bool = False
    optional: bool = False


@dataclass(frozen=True)
class Property:
    """A session default: ``/qriff/get/<name>``, and ``/qriff/set/<name>`` when writable.

    ``parse(value)`` checks a value from the network and returns its canonical form
    (RequestError with code ``bad_value`` otherwise). ``option`` says whether the same
    name may be given per request as a ``/qriff/generate`` key/value option.
    ``server``: the value is held by the server (:meth:`Context.read`, :meth:`Context.write`),
    not by the session defaults; a read-only property always is.
    """

    name: str
    kind: str
    default: Any
    doc: str
    parse: Callable[[Any], Any] | None = None
    option: bool = True
    server: bool = False

    @property
    def writable(self) -> bool:
        return self.parse is not None

    @property
    def in_session(self) -> bool:
        """Whether the value is a session default (``ctx.session[name]``)."""
        return self.writable and not self.server


@dataclass(frozen=True)
class Method:
    """A request address: fixed ``args`` after the id, then ``options`` as key/value pairs.

    ``handler(ctx, request)`` answers it (see :class:`Context`), as a handler given to
    python-osc's ``Dispatcher.map`` answers its address.
    """

    address: str
    doc: str
    handler: Callable[[Context, Request], None]
    args: tuple[Arg, ...] = ()
    options: tuple[str, ...] = ()
    replies: tuple[str, ...] = ()


@dataclass(frozen=True)
class Request:
    """One request as its handler sees it: the address, the id (and its OSC type tag), the
    arguments after the id, the options parsed from them, who sent it and the reply port
    it asked for (None: the session default, else the sender's port)."""

    address: str
    rid: Any
    rtag: str
    args: tuple[Any, ...]
    options: dict[str, Any]
    sender: tuple[str, int]
    reply_port: int | None = None


class Context(Protocol):
    """What a handler may use of the server: its session defaults, replies and the job queue."""

    session: dict[str, Any]

    def reply(self, request: Request, address: str, *args: Any) -> None:
        """Send ``address id args...`` to the requester."""

    def read(self, name: str) -> Any:
        """The value of a property the server holds (every read-only one, and ``model``)."""

    def write(self, name: str, value: Any) -> Any:
        """Change a writable property the server holds (``model``); returns its canonical value.
        BridgeError when the server refuses it (an unknown model: ``not_found``; one that does
        not load: ``model``); the old value then stays."""

    def models(self) -> list[str]:
        """Model ids for ``/qriff/list/models`` (the models folder is read again)."""

    def style_terms(self, model: str) -> tuple[str, ...]:
        """The style terms model ``model`` reads (loading it if needed; errors as :meth:`write`)."""

    def enqueue(self, kind: str, request: Request, params: dict[str, Any]) -> None:
        """Queue a generate, render or push job (BridgeError ``busy`` when the queue is full)."""

    def judge(self, request: Request, clip: str, verdict: str, stars: int | None, source: str) -> None:
        """Store a verdict on the clip file ``clip`` of the output folder, then answer ``request``."""


@dataclass(frozen=True)
class Reply:
    """A reply address and its arguments after the echoed request id."""

    address: str
    doc: str
    args: tuple[Arg, ...] = field(default_factory=tuple)


# ------------------------------------------------------------------ value checks
# Every value a generate or render request may carry is checked by engine.music.request,
# the one check the CLI, qriff batch and the Python API share; the bridge only turns its
# OptionError into a ``bad_value`` error reply, with the same message.

def _bad(name: str, value: Any, allowed: str, hint: str = "") -> RequestError:
    msg = f"{name} {value!r} is not valid: allowed {allowed}"
    return RequestError(msg + (f" ({hint})" if hint else ""), code="bad_value")


def _checked(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except OptionError as exc:
        raise RequestError(str(exc), code="bad_value") from None


def as_int(name: str, value: Any, lo: int, hi: int) -> int:
    """An int in ``lo..hi`` from an OSC int, an integral float or a numeric string."""
    return int(_checked(schema.as_int, name, value, lo, hi))


def as_float(name: str, value: Any, lo: float, hi: float) -> float:
    """A finite float in ``lo..hi`` from an OSC int or float or a numeric string."""
    return float(_checked(schema.as_float, name, value, lo, hi))


def as_text(name: str, value: Any, max_len: int = 256) -> str:
    """A non-empty string of at most ``max_len`` characters (numbers are turned into text)."""
    return str(_checked(schema.as_text, name, value, max_len))


def parse_key(value: Any) -> str:
    """A tonic name (``C``, ``F#``, ``Bb``) or a pitch class 0-11."""
    return str(_checked(schema.parse_key, value))


def parse_scale(value: Any) -> str:
    """A scale name or alias, or its index in ``/qriff/list/scales`` order."""
    return str(_checked(schema.parse_scale, value))


#: Every style term a qriff model may read: the built-in ones, and ``taste`` (personal models).
#: Which of them the model at hand reads is checked against it (:func:`check_style`).
KNOWN_STYLE_TERMS = (*styles.BUILTIN_TERMS, styles.TASTE_TERM)


def parse_style(value: Any) -> str:
    """A preset name, ``term=w`` pairs, both (``hook,prior=0.5``), or a preset index.

    Terms are checked against every term a qriff model may read; :func:`check_style`
    then checks them against the model that will generate."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        names = list(styles.PRESETS)
        return names[as_int("style", value, 0, len(names) - 1)]
    text = as_text("style", value, 512)
    try:
        styles.parse_style(text, KNOWN_STYLE_TERMS)
    except EngineError as exc:
        raise RequestError(str(exc) if str(exc).lower().startswith("style") else f"style: {exc}",
                           code="bad_value") from None
    return text


def check_style(style: str, terms: Sequence[str], model: str) -> None:
    """RequestError ``bad_value`` unless model ``model`` (reading ``terms``) reads ``style``
    (a personal model reads ``taste``; the shipped one does not)."""
    try:
        styles.parse_style(style, terms)
    except EngineError as exc:
        raise RequestError(f"style {style!r} is not valid for model {model!r}: {exc}", code="bad_value") from None


def parse_model(value: Any) -> str:
    """A model id as ``/qriff/list/models`` lists it (never a path: the server looks it up)."""
    return as_text("model", value, 128)


def parse_chords(value: Any) -> str:
    """A progression (``"C G Am F"``, ``C|G|Am|F``, ``I-V-vi-IV``), or ``none`` for the default (``""``).
    Checked against the key and scale when the request is made."""
    text = _checked(schema.parse_chords, value)
    if text is not None:
        _checked(schema.check_chords, text)
    return text or ""


def parse_time_signature(value: Any) -> tuple[int, int]:
    """``(4, 4)`` from ``4/4``, ``3/4``, ``2/4`` or ``6/8``."""
    return tuple(_checked(schema.parse_time_signature, value))  # type: ignore[return-value]


def parse_roles(value: Any) -> tuple[str, ...]:
    """Roles from ``lead``, ``bass``, ``lead+bass`` (``,``, ``+``, ``|`` or spaces between)."""
    return tuple(_checked(schema.parse_roles, value))


def show(value: Any) -> Any:
    """A typed session value as OSC sends it: ``(4, 4)`` as ``4/4``, ``("lead", "bass")`` as ``lead+bass``."""
    if isinstance(value, tuple):
        return "/".join(map(str, value)) if value and isinstance(value[0], int) else "+".join(value)
    return value


def parse_clip_name(value: Any) -> str:
    """The file name of a clip in the output folder (no directories, no leading dot)."""
    text = as_text("clip", value, 128)
    if not CLIP_NAME_RE.match(text) or ".." in text:
        raise _bad("clip", value, "a file name of the output folder such as 000003-0.mid",
                   "letters, digits, '.', '_' and '-' only; no folders")
    return text


def _int_parser(name: str, lo: int, hi: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        return as_int(name, value, lo, hi)

    parse.__doc__ = f"an integer {lo}..{hi}"
    return parse


def _float_parser(name: str, lo: float, hi: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        return as_float(name, value, lo, hi)

    parse.__doc__ = f"a number {lo:g}..{hi:g}"
    return parse


def _choice_parser(name: str, choices: Sequence[str]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = as_text(name, value, 32).lower()
        if text not in choices:
            raise _bad(name, value, "one of " + ", ".join(choices))
        return text

    parse.__doc__ = "one of " + ", ".join(choices)
    return parse


def _sample_rate(value: Any) -> int:
    return int(_checked(lambda: schema.RenderRequest(sample_rate=value).sample_rate))


def _audio_format(value: Any) -> str:
    return str(_checked(lambda: schema.RenderRequest(fmt=value).fmt))


def _render_preset(value: Any) -> str:
    """A shipped render preset name; never a path (a network value must not name a file)."""
    text = as_text("preset", value, 64)
    names = render_presets()
    if text not in names:
        raise _bad("preset", value, "one of " + (", ".join(names) or "none: rendering is not installed"),
                   "see /qriff/list/presets")
    return text


def render_presets() -> list[str]:
    """Names of the shipped render presets (empty when engine.audio.effects is not installed)."""
    try:
        from engine.audio.effects import list_presets
    except ImportError:
        return []
    return sorted(list_presets())


# -------------------------------------------------------------- the address table

#: Read-only properties: ``/qriff/get/<name> id`` -> ``/qriff/get/<name> id value``.
PROPERTIES_R: tuple[Property, ...] = (
    Property("version", "s", __version__, "qriff version", option=False),
    Property("out", "s", "", "absolute path of the output folder (set only on the command line)", option=False),
    Property("port", "i", 0, "UDP port the server listens on", option=False),
    Property("queue", "i", 0, "jobs waiting in the generate/render queue", option=False),
    Property("served", "i", 0, "requests answered since the server started", option=False),
    Property("malformed", "i", 0, "datagrams refused as malformed since the server started", option=False),
)

#: Writable properties: the model (held by the server), then the session defaults that generate/render/push
#: fall back on.
PROPERTIES_RW: tuple[Property, ...] = (
    Property("model", "s", "", "id of the model generating clips, one of /qriff/list/models; a job already "
                               "queued keeps the model it was queued with", parse_model, option=False, server=True),
    Property("key", "n", limits.DEFAULT_KEY, "tonic: C, C#/Db ... B, or pitch class 0-11", parse_key),
    Property("scale", "n", limits.DEFAULT_SCALE, "scale or mode name, or its index in /qriff/list/scales", parse_scale),
    Property("bars", "i", limits.DEFAULT_BARS, f"clip length in bars, 1-{limits.MAX_BARS}",
             _int_parser("bars", 1, limits.MAX_BARS)),
    Property("tempo", "f", limits.DEFAULT_TEMPO, f"beats per minute, {limits.MIN_TEMPO:g}-{limits.MAX_TEMPO:g}",
             _float_parser("tempo", limits.MIN_TEMPO, limits.MAX_TEMPO)),
    Property("time_signature", "s", limits.DEFAULT_TIME_SIGNATURE, "metre: 4/4, 3/4, 2/4, 6/8", parse_time_signature),
    Property("chords", "s", "", "one chord per bar, looping: \"C G Am F\", C|G|Am|F, I-V-vi-IV; none = default",
             parse_chords),
    Property("style", "n", styles.DEFAULT_STYLE, "preset name or index, term=w pairs, or both", parse_style),
    Property("temperature", "f", limits.DEFAULT_TEMPERATURE,
             f"sampling temperature, 0 (greedy) to {limits.MAX_TEMPERATURE:g}",
             _float_parser("temperature", 0.0, limits.MAX_TEMPERATURE)),
    Property("seed", "i", -1, f"random seed 0-{limits.MAX_SEED}; -1 = a new seed for every request (reported in "
                              "begin)", _int_parser("seed", -1, limits.MAX_SEED)),
    Property("variations", "i", 1, f"clips per request, 1-{MAX_VARIATIONS}",
             _int_parser("variations", 1, MAX_VARIATIONS)),
    Property("roles", "s", ("lead",), "tracks to generate: lead, bass or lead+bass", parse_roles),
    Property("valence", "f", 0.0, "mood: -1 dark .. +1 bright", _float_parser("valence", -1.0, 1.0)),
    Property("arousal", "f", 0.0, "mood: -1 calm .. +1 busy", _float_parser("arousal", -1.0, 1.0)),
    Property("reply_port", "i", 0, "send replies to this port on the sender's host; 0 = the sender's own port",
             _int_parser("reply_port", 0, 65535)),
    Property("live_track", "i", -1, f"push generated clips to this Live track (0-{MAX_LIVE_INDEX}); -1 = off",
             _int_parser("live_track", -1, MAX_LIVE_INDEX)),
    Property("live_slot", "i", 0, f"first Session clip slot (scene) to fill, 0-{MAX_LIVE_INDEX}",
             _int_parser("live_slot", 0, MAX_LIVE_INDEX)),
    Property("preset", "s", limits.DEFAULT_PRESET, "render preset (see /qriff/list/presets)", _render_preset, option=False),
    Property("format", "s", limits.DEFAULT_AUDIO_FORMAT, "render file format: " + " or ".join(limits.AUDIO_FORMATS),
             _audio_format, option=False),
    Property("sample_rate", "i", limits.DEFAULT_SAMPLE_RATE,
             "render sample rate: " + ", ".join(map(str, limits.SAMPLE_RATES)), _sample_rate, option=False),
)

PROPERTIES: dict[str, Property] = {p.name: p for p in (*PROPERTIES_R, *PROPERTIES_RW)}

#: Lists: ``/qriff/list/<name> id`` -> ``/qriff/list/<name> id item item ...``.
LISTS: dict[str, str] = {
    "styles": "style presets (index = position, usable as style value)",
    "scales": "scale names (index = position, usable as scale value)",
    "keys": "tonic names by pitch class 0-11",
    "roles": "track roles",
    "models": "model ids the server can load (the models folder is read again at each request)",
    "presets": "render presets",
    "properties": "names of every /qriff/get property",
}

_ID = Arg("id", "*", "request id, echoed in every reply")
_GEN_OPTIONS = tuple(p.name for p in PROPERTIES_RW if p.option) + ("primer",)

# ------------------------------------------------------------------- handlers

def generate_request(params: Mapping[str, Any], count: int | None = None, seed: int | None = None,
                     primer: Any = None) -> GenerateRequest:
    """The :class:`GenerateRequest` of resolved options (``variations`` clips; seed -1: drawn later).
    Checks what only the whole request can (chords against its key and scale): ``bad_value``."""
    p = params
    return _checked(lambda: GenerateRequest(
        key=p["key"], scale=p["scale"], bars=p["bars"], count=p["variations"] if count is None else count,
        seed=(p["seed"] if p["seed"] >= 0 else None) if seed is None else seed, temperature=p["temperature"],
        chords=p["chords"] or None, style=p["style"], roles=p["roles"], tempo=p["tempo"],
        time_signature=p["time_signature"], primer=primer, valence=p["valence"], arousal=p["arousal"]))


def _no_args(request: Request) -> None:
    if request.args:
        raise RequestError(f"{request.address} takes only the request id (and optionally reply_port N), "
                           f"got {len(request.args)} more values")


def ping(ctx: Context, request: Request) -> None:
    """``/qriff/ping id`` -> ``/qriff/pong id version``."""
    ctx.reply(request, f"{PREFIX}/pong", __version__)


def generate(ctx: Context, request: Request) -> None:
    """Options over the session defaults; chords and style checked now; the job waits for a worker.

    The job records the model that is current now: it generates with that model even if
    ``/qriff/set/model`` switches to another before a worker takes it."""
    params = resolve(request.options, ctx.session)
    generate_request(params)
    model = str(ctx.read("model"))
    check_style(params["style"], ctx.style_terms(model), model)
    ctx.enqueue("generate", request, {**params, "model": model})


def render(ctx: Context, request: Request) -> None:
    ctx.enqueue("render", request, resolve(request.options, ctx.session))


def live_push(ctx: Context, request: Request) -> None:
    ctx.enqueue("push", request, resolve(request.options, ctx.session))


def get_property(ctx: Context, request: Request, prop: Property) -> None:
    """``/qriff/get/<name> id`` -> the same address with ``id value``."""
    _no_args(request)
    value = ctx.session[prop.name] if prop.in_session else ctx.read(prop.name)
    ctx.reply(request, request.address, show(value))


def set_property(ctx: Context, request: Request, prop: Property) -> None:
    """``/qriff/set/<name> id value``: checked, stored as the session default, echoed canonical."""
    if len(request.args) != 1:
        raise RequestError(f"{request.address} takes the id and one value, got {len(request.args)} values after "
                           f"the id (e.g. {request.address} 1 {prop.default})")
    assert prop.parse is not None
    value = prop.parse(request.args[0])
    if prop.name == "chords":
        generate_request({**ctx.session, "chords": value})
    if prop.name == "style":
        model = str(ctx.read("model"))
        check_style(value, ctx.style_terms(model), model)
    if prop.name == "model":
        # The session style must suit the new model: refused rather than reset, so a switch
        # never changes a setting the musician made.
        style = ctx.session["style"]
        try:
            check_style(style, ctx.style_terms(value), value)
        except RequestError as exc:
            raise RequestError(f"{request.address}: {exc}; set a style it reads first (e.g. /qriff/set/style "
                               f"1 {styles.DEFAULT_STYLE}); still generating with {ctx.read('model')!r}",
                               code="bad_value") from None
    if prop.server:
        value = ctx.write(prop.name, value)
    else:
        ctx.session[prop.name] = value
    ctx.reply(request, request.address, show(value))


#: Front ends a verdict may say it came from over OSC (the CLI records its own as ``cli``).
FEEDBACK_SOURCES = ("osc", "device")


def feedback(ctx: Context, request: Request) -> None:
    """``/qriff/feedback id clip keep|discard [stars]``: stored, then ``/qriff/feedback/stored id clip verdict stars``
    (stars 0 = none given)."""
    o = request.options
    clip = parse_clip_name(o["clip"])
    try:
        verdict = parse_verdict(o["verdict"])
        stars = parse_stars(o.get("stars"))
    except FeedbackError as exc:
        raise RequestError(f"{request.address}: {exc}", code="bad_value") from None
    ctx.judge(request, clip, verdict, stars, o.get("source", "osc"))  # answered once stored


def list_property(ctx: Context, request: Request, name: str) -> None:
    """``/qriff/list/<name> id`` -> ``id item item ...``."""
    _no_args(request)
    ctx.reply(request, request.address, *list_items(name, ctx.models()))


#: Requests.
METHODS: tuple[Method, ...] = (
    Method(f"{PREFIX}/ping", "liveness check", ping, options=("reply_port",), replies=(f"{PREFIX}/pong",)),
    Method(f"{PREFIX}/generate",
           "generate clips; every option falls back on the session default; primer = a clip file name in the "
           "output folder to continue from",
           generate, options=_GEN_OPTIONS,
           replies=(f"{PREFIX}/clip/begin", f"{PREFIX}/clip/track", f"{PREFIX}/clip/notes", f"{PREFIX}/clip/end",
                    f"{PREFIX}/live/pushed")),
    Method(f"{PREFIX}/render", "render a clip of the output folder to audio stems (default: the last clip)",
           render, options=("clip", "preset", "format", "sample_rate", "reply_port"),
           replies=(f"{PREFIX}/render/stem", f"{PREFIX}/render/end")),
    Method(f"{PREFIX}/live/push", "put a clip of the output folder into an Ableton Live clip slot (via AbletonOSC)",
           live_push, options=("clip", "track", "slot", "reply_port"), replies=(f"{PREFIX}/live/pushed",)),
    Method(f"{PREFIX}/feedback",
           "record that the musician keeps or discards a clip of the output folder (the last verdict on a clip "
           "wins); source: osc or device",
           feedback, args=(Arg("clip", "s", "clip file name from /qriff/clip/end"), Arg("verdict", "s", "keep or discard"),
                           Arg("stars", "i", "1-5", optional=True)),
           options=("source", "reply_port"), replies=(f"{PREFIX}/feedback/stored",)),
)

#: Replies, after the echoed id.
REPLIES: tuple[Reply, ...] = (
    Reply(f"{PREFIX}/pong", "answer to ping", (Arg("version", "s"),)),
    Reply(f"{PREFIX}/clip/begin", "a clip starts",
          (Arg("variation", "i", "0-based"), Arg("variations", "i"), Arg("bars", "i"), Arg("tempo", "f"),
           Arg("key", "s"), Arg("scale", "s"), Arg("seed", "i"), Arg("notes", "i", "notes in all tracks"),
           Arg("name", "s", "clip name, used in Live"), Arg("length", "f", "clip length in beats"))),
    Reply(f"{PREFIX}/clip/track", "the notes that follow belong to this track",
          (Arg("variation", "i"), Arg("role", "s"), Arg("program", "i", "General MIDI program"),
           Arg("notes", "i"))),
    Reply(f"{PREFIX}/clip/notes", "up to 32 notes; start and duration in beats",
          (Arg("pitch", "i", repeat=True), Arg("start", "f", repeat=True), Arg("duration", "f", repeat=True),
           Arg("velocity", "i", repeat=True))),
    Reply(f"{PREFIX}/clip/end", "a clip is complete; drag the .mid into any DAW",
          (Arg("variation", "i"), Arg("notes", "i"), Arg("midi_path", "s"), Arg("json_path", "s"))),
    Reply(f"{PREFIX}/render/stem", "one rendered audio file", (Arg("role", "s", "track role or mix"),
                                                               Arg("path", "s"))),
    Reply(f"{PREFIX}/render/end", "rendering finished", (Arg("files", "i"), Arg("clip", "s"))),
    Reply(f"{PREFIX}/live/pushed", "the clip is in Live",
          (Arg("variation", "i"), Arg("track", "i"), Arg("slot", "i"), Arg("name", "s"), Arg("notes", "i"))),
    Reply(f"{PREFIX}/feedback/stored", "the verdict is stored",
          (Arg("clip", "s"), Arg("verdict", "s"), Arg("stars", "i", "0 = none given"))),
    Reply(f"{PREFIX}/error", "any failure", (Arg("code", "s", "see the error codes"), Arg("message", "s"))),
)

REPLY_ADDRESSES = {r.address: r for r in REPLIES}


def request_addresses() -> dict[str, tuple[Arg, ...]]:
    """Every request address with its fixed arguments after the id (options excluded)."""
    out: dict[str, tuple[Arg, ...]] = {m.address: m.args for m in METHODS}
    for p in PROPERTIES.values():
        out[f"{PREFIX}/get/{p.name}"] = ()
        if p.writable:
            out[f"{PREFIX}/set/{p.name}"] = (Arg("value", p.kind),)
    for name in LISTS:
        out[f"{PREFIX}/list/{name}"] = ()
    return out


def method(address: str) -> Method | None:
    """The method registered at ``address``, if any."""
    return _METHODS_BY_ADDRESS.get(address)


_METHODS_BY_ADDRESS = {m.address: m for m in METHODS}


def parse_options(address: str, args: Sequence[Any], allowed: Sequence[str]) -> dict[str, Any]:
    """Key/value pairs after the id -> ``{name: canonical value}``.

    Option names are case-insensitive; ``count`` is accepted for ``variations``.
    RequestError (``bad_request``) for an odd list or an unknown name, ``bad_value``
    for a value its property refuses.
    """
    if len(args) % 2:
        raise RequestError(f"{address}: options must be key/value pairs after the id, got {len(args)} values "
                           f"(allowed keys: {', '.join(allowed)})")
    out: dict[str, Any] = {}
    for i in range(0, len(args), 2):
        raw_name, value = args[i], args[i + 1]
        if not isinstance(raw_name, str):
            raise RequestError(f"{address}: option name {raw_name!r} at position {i + 1} is not a string "
                               f"(allowed keys: {', '.join(allowed)})")
        name = raw_name.strip().lower()
        name = _OPTION_ALIASES.get(name, name)
        if name not in allowed:
            raise RequestError(f"{address}: option {raw_name!r} is not known (allowed keys: {', '.join(allowed)})")
        out[name] = _OPTION_PARSERS[name](value)
    return out


#: Other spellings of option names accepted by :func:`parse_options`.
_OPTION_ALIASES = {"count": "variations", "time-signature": "time_signature", "timesig": "time_signature"}
_OPTION_PARSERS: dict[str, Callable[[Any], Any]] = {p.name: p.parse for p in PROPERTIES_RW
                                                    if p.parse is not None and p.in_session}
_OPTION_PARSERS.update({
    "primer": parse_clip_name,
    "clip": parse_clip_name,
    "source": _choice_parser("source", FEEDBACK_SOURCES),
    "track": _int_parser("track", 0, MAX_LIVE_INDEX),
    "slot": _int_parser("slot", 0, MAX_LIVE_INDEX),
})


def check_request_id(address: str, args: Sequence[Any], tags: str) -> tuple[Any, str]:
    """The request id (first argument) and its OSC type tag; RequestError if missing or unusable."""
    if not args:
        raise RequestError(f"{address}: the request id is missing: send an int, float or string first "
                           f"(e.g. {address} 1)")
    rid, tag = args[0], tags[0]
    if tag == "i" or tag == "h":
        return int(rid), "i" if -(2**31) <= rid < 2**31 else "h"
    if tag in "fd":
        if not math.isfinite(rid):
            raise RequestError(f"{address}: request id {rid!r} is not finite: send an int or a string")
        return float(rid), tag  # a double is echoed as a double: most do not fit a float32
    if tag in "sS":
        if len(rid) > 64:
            raise RequestError(f"{address}: request id of {len(rid)} characters is too long (allowed: up to 64)")
        return rid, "s"
    raise RequestError(f"{address}: request id of OSC type {tag!r} is not usable: send an int, float or string")


def defaults() -> dict[str, Any]:
    """A fresh copy of the writable session defaults (``model`` is the server's, not among them)."""
    return {p.name: p.default for p in PROPERTIES_RW if p.in_session}


def list_items(name: str, models: Sequence[str] = ()) -> list[str]:
    """Items of ``/qriff/list/<name>``; RequestError for an unknown list."""
    if name == "styles":
        return list(styles.PRESETS)
    if name == "scales":
        return list(theory.SCALE_NAMES)
    if name == "keys":
        return list(theory.PC_NAMES)
    if name == "roles":
        return list(tokens.ROLES)
    if name == "models":
        return list(models)
    if name == "presets":
        return render_presets()
    if name == "properties":
        return list(PROPERTIES)
    raise RequestError(f"/qriff/list/{name} is not known: lists are {', '.join(LISTS)}", code="unknown_address")


# ---------------------------------------------------------------- documentation

def _arg_text(args: Sequence[Arg]) -> str:
    fixed = [f"[{a.name}:{a.kind}]" if a.optional else f"{a.name}:{a.kind}" for a in args if not a.repeat]
    group = [f"{a.name}:{a.kind}" for a in args if a.repeat]
    if group:
        fixed.append("(" + " ".join(group) + ")*")
    return " ".join(fixed)


def address_table() -> list[tuple[str, str, str, str]]:
    """Rows ``(address, arguments, replies, description)`` of the whole address space."""
    rows: list[tuple[str, str, str, str]] = []
    for m in METHODS:
        opts = " ".join(f"[{o} v]" for o in m.options)
        rows.append((m.address, " ".join(x for x in ("id", _arg_text(m.args), opts) if x),
                     ", ".join(m.replies), m.doc))
    for p in PROPERTIES_R:
        rows.append((f"{PREFIX}/get/{p.name}", "id [reply_port v]", f"{PREFIX}/get/{p.name} id value:{p.kind}",
                     f"read-only: {p.doc}"))
    for p in PROPERTIES_RW:
        default = "default: qriff serve --model" if p.server else f"default {show(p.default)!r}"
        rows.append((f"{PREFIX}/get/{p.name}, {PREFIX}/set/{p.name}", f"id [reply_port v] / id value:{p.kind}",
                     f"same address: id value:{p.kind}", f"{p.doc} ({default})"))
    for name, doc in LISTS.items():
        rows.append((f"{PREFIX}/list/{name}", "id [reply_port v]", f"{PREFIX}/list/{name} id item:s*", doc))
    for r in REPLIES:
        rows.append((r.address, "id " + _arg_text(r.args), "(reply)", r.doc))
    return rows


def address_table_markdown() -> str:
    """The address table as a markdown table (what docs/osc-and-live.md shows)."""
    lines = ["| address | arguments | replies | description |", "|---|---|---|---|"]
    for row in address_table():
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    lines.append("")
    lines.append("Kinds: `i` int, `f` float, `s` string, `n` int or name, `*` int, float or string. "
                 "Error codes: " + ", ".join(f"`{c}`" for c in _error_codes()) + ".")
    return "\n".join(lines) + "\n"


def _error_codes() -> list[str]:
    from bridge.errors import ERROR_CODES

    return list(ERROR_CODES)


def resolve(options: Mapping[str, Any], session: Mapping[str, Any]) -> dict[str, Any]:
    """Options of one request laid over the session defaults (a new dict)."""
    out = dict(session)
    out.update(options)
    return out


__all__ = [
    "LISTS", "METHODS", "PROPERTIES", "PROPERTIES_R", "PROPERTIES_RW", "REPLIES", "Arg", "BridgeError", "Method",
    "Property", "Reply", "address_table", "address_table_markdown", "check_request_id", "list_items",
    "parse_options", "request_addresses",
]
