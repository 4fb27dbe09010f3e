"""``landmarks.json``: the faces found (or given) per image, keyed by relative path.

The schema of the shared ``data/lfw/landmarks-mtcnn.json``::

    {"Name/Name_0001.jpg": {"box": [x1, y1, x2, y2], "prob": 0.9997,
                            "lm": [[x, y] x 5], "nfaces": 1}, ...}

``lm``: left eye, right eye, nose, left and right mouth corner as seen in the image, in
source pixels (0-based, integer coordinates at pixel centres, after EXIF orientation);
``box`` and ``prob``: MTCNN's box (its 1-based inclusive convention) and score for that
face; ``nfaces``: how many faces the detector found. ``massface-align --all-faces`` adds
``faces``: ``[{"box", "prob", "lm"}, ...]`` for every face written (``<stem>_<k>``), the
first being the one ``lm`` describes. Written compact, in the images' order, atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from massface import io
from massface.errors import InputError
from massface.io import read_json

LANDMARKS_FILE = "landmarks.json"


def face_entry(box: np.ndarray, prob: float, lm: np.ndarray) -> dict[str, Any]:
    return {"box": [float(v) for v in box], "prob": float(prob),
            "lm": [[float(x), float(y)] for x, y in np.asarray(lm).reshape(5, 2)]}


def write_landmarks(path: Path, records: dict[str, dict[str, Any]]) -> None:
    """Atomically write ``records`` (key -> entry) as compact JSON."""
    io.write_text(path, json.dumps(records, separators=(",", ":")) + "\n")


def _points(value: Any, where: str) -> np.ndarray:
    try:
        pts = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        pts = np.zeros(0)
    if pts.shape != (5, 2) or not np.isfinite(pts).all():
        raise InputError(f"{where}: 'lm' must be five [x, y] pairs of finite numbers "
                         "(left eye, right eye, nose, left and right mouth corner)")
    return pts


def read_landmarks(path: Path) -> dict[str, dict[str, Any]]:
    """The entries of a landmarks file, each checked (``lm`` five finite points)."""
    data = read_json(path, "landmarks file")
    if not isinstance(data, dict):
        raise InputError(f"{path}: a landmarks file is a JSON object keyed by relative image "
                         'path: {"dir/img.jpg": {"lm": [[x, y] x 5], ...}}')
    for key, entry in data.items():
        if not isinstance(entry, dict) or "lm" not in entry:
            raise InputError(f"{path}: entry {key!r} has no 'lm' (five [x, y] points)")
        _points(entry["lm"], f"{path}: entry {key!r}")
        for k, face in enumerate(entry.get("faces") or []):
            _points(face.get("lm") if isinstance(face, dict) else None,
                    f"{path}: entry {key!r} face {k}")
    return data


def entry_points(entry: dict[str, Any], all_faces: bool) -> list[np.ndarray]:
    """The faces to align for one entry: its ``lm``, or every face with ``all_faces``."""
    if all_faces and entry.get("faces"):
        return [np.asarray(f["lm"], np.float64) for f in entry["faces"]]
    return [np.asarray(entry["lm"], np.float64)]
