"""Face thumbnails for the report's galleries: small JPEGs inlined as ``data:`` URIs.

The images come from where the embeddings came from, as the producer recorded it
(``meta.json`` of an embedding folder, ``massface-infer.json`` of msame outputs):
``dataset.kind`` and ``dataset.root``. A folder dataset (``lfw``, ``images``, ``list``)
resolves each reference under its root (with or without the extension); an insightface
``.bin`` (``insightface``) holds the encoded images itself, the reference being the row.
Anything else (preprocessed ``input-bins`` tensors, bare arrays, a root that is not on
this machine, an unreadable image) gives no thumbnail, and the page shows the path
instead; :attr:`ImageSource.problem` says why, once.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Longest side of a thumbnail (CSS shows it at this size or smaller) and JPEG quality:
#: a pair card costs about 2 x 3 KB, so 24 cards stay near 150 KB.
THUMB_SIZE = 96
JPEG_QUALITY = 82

FOLDER_KINDS = ("lfw", "images", "list")


@dataclass
class ImageSource:
    """Where a run's images are; :meth:`thumbnail` turns a reference into a data URI."""

    kind: str | None
    root: Path | None
    problem: str | None = None
    _bin: list[bytes] | None = field(default=None, repr=False)

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> ImageSource:
        """The source a producer's description names (``meta["dataset"]``)."""
        dataset = meta.get("dataset") if isinstance(meta, dict) else None
        if not isinstance(dataset, dict) or not dataset.get("root"):
            return cls(None, None, "the input does not say where its images are")
        kind, root = str(dataset.get("kind")), Path(str(dataset["root"]))
        if kind not in (*FOLDER_KINDS, "insightface"):
            return cls(kind, root, f"{kind} inputs are not images")
        if not root.exists():
            return cls(kind, root, f"{root} (the dataset root recorded by the run) is not "
                                   "on this machine")
        return cls(kind, root)

    def _bytes(self, ref: str) -> bytes | None:
        if self.kind == "insightface":
            if self._bin is None:
                from massface.errors import InputError
                from massface.formats.insightface_bin import read_insightface_bin

                try:
                    self._bin = read_insightface_bin(self.root).images  # type: ignore[arg-type]
                except InputError as exc:
                    self.problem, self._bin = str(exc), []
            return self._bin[int(ref)] if ref.isdigit() and int(ref) < len(self._bin) else None
        from massface.formats.pairs import resolve_reference

        path = resolve_reference(self.root, ref)  # type: ignore[arg-type]
        try:
            return path.read_bytes() if path is not None else None
        except OSError:
            return None

    def thumbnail(self, ref: str) -> str | None:
        """A ``data:image/jpeg;base64,...`` thumbnail of ``ref``, or None."""
        if self.problem is not None or self.root is None:
            return None
        data = self._bytes(ref)
        return None if data is None else jpeg_data_uri(data)


def jpeg_data_uri(data: bytes, size: int = THUMB_SIZE) -> str | None:
    """Encoded image bytes -> a downscaled RGB JPEG data URI; None if undecodable.

    Decoded by the one decoder (:func:`massface.imaging.open_upright`: EXIF orientation
    applied), so a face is shown the way the model saw it."""
    from PIL import Image

    from massface.errors import InputError
    from massface.imaging import EIGHT_BIT_MODES, convert_8bit, open_upright

    try:
        with open_upright(data, "thumbnail") as im:
            if im.mode not in EIGHT_BIT_MODES:
                return None  # 16-bit / float: massface-infer refuses these too
            im = convert_8bit(im, "RGB")
            im.thumbnail((size, size), Image.Resampling.LANCZOS)
            out = io.BytesIO()
            im.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    except InputError:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")
