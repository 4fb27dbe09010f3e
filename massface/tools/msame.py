"""Ascend offline-inference file conventions (msame, ais_bench, the seed's ``2bin``).

* inputs: ``<i>.bin``, raw float32 NHWC ``[1, H, W, 3]`` of one preprocessed image, i in
  pair-image order; labels in ``actual_issame.txt`` (one line of ``1``/``0`` tokens), kept
  outside the input folder because msame feeds every file in it;
* msame outputs: ``<out>/<timestamp>/<stem>_output_<k>.bin`` (raw, the model's output
  dtype) or ``.txt`` with ``--outfmt TXT``; ais_bench: ``<out>/<timestamp>/<stem>_<k>.bin``.
  The timestamp's format changed between versions: it is never parsed.
"""

from __future__ import annotations

LABELS_FILE = "actual_issame.txt"


def input_name(index: int) -> str:
    """The seed's input bin name for image ``index`` (``2bin``)."""
    return f"{index}.bin"


def msame_output_name(stem: str | int, k: int = 0, ext: str = "bin") -> str:
    """msame's output name for input ``stem`` and output ``k``."""
    return f"{stem}_output_{k}.{ext}"


def ais_bench_output_name(stem: str | int, k: int = 0, ext: str = "bin") -> str:
    """ais_bench's output name for input ``stem`` and output ``k``."""
    return f"{stem}_{k}.{ext}"
