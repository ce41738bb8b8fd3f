"""Latency: the settings of ``[measure]`` → record columns, the one interleaved timing pass,
speed-ups, and the ONNX / onnxruntime forms that are timed and shipped.

``measure`` (the pass, the columns, the speed-ups) · ``onnx`` (a model on raw rows as ONNX,
onnxruntime sessions).
"""
