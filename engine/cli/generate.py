"""``qriff generate``: write melody clips (MIDI and/or clip JSON) from the DQN model."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from engine.base.errors import EngineError
from engine.base.files import atomic_write, highest_number
from engine.base.options import bounded_float, bounded_int
from engine.cli.options import add_music_options, build_request
from engine.cli.render import add_render_options, render_request
from engine.music import limits
from engine.music.limits import MAX_COUNT, MAX_TEMPERATURE
from engine.music.request import GenerateRequest, OptionError, parse_roles

log = logging.getLogger(__name__)

DEFAULT_OUT = "qriff-clips"


def mood_type(text: str) -> tuple[float, float]:
    """``VALENCE,AROUSAL``, each -1..1 (``0.5,-0.3``)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        if len(parts) != 2:
            raise ValueError
        v, a = float(parts[0]), float(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not VALENCE,AROUSAL (two numbers -1 to 1, e.g. 0.5,-0.2)") from None
    for name, x in (("valence", v), ("arousal", a)):
        if not -1.0 <= x <= 1.0:
            raise argparse.ArgumentTypeError(f"{name} {x:g} in {text!r} is out of range (allowed: -1 to 1)")
    return v, a


def roles_type(text: str) -> tuple[str, ...]:
    """Comma-separated roles: ``lead`` or ``lead,bass`` (checked by the request's own parser)."""
    try:
        return parse_roles(text)
    except OptionError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of roles: {exc.detail}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate", help="write melody clips (.mid / .json) from the DQN model",
        description="Generate melody clips with the trained Q-network (onnxruntime, no torch needed). "
                    "Writes DIR/clip-NNNN.mid (and/or .json), one file per variation, numbered after the highest "
                    "clip number already in DIR (clip-0000 in a new folder), and prints what it wrote. Existing "
                    "clips are never replaced unless --overwrite is given.",
        epilog="Examples: qriff generate --key D --scale dorian --bars 8 --style hook --count 4\n"
               "          qriff generate --roles lead,bass --chords 'Am F C G' --mood 0.5,0.8 --format both\n"
               "          qriff generate --primer riff.mid --bars 2 --render",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_music_options(p)
    # Unset musical options fall back to the primer's (when given), then to the usual defaults.
    p.set_defaults(key=None, scale=None, tempo=None, time_signature=None)
    g = p.add_argument_group("generation")
    g.add_argument("--style", default=None,
                   help="style preset (folk, hook, chorale, ambient), term=weight pairs (motif=2,rests=0.5) or "
                        "a preset with overrides (hook,prior=0.5); default: the folk-like default style")
    g.add_argument("--temperature", type=bounded_float(0.0, MAX_TEMPERATURE), default=limits.DEFAULT_TEMPERATURE,
                   help=f"sampling temperature 0-{MAX_TEMPERATURE:g}: 0 always takes the best token, 1 samples "
                        f"softmax(Q), higher is wilder (default: {limits.DEFAULT_TEMPERATURE})")
    g.add_argument("--seed", type=bounded_int(0, limits.MAX_SEED), default=None,
                   help=f"random seed 0-{limits.MAX_SEED}; variation i uses seed+i (default: a random seed, printed)")
    g.add_argument("--count", type=bounded_int(1, MAX_COUNT), default=1,
                   help=f"number of variations, 1-{MAX_COUNT} (default: 1)")
    g.add_argument("--roles", type=roles_type, default=("lead",),
                   help="tracks to write, comma-separated: lead, bass (default: lead)")
    g.add_argument("--primer", default=None, metavar="FILE",
                   help="a .mid or clip .json melody to continue: its bars come first and --bars new bars follow; "
                        "key, scale, tempo and metre default to the primer's")
    g.add_argument("--mood", type=mood_type, default=None, metavar="VALENCE,AROUSAL",
                   help="mood dials, each -1..1: valence dark..bright, arousal calm..busy (e.g. 0.6,-0.3)")
    g.add_argument("--valence", type=bounded_float(-1.0, 1.0), default=None, help="valence alone, -1 (dark) to 1 (bright)")
    g.add_argument("--arousal", type=bounded_float(-1.0, 1.0), default=None, help="arousal alone, -1 (calm) to 1 (busy)")
    g.add_argument("--model", default=None, metavar="PATH",
                   help="an .onnx model written by 'qriff export' (default: the model shipped with qriff)")
    o = p.add_argument_group("output")
    o.add_argument("--format", choices=("mid", "json", "both"), default="mid",
                   help="write .mid, clip .json or both (default: mid)")
    o.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output directory (default: ./{DEFAULT_OUT})")
    o.add_argument("--overwrite", action="store_true",
                   help="number the clips from clip-0000 and replace files of the same names (default: continue "
                        "after the highest number in DIR, never replacing a clip)")
    o.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.add_argument("--render", action="store_true",
                   help="also render each clip to audio stems, a mix and a piano roll in DIR/clip-0000/ "
                        "(the audio options below are qriff render's)")
    add_render_options(p, format_flag="--audio-format")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.runtime import Policy

    if args.mood is not None and (args.valence is not None or args.arousal is not None):
        raise EngineError("--mood and --valence/--arousal both given: use one or the other")
    valence, arousal = args.mood if args.mood is not None else (args.valence or 0.0, args.arousal or 0.0)

    request = build_request(GenerateRequest.from_mapping, {
        "key": args.key, "scale": args.scale, "bars": args.bars, "count": args.count, "seed": args.seed,
        "temperature": args.temperature, "chords": args.chords, "style": args.style, "roles": args.roles,
        "tempo": args.tempo, "time_signature": args.time_signature, "primer": args.primer,
        "valence": valence, "arousal": arousal})
    audio = render_request(args, format_flag="--audio-format") if args.render else None  # checked before any clip
    policy = Policy.load(args.model)
    clips = policy.generate(request)
    out = Path(args.out)
    render_clip = _renderer() if args.render else None
    number = 0 if args.overwrite else highest_number(out, CLIP_NAME) + 1
    for clip in clips:
        written, number = _write_clip(clip, out, number, args.format, args.overwrite)
        base = written[0].with_suffix("")
        number += 1
        if render_clip is not None:
            result = render_clip(clip, base, audio, quiet=True)
            written.extend([*result.stems.values(), result.mix])
        if not args.quiet:
            n_notes = sum(len(t.notes) for t in clip.tracks)
            print(f"{', '.join(str(w) for w in written)}  ({clip.key} {clip.scale}, {clip.bars} bars, "
                  f"{n_notes} notes, seed {clip.seed})", file=sys.stdout)
    return 0


#: Names ``qriff generate`` writes (``clip-0007.mid``, ``.json``, and the ``clip-0007/`` render folder).
CLIP_NAME = r"clip-(\d+)(?:\.mid|\.json)?"


def _write_clip(clip, out: Path, number: int, fmt: str, overwrite: bool) -> tuple[list[Path], int]:
    """Write ``clip`` as ``out/clip-NNNN.*`` from ``number`` on; (the files, the number used).

    Without ``overwrite`` no file is replaced: when another process took the name in the
    meantime, the next number is tried.
    """
    from engine.music.midi import midi_bytes

    contents = []
    if fmt in ("mid", "both"):
        contents.append((".mid", midi_bytes(clip)))
    if fmt in ("json", "both"):
        contents.append((".json", clip.to_json() + "\n"))
    for _ in range(1000):
        base = out / f"clip-{number:04d}"
        if not overwrite and base.exists():
            number += 1
            continue
        written: list[Path] = []
        try:
            for suffix, data in contents:
                written.append(atomic_write(base.with_suffix(suffix), data, replace=overwrite))
        except FileExistsError:
            if written:  # the .json's name was taken after the .mid was written: no partial clip stays
                for path in written:
                    path.unlink()
            number += 1
            continue
        return written, number
    raise EngineError(f"--out {str(out)!r}: no free clip number from clip-{number - 1000:04d} on after 1000 tries")


def _renderer():
    from engine.audio.render import render_clip

    return render_clip
