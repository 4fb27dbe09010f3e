"""``massface-infer --align TEMPLATE``: embed raw photos (detect, align, embed in one pass).

The decode workers call :meth:`AlignStep.crop` instead of decoding and resizing: the
photo is read upright (EXIF), MTCNN finds the faces, the central one (``pick``) is warped
onto the template, and the crop (exactly the model's input size) goes on to
normalisation like any decoded image. An image with no face is a bad item (exit 2 naming
it, or listed in ``skipped.txt`` with ``--skip-bad``).

The landmarks used are appended, one JSON line per image, to ``OUT/.partial/
align-landmarks.jsonl`` as they are found (so a resumed run keeps those of its finished
chunks); :meth:`AlignStep.finish` writes ``OUT/landmarks.json`` (the ``massface-align``
schema, keys as in ``index.txt``) for the embedded images just before the embedding
folder's ``meta.json`` marks the run complete.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from massface import io
from massface.align.faces import AlignSettings, FaceAligner
from massface.align.images import load_rgb
from massface.align.landmarks import LANDMARKS_FILE, write_landmarks
from massface.align.mtcnn import DetectorOptions
from massface.align.templates import resolve_template
from massface.align.weights import SHA256
from massface.errors import InputError

JOURNAL = "align-landmarks.jsonl"


class AlignStep:
    """Detection and alignment inside ``massface-infer``'s decode workers."""

    def __init__(self, template: str, pick: str = "central", workers: int = 1) -> None:
        # one detector for all decode workers: as many OpenVINO streams as workers call it
        self.settings = AlignSettings(resolve_template(template), pick,
                                      detector=DetectorOptions(streams=max(1, workers)))
        self.aligner = FaceAligner(self.settings)
        self._journal: Any = None
        self._write_lock = threading.Lock()

    def fingerprint(self) -> dict[str, Any]:
        return {**self.settings.to_dict(), "weights_sha256": SHA256}

    def start(self, partial_dir: Path, model_size: tuple[int, int] | None,
              channels: int) -> None:
        """Check the template fits the model; open the landmarks journal (append)."""
        size = tuple(self.settings.template.size)
        if model_size is not None and tuple(model_size) != size:
            raise InputError(f"--align {self.settings.template.name}: the template makes "
                             f"{size[0]}x{size[1]} crops but the model takes "
                             f"{model_size[0]}x{model_size[1]}; choose a template of the "
                             "model's size")
        self.channels = channels
        self._journal = io.Journal(partial_dir / JOURNAL)

    def crop(self, item: bytes | os.PathLike[str], name: str, key: str) -> np.ndarray:
        """uint8 ``[H, W, channels]`` aligned crop of one photo; records its landmarks."""
        out = self.crop_many([item], [name], [key])[0]
        if isinstance(out, InputError):
            raise out
        return out

    def crop_many(self, items: Sequence[bytes | os.PathLike[str]], names: Sequence[str],
                  keys: Sequence[str]) -> list[np.ndarray | InputError]:
        """:meth:`crop` of each photo, detection batched over them (a decode worker's
        batch); a photo that cannot be aligned gets its :class:`InputError` instead."""
        out: list[np.ndarray | InputError | None] = [None] * len(items)
        images: dict[int, np.ndarray] = {}
        for i, (item, name) in enumerate(zip(items, names, strict=True)):
            try:
                images[i] = load_rgb(item, name)
            except InputError as exc:
                out[i] = exc
        todo = sorted(images)
        found = self.aligner.find_many([images[i] for i in todo], [keys[i] for i in todo],
                                       [names[i] for i in todo])
        for i, f in zip(todo, found, strict=True):
            if isinstance(f, InputError):
                out[i] = f
                continue
            out[i] = self._channels(self.aligner.crop(images[i], f.points[0]))
            with self._write_lock:
                self._journal.write({"key": keys[i], "entry": f.entry})
        return [x for x in out if x is not None]

    def _channels(self, crop: np.ndarray) -> np.ndarray:
        if self.channels == 1:  # ITU-R 601 luma, as PIL's convert("L")
            grey = (crop.astype(np.int32) @ np.array([19595, 38470, 7471]) + 32768) >> 16
            return grey.astype(np.uint8)[:, :, None]
        return crop

    def finish(self, out: Path, partial_dir: Path, keys: list[str]) -> dict[str, Any]:
        """Write ``OUT/landmarks.json`` for ``keys``; what meta.json records about it."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        entries = {rec["key"]: rec["entry"]
                   for rec in io.read_jsonl(partial_dir / JOURNAL, "landmarks journal")}
        write_landmarks(out / LANDMARKS_FILE, {k: entries[k] for k in keys})
        return {**self.settings.to_dict(), "landmarks": LANDMARKS_FILE}
