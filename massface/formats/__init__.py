"""File formats massface reads and writes (no TensorFlow here).

- ``embedding_dir``: the embedding folder ``massface-infer`` writes and ``massface-eval``
  reads (``embeddings.npy``, ``index.txt``, ``pairs.txt``, ``meta.json`` last).
- ``msame``: Ascend offline-inference conventions: ``<i>.bin`` inputs, msame/ais_bench
  output folders, ``actual_issame.txt``.
- ``pairs``: verification pair lists (LFW ``pairs.txt``, massface path-pairs).
- ``insightface_bin``: insightface ``.bin`` validation sets, read with a restricted
  unpickler.
"""
