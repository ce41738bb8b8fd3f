"""What leaves kdbench: the student to ship, its formats and model card, and the data files
for training a compatible teacher elsewhere.

``export`` (``kdbench export``) · ``serialize`` (the formats: torch, safetensors, ONNX) ·
``datafiles`` (``kdbench data``).
"""
