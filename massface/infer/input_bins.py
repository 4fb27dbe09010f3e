"""The seed's ``2bin`` step: write preprocessed msame inputs for users who run msame.

``massface-infer prepare-bins --out DIR`` writes ``DIR/inputs/<i>.bin``: raw float32 NHWC
``[1, H, W, C]``, or raw uint8 RGB pixels for a model that normalises its own input (an
AIPP ``.om`` or its CPU twin ``model.aipp.onnx``), one per pair slot in pair order
``0..2N-1`` when there are pairs, else one per image. Outside the input folder, because
msame feeds every file in it: ``DIR/actual_issame.txt`` and ``DIR/inputs.json`` (written
last: the preprocessing, what each file holds, and the msame command, which
``prepare-bins`` also prints: ``msame --model M.om --input DIR/inputs --output DIR/msame
--outfmt BIN --dymBatch 1``, ``--dymBatch`` only for a dynamic-batch ``.om``; see
:func:`massface.formats.msame.msame_command`). An interrupted run (no ``inputs.json`` yet,
its settings in ``DIR/.prepare-bins.json``) is resumed by the same command from the first
row whose bins are missing; other settings are refused unless ``--overwrite``.
``massface-infer --input-bins DIR`` reads the same layout back.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from massface import io
from massface.errors import InputError
from massface.formats import msame
from massface.io import check_output_dir, keys_sha256
from massface.lock import folder_lock
from massface.runtime.loader import LoaderOptions, iter_batches
from massface.runtime.preprocess import PreprocessingChoice
from massface.runtime.sources import INPUTS_META, INPUTS_SUBDIR, PARTIAL_MARKER, Dataset


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


def _fingerprint(ds: Dataset, choice: PreprocessingChoice, channels: int, pixels: bool,
                 dtype: np.dtype) -> dict[str, Any]:
    return {"dataset": ds.describe(), "keys_sha256": keys_sha256(ds.keys),
            "slots": None if ds.slots is None else len(ds.slots),
            "preprocessing": choice.to_dict(), "channels": channels, "pixels": pixels,
            "dtype": np.dtype(dtype).name}


def _resume_row(out: Path, fingerprint: dict[str, Any], overwrite: bool,
                slots_of: dict[int, list[int]], n_rows: int) -> int:
    """The first row to write: 0, or where an interrupted run with these settings stopped
    (bins are written atomically, row by row: a row whose bins all exist is done)."""
    inputs, marker = out / INPUTS_SUBDIR, out / PARTIAL_MARKER
    held = inputs.is_dir() and any(inputs.iterdir())
    if not (held or marker.exists() or (out / INPUTS_META).exists()):
        return 0  # a fresh folder
    if overwrite:
        shutil.rmtree(inputs, ignore_errors=True)
        for name in (INPUTS_META, msame.LABELS_FILE, PARTIAL_MARKER):
            (out / name).unlink(missing_ok=True)
        return 0
    if (out / INPUTS_META).exists():
        raise InputError(f"{out}: already holds input bins; rerun with --overwrite")
    if not marker.exists():
        raise InputError(f"{out}: {inputs} holds files that prepare-bins did not write (no "
                         f"{INPUTS_META}); rerun with --overwrite to replace them, or choose "
                         "another --out")
    if io.read_json(marker, "unfinished prepare-bins run (--overwrite starts again)") \
            != fingerprint:
        raise InputError(f"{out}: holds an unfinished prepare-bins run with other settings; "
                         "rerun with --overwrite to start again, or choose another --out")
    io.remove_stale_temps(inputs)  # we hold the lock: a temporary here is a killed write's
    for row in range(n_rows):
        if not all((inputs / msame.input_name(i)).is_file() for i in slots_of.get(row, [])):
            return row
    return n_rows


def _write(ds: Dataset, out: Path, choice: PreprocessingChoice, channels: int,
           batch_size: int, workers: int, overwrite: bool, pixels: bool, dtype: np.dtype,
           extra: dict[str, Any]) -> dict[str, Any]:
    inputs = out / INPUTS_SUBDIR
    slots = ds.slots if ds.slots is not None else list(range(len(ds.keys)))
    slots_of: dict[int, list[int]] = {}
    for i, row in enumerate(slots):
        slots_of.setdefault(row, []).append(i)
    fingerprint = _fingerprint(ds, choice, channels, pixels, dtype)
    start = _resume_row(out, fingerprint, overwrite, slots_of, len(ds.keys))
    inputs.mkdir(parents=True, exist_ok=True)
    if start == 0:
        io.write_json(out / PARTIAL_MARKER, fingerprint)
    opts = LoaderOptions(choice.preprocessing, channels, skip_bad=False, pixels=pixels)
    for batch in iter_batches(ds, start, len(ds.keys), batch_size, opts, workers=workers):
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
    (out / PARTIAL_MARKER).unlink(missing_ok=True)
    return info
