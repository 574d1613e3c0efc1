"""The runtime: an exported model run by onnxruntime. Never imports torch, the learning
code or the command line.

* :class:`Policy` (``policy``): loads a model and generates clips.
* ``modelfile``: the model file's format and checks, and the models qriff can load
  (:func:`available_models`).

Other layers (the learning code, the CLI, the bridge) use the names exported here.
"""

from engine.runtime.modelfile import (
    DEFAULT_MODEL_PATH,
    MODEL_FORMAT,
    RECURRENT_FORMAT,
    ModelEntry,
    ModelInfo,
    available_models,
    find_model,
    has_qriff_metadata,
    open_session,
    user_models_dir,
)
from engine.runtime.policy import Policy

__all__ = ["DEFAULT_MODEL_PATH", "MODEL_FORMAT", "RECURRENT_FORMAT", "ModelEntry", "ModelInfo", "Policy",
           "available_models", "find_model", "has_qriff_metadata", "open_session", "user_models_dir"]
