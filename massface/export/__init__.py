"""massface.export: checkpoint -> frozen .pb -> ONNX -> Ascend .om, each proven.

Modules (one job each; none imports TensorFlow at import time):

- ``pipeline``: ``export_checkpoint``, ``import_tflite``, ``import_onnx``,
  ``tflite_to_run`` (staging folder, ``export.json`` written last).
- ``freeze``: inference graph, freezing, BatchNorm folding, clean-graph checks.
- ``onnx_convert`` / ``onnx_graph``: tf2onnx with its errors surfaced; op checks, dynamic
  batch, ONNX Runtime runner.
- ``atc``: the ATC command (SoC list, gears, precision mode), run or scripted.
- ``parity``: max |diff| and min cosine against the reference; the 0.9999 bound.
- ``faces``: the fixed batch of real faces parity uses.
- ``tflite_import`` / ``tflite_weights``: TFLite reference runner; mapping a TFLite
  MobileFaceNet onto massface's model.
- ``manifest``: ``export.json``.
- ``aipp``: the static AIPP config (``--aipp``), its CPU twin, the NCHW ONNX for ATC.
- ``precision`` (registry of targets), ``fp16``, ``int8``: CPU artifacts with the
  device's numerics (``--precision-preview``); ``preview`` and ``budget``: building them
  and scoring every variant over LFW (the accuracy budget).
- ``cli``: ``massface-export``.
"""
