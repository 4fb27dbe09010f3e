"""Periodic verification during training: a pairs file scored by ``massface.evaluate``.

The pair images are decoded once (same loader and preprocessing as training: resize,
grey -> RGB, ``Preprocessing.normalize``), embedded with the model in inference mode (BN moving
statistics) together with their mirror images, and scored with the LFW 10-fold protocol
(L2-normalised, squared L2): plain, and mirror-averaged (``flip="sum"``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from massface.formats.preprocessing import Preprocessing
from massface.train.data import ImageFolder, load_images


def check_no_leak(pairs: str | os.PathLike[str], folder: ImageFolder, *, allow: bool = False,
                  warn: Any = None) -> set[str]:
    """Refuse (or with ``allow``, warn about) validation pairs whose images show people of
    the training set: the score would then measure memory, not verification. Returns the
    shared identities."""
    from massface.formats.pairs import pair_references, read_pairs
    from massface.leakage import check_disjoint, reference_identities

    scored = reference_identities(pair_references(read_pairs(pairs)))
    return check_disjoint(
        set(folder.identities), scored, training_what=str(folder.root),
        scored_what=f"validation.pairs {pairs}", allow=allow, warn=warn,
        fix="validate on pairs of people outside the training data, e.g. massface-pairs "
            "over held-out identities, or validation.pairs=null; "
            "validation.allow_overlap=true only warns")


@dataclass
class PairsValidation:
    """Preloaded pair images; call :meth:`evaluate` with a model."""

    images: np.ndarray        # uint8 [M, H, W, 3], distinct images
    rows: np.ndarray          # [2N] row of each pair side in ``images``
    issame: np.ndarray        # [N] bool
    pairs_path: Path
    #: the record whose :meth:`~Preprocessing.normalize` training's input pipeline uses
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    batch_size: int = 64

    @classmethod
    def load(cls, pairs: str | os.PathLike[str], root: str | os.PathLike[str],
             size: tuple[int, int] = (112, 112), **kw: Any) -> PairsValidation:
        from massface.formats.pairs import pair_references, read_pairs, require_reference

        plist = read_pairs(pairs)
        refs = pair_references(plist)
        paths = []
        for ref in refs:
            found = require_reference(root, ref, str(pairs))
            paths.append(str(found.relative_to(root)) if found.is_relative_to(root)
                         else str(found))
        row_of = {ref: i for i, ref in enumerate(refs)}
        rows = np.array([row_of[r] for p in plist for r in (p.a, p.b)], np.int64)
        issame = np.array([bool(p.issame) for p in plist])
        images = load_images(Path(root), paths, size)
        return cls(images, rows, issame, Path(pairs), **kw)

    def _forward(self, model: Any) -> Any:
        """One compiled inference function per model (fixed signature: no retracing)."""
        import tensorflow as tf

        cache = self.__dict__.setdefault("_compiled", {})
        if id(model) not in cache:
            h, w = self.images.shape[1:3]
            prep = self.preprocessing

            @tf.function(input_signature=[tf.TensorSpec([None, h, w, 3], tf.uint8)])
            def forward(x: tf.Tensor) -> tf.Tensor:
                return model(prep.normalize(tf.cast(x, tf.float32)), training=False)

            cache[id(model)] = (model, forward)
        return cache[id(model)][1]

    def embed(self, model: Any, flip: bool = False) -> np.ndarray:
        forward = self._forward(model)
        out = []
        for i in range(0, len(self.images), self.batch_size):
            x = self.images[i:i + self.batch_size]
            if flip:
                x = np.ascontiguousarray(x[:, :, ::-1])
            out.append(forward(x).numpy())
        return np.concatenate(out)

    def evaluate(self, model: Any, flip: bool = True) -> dict[str, Any]:
        """``{"accuracy", "accuracy_std", "val", "auc", ...}`` (plus ``flip_*`` with flip)."""
        from massface.scoring import verify

        emb = self.embed(model)[self.rows]
        result = verify(emb, self.issame)
        out = {"accuracy": result.accuracy, "accuracy_std": result.accuracy_std,
               "val": result.val, "auc": result.auc, "eer": result.eer}
        if flip:
            emb_f = self.embed(model, flip=True)[self.rows]
            rf = verify(emb, self.issame, flip_embeddings=emb_f, flip="sum")
            out.update(flip_accuracy=rf.accuracy, flip_accuracy_std=rf.accuracy_std,
                       flip_val=rf.val, flip_auc=rf.auc)
        return {k: float(v) for k, v in out.items()}
