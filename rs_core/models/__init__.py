"""Base classifiers and the files they come in: architectures, checkpoints (safe loading, metadata), users'
model files (ONNX, .pt2, safetensors, …), declared preprocessing, denoisers, what ships in ``checkpoints/`` and
the server's model folder. The bottom layer above :mod:`rs_core.data`: nothing here samples noise."""
