"""What a clip or a render asks for, checked once: :class:`GenerateRequest`, :class:`RenderRequest`.

Every front end builds these objects and nothing else checks the values again:

* the ``qriff`` command line (``generate``, ``render``) from its parsed flags;
* the OSC bridge from a request's options laid over the session defaults (values as
  OSC sends them: an integral float where an int is meant, a number as text, ``"4/4"``,
  ``"lead+bass"``, a scale or key given by index);
* ``qriff batch`` from a spec's TOML tables;
* :meth:`engine.runtime.policy.Policy.generate` and :func:`engine.audio.render.render_clip`,
  which take one (Python callers may pass keyword arguments instead, checked the same way).

A request is frozen and holds canonical, typed values: a scale's canonical name, the
metre as ``(4, 4)``, roles as a tuple, chords as text or None. A value out of range raises
:class:`OptionError`, whose message is one line naming the field, the value and what is
allowed; each front end names the field in its own words (``--bars``, ``bars``,
``setting 2: bars``) with :meth:`OptionError.for_field`.

What depends on the model (which roles and style terms it knows) is checked by the
policy that runs it. Imports nothing of qriff above :mod:`engine.music`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from engine.base.errors import EngineError, TheoryError
from engine.music import limits, theory, tokens
from engine.music.clip import Clip
from engine.music.clipfile import load_clip


class OptionError(EngineError):
    """A request value that is not allowed: ``bars 99 is not valid: allowed an integer 1..16``.

    ``field`` names the request field, ``value`` is the value as given and ``detail``
    what is allowed (or, for values checked by the music theory code, its explanation).
    """

    def __init__(self, field: str, value: Any, detail: str, *, explained: bool = False) -> None:
        self.field, self.value, self.detail, self.explained = field, value, detail, explained
        super().__init__(self.for_field(field))

    def for_field(self, label: str) -> str:
        """The message with the field named ``label`` (``--bars``, ``setting 2: bars``)."""
        if self.explained:
            # the theory code's messages usually start with the field's name already ("key 'H' is ...")
            if self.detail.lower().startswith(self.field.replace("_", " ")) and label.endswith(self.field):
                return label[: len(label) - len(self.field)] + self.detail
            return f"{label}: {self.detail}"
        return f"{label} {self.value!r} is not valid: allowed {self.detail}"


class TheoryOptionError(OptionError, TheoryError):
    """A key, scale, metre or progression the music theory code refuses (its message kept)."""


# ------------------------------------------------------------------ loose values

def _number(name: str, value: Any, allowed: str) -> Any:
    """``value`` with numeric text read as a float; OptionError for None, a bool or other text."""
    if isinstance(value, bool) or value is None:
        raise OptionError(name, value, allowed)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise OptionError(name, value, allowed) from None
    return value


def as_int(name: str, value: Any, lo: int, hi: int) -> int:
    """An int in ``lo..hi`` from an int, an integral float or a numeric string."""
    allowed = f"an integer {lo}..{hi}"
    value = _number(name, value, allowed)
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise OptionError(name, value, allowed)
        value = int(value)
    if not isinstance(value, int):
        try:  # numpy integers
            value = int(value.__index__())
        except (AttributeError, TypeError):
            raise OptionError(name, value, allowed) from None
    if not lo <= value <= hi:
        raise OptionError(name, value, allowed)
    return value


def as_float(name: str, value: Any, lo: float, hi: float) -> float:
    """A finite float in ``lo..hi`` from an int, a float or a numeric string."""
    allowed = f"a number {lo:g}..{hi:g}"
    value = _number(name, value, allowed)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise OptionError(name, value, allowed) from None
    if not math.isfinite(number) or not lo <= number <= hi:
        raise OptionError(name, value, allowed)
    return number


def as_text(name: str, value: Any, max_len: int = 256) -> str:
    """A non-empty string of at most ``max_len`` characters (an integral number becomes its digits)."""
    if isinstance(value, bool) or value is None or isinstance(value, bytes):
        raise OptionError(name, value, "a string")
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        value = int(value)  # Pd sends every number as a float
    text = str(value).strip()
    if not text or len(text) > max_len:
        raise OptionError(name, value, f"a non-empty string of at most {max_len} characters")
    return text


def as_bool(name: str, value: Any) -> bool:
    """True or False (also 1/0 and the words true/false, yes/no, on/off)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
        return _BOOL_WORDS[value.strip().lower()]
    raise OptionError(name, value, "true or false")


_BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def _theory_checked(name: str, fn: Callable[[Any], Any], value: Any) -> Any:
    try:
        return fn(value)
    except EngineError as exc:
        raise TheoryOptionError(name, value, str(exc), explained=True) from None


# ------------------------------------------------------------- field parsers

def parse_key(value: Any) -> str:
    """A tonic as spelled (``C``, ``F#``, ``Bb``, first letter upper case) or a pitch class 0-11."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return theory.key_name(as_int("key", value, 0, 11))
    text = as_text("key", value, 8)
    _theory_checked("key", theory.parse_key, text)
    return text[:1].upper() + text[1:]


def parse_scale(value: Any) -> str:
    """The canonical scale name from a name, an alias or an index in :data:`theory.SCALE_NAMES`."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return theory.SCALE_NAMES[as_int("scale", value, 0, len(theory.SCALE_NAMES) - 1)]
    return str(_theory_checked("scale", theory.parse_scale, as_text("scale", value, 32)))


def parse_time_signature(value: Any) -> tuple[int, int]:
    """``(4, 4)`` from ``"4/4"``, ``(4, 4)`` or ``[4, 4]``: 4/4, 3/4, 2/4 or 6/8."""
    if isinstance(value, (tuple, list)):
        return tuple(_theory_checked("time_signature", theory.parse_time_signature, list(value)))  # type: ignore[return-value]
    return tuple(_theory_checked("time_signature", theory.parse_time_signature,  # type: ignore[return-value]
                                 as_text("time_signature", value, 8)))


def parse_roles(value: Any) -> tuple[str, ...]:
    """Roles from ``"lead"``, ``"lead+bass"`` (``,``, ``+``, ``|`` or spaces between) or a sequence."""
    if isinstance(value, (tuple, list)):
        names = [as_text("roles", r, 16).lower() for r in value]
    else:
        names = [r for r in re.split(r"[\s,+|]+", as_text("roles", value, 64).lower()) if r]
    if not names or any(r not in tokens.ROLES for r in names):
        raise OptionError("roles", value, f"roles from {', '.join(tokens.ROLES)} (join several with + or ,)")
    if len(set(names)) != len(names):
        raise OptionError("roles", value, "each role at most once")
    return tuple(names)


