"""The step vocabulary shared by the MDP, the models and every clip conversion.

A step is one 16th note. Token 0 is a rest (note off), 1 holds whatever sounds, and
2..37 are 36 pitches relative to the tonic: token 14 is the tonic in the role's home
octave. For a lead in C the tokens are exactly RL Tuner's (token 2 = MIDI 48, C3).
"""

from __future__ import annotations

import numpy as np

REST = 0
HOLD = 1
FIRST_PITCH = 2
N_PITCHES = 36
N_ACTIONS = 38
TONIC_TOKEN = 14

#: Roles a track can play, in observation order. Each has its own home octave.
ROLES: tuple[str, ...] = ("lead", "bass")
#: MIDI note below which the home tonic of each role is never placed.
_ROLE_BASE = {"lead": 54, "bass": 30}
#: General MIDI program each role gets unless the caller says otherwise.
ROLE_PROGRAMS = {"lead": 0, "bass": 33}


def action_names() -> list[str]:
    """Printable name of every action index (stored in the ONNX metadata)."""
    return ["rest", "hold"] + [f"{i - TONIC_TOKEN:+d}" for i in range(FIRST_PITCH, N_ACTIONS)]


def check_role(role: str) -> str:
    """Return ``role`` if known, else raise an EngineError naming the allowed roles."""
    if role in ROLES:  # hot path (every note of every generated clip): no import here
        return role
    from engine.base.errors import EngineError

    raise EngineError(f"role {role!r} is not known: allowed are {', '.join(ROLES)}")


def home_tonic(tonic_pc: int, role: str = "lead") -> int:
    """MIDI note of the tonic in the role's home octave (token 14).

    Lead: between F#3 and F4 (C -> 60); bass: two octaves lower (C -> 36).
    """
    base = _ROLE_BASE[check_role(role)]
    return base + (int(tonic_pc) - base) % 12


def token_to_midi(token: int | np.ndarray, tonic_pc: int, role: str = "lead") -> int | np.ndarray:
    """MIDI pitch of a pitch token (2..37). Rests and holds have no pitch."""
    return home_tonic(tonic_pc, role) + (token - TONIC_TOKEN)


def midi_to_token(pitch: int, tonic_pc: int, role: str = "lead") -> int:
    """Pitch token of a MIDI note, folded by octaves into the 36-token range."""
    token = int(pitch) - home_tonic(tonic_pc, role) + TONIC_TOKEN
    while token < FIRST_PITCH:
        token += 12
    while token >= N_ACTIONS:
        token -= 12
    return token


def is_pitch(token: int | np.ndarray) -> bool | np.ndarray:
    """True for pitch tokens (not rest or hold)."""
    return token >= FIRST_PITCH


def pitch_class(token: int | np.ndarray) -> int | np.ndarray:
    """Pitch class of a pitch token relative to the tonic (0 = tonic)."""
    return (token - TONIC_TOKEN) % 12
