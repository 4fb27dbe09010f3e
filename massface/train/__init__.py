"""massface.train: MobileFaceNet, triplet mining, data pipelines and the training loop.

Importing this package sets ``TF_ENABLE_ONEDNN_OPTS=1`` (unless the user set it) before
TensorFlow is imported by any of its modules: on the project's AMD CPUs oneDNN made
training about 1.8x faster. It has no effect when TensorFlow was imported earlier.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
