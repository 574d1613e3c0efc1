"""``qriff render``: a clip (JSON or MIDI) to audio stems, a mix and a piano roll.

Other commands that render (``qriff generate --render``) reuse :func:`add_render_options`
and :func:`render_request`, so the flags mean the same everywhere.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from engine.base.errors import EngineError
from engine.base.options import checked_text
from engine.cli.options import build_request
from engine.music import limits
from engine.music.request import RenderRequest


def _check_instrument(text: str) -> None:
    from engine.audio.instruments import parse_instrument_arg  # on use: --help stays fast

    parse_instrument_arg(text)


_instrument_arg = checked_text(_check_instrument, "instrument")


def add_render_options(parser: argparse.ArgumentParser, format_flag: str = "--format") -> None:
    """Add the audio options (preset, instruments, rate, format, depth, pad, piano roll).

    ``format_flag`` renames ``--format`` for commands that already use it (generate
    passes ``--audio-format``); the value lands in ``args.audio_format`` either way.
    """
    from engine.audio.voices import VOICES

    g = parser.add_argument_group("audio")
    g.add_argument("--preset", default=limits.DEFAULT_PRESET, metavar="NAME|FILE",
                   help="effect preset: dry, studio, lofi, ambient, or a .toml/.json preset file "
                        f"(default: {limits.DEFAULT_PRESET})")
    g.add_argument("--instrument", action="append", default=[], type=_instrument_arg, metavar="ROLE=SPEC",
                   help="instrument for one track role, repeatable. SPEC is a built-in voice "
                        f"({', '.join(VOICES)}), 'gm' (bundled General MIDI SoundFont, ':program=N' to pick a "
                        "program), PATH.sf2[:program=N,bank=N] or PATH.vst3[:PARAM=VALUE,...,preset=FILE]. "
                        "Default: the preset's choice, else lead-saw/saw-bass/soft-pad by role")
    g.add_argument("--sample-rate", type=int, choices=limits.SAMPLE_RATES, default=limits.DEFAULT_SAMPLE_RATE,
                   metavar="HZ", help=f"{', '.join(map(str, limits.SAMPLE_RATES))} "
                                      f"(default: {limits.DEFAULT_SAMPLE_RATE})")
    g.add_argument(format_flag, dest="audio_format", choices=tuple(limits.AUDIO_FORMATS),
                   default=limits.DEFAULT_AUDIO_FORMAT,
                   help="audio file format: wav or flac (default: wav)")
    g.add_argument("--bit-depth", choices=limits.BIT_DEPTHS, default=limits.DEFAULT_BIT_DEPTH,
                   help="16, 24 (PCM) or 32f (float, wav only) (default: 24)")
    g.add_argument("--pad", action="store_true",
                   help="add a voice-led chord pad track from the clip's chords (role 'pad')")
    g.add_argument("--no-pianoroll", action="store_true", help="do not write pianoroll.png")


def render_request(args: argparse.Namespace, format_flag: str = "--format") -> RenderRequest:
    """The :class:`~engine.music.request.RenderRequest` of parsed audio options."""
    return build_request(RenderRequest.from_mapping, {
        "preset": args.preset, "instruments": tuple(args.instrument), "sample_rate": args.sample_rate,
        "fmt": args.audio_format, "bit_depth": args.bit_depth, "pad": args.pad, "pianoroll": not args.no_pianoroll},
        flags={"fmt": format_flag})


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "render", help="render a clip to audio stems, a mix and a piano roll",
        description="Render a clip (.json or .mid) to one audio file per track (DIR/<role>.wav), DIR/mix.wav "
                    "(limited to -1 dBFS, integrated loudness reported) and DIR/pianoroll.png. All files have "
                    "the same length and start at the clip's first beat; effect tails are kept.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  qriff render clip-0000.json --out stems\n"
               "  qriff render song.mid --out stems --preset lofi --pad\n"
               "  qriff render clip.json --out stems --instrument lead=gm:program=81 --instrument bass=sub-bass\n"
               "  qriff render --list")
    p.add_argument("clip", nargs="?", type=Path, help="clip file: .json (qriff clip) or .mid/.midi")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="output folder (default: a folder named after the clip, beside it)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    p.add_argument("--list", action="store_true", help="list the presets and built-in voices, then exit")
    add_render_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.audio.render import render_clip
    from engine.music.clipfile import load_clip

    if args.list:
        _print_lists()
        return 0
    if args.clip is None:
        raise EngineError("no clip given: qriff render CLIP.json|CLIP.mid --out DIR (or --list)")
    clip = load_clip(args.clip)
    out = args.out if args.out is not None else args.clip.with_suffix("")
    if out.resolve() == args.clip.resolve():
        raise EngineError(f"--out {str(out)!r} is the clip file itself: give a folder")
    result = render_clip(clip, out, render_request(args), quiet=args.quiet)
    if not args.quiet:
        print(result.summary())
    return 0


def _print_lists() -> None:
    from engine.audio.effects import list_presets
    from engine.audio.voices import VOICES

    print("presets:")
    for name, desc in list_presets().items():
        print(f"  {name:10s} {desc}")
    print("voices:")
    for name, voice in VOICES.items():
        print(f"  {name:12s} {voice.description}")
    print("also: gm (bundled General MIDI SoundFont), PATH.sf2, PATH.vst3")
