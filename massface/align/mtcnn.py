"""MTCNN face detection (Zhang et al. 2016): boxes, scores, five landmarks.

The cascade as the original MATLAB code and its ports (facenet's ``detect_face``, the
``mtcnn`` package) run it, with boxes in the original's 1-based inclusive convention and
landmarks converted to 0-based pixel centres:

1. image pyramid: scales ``12/min_face * factor**k`` while the shorter side stays >= 12 px;
   each level area-resampled (``ceil`` of the scaled size);
2. P-net on every level: cells with face probability >= ``thresholds[0]`` become 12x12
   boxes (stride 2) with their regression offsets; NMS 0.5 within a level, 0.7 across;
   offsets applied (scaled by the box side without +1), boxes squared and truncated;
3. R-net on *all* surviving candidates in one call (24x24 crops, black outside the
   image): probability > ``thresholds[1]``, NMS 0.7, offsets applied, boxes squared;
4. O-net on all of them in one call (48x48 crops): probability > ``thresholds[2]``,
   landmarks from the box before regression, offsets applied, NMS 0.7 over the smaller box.

:meth:`MTCNN.detect_many` runs each stage on many images at once: P-net once per scale
over the images sharing a pyramid (``pnet_batch`` at a time), R-net and O-net once over
the candidates of all of them; each image's NMS and regression stay its own, so the
results equal :meth:`MTCNN.detect` one image at a time. ``candidate_batch=1`` runs R-/O-net
one candidate at a time instead (as simple per-face ports do). The nets run on ONNX
Runtime or OpenVINO (:mod:`massface.align.nets`). Images whose longer side exceeds ``detect_size``
are detected on an area-downscaled copy and the results mapped back to source pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from massface.align.nets import ENGINES
from massface.align.weights import weight_paths
from massface.errors import InputError

PNET_IN, PNET_REG, PNET_PROB = "input_1", "conv2d_4", "softmax"
RNET_IN, RNET_REG, RNET_PROB = "input_2", "dense_2", "softmax_1"
ONET_IN, ONET_REG, ONET_LM, ONET_PROB = "input_3", "dense_5", "dense_6", "softmax_2"
#: refinement nets: crop side, input, outputs
_STAGES = {"rnet": (24, RNET_IN, [RNET_REG, RNET_PROB]),
           "onet": (48, ONET_IN, [ONET_REG, ONET_LM, ONET_PROB])}


@dataclass(frozen=True)
class DetectorOptions:
    """MTCNN's settings (defaults: the published ones) and how to run it."""

    min_face: float = 20.0  # smallest face side searched for, in source pixels
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    factor: float = 0.709  # pyramid step
    detect_size: int = 1024  # longer sides above this are downscaled for detection
    candidate_batch: int = 0  # R-/O-net candidates per call; 0: all in one call
    # P-net images per call (same pyramid): 8 measured best on OpenVINO (3 ms of CPU per
    # 250x250 photo, 1.6x its one-image calls); larger batches only add cache misses
    pnet_batch: int = 8
    threads: int = 1  # engine threads per net call
    engine: str = "auto"  # the nets' engine (massface.align.nets.ENGINES, or auto)
    streams: int = 1  # threads that call the detector at once (OpenVINO: its streams)

    def __post_init__(self) -> None:
        if not self.min_face >= 1:
            raise InputError(f"--min-face {self.min_face}: must be at least 1 pixel")
        if not 0 < self.factor < 1:
            raise InputError(f"pyramid factor {self.factor} must lie in (0, 1)")
        if self.detect_size < 48:
            raise InputError(f"detection size {self.detect_size} must be at least 48 px")
        if self.engine != "auto":
            ENGINES.get(self.engine, "--detector-engine")

    def to_dict(self) -> dict[str, Any]:
        from massface.align.nets import resolve_engine

        return {"min_face": self.min_face, "thresholds": list(self.thresholds),
                "factor": self.factor, "detect_size": self.detect_size,
                "engine": resolve_engine(self.engine)[0]}


