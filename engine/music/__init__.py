"""Music: keys, scales and chords (``theory``), the melody token alphabet (``tokens``)
and the clip, qriff's unit of exchange (``clip``). Imports nothing else of qriff but
:mod:`engine.base.errors`."""
