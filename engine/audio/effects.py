"""Effect chains from presets: per-stem and master chains of pedalboard effects and VST3s.

A preset is a TOML or JSON file (shipped ones live in ``engine/audio/presets/``)::

    description = "clean, compressed, a little space"
    [master]
    target_lufs = -14            # optional loudness normalisation before the limiter
    gain_db = 0.0
    effects = [{type = "LowShelfFilter", cutoff_frequency_hz = 90, gain_db = 1.0}]
    [stems.default]              # roles without their own table
    effects = [{type = "Compressor", threshold_db = -18, ratio = 3}]
    [stems.lead]
    instrument = "lead-saw"      # any --instrument spec; --instrument overrides it
    gain_db = -1.0
    pan = 0.1                    # -1 left .. 1 right
    effects = [{type = "Delay", delay_beats = 0.75, feedback = 0.3, mix = 0.2},
               {type = "vst3", path = "fx/my.vst3", params = {gain_db = -3}, tail = 0.5}]

Effect ``type`` is a pedalboard effect class (:data:`EFFECT_TYPES`) whose other keys
are that class's parameters, or ``vst3``. A stem's chain runs on the instrument's
(often mono) output before the pan, unless it holds a Reverb, Convolution or VST3
effect: then the stem is panned first and the chain runs in stereo, so reverbs widen it. ``Delay`` also takes ``delay_beats`` (the
delay in beats at the clip's tempo). Relative paths are taken from the preset's folder.
Every error names the file, the key and what is allowed. The master chain always ends
with a brick-wall limiter at -1 dBFS (added by the renderer, not by presets).
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.base.errors import EngineError

#: Folder of the shipped presets.
PRESET_DIR = Path(__file__).resolve().parent / "presets"
#: pedalboard effect classes a preset may use.
EFFECT_TYPES = (
    "Bitcrush", "Chorus", "Clipping", "Compressor", "Convolution", "Delay", "Distortion", "GSMFullRateCompressor",
    "Gain", "HighShelfFilter", "HighpassFilter", "Invert", "LadderFilter", "Limiter", "LowShelfFilter",
    "LowpassFilter", "MP3Compressor", "NoiseGate", "PeakFilter", "Phaser", "PitchShift", "Resample", "Reverb",
)
_TOP_KEYS = ("description", "master", "stems")
_MASTER_KEYS = ("effects", "gain_db", "target_lufs")
_STEM_KEYS = ("instrument", "gain_db", "pan", "effects")
_VST3_KEYS = ("type", "path", "params", "preset", "tail")


class PresetError(EngineError, ValueError):
    """A preset that cannot be found or read, or that holds a bad key or value."""


@dataclass(frozen=True)
class EffectSpec:
    """One effect of a chain as written in a preset.

    ``where`` locates it for error messages (``stems.lead.effects[1]``); ``base_dir``
    is the preset's folder, for relative paths.
    """

    type: str
    params: dict[str, Any]
    source: str
    where: str
    base_dir: Path

    def error(self, message: str) -> PresetError:
        return PresetError(f"preset {self.source}: {self.where}: {message}")


@dataclass
class StemSettings:
    """How a stem is played and treated: instrument spec, level (dB), pan (-1..1), effects."""

    instrument: str | None = None
    gain_db: float = 0.0
    pan: float = 0.0
    effects: list[EffectSpec] = field(default_factory=list)


@dataclass
class MasterSettings:
    """The master bus: effects, then ``gain_db`` or, when set, the gain that brings the
    integrated loudness to ``target_lufs`` (LUFS); the renderer's limiter comes last."""

    effects: list[EffectSpec] = field(default_factory=list)
    gain_db: float = 0.0
    target_lufs: float | None = None


@dataclass
class Preset:
    """A loaded preset. ``stems`` maps roles (and ``default``) to their settings."""

    name: str
    path: Path
    description: str
    stems: dict[str, StemSettings]
    master: MasterSettings

    def stem(self, role: str) -> StemSettings:
        """Settings for ``role``: its own table, else ``stems.default``, else a dry stem."""
        return self.stems.get(role) or self.stems.get("default") or StemSettings()


