"""The seed's ``2bin`` step: write preprocessed msame inputs for users who run msame.

``massface-infer prepare-bins --out DIR`` writes ``DIR/inputs/<i>.bin``: raw float32 NHWC
``[1, H, W, C]``, or raw uint8 RGB pixels for a model that normalises its own input (an
AIPP ``.om`` or its CPU twin ``model.aipp.onnx``), one per pair slot in pair order
``0..2N-1`` when there are pairs, else one per image. Outside the input folder, because
msame feeds every file in it: ``DIR/actual_issame.txt`` and ``DIR/inputs.json`` (written
last: the preprocessing, what each file holds, and the msame command, which
``prepare-bins`` also prints: ``msame --model M.om --input DIR/inputs --output DIR/msame
--outfmt BIN --dymBatch 1``, ``--dymBatch`` only for a dynamic-batch ``.om``; see
:func:`massface.formats.msame.msame_command`). ``massface-infer --input-bins DIR`` reads
the same layout back.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from massface import io
from massface.errors import InputError
from massface.formats import msame
from massface.io import check_output_dir
from massface.lock import folder_lock
from massface.runtime.loader import LoaderOptions, iter_batches
from massface.runtime.preprocess import PreprocessingChoice
from massface.runtime.sources import INPUTS_META, INPUTS_SUBDIR, Dataset


def write_input_bins(ds: Dataset, out: Path, choice: PreprocessingChoice, *,
                     channels: int = 3, batch_size: int = 64,
                     workers: int = 1, overwrite: bool = False,
                     pixels: bool = False, dtype: str | None = None,
                     extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the inputs (uint8 pixels with ``pixels``; ``dtype`` float16 for a model whose
    input is float16); returns the description also saved as ``inputs.json``, with
    ``extra`` added (e.g. the msame command)."""
    dtype = dtype or ("uint8" if pixels else "float32")
    if (dtype == "uint8") != pixels or dtype not in ("uint8", "float32", "float16"):
        raise InputError(f"input bins of {dtype} (pixels={pixels}): uint8 pixels, or "
                         "float32/float16 normalised values")
    if ds.tensors:
        raise InputError(f"{ds.root}: already preprocessed input bins")
    check_output_dir(out, "--out")
    with folder_lock(out, "massface-infer prepare-bins"):
        return _write(ds, out, choice, channels, batch_size, workers, overwrite,
                      pixels, np.dtype(dtype), extra or {})


def _write(ds: Dataset, out: Path, choice: PreprocessingChoice, channels: int,
           batch_size: int, workers: int, overwrite: bool, pixels: bool, dtype: np.dtype,
           extra: dict[str, Any]) -> dict[str, Any]:
    inputs = out / INPUTS_SUBDIR
    if (out / INPUTS_META).exists() or (inputs.is_dir() and any(inputs.iterdir())):
        if not overwrite:
            raise InputError(f"{out}: already holds input bins; rerun with --overwrite")
        shutil.rmtree(inputs, ignore_errors=True)
        (out / INPUTS_META).unlink(missing_ok=True)
        (out / msame.LABELS_FILE).unlink(missing_ok=True)
    inputs.mkdir(parents=True, exist_ok=True)
    slots = ds.slots if ds.slots is not None else list(range(len(ds.keys)))
    slots_of: dict[int, list[int]] = {}
    for i, row in enumerate(slots):
        slots_of.setdefault(row, []).append(i)
    opts = LoaderOptions(choice.preprocessing, channels, skip_bad=False, pixels=pixels)
    for batch in iter_batches(ds, 0, len(ds.keys), batch_size, opts, workers=workers):
        for row, tensor in zip(batch.good, batch.array, strict=True):
            data = np.ascontiguousarray(tensor[None], dtype=dtype).tobytes()
            for i in slots_of.get(row, []):
                io.write_bytes(inputs / msame.input_name(i), data)
    if ds.pairs is not None:
        io.write_text(out / msame.LABELS_FILE,
                          " ".join("1" if p.issame else "0" for p in ds.pairs) + "\n")
    h, w = choice.preprocessing.size
    info = {"format": "massface-input-bins", "version": 1, "files": len(slots),
            "shape": [1, h, w, channels], "dtype": np.dtype(dtype).name, "layout": "NHWC",
            "preprocessing": ({"normalized_by": "the model (uint8 pixels in: AIPP)"} if pixels
                              else choice.to_dict()), "dataset": ds.describe(),
            "order": [ds.keys[r] for r in slots],
            "labels": msame.LABELS_FILE if ds.pairs is not None else None, **extra}
    io.write_json(out / INPUTS_META, info)
    return info
