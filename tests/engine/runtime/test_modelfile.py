"""engine.runtime.modelfile: the model file checks and the list of models qriff can load."""

from __future__ import annotations

import logging

import pytest

import engine
from engine.base.errors import ModelError
from engine.runtime import DEFAULT_MODEL_PATH, Policy, available_models, find_model


def _copy_with_id(src, dst, model_id: str) -> None:
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(src))
    for prop in model.metadata_props:
        if prop.key == "model_id":
            prop.value = model_id
    onnx.save(model, str(dst))


def test_the_shipped_model_comes_first(monkeypatch, tmp_path):
    monkeypatch.setenv("QRIFF_MODEL_DIR", str(tmp_path / "none"))
    models = available_models()
    assert models[0].path == DEFAULT_MODEL_PATH.resolve() and models[0].shipped
    assert models[0].model_id == Policy.load().info.model_id
    assert engine.available_models is available_models


def test_user_models_are_listed_and_load_by_id(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("QRIFF_MODEL_DIR", str(tmp_path / "none"))
    shipped = [m.model_id for m in available_models()]  # the default first, then the priors and the MLP
    assert shipped[0] == Policy.load().info.model_id and len(set(shipped)) == len(shipped)
    monkeypatch.setenv("QRIFF_MODEL_DIR", str(tmp_path))
    _copy_with_id(DEFAULT_MODEL_PATH, tmp_path / "mine.onnx", "my-model-7")
    _copy_with_id(DEFAULT_MODEL_PATH, tmp_path / "same-id.onnx", Policy.load().info.model_id)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with caplog.at_level(logging.WARNING, logger="engine.runtime.modelfile"):
        models = available_models()
    ids = [m.model_id for m in models]
    assert ids == [*shipped, "my-model-7"], "a duplicate id is listed once, junk is skipped"
    assert "junk.onnx" in caplog.text
    assert not models[-1].shipped and find_model("my-model-7") == (tmp_path / "mine.onnx").resolve()
    policy = Policy.load("my-model-7")
    assert policy.info.model_id == "my-model-7"
    assert policy.generate(bars=1, seed=3)[0].model == "my-model-7"


def test_a_file_that_cannot_be_read_is_skipped_not_raised(monkeypatch, tmp_path, caplog):
    """A dangling link, or a folder named like a model, in the models folder: listed models stay listable
    (the bridge's /qriff/list/models reads the folder on every request)."""
    monkeypatch.setenv("QRIFF_MODEL_DIR", str(tmp_path))
    _copy_with_id(DEFAULT_MODEL_PATH, tmp_path / "mine.onnx", "my-model-8")
    (tmp_path / "gone.onnx").symlink_to(tmp_path / "deleted.onnx")
    (tmp_path / "folder.onnx").mkdir()
    with caplog.at_level(logging.WARNING, logger="engine.runtime.modelfile"):
        ids = [m.model_id for m in available_models()]
    assert ids[-1] == "my-model-8" and "deleted.onnx" in caplog.text and "folder.onnx" in caplog.text


def test_an_unknown_model_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("QRIFF_MODEL_DIR", str(tmp_path))
    with pytest.raises(ModelError, match="does not exist: give the path of a .onnx file"):
        Policy.load("no-such-model")
