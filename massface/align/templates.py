"""Alignment templates: where the five landmarks land in the aligned crop (registry).

* ``arcface`` (112x112): insightface's template, used to train ArcFace/MobileFaceNet
  models and to make the shared ``lfw-112x112`` crops;
* ``sphereface`` (112x96, height x width): the same points 8 px to the left (the
  SphereFace/CosFace crop; ArcFace's is it padded to a square);
* a template file (``--template my.json``): ``{"size": [H, W], "points": [[x, y] x 5]}``,
  points in the order left eye, right eye, nose, left mouth corner, right mouth corner
  (as seen in the image), in output pixels (integer coordinates at pixel centres).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from massface.align.transform import landmark_problem
from massface.errors import InputError
from massface.io import read_json
from massface.registry import Registry

MAX_SIDE = 4096  # larger crops are a mistake (and 4096^2 x 3 bytes is already 48 MiB)
ARCFACE_POINTS = ((38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366),
                  (41.5493, 92.3655), (70.7299, 92.2041))


@dataclass(frozen=True)
class Template:
    """An output size ``(height, width)`` and the five points ``[[x, y] x 5]``."""

    name: str
    size: tuple[int, int]
    points: tuple[tuple[float, float], ...]

    @property
    def array(self) -> np.ndarray:
        return np.asarray(self.points, np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": list(self.size),
                "points": [list(p) for p in self.points]}


TEMPLATES: Registry[Template] = Registry("alignment template")
TEMPLATES.register("arcface", Template("arcface", (112, 112), ARCFACE_POINTS),
                   description="112x112, insightface/ArcFace")
TEMPLATES.register("sphereface",
                   Template("sphereface", (112, 96),
                            tuple((x - 8.0, y) for x, y in ARCFACE_POINTS)),
                   description="112x96 (HxW), the ArcFace points 8 px left")


def load_template_file(path: Path) -> Template:
    """A template from ``{"size": [H, W], "points": [[x, y] x 5]}``."""
    data = read_json(path, "alignment template")
    how = ('expected {"size": [H, W], "points": [[x, y], [x, y], [x, y], [x, y], [x, y]]} '
           "(left eye, right eye, nose, left and right mouth corner, in output pixels)")
    try:
        h, w = (int(v) for v in data["size"])
        points = np.asarray(data["points"], np.float64)
    except (TypeError, KeyError, ValueError):
        raise InputError(f"{path}: not an alignment template; {how}") from None
    if points.shape != (5, 2) or not np.isfinite(points).all() or h < 8 or w < 8:
        raise InputError(f"{path}: size {h}x{w} and points of shape {points.shape}: {how}")
    if h > MAX_SIDE or w > MAX_SIDE:
        raise InputError(f"{path}: size {h}x{w}: each side must lie in 8..{MAX_SIDE} "
                         "(face crops are a few hundred pixels)")
    problem = landmark_problem(points, (h, w))
    if problem:
        raise InputError(f"{path}: {problem.replace('image', 'crop')}; {how}")
    return Template(str(path), (h, w), tuple((float(x), float(y)) for x, y in points))


def resolve_template(spec: str) -> Template:
    """A registered template by name, or a template file."""
    if spec in TEMPLATES:
        return TEMPLATES.get(spec)
    path = Path(spec)
    if path.is_file():
        return load_template_file(path)
    raise InputError(f"--template {spec!r}: neither a template ({TEMPLATES.choices()}) nor "
                     "an existing template file (.json)")
