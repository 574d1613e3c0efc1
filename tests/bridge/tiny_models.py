"""Tiny model files for the model-switching tests: untrained, exported the way qriff's own models are.

A *plain* model reads the built-in style terms, as the shipped one does; a *personal*
model is what ``qriff tune`` writes: the same recurrent KL network with a G-network that
reads one more style term, ``taste`` (``engine.learn.tune.taste_network``), exported with
``export_seq_model`` under the tuned terms. Both are built from the tiny base of
tests/engine/learn/test_tune.py, so they take about a second each to write.
"""

from __future__ import annotations

from pathlib import Path


def write_tiny_model(path: Path, model_id: str, personal: bool = False, seed: int = 0) -> Path:
    """Write a tiny recurrent qriff model with id ``model_id`` at ``path``; a personal one reads ``taste``."""
    import torch

    from engine.learn.seqexport import export_seq_model
    from engine.learn.seqmodel import KLPolicyNet
    from engine.learn.tune import taste_network, tuned_terms
    from engine.mdp import styles
    from tests.engine.learn.test_tune import tiny_base

    torch.set_num_threads(1)
    base = tiny_base(seed)
    net = KLPolicyNet(base.prior, taste_network(base.g)).eval() if personal else base
    terms = tuned_terms(styles.BUILTIN_TERMS) if personal else styles.BUILTIN_TERMS
    path.parent.mkdir(parents=True, exist_ok=True)
    export_seq_model(net, path, terms, model_id=model_id, train_config={"preset": "bridge-model-test"})
    return path
