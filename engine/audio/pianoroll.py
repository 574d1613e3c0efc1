"""Piano-roll pictures of clips: one coloured lane of bars per track, chord symbols on top.

Uses matplotlib's object API with the Agg canvas (no pyplot, no global state), so it
works headless and from threads. Time runs left to right in beats with bar lines;
pitch bottom to top with every C labelled; note opacity follows velocity.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from engine.base.files import atomic_write
from engine.music import theory
from engine.music.clip import Clip

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Colours of the usual roles; other roles take the next colour of :data:`_CYCLE`.
ROLE_COLOURS = {"lead": "#e4572e", "bass": "#2e86ab", "pad": "#59a96a"}
_CYCLE = ("#a259c4", "#f3a712", "#8d6a9f", "#c44536", "#3d5a80", "#6c757d")


#: A chord's letter symbol (``Am``, ``G7``), also for chords written as roman numerals.
chord_label = theory.chord_symbol


def _note_name(pitch: int) -> str:
    return f"{theory.PC_NAMES[pitch % 12]}{pitch // 12 - 1}"


def draw_pianoroll(clip: Clip) -> Figure:
    """A matplotlib ``Figure`` of the clip (width grows with the number of bars)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PatchCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle


    bars = max(1, int(clip.bars))
    width = min(22.0, max(7.0, 2.0 + 1.5 * bars))
    fig = Figure(figsize=(width, 4.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    length = max([clip.length_beats] + [t.end_beat for t in clip.tracks])
    pitches = [n.pitch for t in clip.tracks for n in t.notes] or [60]
    lo, hi = min(pitches) - 2, max(pitches) + 2
    handles = []
    cycle = iter(_CYCLE * 4)
    # beds underneath, the melody on top
    for track in sorted(clip.tracks, key=lambda t: {"pad": 0, "lead": 2}.get(t.role, 1)):
        colour = ROLE_COLOURS.get(track.role) or next(cycle)
        rects = [Rectangle((n.start, n.pitch - 0.42), n.duration, 0.84) for n in track.notes]
        alphas = [0.35 + 0.65 * n.velocity / 127 for n in track.notes]
        coll = PatchCollection(rects, facecolor=colour, edgecolor="#222222", linewidth=0.4)
        coll.set_alpha(None)
        coll.set_facecolor([(*_rgb(colour), a) for a in alphas])
        ax.add_collection(coll)
        handles.append(Patch(facecolor=colour, label=track.role))
    beats_per_bar = clip.beats_per_bar
    beat = 0.0
    while beat <= length + 1e-9:
        is_bar = abs(beat / beats_per_bar - round(beat / beats_per_bar)) < 1e-9
        ax.axvline(beat, color="#444444" if is_bar else "#dddddd", linewidth=1.0 if is_bar else 0.5, zorder=0)
        beat += 1.0
    for c in range(lo - lo % 12, hi + 1, 12):
        ax.axhline(c - 0.5, color="#eeeeee", linewidth=0.6, zorder=0)
    try:
        chords = clip.progression()
    except theory.TheoryError:
        chords = []
    if chords:
        for b in range(bars):
            ax.text(b * beats_per_bar + 0.08, 1.015, chord_label(chords[b % len(chords)]),
                    transform=ax.get_xaxis_transform(), fontsize=10, fontweight="bold", va="bottom")
    ax.set_xlim(0, length)
    ax.set_ylim(lo - 0.5, hi + 0.5)
    starts = [b for b in range(bars + 1) if b * beats_per_bar < length - 1e-9]
    ax.set_xticks([b * beats_per_bar for b in starts])
    ax.set_xticklabels([str(b + 1) for b in starts])
    ax.set_xlabel("bar")
    cs = [p for p in range(lo, hi + 1) if p % 12 == 0]
    ax.set_yticks(cs)
    ax.set_yticklabels([_note_name(p) for p in cs])
    ax.set_ylabel("pitch")
    num, den = clip.time_signature
    ax.set_title(f"{clip.key} {clip.scale.replace('_', ' ')}  ·  {clip.tempo:g} bpm  ·  {num}/{den}  ·  "
                 f"{bars} bar{'s' if bars != 1 else ''}", fontsize=10, pad=22)
    if handles:
        ax.legend(handles=handles[::-1], loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def _rgb(colour: str) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    return to_rgb(colour)


def write_pianoroll(clip: Clip, path: str | os.PathLike[str], dpi: int = 100) -> Path:
    """Draw ``clip`` and save it as PNG at ``path`` (atomically); returns the path."""
    fig = draw_pianoroll(clip)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
