"""Real melodies: the music21 corpus as qriff tokens (``melodies``) and the numpy note
prior trained on them (``prior``).

>>> from engine.corpus import load_corpus
>>> tunes = load_corpus("train", sources=["essen"], limit=50)
"""

from engine.corpus.melodies import (
    SKIP_REASONS,
    SOURCES,
    SPLITS,
    CorpusMelody,
    CorpusReport,
    SourceReport,
    cache_dir,
    check_sources,
    diatonic_triads,
    estimate_chords,
    load_corpus,
    load_corpus_with_report,
    split_of,
)

__all__ = ["SKIP_REASONS", "SOURCES", "SPLITS", "CorpusMelody", "CorpusReport", "SourceReport", "cache_dir", "check_sources",
           "diatonic_triads", "estimate_chords", "load_corpus", "load_corpus_with_report", "split_of"]
