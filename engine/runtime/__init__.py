"""The runtime: an exported model run by onnxruntime (``policy``). Never imports torch,
the learning code or the CLI."""
