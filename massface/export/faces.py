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

from massface.errors import InputError
from massface.formats.pairs import IMAGE_EXTENSIONS, pair_references, read_pairs, resolve_reference
from massface.tools import shared_data

DEFAULT_COUNT = 16


@dataclass(frozen=True)
class FacePreprocessing:
    """``x_out = (x - mean) / std`` on ``color`` pixels of ``size`` (H, W), NHWC.

    The same fields, names and meaning as ``massface.infer.preprocess.Preprocessing``
    (written to ``export.json`` so that inference cannot use another).
    """

    color: str = "RGB"
    mean: float = 127.5
    std: float = 128.0
    size: tuple[int, int] = (112, 112)
    layout: str = "NHWC"

    def to_dict(self) -> dict:
        return {
            "color": self.color,
            "mean": float(self.mean),
            "std": float(self.std),
            "size": [int(self.size[0]), int(self.size[1])],
            "layout": self.layout,
        }

    @classmethod
    def from_dict(cls, d: dict) -> FacePreprocessing:
        size = d.get("size", (112, 112))
        return cls(
            color=str(d.get("color", "RGB")).upper(),
            mean=float(d.get("mean", 127.5)),
            std=float(d.get("std", 128.0)),
            size=(int(size[0]), int(size[1])),
            layout=str(d.get("layout", "NHWC")).upper(),
        )

    def load(self, path: Path) -> np.ndarray:
        """One image as float32 [H, W, 3], preprocessed."""
        from PIL import Image

        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                h, w = self.size
                if im.size != (w, h):
                    im = im.resize((w, h), Image.BILINEAR)
                arr = np.asarray(im, dtype=np.float32)
        except OSError as exc:
            raise InputError(f"{path}: cannot read image: {exc}") from exc
        if self.color == "BGR":
            arr = arr[..., ::-1]
        return ((arr - np.float32(self.mean)) / np.float32(self.std)).astype(np.float32)


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
    preprocessing: FacePreprocessing | None = None,
) -> FaceBatch:
    """``count`` real faces: from the shared LFW pairs (``source`` None), a pairs file
    (its images resolved under the shared LFW folder), or a folder of images (sorted)."""
    prep = preprocessing or FacePreprocessing()
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
            p = resolve_reference(root, ref)
            if p is None:
                raise InputError(f"{pairs_file}: image {ref!r} not found under {root}")
            paths.append(p)
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
    images = np.stack([prep.load(p) for p in paths]).astype(np.float32)
    return FaceBatch(
        images=images, refs=refs, root=str(root), source=label, preprocessing=prep.to_dict()
    )
