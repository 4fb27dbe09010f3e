"""The common deployment mistakes, each re-enacted on real images with the reference model.

A device whose embeddings disagree with the CPU's usually runs the right model on the
wrong input. Each hypothesis here is one such mistake, written as what it does to the
decoded uint8 RGB pixels before (or instead of) the model's own preprocessing; the
reference model embeds a sample of the images under each, and the hypothesis whose
embeddings match the device's is the diagnosis (:mod:`massface.evaluate.diagnose`).

Causes and their variants (a registry, so a new mistake is one entry):

- ``channel_order``: RGB and BGR swapped;
- ``normalization``: a wrong mean/std or scale: ``x/255``, ``(x-127.5)/127.5``, raw
  pixels, the mean subtracted without dividing, ImageNet's mean/std;
- ``layout``: NCHW bytes read as NHWC, or NHWC bytes read as NCHW;
- ``precision``: the model run with ATC ``force_fp16`` arithmetic (the export's float16
  simulation; needs an ONNX reference model and the ``onnx`` package);
- ``mirror``: images flipped left-right;
- ``resize``: upscaled by 8/7 then centre-cropped back (the "resize 128, crop 112"
  recipe), or centre-cropped by 12/112 then resized back.

The model's correct preprocessing comes from ``export.json`` beside the model (or
massface's default RGB ``(x-127.5)/128``), as in massface-infer.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from massface.errors import InputError
from massface.formats.preprocessing import Preprocessing
from massface.registry import Registry

CAUSES = ("none", "channel_order", "normalization", "layout", "precision", "mirror",
          "resize", "unknown")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


Transform = Callable[[np.ndarray, Preprocessing], np.ndarray]


@dataclass(frozen=True)
class Hypothesis:
    """One mistake: its cause, and the model input it produces from RGB pixels."""

    cause: str
    transform: Transform
    fp16: bool = False  # run the float16 simulation of the model instead


def _resized(pixels: np.ndarray, size: tuple[int, int], box: tuple[int, int, int, int]
             ) -> np.ndarray:
    """Each image cropped to ``box`` (left, top, right, bottom) and resized to ``size``
    (W, H), bilinear: PIL, as massface-infer resizes."""
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(p).crop(box).resize(
        size, Image.Resampling.BILINEAR)) for p in pixels])


def _resize_then_crop(pixels: np.ndarray, prep: Preprocessing) -> np.ndarray:
    h, w = pixels.shape[1:3]
    big_h, big_w = round(h * 8 / 7), round(w * 8 / 7)  # 112 -> 128
    up = _resized(pixels, (big_w, big_h), (0, 0, w, h))
    top, left = (big_h - h) // 2, (big_w - w) // 2
    return prep.normalize(up[:, top:top + h, left:left + w])


def _crop_then_resize(pixels: np.ndarray, prep: Preprocessing) -> np.ndarray:
    h, w = pixels.shape[1:3]
    mh, mw = round(h * 6 / 112), round(w * 6 / 112)  # a 6-pixel margin at 112
    return prep.normalize(_resized(pixels, (w, h), (mw, mh, w - mw, h - mh)))


def _nchw_read_as_nhwc(pixels: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """The host wrote CHW bytes, the model read them as HWC."""
    x = prep.normalize(pixels)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)).reshape(x.shape)


def _nhwc_read_as_nchw(pixels: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """The host wrote HWC bytes to a model that reads CHW (shown here in NHWC)."""
    x = prep.normalize(pixels)
    n, h, w, c = x.shape
    return np.ascontiguousarray(x.reshape(n, c, h, w).transpose(0, 2, 3, 1))


def _swap(prep: Preprocessing) -> Preprocessing:
    return replace(prep, color="BGR" if prep.color == "RGB" else "RGB")


def _scaled(mean: float, std: float) -> Transform:
    return lambda px, prep: replace(prep, mean=mean, std=std).normalize(px)


def _imagenet(pixels: np.ndarray, prep: Preprocessing) -> np.ndarray:
    x = replace(prep, mean=0.0, std=255.0).normalize(pixels)
    return (x - IMAGENET_MEAN) / IMAGENET_STD


HYPOTHESES: Registry[Hypothesis] = Registry("hypothesis")
HYPOTHESES.register("rgb_bgr_swapped", Hypothesis("channel_order",
                                                  lambda px, prep: _swap(prep).normalize(px)),
                    description="red and blue channels swapped")
HYPOTHESES.register("divided_by_255", Hypothesis("normalization", _scaled(0.0, 255.0)),
                    description="x / 255")
HYPOTHESES.register("std_127_5", Hypothesis("normalization", _scaled(127.5, 127.5)),
                    description="(x - 127.5) / 127.5")
HYPOTHESES.register("raw_pixels", Hypothesis("normalization", _scaled(0.0, 1.0)),
                    description="pixels 0..255, not normalised")
HYPOTHESES.register("mean_only", Hypothesis(
    "normalization", lambda px, prep: replace(prep, std=1.0).normalize(px)),
    description="mean subtracted, not divided by std")
HYPOTHESES.register("imagenet", Hypothesis("normalization", _imagenet),
                    description="ImageNet mean/std on x / 255")
HYPOTHESES.register("nchw_read_as_nhwc", Hypothesis("layout", _nchw_read_as_nhwc),
                    description="CHW bytes read as HWC")
HYPOTHESES.register("nhwc_read_as_nchw", Hypothesis("layout", _nhwc_read_as_nchw),
                    description="HWC bytes read as CHW")
HYPOTHESES.register("fp16", Hypothesis("precision", lambda px, prep: prep.normalize(px),
                                       fp16=True),
                    description="ATC force_fp16 arithmetic (float16 simulation)")
HYPOTHESES.register("mirrored", Hypothesis("mirror",
                                           lambda px, prep: prep.normalize(px[:, :, ::-1])),
                    description="images flipped left-right")
HYPOTHESES.register("resize_then_crop", Hypothesis("resize", _resize_then_crop),
                    description="upscaled 8/7 (112 -> 128), centre-cropped back")
HYPOTHESES.register("crop_then_resize", Hypothesis("resize", _crop_then_resize),
                    description="centre crop without a 6/112 margin, resized back")


class ReferenceModel:
    """The reference model and its images: re-embeds named images under each hypothesis."""

    def __init__(self, model: Path, images: Path, overrides: dict | None = None) -> None:
        from massface.runtime.backends import open_backend
        from massface.runtime.preprocess import choose_preprocessing

        if not Path(images).is_dir():
            raise InputError(f"--images {images}: not a folder")
        self.path, self.images = Path(model), Path(images)
        self.backend = open_backend(self.path)
        info = self.backend.info
        if info.input_dtype != "float32" or info.channels != 3:
            raise InputError(f"{model}: the reference model must take float32 RGB images "
                             "(give the float model, not an AIPP twin)")
        choice = choose_preprocessing(self.path, overrides or {}, info.size)
        self.prep = choice.preprocessing
        self.size = tuple(self.prep.size)
        self.fit = self.prep.fit
        self.preprocessing = choice.to_dict()
        self._fp16 = None
        self._fp16_reason: str | None = None
        self._cache: dict[tuple, np.ndarray | None] = {}
        self._pixels: dict[tuple, np.ndarray] = {}

    def close(self) -> None:
        self.backend.close()
        if self._fp16 is not None:
            self._fp16.close()

    def pixels(self, names: list[str]) -> np.ndarray:
        """The named images (references under ``--images``) as uint8 RGB at model size."""
        from massface.formats.pairs import require_reference
        from massface.runtime.preprocess import decode_image

        if tuple(names) in self._pixels:
            return self._pixels[tuple(names)]
        out = []
        for name in names:
            path = require_reference(self.images, name, "REF's index (--images)")
            out.append(decode_image(path, str(path), self.size, fit=self.fit))
        self._pixels[tuple(names)] = np.stack(out)
        return self._pixels[tuple(names)]

    def fp16_backend(self):
        """The float16 simulation of an ONNX reference model (None, with a reason,
        when the model is not ONNX or the ``onnx`` package is missing)."""
        if self._fp16 is not None or self._fp16_reason is not None:
            return self._fp16
        if self.path.suffix.lower() != ".onnx":
            self._fp16_reason = "needs an ONNX reference model"
            return None
        try:
            import onnx
        except ImportError:
            self._fp16_reason = "needs the onnx package (pip install 'massface[tf]')"
            return None
        from massface.export.fp16 import simulate_fp16
        from massface.runtime.backends import SIMULATION_BACKEND, open_backend

        self._tmp = tempfile.TemporaryDirectory(prefix="massface-fp16-")
        path = Path(self._tmp.name) / "fp16sim.onnx"
        onnx.save(simulate_fp16(onnx.load(str(self.path))), str(path))
        self._fp16 = open_backend(path, backend=SIMULATION_BACKEND)
        return self._fp16

    @property
    def fp16_reason(self) -> str | None:
        return self._fp16_reason

    def embed(self, names: list[str], hypothesis: str | None) -> np.ndarray | None:
        """Embeddings of the named images under ``hypothesis`` (None: the correct
        pipeline); None when the hypothesis cannot be tried. Cached: comparing several
        candidates with one model re-embeds nothing."""
        key = (hypothesis, tuple(names))
        if key not in self._cache:
            self._cache[key] = self._embed(self.pixels(names), hypothesis)
        return self._cache[key]

    def _embed(self, pixels: np.ndarray, name: str | None) -> np.ndarray | None:
        if name is None:
            return self.backend.embed(self.prep.normalize(pixels))
        h = HYPOTHESES.get(name)
        x = h.transform(pixels, self.prep).astype(np.float32)
        if h.fp16:
            backend = self.fp16_backend()
            return None if backend is None else backend.embed(x)
        return self.backend.embed(x)
