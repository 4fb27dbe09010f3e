"""The fixed batch of real face images every exported artifact is checked on.

Parity on random noise proves little: BatchNorm statistics, PReLU slopes and fp16 ranges
only show their errors on inputs that look like the training data. So the check uses real
aligned faces: by default the first images named by the LFW ``pairs.txt`` in the shared
data, preprocessed exactly as the model expects (the ``preprocessing`` recorded in
``export.json``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from massface import shared_data
from massface.errors import InputError
from massface.formats.pairs import IMAGE_EXTENSIONS, pair_references, read_pairs, require_reference
from massface.formats.preprocessing import Preprocessing

DEFAULT_COUNT = 16


def load_face(path: Path, prep: Preprocessing) -> np.ndarray:
    """One image as float32 [H, W, 3], preprocessed exactly as ``massface-infer`` does."""
    from massface.runtime.preprocess import decode_image

    pixels = decode_image(path, str(path), prep.size, fit=prep.fit)
    return prep.normalize(pixels[None])[0]


@dataclass
class FaceBatch:
    """Preprocessed images [N, H, W, 3] float32 and where they came from."""

    images: np.ndarray
    refs: list[str]
    root: str
    source: str
    preprocessing: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "count": len(self.refs),
            "root": self.root,
            "source": self.source,
            "images": list(self.refs),
        }


def images_under(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive, hidden files skipped), in a stable order."""
    files = [
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    ]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def load_face_batch(
    source: str | os.PathLike[str] | None = None,
    *,
    count: int = DEFAULT_COUNT,
    preprocessing: Preprocessing | None = None,
) -> FaceBatch:
    """``count`` real faces: from the shared LFW pairs (``source`` None), a pairs file
    (its images resolved under the shared LFW folder), or a folder of images (sorted)."""
    prep = preprocessing or Preprocessing()
    if count < 1:
        raise InputError(f"parity image count must be at least 1, got {count}")
    if source is None or (Path(source).is_file() and Path(source).suffix == ".txt"):
        why = "parity images (default: the shared LFW; or --parity-images DIR of aligned faces)"
        pairs_file = Path(source) if source is not None else shared_data.lfw_pairs(why)
        root = shared_data.lfw_dir(why)
        if not pairs_file.is_file() or not root.is_dir():
            raise InputError(
                f"parity images: LFW not found ({pairs_file}, {root}); set "
                f"{shared_data.ENV_VAR} to the shared data folder or pass --parity-images "
                "with a folder of aligned 112x112 face images"
            )
        refs = pair_references(read_pairs(pairs_file))[:count]
        paths = []
        for ref in refs:
            paths.append(require_reference(root, ref, str(pairs_file)))
        label = f"first {len(refs)} images of {pairs_file}"
    else:
        root = Path(source)
        if not root.is_dir():
            raise InputError(f"--parity-images {root}: not a folder of images")
        paths = images_under(root)[:count]
        if not paths:
            raise InputError(f"--parity-images {root}: no images found")
        refs = [p.relative_to(root).as_posix() for p in paths]
        label = f"first {len(refs)} images (sorted) under {root}"
    images = np.stack([load_face(p, prep) for p in paths]).astype(np.float32)
    return FaceBatch(
        images=images, refs=refs, root=str(root), source=label, preprocessing=prep.to_dict()
    )