@dataclass
class Faces:
    """Detections in source pixels, in MTCNN's output order."""

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # x1, y1, x2, y2
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    landmarks: np.ndarray = field(default_factory=lambda: np.zeros((0, 5, 2)))  # x, y

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, order: np.ndarray | list[int]) -> Faces:
        idx = np.asarray(order, dtype=np.intp)
        return Faces(self.boxes[idx], self.scores[idx], self.landmarks[idx])


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union"
        ) -> np.ndarray:
    """Greedy non-maximum suppression (inclusive pixel areas, as MTCNN computes them):
    indices kept, highest score first; ties keep the lower index."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        if mode == "min":
            overlap = inter / np.minimum(area[i], area[rest])
        else:
            overlap = inter / (area[i] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.intp)


def square(boxes: np.ndarray) -> np.ndarray:
    """Boxes grown to squares around the same centre (MTCNN's ``rerec``)."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def regress(boxes: np.ndarray, reg: np.ndarray, plus_one: bool = True) -> np.ndarray:
    """Apply offsets ``(dx1, dy1, dx2, dy2)`` as fractions of the box side."""
    extra = 1.0 if plus_one else 0.0
    w = (boxes[:, 2] - boxes[:, 0] + extra)[:, None]
    h = (boxes[:, 3] - boxes[:, 1] + extra)[:, None]
    return boxes[:, :4] + reg[:, :4] * np.hstack([w, h, w, h])


def pyramid_scales(height: int, width: int, min_face: float, factor: float) -> list[float]:
    """P-net scales: ``12/min_face * factor**k`` while the shorter side is >= 12 px."""
    scale = 12.0 / min_face
    shorter = min(height, width) * scale
    scales = []
    while shorter >= 12:
        scales.append(scale)
        scale *= factor
        shorter *= factor
    return scales


def _normalize(pixels: np.ndarray) -> np.ndarray:
    """float pixels ``[..., H, W, 3]`` -> the nets' transposed ``[..., W, H, 3]`` input."""
    x = (pixels - np.float32(127.5)) * np.float32(0.0078125)
    return np.ascontiguousarray(np.swapaxes(x, -3, -2), dtype=np.float32)


class _Sampler:
    """Area resampling of an RGB image and of boxes of it (PIL's box filter: the overlap-
    weighted mean when shrinking, as OpenCV's ``INTER_AREA``; nearest when enlarging).
    Outside the image is black, as MTCNN pads candidate boxes that leave it."""

    def __init__(self, image: np.ndarray) -> None:
        from PIL import Image

        self.height, self.width = image.shape[:2]
        self.image = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))

    def resize(self, size: tuple[int, int]) -> np.ndarray:
        """The whole image at ``size = (h, w)``, float32 ``[h, w, 3]``."""
        from PIL import Image

        return np.asarray(self.image.resize((size[1], size[0]), Image.Resampling.BOX),
                          dtype=np.float32)

    def boxes(self, regions: np.ndarray, size: int) -> np.ndarray:
        """Integer ``(x0, y0, width, height)`` regions at ``size x size``: ``[N, s, s, 3]``."""
        from PIL import Image, ImageOps

        out = np.empty((len(regions), size, size, 3), np.float32)
        if not len(regions):
            return out
        x0, y0 = regions[:, 0], regions[:, 1]
        x1, y1 = x0 + regions[:, 2], y0 + regions[:, 3]
        left, top = int(max(0, -x0.min())), int(max(0, -y0.min()))
        right = int(max(0, x1.max() - self.width))
        bottom = int(max(0, y1.max() - self.height))
        im = self.image
        if left or top or right or bottom:  # one black-bordered copy for every region
            im = ImageOps.expand(im, (left, top, right, bottom), fill=(0, 0, 0))
        for n, (a, b, c, d) in enumerate(zip(x0 + left, y0 + top, x1 + left, y1 + top,
                                             strict=True)):
            crop = im.resize((size, size), Image.Resampling.BOX,
                             box=(int(a), int(b), int(c), int(d)))
            out[n] = np.frombuffer(crop.tobytes(), np.uint8).reshape(size, size, 3)
        return out


@dataclass
class _Prepared:
    """One image ready for the cascade: its detection copy and its P-net pyramid."""

    sampler: _Sampler
    levels: list[tuple[float, np.ndarray]]  # (scale, normalised [W', H', 3] input)
    scaled: bool  # detected on a downscaled copy (results mapped back by s_x, s_y)
    s_x: float = 1.0
    s_y: float = 1.0


