"""massface: MassFace-line face recognition.

Stages live in subpackages: ``train``, ``export``, ``infer``, ``evaluate``, and ``tools``
(dataset and file-format utilities). Importing ``massface`` imports nothing heavy:
TensorFlow is loaded only by the stages and backends that need it.
"""

__version__ = "0.1.0"
