"""The base every layer of qriff (the engine, the OSC bridge, the recommender) builds on.

It imports nothing else of qriff, and no heavy library at import time:

* :mod:`~engine.base.files`: :func:`atomic_write`, :class:`StagedFiles` (files a reader
  never sees half of);
* :mod:`~engine.base.errors`: :class:`QriffError`, the base of every error qriff raises
  on bad input, and the engine's :class:`EngineError` family;
* :mod:`~engine.base.options`: argparse option types and the Ray option group;
* :mod:`~engine.base.cluster`: the Ray connection (local or a cluster, worker priority);
* :mod:`~engine.base.rl`: generic deep Q-learning pieces (replay, n-step returns,
  double-DQN targets, target updates), numpy at import, torch when first called.
"""
