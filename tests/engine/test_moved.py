"""The 0.1 module paths (README showed several) still import, as the moved modules."""

from __future__ import annotations

import importlib
import pickle
import subprocess
import sys

import pytest

from engine._moved import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_path_is_the_moved_module(old):
    if MOVED[old].startswith(("engine.learn.", "engine.corpus.prior")):
        pytest.importorskip("torch")
    module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED[old])
    assert module.__spec__.name == MOVED[old], "the shared module must keep its own spec"


def test_readme_imports_of_0_1_still_work():
    code = ("from engine.env import EnvConfig, MelodyEnv, VecMelodyEnv\n"
            "from engine import rewards, styles\n"
            "from engine.corpus import load_corpus\n"
            "from engine.evaluate import evaluate_sequences, markdown_table\n"
            "from engine.render import render_clip\n"
            "import engine.mdp.env, engine.mdp.rewards, engine.audio.render\n"
            "assert VecMelodyEnv is engine.mdp.env.VecMelodyEnv\n"
            "assert rewards is engine.mdp.rewards and render_clip is engine.audio.render.render_clip\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_objects_pickle_under_their_new_path():
    import engine.clip  # noqa: F401  (the old path loaded first must not change the class's home)

    from engine.music.clip import Note

    data = pickle.dumps(Note(60, 0, 1))
    assert b"engine.music.clip" in data
    assert pickle.loads(data) == Note(60, 0, 1)