# ---------------------------------------------------------------------- loading

def list_presets() -> dict[str, str]:
    """Shipped preset names and their one-line descriptions."""
    out = {}
    for path in sorted(PRESET_DIR.glob("*")):
        if path.suffix in (".toml", ".json"):
            out[path.stem] = load_preset(path).description
    return out


def preset_path(name: str | os.PathLike[str]) -> Path:
    """The file of a shipped preset name, or the path itself when it names a file."""
    text = str(name)
    p = Path(text).expanduser()
    if p.suffix.lower() in (".toml", ".json") or os.sep in text:
        if not p.is_file():
            raise PresetError(f"preset file {text!r} does not exist: give a .toml or .json file, or a shipped "
                              f"preset name ({', '.join(_shipped_names())})")
        return p
    for ext in (".toml", ".json"):
        cand = PRESET_DIR / f"{text}{ext}"
        if cand.is_file():
            return cand
    raise PresetError(f"preset {text!r} is not known: shipped presets are {', '.join(_shipped_names())} "
                      "(or give a path to a .toml or .json preset file)")


def _shipped_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*") if p.suffix in (".toml", ".json"))


def load_preset(name: str | os.PathLike[str]) -> Preset:
    """Load and validate a preset by shipped name or path; PresetError naming file and key."""
    path = preset_path(name)
    src = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise PresetError(f"preset {src} could not be read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise PresetError(f"preset {src} is not valid {path.suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise PresetError(f"preset {src}: the top level must be a table/object with keys {', '.join(_TOP_KEYS)}")
    _check_keys(data, _TOP_KEYS, src, "top level")
    base = path.parent
    description = data.get("description", "")
    if not isinstance(description, str):
        raise PresetError(f"preset {src}: description must be a string")
    master_raw = _table(data.get("master", {}), src, "master")
    _check_keys(master_raw, _MASTER_KEYS, src, "master")
    target = master_raw.get("target_lufs")
    if target is not None:
        target = _num(target, src, "master.target_lufs", -40.0, -3.0)
    master = MasterSettings(effects=_effects(master_raw.get("effects", []), src, "master.effects", base),
                            gain_db=_num(master_raw.get("gain_db", 0.0), src, "master.gain_db", -48.0, 24.0),
                            target_lufs=target)
    stems: dict[str, StemSettings] = {}
    for role, raw in _table(data.get("stems", {}), src, "stems").items():
        where = f"stems.{role}"
        raw = _table(raw, src, where)
        _check_keys(raw, _STEM_KEYS, src, where)
        inst = raw.get("instrument")
        if inst is not None and not isinstance(inst, str):
            raise PresetError(f"preset {src}: {where}.instrument must be a string (a voice name, gm, PATH.sf2 or "
                              f"PATH.vst3), got {inst!r}")
        if inst is not None and (".sf2" in inst or ".vst3" in inst) and not Path(inst).is_absolute():
            inst = str(base / inst)
        stems[str(role)] = StemSettings(instrument=inst,
                                        gain_db=_num(raw.get("gain_db", 0.0), src, f"{where}.gain_db", -48.0, 24.0),
                                        pan=_num(raw.get("pan", 0.0), src, f"{where}.pan", -1.0, 1.0),
                                        effects=_effects(raw.get("effects", []), src, f"{where}.effects", base))
    preset = Preset(name=path.stem, path=path, description=description, stems=stems, master=master)
    for effects in [*(s.effects for s in stems.values()), master.effects]:
        for spec in effects:
            build_effect(spec, tempo=120.0)  # validate every value now, not mid-render
    return preset


def _check_keys(table: dict[str, Any], allowed: tuple[str, ...], src: str, where: str) -> None:
    for key in table:
        if key not in allowed:
            raise PresetError(f"preset {src}: {where}: key {key!r} is not known: allowed are {', '.join(allowed)}")


def _table(value: Any, src: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PresetError(f"preset {src}: {where} must be a table/object, got {type(value).__name__}")
    return value


def _num(value: Any, src: str, where: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise PresetError(f"preset {src}: {where} = {value!r} is not allowed: expected a number from {lo:g} to {hi:g}")
    return float(value)


def _effects(value: Any, src: str, where: str, base: Path) -> list[EffectSpec]:
    if not isinstance(value, list):
        raise PresetError(f"preset {src}: {where} must be a list of effect tables, got {type(value).__name__}")
    out = []
    for i, item in enumerate(value):
        here = f"{where}[{i}]"
        if not isinstance(item, dict) or "type" not in item:
            raise PresetError(f"preset {src}: {here} must be a table with a 'type' key: one of "
                              f"{', '.join(EFFECT_TYPES)}, vst3")
        params = {k: v for k, v in item.items() if k != "type"}
        out.append(EffectSpec(type=str(item["type"]), params=params, source=src, where=here, base_dir=base))
    return out


# ---------------------------------------------------------------------- building

def _effect_class(spec: EffectSpec) -> Any:
    import pedalboard

    if spec.type not in EFFECT_TYPES:
        close = [t for t in EFFECT_TYPES if t.lower() == spec.type.lower()]
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise spec.error(f"effect type {spec.type!r} is not known{hint}: allowed are {', '.join(EFFECT_TYPES)}, vst3")
    return getattr(pedalboard, spec.type)


def effect_parameters(type_name: str) -> list[str]:
    """Parameter names a pedalboard effect class accepts in a preset."""
    import pedalboard

    cls = getattr(pedalboard, type_name)
    names = [k for k in dir(cls) if isinstance(getattr(cls, k, None), property) and not k.startswith("is_")]
    if type_name == "Delay":
        names.append("delay_beats")
    return sorted(names)


def build_effect(spec: EffectSpec, tempo: float) -> Any:
    """A configured pedalboard plugin for one effect spec at ``tempo`` bpm."""
    if spec.type == "vst3":
        return _build_vst3(spec)
    cls = _effect_class(spec)
    params = dict(spec.params)
    allowed = effect_parameters(spec.type)
    for key in params:
        if key not in allowed:
            raise spec.error(f"{spec.type} has no parameter {key!r}: allowed are {', '.join(allowed)}")
    if spec.type == "Delay" and "delay_beats" in params:
        if "delay_seconds" in params:
            raise spec.error("give delay_beats or delay_seconds, not both")
        beats = params.pop("delay_beats")
        if isinstance(beats, bool) or not isinstance(beats, (int, float)) or not 0 < beats <= 16:
            raise spec.error(f"delay_beats = {beats!r} is not allowed: expected a number of beats > 0 and <= 16")
        params["delay_seconds"] = beats * 60.0 / tempo
    if spec.type == "Convolution":
        ir = params.pop("impulse_response_filename", None)
        if not isinstance(ir, str):
            raise spec.error("Convolution needs impulse_response_filename = \"PATH.wav\" (relative to the preset)")
        ir_path = Path(ir).expanduser()
        ir_path = ir_path if ir_path.is_absolute() else spec.base_dir / ir_path
        if not ir_path.is_file():
            raise spec.error(f"impulse_response_filename {ir!r} does not exist (looked at {ir_path})")
        plugin = cls(str(ir_path))
    else:
        plugin = cls()
    for key, value in params.items():
        current = getattr(plugin, key)
        if isinstance(value, str) and hasattr(type(current), "__members__"):
            members = type(current).__members__
            if value not in members:
                raise spec.error(f"{key} = {value!r} is not allowed: expected one of {', '.join(members)}")
            value = members[value]
        elif isinstance(value, bool) or not isinstance(value, (int, float, str)):
            if not isinstance(current, bool):
                raise spec.error(f"{key} = {value!r} is not allowed: expected a number")
        try:
            setattr(plugin, key, value)
        except (ValueError, TypeError) as exc:
            raise spec.error(f"{key} = {value!r} is not allowed: {exc}") from None
    return plugin


def _build_vst3(spec: EffectSpec) -> Any:
    from engine.audio.instruments import InstrumentError, check_vst3_path, load_vst3, set_plugin_parameters

    for key in spec.params:
        if key not in _VST3_KEYS:
            raise spec.error(f"vst3 effect key {key!r} is not known: allowed are {', '.join(_VST3_KEYS[1:])}")
    raw = spec.params.get("path")
    if not isinstance(raw, str):
        raise spec.error("vst3 effect needs path = \"PATH.vst3\" (relative to the preset's folder)")
    path = Path(raw).expanduser()
    path = path if path.is_absolute() else spec.base_dir / path
    params = spec.params.get("params", {})
    if not isinstance(params, dict):
        raise spec.error(f"params must be a table of plugin parameters, got {params!r}")
    try:
        path = check_vst3_path(path)
        plugin = load_vst3(str(path.resolve()), path.stat().st_mtime)
        if plugin.is_instrument:
            raise InstrumentError(f"VST3 plugin {str(path)!r} is an instrument, not an effect: use it with "
                                  "--instrument ROLE=PATH.vst3 or a stem's instrument key")
        if spec.params.get("preset"):
            preset = Path(str(spec.params["preset"])).expanduser()
            plugin.load_preset(str(preset if preset.is_absolute() else spec.base_dir / preset))
        set_plugin_parameters(plugin, params, f"VST3 effect {path.name!r}")
    except InstrumentError as exc:
        raise spec.error(str(exc)) from None
    except RuntimeError as exc:  # load_preset
        raise spec.error(f"preset {spec.params.get('preset')!r} could not be loaded: {exc}") from None
    return plugin


def build_chain(effects: list[EffectSpec], tempo: float) -> Any:
    """A ``pedalboard.Pedalboard`` running ``effects`` in order at ``tempo`` bpm."""
    import pedalboard

    return pedalboard.Pedalboard([build_effect(e, tempo) for e in effects])


def chain_tail_seconds(effects: list[EffectSpec], tempo: float) -> float:
    """Upper bound of how long ``effects`` keep sounding after their input stops, in seconds.

    Reverb: its RT60 (estimated from room size and Freeverb's comb feedback); Delay:
    until the echoes are 60 dB below the input; VST3: its ``tail`` key (default 1 s); Convolution:
    the impulse response's length; others: 50 ms.
    """
    total = 0.0
    for spec in effects:
        p = spec.params
        if spec.type == "Reverb":
            if float(p.get("freeze_mode", 0.0)) >= 0.5:
                total += 10.0
                continue
            feedback = 0.7 + 0.28 * float(p.get("room_size", 0.5))
            rt60 = 0.036 * 3.0 / max(1e-6, -math.log10(feedback))
            total += rt60
        elif spec.type == "Delay":
            delay = float(p["delay_beats"]) * 60.0 / tempo if "delay_beats" in p else float(p.get("delay_seconds", 0.5))
            fb = min(0.99, abs(float(p.get("feedback", 0.0))))
            mix = min(1.0, max(1e-3, abs(float(p.get("mix", 0.5)))))
            # echo k sounds at mix * fb**(k-1) of the input: count those above -60 dB
            echoes = 1 if fb <= 0 else 1 + max(0, math.ceil(math.log(1e-3 / mix) / math.log(fb)))
            total += delay * min(echoes, 200)
        elif spec.type == "vst3":
            total += float(p.get("tail", 1.0))
        elif spec.type == "Convolution":
            total += _impulse_seconds(spec)
        else:
            total += 0.05
    return min(total, 30.0)


def _impulse_seconds(spec: EffectSpec) -> float:
    """Length of a Convolution's impulse response in seconds (10 s if it cannot be read)."""
    from pedalboard.io import AudioFile

    ir = Path(str(spec.params.get("impulse_response_filename", ""))).expanduser()
    ir = ir if ir.is_absolute() else spec.base_dir / ir
    try:
        with AudioFile(str(ir)) as f:
            return float(f.duration)
    except Exception:  # a bad file is reported by build_effect with its own message
        return 10.0
