"""The runtime policy: an exported Q-network run by onnxruntime (no torch, ever).

>>> from engine import Policy, write_midi
>>> policy = Policy.load()                      # the shipped model
>>> clips = policy.generate(key="D", scale="dorian", bars=4, count=4, seed=7, style="hook")
>>> write_midi(clips[0], "riff.mid")

Each step every requested melody (``count`` variations x ``roles``) goes through one
``session.run`` together; the token is drawn from ``softmax(Q / temperature)``
(temperature 0 = greedy) with Gumbel noise drawn up front from a per-variation seed, so
variation ``i`` of ``generate(seed=s, count=n)`` is exactly ``generate(seed=s + i,
count=1)`` and its clip records ``seed = s + i``.

Observations are those of :func:`engine.mdp.observation.observe`, built incrementally by
:class:`engine.mdp.builder.ObservationBuilder` (a few array writes per step instead of
recomputing the whole history); a test checks the two agree bit for bit at every step.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from engine.base.errors import EngineError
from engine.mdp import observation, styles
from engine.mdp.builder import ObservationBuilder
from engine.music import limits, theory, tokens
from engine.music.clip import Clip, Track, notes_to_tokens, tokens_to_notes
from engine.music.clipfile import load_clip
from engine.music.limits import MAX_BARS, MAX_COUNT
from engine.music.request import GenerateRequest
from engine.runtime.modelfile import (
    ModelInfo,
    find_model,
    load_model_bytes,
    load_model_file,
)

log = logging.getLogger(__name__)

#: Velocity of a note by the metrical strength of the step it starts on (0 off-beat .. 3 downbeat).
_ACCENT = np.array([80, 88, 94, 102], np.int64)


class Policy:
    """A loaded qriff model. Build with :meth:`load`; generate clips with :meth:`generate`."""

    def __init__(self, session: Any, info: ModelInfo, path: Path) -> None:
        self.session = session
        self.info = info
        self.path = path
        self._input = session.get_inputs()[0].name
        self._output = session.get_outputs()[0].name
        # A recurrent model (format 2) also takes and returns its state: zeros at a clip's
        # first step, then each step's state_out is the next step's state.
        self._state_size = info.state_size
        # (tonic, scale, bars, metre, chords, role, style bytes) -> (context, static table):
        # a DAW asking again for the same frame skips parsing and tabulating it.
        self._contexts: OrderedDict[tuple, tuple[observation.MelodyContext, np.ndarray]] = OrderedDict()

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, model: str | os.PathLike[str] | None = None) -> Policy:
        """Load a model: ``None`` for the shipped default, an ONNX file's path, or the id of
        a model in :func:`~engine.runtime.modelfile.available_models`.

        Raises ModelError when the file is missing, is not an ONNX model, has the wrong
        inputs/outputs, or its metadata does not match this version of qriff.
        """
        path = find_model(model)
        session, info = load_model_file(path)
        log.debug("loaded model %s (%s) from %s", info.model_id, info.created, path)
        return cls(session, info, path)

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "<memory>") -> Policy:
        """A policy on model bytes held in memory (``qriff export`` checks a model before writing it)."""
        session, info = load_model_bytes(data, Path(name), f"model {name!r}")
        return cls(session, info, Path(name))

    # ---------------------------------------------------------------- inference
    def q_values(self, obs: np.ndarray, state: np.ndarray | None = None) -> np.ndarray:
        """Q-values (action logits) ``float32 [B, 38]`` for observations ``float32 [B, D]``.

        A recurrent model also reads its state ``float32 [B, state_size]`` (None: zeros, a
        clip's first step); use :meth:`generate` to carry it through a clip.
        """
        obs = np.asarray(obs, np.float32)
        feeds = {self._input: obs}
        if self._state_size:
            feeds["state"] = (np.zeros((obs.shape[0], self._state_size), np.float32) if state is None
                              else np.asarray(state, np.float32))
        return self.session.run([self._output], feeds)[0]

    def resolve_style(self, style: str | Mapping[str, float] | None = None, valence: float = 0.0,
                      arousal: float = 0.0) -> dict[str, float]:
        """Style weights over this model's terms (preset / ``term=w`` / mapping, then the mood dials)."""
        weights = styles.parse_style(style, self.info.style_terms)
        return styles.apply_mood(weights, valence, arousal)

    def generate(self, request: GenerateRequest | None = None, /, **options: Any) -> list[Clip]:
        """Generate ``request.count`` clip variations.

        ``request`` is a :class:`~engine.music.request.GenerateRequest` (checked when it was
        made); without one, ``options`` are its fields as keyword arguments, checked the same
        way: ``key``, ``scale``, ``bars``, ``count``, ``seed`` (None draws one, recorded in the
        clips), ``temperature`` (0 greedy, 1 samples ``softmax(Q)``), ``chords`` (one per bar,
        looping; None for the scale's default), ``style`` (preset, ``term=weight`` pairs or a
        mapping), ``roles`` (each track by the same network in that role), ``tempo``
        (written to the clip), ``time_signature``, ``primer`` (a clip or .mid/.json path to
        continue: its bars come first, quantized to 16ths, and ``bars`` new bars follow),
        ``valence`` and ``arousal`` (mood dials, see :func:`engine.mdp.styles.apply_mood`).
        Variation ``i`` uses seed ``seed + i``.

        What depends on this model is checked here: its roles and its style terms.

        Returns:
            ``count`` :class:`~engine.music.clip.Clip` objects, one track per role.
        """
        if request is None:
            request = GenerateRequest.from_mapping(options, fill_from_primer=False)
        elif options:
            raise TypeError(f"generate() takes a GenerateRequest or keyword options, not both ({', '.join(options)})")
        elif not isinstance(request, GenerateRequest):
            raise TypeError(f"generate() takes a GenerateRequest, not {type(request).__name__}")
        req = request
        if req.seed is None:
            req = req.replace(seed=int(np.random.SeedSequence().entropy % (limits.MAX_SEED - req.count + 2)))
        seed, count, temperature, roles = req.seed, req.count, req.temperature, req.roles
        assert seed is not None
        tonic, scale, ts, bars = req.tonic, req.scale, req.time_signature, req.bars
        steps_per_bar = req.steps_per_bar
        if any(r not in self.info.roles for r in roles):
            raise EngineError(f"roles {list(roles)} are not valid: give one or more of "
                              f"{', '.join(self.info.roles)}, each once")
        chords = req.chords
        prog = theory.parse_progression(chords, tonic, scale) if chords else theory.default_progression(scale, tonic)
        weights = self.resolve_style(req.style, req.valence, req.arousal)
        svec = styles.style_vector(weights, self.info.style_terms)

        primer_tokens, primer_bars = self._primer_tokens(req.primer, tonic, steps_per_bar, ts, roles)
        total_bars = primer_bars + bars
        if total_bars > MAX_BARS:
            raise EngineError(f"primer ({primer_bars} bars) plus {bars} new bars makes {total_bars} bars, allowed are "
                              f"at most {MAX_BARS}: ask for fewer bars or give a shorter primer")
        n = total_bars * steps_per_bar
        frames = {r: self._context(tonic, scale, total_bars, ts, chords, r, svec) for r in roles}
        row_ctx = [frames[r][0] for _ in range(count) for r in roles]
        row_tables = [frames[r][1] for _ in range(count) for r in roles]
        b = len(row_ctx)
        # Per-row Gumbel noise from (seed + variation, role): variations are independent of count.
        if temperature > 0:
            noise = np.empty((n, b, tokens.N_ACTIONS), np.float32)
            for i in range(count):
                for j, r in enumerate(roles):
                    rng = np.random.default_rng([seed + i, tokens.ROLES.index(r)])
                    noise[:, i * len(roles) + j] = rng.gumbel(size=(n, tokens.N_ACTIONS))
            noise *= temperature  # argmax(q / T + g) == argmax(q + T g)
        forced = np.full((n, b), -1, np.int64)
        for j, r in enumerate(roles):
            if r in primer_tokens:
                forced[: len(primer_tokens[r]), j::len(roles)] = primer_tokens[r][:, None]

        seqs = self._rollout(row_ctx, n, forced, noise if temperature > 0 else None, row_tables)

        chord_names = [c.symbol for c in prog] if chords else [theory.chord_symbol(c) for c in prog]
        velocity = _ACCENT[np.tile(_beat_strengths(ts), total_bars)]
        clips = []
        for i in range(count):
            tracks = []
            for j, r in enumerate(roles):
                notes = tokens_to_notes(seqs[i * len(roles) + j], tonic, r, velocity=velocity)
                tracks.append(Track(role=r, program=tokens.ROLE_PROGRAMS.get(r, 0), notes=notes))
            clips.append(Clip(key=req.key, scale=scale, tempo=req.tempo, time_signature=ts, bars=total_bars, seed=seed + i,
                              model=self.info.model_id, style={k: round(v, 4) for k, v in weights.items() if v},
                              chords=chord_names, tracks=tracks))
        return clips

    def generate_many(self, n: int, seed: int = 0, **options: Any) -> list[Clip]:
        """``n`` variations, any number of them, through :meth:`generate` calls of at most
        :data:`~engine.music.limits.MAX_COUNT`; variation ``i`` has seed ``seed + i`` as in one call.
        ``options``: :meth:`generate`'s other arguments."""
        _check_range("n", n, 1, 10**7, int)
        clips: list[Clip] = []
        for start in range(0, n, MAX_COUNT):
            clips += self.generate(count=min(MAX_COUNT, n - start), seed=seed + start, **options)
        return clips

    def _context(self, tonic: int, scale: str, bars: int, ts: tuple[int, int], chords: str | list[str] | None,
                 role: str, svec: np.ndarray) -> tuple[observation.MelodyContext, np.ndarray]:
        """The (cached) context of one role and its static table."""
        key = (tonic, scale, bars, ts, chords if chords is None or isinstance(chords, str) else tuple(chords),
               role, svec.tobytes())
        hit = self._contexts.get(key)
        if hit is not None:
            self._contexts.move_to_end(key)
            return hit
        ctx = observation.MelodyContext.from_music(key=tonic, scale=scale, bars=bars, time_signature=ts,
                                                   chords=chords, role=role, style=svec)
        table = ObservationBuilder.static_table(ctx)
        self._contexts[key] = (ctx, table)
        if len(self._contexts) > 64:
            self._contexts.popitem(last=False)
        return ctx, table

    def greedy_tokens(self, context: observation.MelodyContext) -> np.ndarray:
        """The tokens (``int64 [n_steps]``) this model writes in ``context`` at temperature 0,
        through the same rollout as :meth:`generate` (``qriff export`` compares them with torch's)."""
        n = context.n_steps
        return self._rollout([context], n, np.full((n, 1), -1, np.int64), None)[0]

    def _rollout(self, contexts: list[observation.MelodyContext], n: int, forced: np.ndarray,
                 noise: np.ndarray | None, tables: list[np.ndarray] | None = None) -> np.ndarray:
        """Tokens ``int64 [B, n]``: one session call per step for all rows; ``forced`` >= 0 overrides."""
        b = len(contexts)
        seqs = np.zeros((b, n), np.int64)
        builder = ObservationBuilder(contexts, tables)
        # The builder updates one observation array in place: bind it (and an output
        # buffer) to the session once, so each step is a bare run with no conversions.
        run_step = self._bound_runner(builder.obs, b)
        any_forced = (forced >= 0).any(axis=1).tolist()
        # a recurrent model reads every step, primer steps included, to carry its state
        skip_forced = not self._state_size
        for t in range(n):
            if skip_forced and any_forced[t] and (forced[t] >= 0).all():
                act = forced[t]
            else:
                q = run_step()
                if noise is not None:
                    q = q + noise[t]
                act = q.argmax(axis=1)
                if any_forced[t]:
                    act = np.where(forced[t] >= 0, forced[t], act)
            seqs[:, t] = act
            if t + 1 < n:
                builder.append(act)
        return seqs

    def _bound_runner(self, obs: np.ndarray, b: int) -> Any:
        """A zero-argument function running the model on ``obs`` (float32 ``[b, D]``, updated
        in place by the caller) and returning the Q-values ``[b, 38]`` (a reused buffer).

        Binds both arrays' memory with onnxruntime's I/O binding, so a step neither
        converts nor allocates; ``InferenceSession.run_with_iobinding`` runs it. No
        ``RunOptions`` are passed: with them, onnxruntime 1.32 looks up an unset
        ``gpu_graph_id`` entry through a C++ exception, ~45 us a step (~3 ms a clip).
        """
        q = np.zeros((b, tokens.N_ACTIONS), np.float32)
        binding = self.session.io_binding()
        binding.bind_input(self._input, "cpu", 0, np.float32, list(obs.shape), obs.ctypes.data)
        binding.bind_output(self._output, "cpu", 0, np.float32, list(q.shape), q.ctypes.data)
        run = self.session.run_with_iobinding
        if not self._state_size:
            def step() -> np.ndarray:
                run(binding)
                return q

            return step
        # Two state buffers bound once: after each run the new state is copied into the input.
        state_in = np.zeros((b, self._state_size), np.float32)
        state_out = np.zeros_like(state_in)
        binding.bind_input("state", "cpu", 0, np.float32, list(state_in.shape), state_in.ctypes.data)
        binding.bind_output("state_out", "cpu", 0, np.float32, list(state_out.shape), state_out.ctypes.data)

        def recurrent_step() -> np.ndarray:
            run(binding)
            np.copyto(state_in, state_out)
            return q

        return recurrent_step

    def _primer_tokens(self, primer: Clip | str | os.PathLike[str] | None, tonic: int, steps_per_bar: int,
                       ts: tuple[int, int], roles: tuple[str, ...]) -> tuple[dict[str, np.ndarray], int]:
        """Primer tokens per role (relative to the requested key) and the primer's length in bars."""
        if primer is None:
            return {}, 0
        clip = primer if isinstance(primer, Clip) else load_clip(primer)
        if not any(t.notes for t in clip.tracks):
            raise EngineError("primer has no notes: give a MIDI or clip file with a melody to continue")
        beats_per_bar = steps_per_bar / 4.0
        end = max(t.end_beat for t in clip.tracks)
        bars = max(1, math.ceil(end / beats_per_bar - 1e-6))
        if bars > MAX_BARS:
            raise EngineError(f"primer is {bars} bars long, allowed are at most {MAX_BARS}: trim it to its last bars")
        out = {}
        for r in roles:
            track = next((t for t in clip.tracks if t.role == r and t.notes), None)
            if track is None and r == "lead":
                track = max((t for t in clip.tracks if t.notes), key=lambda t: np.mean([n.pitch for n in t.notes]))
            if track is not None:
                out[r] = notes_to_tokens(track.notes, bars * steps_per_bar, tonic, r)
        return out, bars


@functools.lru_cache(maxsize=8)
def _beat_strengths(ts: tuple[int, int]) -> np.ndarray:
    """Metrical strength (0-3) of every 16th-note step of one bar of ``ts``."""
    return np.array([theory.beat_strength(s, ts) for s in range(theory.steps_per_bar(ts))], np.int64)


def _check_range(name: str, value: Any, lo: float, hi: float, kind: type) -> None:
    """EngineError unless ``lo <= value <= hi`` (and an int when ``kind`` is int)."""
    if kind is int:
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
            and math.isfinite(float(value))
    if not ok or not lo <= value <= hi:
        raise EngineError(f"{name} {value!r} is out of range (allowed: {lo:g} to {hi:g})")
