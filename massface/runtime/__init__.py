"""massface.runtime: a model file and a dataset become embeddings.

The core floor under ``massface-infer``, ``massface-eval compare``, the export's parity
and precision previews, and training's decoding: backends (ONNX Runtime, OpenVINO,
TensorFlow ``.pb``, Ascend ``.om``), decoding and normalising images, datasets (the input
kinds), the loader that batches them, and embedding a dataset. It imports no stage
package (``train``, ``export``, ``infer``, ``evaluate``, ``align``, ``report``)::

    from massface.runtime import open_backend, sources
    from massface.runtime.pipeline import embed_dataset
    ds = sources.lfw_dataset(lfw_dir, pairs_txt)
    emb = embed_dataset(open_backend("model.onnx"), ds)
"""

from massface.runtime.backends import BACKENDS, Backend, ModelInfo, open_backend
from massface.runtime.preprocess import Preprocessing

__all__ = ["BACKENDS", "Backend", "ModelInfo", "Preprocessing", "open_backend"]
