"""Scoring melodies: the RL Tuner statistics and distances (``metrics``) and the
evaluation suite over generated, corpus and random sets (``evaluate``)."""