def parse_chords(value: Any) -> str | None:
    """A progression as text (``"C G Am F"``, ``C|G|Am|F``, ``I-V-vi-IV``; a list is joined), or
    None for the scale's default (``None``, empty, ``none``, ``default``, ``-``). Checked against
    the key and scale by :class:`GenerateRequest`."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (tuple, list)):
        value = " ".join(as_text("chords", c, 16) for c in value)
    text = as_text("chords", value, 512)
    return None if text.lower() in ("none", "default", "-") else text


def check_chords(text: str, key: str | int = 0, scale: str = limits.DEFAULT_SCALE) -> str:
    """``text`` when it parses as a progression in ``key`` and ``scale`` (OptionError otherwise)."""
    _theory_checked("chords", lambda t: theory.parse_progression(t, key, scale), text)
    return text


def parse_style(value: Any) -> str | Mapping[str, float] | None:
    """A style spec as given: None, a preset name, ``term=w`` pairs, or a mapping (copied, read-only).

    Which terms exist depends on the model, so the policy resolves it (:meth:`Policy.resolve_style`).
    """
    if value is None:
        return None
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): as_float(f"style {k}", v, -1e9, 1e9) for k, v in value.items()})
    text = as_text("style", value, 512)
    return text


def parse_seed(value: Any) -> int | None:
    """A seed 0..:data:`limits.MAX_SEED`, or None (a new one is drawn)."""
    return None if value is None else as_int("seed", value, 0, limits.MAX_SEED)


def parse_primer(value: Any) -> Clip | None:
    """A :class:`Clip`, a path to a .mid/.json clip (read now), or None."""
    if value is None or isinstance(value, Clip):
        return value
    if isinstance(value, (str, os.PathLike)):
        return load_clip(Path(value))
    raise OptionError("primer", value, "a clip or the path of a .mid or clip .json file")


# ------------------------------------------------------------------ requests

def _fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _from_mapping(cls: type, values: Mapping[str, Any], aliases: Mapping[str, str]) -> Any:
    known = _fields(cls)
    kwargs: dict[str, Any] = {}
    for raw, value in values.items():
        name = aliases.get(raw, raw)
        if name not in known:
            raise OptionError(str(raw), value, f"not a known field (allowed: {', '.join(known)})", explained=True)
        kwargs[name] = value
    return cls(**kwargs)


@dataclasses.dataclass(frozen=True)
class GenerateRequest:
    """One ``generate``: ``count`` variations of a clip; variation ``i`` uses seed ``seed + i``.

    Construct it with keyword arguments or :meth:`from_mapping`; either way every value is
    checked and made canonical here (:class:`OptionError` otherwise).
    """

    key: str = limits.DEFAULT_KEY
    scale: str = limits.DEFAULT_SCALE
    bars: int = limits.DEFAULT_BARS
    count: int = 1
    #: None: a new seed is drawn when the clips are made (and recorded in them).
    seed: int | None = 0
    temperature: float = limits.DEFAULT_TEMPERATURE
    chords: str | None = None
    style: str | Mapping[str, float] | None = None
    roles: tuple[str, ...] = ("lead",)
    tempo: float = limits.DEFAULT_TEMPO
    time_signature: tuple[int, int] = limits.DEFAULT_TIME_SIGNATURE
    primer: Clip | None = None
    valence: float = 0.0
    arousal: float = 0.0

    def __post_init__(self) -> None:
        canon = {
            "key": parse_key(self.key),
            "scale": parse_scale(self.scale),
            "bars": as_int("bars", self.bars, 1, limits.MAX_BARS),
            "count": as_int("count", self.count, 1, limits.MAX_COUNT),
            "seed": parse_seed(self.seed),
            "temperature": as_float("temperature", self.temperature, 0.0, limits.MAX_TEMPERATURE),
            "chords": parse_chords(self.chords),
            "style": parse_style(self.style),
            "roles": parse_roles(self.roles),
            "tempo": as_float("tempo", self.tempo, limits.MIN_TEMPO, limits.MAX_TEMPO),
            "time_signature": parse_time_signature(self.time_signature),
            "primer": parse_primer(self.primer),
            "valence": as_float("valence", self.valence, -1.0, 1.0),
            "arousal": as_float("arousal", self.arousal, -1.0, 1.0),
        }
        for name, value in canon.items():
            object.__setattr__(self, name, value)
        if self.seed is not None and self.seed + self.count - 1 > limits.MAX_SEED:
            raise OptionError("seed", self.seed, f"an integer 0..{limits.MAX_SEED - self.count + 1} for "
                                                 f"{self.count} variations (variation i uses seed + i)")
        if self.chords is not None:
            check_chords(self.chords, self.tonic, self.scale)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, fill_from_primer: bool = True) -> GenerateRequest:
        """A request from ``{field: value}`` (values as a front end has them; ``variations`` and
        ``metre`` are accepted for ``count`` and ``time_signature``). With ``fill_from_primer``,
        key, scale, tempo and metre that are absent or None come from the primer, as
        ``qriff generate --primer`` promises. OptionError names an unknown field too."""
        values = {k: v for k, v in values.items() if v is not None or k in ("seed", "chords", "style")}
        primer = parse_primer(values.get("primer"))
        if primer is not None:
            values["primer"] = primer
            if fill_from_primer:
                for name in ("key", "scale", "tempo", "time_signature"):
                    if values.get(name) is None:
                        values[name] = getattr(primer, name)
                values["tempo"] = min(max(float(values["tempo"]), limits.MIN_TEMPO), limits.MAX_TEMPO)
        return _from_mapping(cls, values, {"variations": "count", "metre": "time_signature"})

    @property
    def tonic(self) -> int:
        """The key's pitch class, 0-11."""
        return theory.parse_key(self.key)

    @property
    def steps_per_bar(self) -> int:
        return theory.steps_per_bar(self.time_signature)

    def replace(self, **changes: Any) -> GenerateRequest:
        """A copy with ``changes`` (checked like any request)."""
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class RenderRequest:
    """How a clip is rendered: effect preset, instruments by role, sample rate, file format and depth.

    ``preset``: a shipped preset name, a .toml/.json path or a loaded preset, and
    ``instruments``: ``("role=spec", ...)`` or ``{role: spec}``; both are resolved (and their
    files read) by the renderer, which names a bad one.
    ``bit_depth`` ``"16"``, ``"24"`` or ``"32f"`` (``32`` and ``float`` mean ``32f``).
    """

    preset: Any = limits.DEFAULT_PRESET
    instruments: tuple[str, ...] | Mapping[str, Any] = ()
    sample_rate: int = limits.DEFAULT_SAMPLE_RATE
    fmt: str = limits.DEFAULT_AUDIO_FORMAT
    bit_depth: str = limits.DEFAULT_BIT_DEPTH
    pad: bool = False
    pianoroll: bool = True

    def __post_init__(self) -> None:
        rates = limits.SAMPLE_RATES
        try:
            rate = as_int("sample_rate", self.sample_rate, min(rates), max(rates))
        except OptionError:
            rate = -1
        if rate not in rates:
            raise OptionError("sample_rate", self.sample_rate, "one of " + ", ".join(map(str, rates)) + " (Hz)")
        fmt = as_text("format", self.fmt, 8).lower()
        if fmt not in limits.AUDIO_FORMATS:
            raise OptionError("format", self.fmt, "one of " + ", ".join(limits.AUDIO_FORMATS))
        depth = as_text("bit_depth", self.bit_depth, 8).lower()
        depth = "32f" if depth in ("32", "32f", "float") else depth
        if depth not in limits.AUDIO_FORMATS[fmt]:
            raise OptionError("bit_depth", self.bit_depth, f"for {fmt}, one of {', '.join(limits.AUDIO_FORMATS[fmt])}"
                              + (" (32f needs wav)" if fmt == "flac" else ""))
        instruments: Any = self.instruments
        if isinstance(instruments, Mapping):  # {role: spec or Instrument}: the renderer resolves the values
            instruments = MappingProxyType({as_text("instrument role", r, 32): v for r, v in instruments.items()})
        else:
            instruments = tuple(as_text("instrument", i, 1024)
                                for i in ([instruments] if isinstance(instruments, str) else instruments or ()))
        preset = self.preset
        if isinstance(preset, os.PathLike):
            preset = os.fspath(preset)
        if isinstance(preset, str):
            preset = as_text("preset", preset, 1024)
        elif preset is None or isinstance(preset, (bytes, int, float)):
            raise OptionError("preset", preset, "a preset name or the path of a .toml/.json preset")
        object.__setattr__(self, "preset", preset)
        object.__setattr__(self, "instruments", instruments)
        object.__setattr__(self, "sample_rate", rate)
        object.__setattr__(self, "fmt", fmt)
        object.__setattr__(self, "bit_depth", depth)
        object.__setattr__(self, "pad", as_bool("pad", self.pad))
        object.__setattr__(self, "pianoroll", as_bool("pianoroll", self.pianoroll))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RenderRequest:
        """A request from ``{field: value}`` (``format`` is accepted for ``fmt``)."""
        return _from_mapping(cls, {k: v for k, v in values.items() if v is not None}, {"format": "fmt"})


def render_fields() -> tuple[str, ...]:
    """The fields of :class:`RenderRequest`."""
    return _fields(RenderRequest)


def generate_fields() -> tuple[str, ...]:
    """The fields of :class:`GenerateRequest`."""
    return _fields(GenerateRequest)


__all__ = ["GenerateRequest", "OptionError", "RenderRequest", "as_bool", "as_float", "as_int", "as_text", "check_chords",
           "generate_fields", "parse_chords", "parse_key", "parse_roles", "parse_scale", "parse_seed",
           "parse_style", "parse_time_signature", "render_fields"]

