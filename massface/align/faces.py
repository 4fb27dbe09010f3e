"""From a photo to aligned crops: find the faces (or take given landmarks), choose, warp.

:class:`FaceAligner` is what ``massface-align`` and ``massface-infer --align`` share:
:meth:`FaceAligner.find` returns the ``landmarks.json`` entry and the faces to warp, or
raises :class:`NoFaceError` (an :class:`InputError`) whose ``reason`` is one of
:data:`SKIP_REASONS`; :meth:`FaceAligner.crop` warps one face onto the template.

Which face (registry :data:`PICKS`): ``central`` (box centre nearest the image centre,
as the shared LFW landmarks were chosen), ``largest`` (box area), ``score`` (detector
probability). ``all_faces`` keeps every face, ranked by the same rule.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from massface.align.landmarks import entry_points, face_entry
from massface.align.mtcnn import MTCNN, DetectorOptions, Faces
from massface.align.templates import Template
from massface.align.transform import WARPS, landmark_problem, similarity, warp_affine
from massface.errors import InputError
from massface.registry import Registry

SKIP_REASONS = ("no face", "too small", "unreadable", "no landmarks", "bad landmarks")


class NoFaceError(InputError):
    """No face to align in an image: ``reason`` is one of :data:`SKIP_REASONS`."""

    def __init__(self, name: str, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{name}: {reason}" + (f" ({detail})" if detail else ""))


def _central(faces: Faces, size: tuple[int, int]) -> np.ndarray:
    centre = np.array([size[1], size[0]]) / 2.0
    mid = (faces.boxes[:, :2] + faces.boxes[:, 2:]) / 2.0
    return np.argsort(((mid - centre) ** 2).sum(axis=1), kind="stable")


def _largest(faces: Faces, size: tuple[int, int]) -> np.ndarray:
    area = (faces.boxes[:, 2] - faces.boxes[:, 0]) * (faces.boxes[:, 3] - faces.boxes[:, 1])
    return np.argsort(-area, kind="stable")


def _score(faces: Faces, size: tuple[int, int]) -> np.ndarray:
    return np.argsort(-faces.scores, kind="stable")


PICKS: Registry[Callable[[Faces, tuple[int, int]], np.ndarray]] = Registry("face choice")
PICKS.register("central", _central, description="box centre nearest the image centre")
PICKS.register("largest", _largest, description="largest box")
PICKS.register("score", _score, description="highest detector probability")


@dataclass(frozen=True)
class AlignSettings:
    """How faces are found, chosen and warped."""

    template: Template
    pick: str = "central"
    all_faces: bool = False
    warp: str = "opencv"
    detector: DetectorOptions = field(default_factory=DetectorOptions)

    def __post_init__(self) -> None:
        PICKS.get(self.pick, "--pick")
        WARPS.get(self.warp, "--warp")

    def to_dict(self) -> dict[str, Any]:
        return {"template": self.template.to_dict(), "pick": self.pick,
                "all_faces": self.all_faces, "warp": self.warp,
                "detector": {"name": "mtcnn", **self.detector.to_dict()}}


@dataclass
class Found:
    """One image's ``landmarks.json`` entry and the faces to warp, in output order."""

    entry: dict[str, Any]
    points: list[np.ndarray]


class FaceAligner:
    """Detect (or look up) and align; thread-safe. The detector loads on first use."""

    def __init__(self, settings: AlignSettings,
                 given: dict[str, dict[str, Any]] | None = None,
                 given_from: Path | None = None) -> None:
        self.settings = settings
        self.given = given
        self.given_from = given_from
        self._detector: MTCNN | None = None
        self._lock = threading.Lock()

    @property
    def detector(self) -> MTCNN:
        with self._lock:
            if self._detector is None:
                self._detector = MTCNN(self.settings.detector)
            return self._detector

    def find(self, image: np.ndarray, key: str, name: str) -> Found:
        """The faces of ``image`` (``key``: its relative path; ``name``: for messages)."""
        found = self.find_many([image], [key], [name])[0]
        if isinstance(found, NoFaceError):
            raise found
        return found

    def find_many(self, images: Sequence[np.ndarray], keys: Sequence[str],
                  names: Sequence[str]) -> list[Found | NoFaceError]:
        """:meth:`find` of each image, the detector run on them together
        (:meth:`MTCNN.detect_many`); an image with no face to align gets its error."""
        out: list[Found | NoFaceError | None] = [None] * len(images)
        todo: list[int] = []
        for i, (image, key, name) in enumerate(zip(images, keys, names, strict=True)):
            try:
                if self.given is not None:
                    out[i] = self._given(image, key, name)
                else:
                    self._check_size(image, name)
                    todo.append(i)
            except NoFaceError as exc:
                out[i] = exc
        faces = self.detector.detect_many([images[i] for i in todo]) if todo else []
        for i, f in zip(todo, faces, strict=True):
            try:
                out[i] = self._choose(f, images[i], names[i])
            except NoFaceError as exc:
                out[i] = exc
        return [x for x in out if x is not None]

    def _given(self, image: np.ndarray, key: str, name: str) -> Found:
        """The given points of ``key``, checked to fit ``image`` (see landmark_problem)."""
        assert self.given is not None
        entry = self.given.get(key)
        if entry is None:
            raise NoFaceError(name, "no landmarks", f"no entry {key!r} in {self.given_from}")
        points = entry_points(entry, self.settings.all_faces)
        for k, pts in enumerate(points):
            problem = landmark_problem(pts, image.shape[:2])
            if problem:
                face = f"face {k} " if len(points) > 1 else ""
                raise NoFaceError(name, "bad landmarks", f"{face}{problem} in {self.given_from}")
        return Found(entry, points)

    def _check_size(self, image: np.ndarray, name: str) -> None:
        min_face = self.settings.detector.min_face
        if min(image.shape[:2]) < min_face:
            raise NoFaceError(name, "too small", f"image {image.shape[1]}x{image.shape[0]} "
                                                 f"is smaller than --min-face {min_face:g}")

    def _choose(self, faces: Faces, image: np.ndarray, name: str) -> Found:
        """The face(s) to align among the detections, by ``pick``."""
        min_face = self.settings.detector.min_face
        if not len(faces):
            raise NoFaceError(name, "no face")
        side = np.maximum(faces.boxes[:, 2] - faces.boxes[:, 0],
                          faces.boxes[:, 3] - faces.boxes[:, 1])
        big = np.nonzero(side >= min_face)[0]
        if not len(big):
            raise NoFaceError(name, "too small", f"largest face {side.max():.0f} px < "
                                                 f"--min-face {min_face:g}")
        kept = faces.take(big)
        order = PICKS.get(self.settings.pick)(kept, image.shape[:2])
        chosen = kept.take(order if self.settings.all_faces else order[:1])
        entries = [face_entry(b, p, lm) for b, p, lm in
                   zip(chosen.boxes, chosen.scores, chosen.landmarks, strict=True)]
        entry = {**entries[0], "nfaces": len(faces)}
        if self.settings.all_faces:
            entry["faces"] = entries
        return Found(entry, list(chosen.landmarks))

    def crop(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        """``image`` warped so that ``points`` land on the template (uint8 RGB)."""
        t = self.settings.template
        m = similarity(points, t.array)
        return warp_affine(image, m, t.size, self.settings.warp)
