"""Learning (needs the ``train`` extra, torch): the generic DQN pieces (``rl``), the
Q-network (``model``), the training loop (``train``) and the ONNX export (``export``)."""
