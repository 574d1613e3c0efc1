"""onnxruntime sessions as qriff runs its small graphs: one thread, sequential, CPU.

The melody policy (:func:`engine.runtime.modelfile.open_session`) and the recommender's
listening state (:mod:`recommender.scoring`) both run graphs of a few hundred kilobytes
one request at a time, where onnxruntime's thread pools cost more than they save.
"""

from __future__ import annotations

from typing import Any

__all__ = ["single_thread_session"]


def single_thread_session(data: bytes) -> Any:
    """An ``onnxruntime.InferenceSession`` on the model bytes: one intra- and one inter-op
    thread, sequential execution, every graph optimisation, warnings and errors only, CPU.
    Raises what onnxruntime raises for bytes that are not a model."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