class MTCNN:
    """The three nets on their engine (:mod:`massface.align.nets`); :meth:`detect` and
    :meth:`detect_many` are thread-safe."""

    def __init__(self, options: DetectorOptions | None = None) -> None:
        from massface.align.nets import open_nets, resolve_engine

        self.options = options or DetectorOptions()
        self.engine, self.engine_choice = resolve_engine(self.options.engine)
        self._nets = open_nets(weight_paths(), self.engine, int(self.options.threads),
                               int(self.options.streams))

    def detect(self, image: np.ndarray) -> Faces:
        """Faces in an RGB ``[H, W, 3]`` image (uint8 or float 0..255): one image per net
        call (the per-image path; :meth:`detect_many` batches images)."""
        return self.detect_many([image])[0]

    def detect_many(self, images: Sequence[np.ndarray]) -> list[Faces]:
        """:meth:`detect` of each image, each stage run on the images together: P-net once
        per pyramid scale over the images of one size, R-net and O-net once over the
        candidates of all images. Same results as one at a time (to float rounding)."""
        prepared = [self.prepare(im) for im in images]
        boxes = self._proposals_many(prepared)
        boxes = self._stage(prepared, boxes, "rnet", self._refine_post,
                            lambda: np.zeros((0, 4)))
        faces = self._stage(prepared, boxes, "onet", self._output_post, Faces)
        return [(_unscale(f, p.s_x, p.s_y) if p.scaled and len(f) else f)
                for f, p in zip(faces, prepared, strict=True)]

    def prepare(self, image: np.ndarray) -> _Prepared:
        """The detection copy of ``image`` and its pyramid, P-net ready."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"detect() takes an RGB [H, W, 3] image, got {image.shape}")
        opts = self.options
        height, width = image.shape[:2]
        s = min(1.0, opts.detect_size / max(height, width))
        sampler = _Sampler(image)
        s_y = s_x = 1.0
        if s < 1.0:
            size = (max(1, round(height * s)), max(1, round(width * s)))
            sampler = _Sampler(sampler.resize(size).round())
            s_y, s_x = size[0] / height, size[1] / width
        # MTCNN's smallest cell is 12 px: no upscaling of a downscaled copy.
        min_face = max(opts.min_face * min(s_x, s_y), 12.0) if s < 1.0 else opts.min_face
        levels = [(scale, _normalize(sampler.resize((math.ceil(sampler.height * scale),
                                                      math.ceil(sampler.width * scale)))))
                  for scale in pyramid_scales(sampler.height, sampler.width, min_face,
                                              opts.factor)]
        return _Prepared(sampler, levels, s < 1.0, s_x, s_y)

    # -- stages ---------------------------------------------------------------------------

    def _proposals_many(self, prepared: list[_Prepared]) -> list[np.ndarray]:
        """Stage 1 for every image: P-net once per scale over the images sharing a pyramid
        (the same detection size and scales), then each image's own NMS."""
        groups: dict[tuple, list[int]] = {}
        for i, p in enumerate(prepared):
            key = tuple((scale, level.shape) for scale, level in p.levels)
            groups.setdefault(key, []).append(i)
        found: list[list[np.ndarray]] = [[] for _ in prepared]
        step = max(1, self.options.pnet_batch)
        chunks = [m[a:a + step] for m in groups.values() for a in range(0, len(m), step)]
        for members in chunks:
            for k, (scale, _) in enumerate(prepared[members[0]].levels):
                x = np.stack([prepared[i].levels[k][1] for i in members])
                reg, prob = self._nets["pnet"].run([PNET_REG, PNET_PROB], {PNET_IN: x})
                for j, i in enumerate(members):
                    level = self._pnet_cells(prob[j, :, :, 1], reg[j], scale)
                    if level is not None:
                        found[i].append(level)
        return [self._merge_levels(f) for f in found]

    def _pnet_cells(self, score: np.ndarray, reg: np.ndarray, scale: float
                    ) -> np.ndarray | None:
        """One level's candidates ``[n, 9]`` (box, score, offsets) after NMS 0.5."""
        gx, gy = np.nonzero(score >= self.options.thresholds[0])  # [W', H']: x first
        if gx.size == 0:
            return None
        cells = np.stack([gx, gy, gx, gy], axis=1).astype(np.float64)
        cells = np.fix((2 * cells + np.array([1, 1, 12, 12])) / scale)
        level = np.hstack([cells, score[gx, gy][:, None], reg[gx, gy]])
        return level[nms(level[:, :4], level[:, 4], 0.5)]

    @staticmethod
    def _merge_levels(found: list[np.ndarray]) -> np.ndarray:
        """``[n, 4]`` squared integer boxes from the levels' candidates (NMS 0.7)."""
        if not found:
            return np.zeros((0, 4))
        cand = np.vstack(found)
        cand = cand[nms(cand[:, :4], cand[:, 4], 0.7)]
        return np.fix(square(regress(cand[:, :4], cand[:, 5:9], plus_one=False)))

    def _stage(self, prepared: list[_Prepared], boxes: list[np.ndarray], net: str,
               post: Callable[[np.ndarray, np.ndarray, list[np.ndarray]], Any],
               empty: Callable[[], Any]) -> list[Any]:
        """One refinement stage over all images: crops of each image's boxes, one net run
        over all of them (``candidate_batch`` at a time), each image's share post-processed
        by ``post``; ``empty()`` for an image with nothing to refine."""
        size, feed, outputs = _STAGES[net]
        parts = [self._crops(p.sampler, b, size) if len(b) else None
                 for p, b in zip(prepared, boxes, strict=True)]
        crops = [part[0] for part in parts if part is not None and len(part[1])]
        outs = self._run(net, feed, outputs, _normalize(np.concatenate(crops))) if crops else []
        results, at = [], 0
        for b, part in zip(boxes, parts, strict=True):
            if part is None or not len(part[1]):
                results.append(empty())
                continue
            n = len(part[1])
            results.append(post(b, part[1], [o[at:at + n] for o in outs]))
            at += n
        return results

    def _crops(self, img: _Sampler, boxes: np.ndarray, size: int
               ) -> tuple[np.ndarray, np.ndarray]:
        """Crops of integer boxes (black outside the image); boxes with no area dropped.
        """
        w = boxes[:, 2] - boxes[:, 0] + 1
        h = boxes[:, 3] - boxes[:, 1] + 1
        ok = np.nonzero((w > 0) & (h > 0))[0]
        # 1-based inclusive boxes: the left edge of column x1 is x1 - 1.
        regions = np.stack([boxes[ok, 0] - 1, boxes[ok, 1] - 1, w[ok], h[ok]], axis=1)
        return img.boxes(regions.astype(np.int64), size), ok

    def _run(self, net: str, feed: str, outputs: list[str], x: np.ndarray) -> list[np.ndarray]:
        step = self.options.candidate_batch or len(x)
        parts = [self._nets[net].run(outputs, {feed: x[i:i + step]})
                 for i in range(0, len(x), step)]
        return [np.concatenate([p[j] for p in parts]) for j in range(len(outputs))]

    def _refine_post(self, boxes: np.ndarray, ok: np.ndarray, out: list[np.ndarray]
                     ) -> np.ndarray:
        """Stage 2 for one image, from R-net's outputs on its candidates ``ok``."""
        reg, prob = out
        score = prob[:, 1]
        keep = np.nonzero(score > self.options.thresholds[1])[0]
        boxes, score, reg = boxes[ok[keep]], score[keep], reg[keep]
        pick = nms(boxes, score, 0.7)
        return np.fix(square(regress(boxes[pick], reg[pick])))

    def _output_post(self, boxes: np.ndarray, ok: np.ndarray, out: list[np.ndarray]
                     ) -> Faces:
        """Stage 3 for one image: landmarks and final boxes from O-net's outputs."""
        reg, lm, prob = out
        score = prob[:, 1]
        keep = np.nonzero(score > self.options.thresholds[2])[0]
        boxes, score, reg, lm = boxes[ok[keep]], score[keep], reg[keep], lm[keep]
        w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        xs = w * lm[:, 0:5] + boxes[:, 0:1] - 1
        ys = h * lm[:, 5:10] + boxes[:, 1:2] - 1
        boxes = regress(boxes, reg)
        pick = nms(boxes, score, 0.7, mode="min")
        points = np.stack([xs, ys], axis=2)
        return Faces(boxes[pick].astype(np.float64), score[pick].astype(np.float64),
                     points[pick].astype(np.float64))


def _unscale(faces: Faces, s_x: float, s_y: float) -> Faces:
    """Detections on a copy downscaled by ``(s_x, s_y)`` -> source pixels."""
    boxes = faces.boxes.copy()
    # Box edges: x1 is 1-based (its left edge at x1 - 1), x2 is the right edge itself.
    boxes[:, 0] = (boxes[:, 0] - 1) / s_x + 1
    boxes[:, 1] = (boxes[:, 1] - 1) / s_y + 1
    boxes[:, 2] = boxes[:, 2] / s_x
    boxes[:, 3] = boxes[:, 3] / s_y
    lm = faces.landmarks.copy()  # 0-based pixel centres
    lm[..., 0] = (lm[..., 0] + 0.5) / s_x - 0.5
    lm[..., 1] = (lm[..., 1] + 0.5) / s_y - 0.5
    return Faces(boxes, faces.scores, lm)
