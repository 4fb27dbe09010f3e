"""Ascend offline-inference file conventions (msame, ais_bench, the seed's ``2bin``).

* inputs: ``<i>.bin``, raw float32 NHWC ``[1, H, W, 3]`` of one preprocessed image, i in
  pair-image order; labels in ``actual_issame.txt`` (one line of ``1``/``0`` tokens), kept
  outside the input folder because msame feeds every file in it;
* msame outputs: ``<out>/<timestamp>/<stem>_output_<k>.bin`` (raw, the model's output
  dtype) or ``.txt`` with ``--outfmt TXT``; ais_bench: ``<out>/<timestamp>/<stem>_<k>.bin``.
  The timestamp's format changed between versions: it is never parsed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from massface.errors import InputError, excerpt
from massface.io import load_array

LABELS_FILE = "actual_issame.txt"
#: ATC (current CANN) names an .om built for one host NAME_<os>_<arch>.om; it loads only
#: there (ATC --host_env_os/--host_env_cpu; graphengine ge_api_types.h OPTION_HOST_ENV_*)
PLATFORM_SUFFIX = re.compile(r"_(linux|windows)_(x86_64|aarch64)\.om$", re.IGNORECASE)


def om_platform(path: str | os.PathLike[str]) -> str | None:
    """The ``<os>_<arch>`` an ``.om``'s name says it was built for, or None."""
    m = PLATFORM_SUFFIX.search(os.path.basename(path))
    return f"{m.group(1)}_{m.group(2)}".lower() if m else None
# written by ``massface-infer --format msame`` beside its outputs: dtype, dim, order
WRITER_META = "massface-infer.json"


def input_name(index: int) -> str:
    """The seed's input bin name for image ``index`` (``2bin``)."""
    return f"{index}.bin"


def msame_output_name(stem: str | int, k: int = 0, ext: str = "bin") -> str:
    """msame's output name for input ``stem`` and output ``k``."""
    return f"{stem}_output_{k}.{ext}"


def ais_bench_output_name(stem: str | int, k: int = 0, ext: str = "bin") -> str:
    """ais_bench's output name for input ``stem`` and output ``k``."""
    return f"{stem}_{k}.{ext}"


# --- Reading what msame / ais_bench wrote -------------------------------------------------
# The files are ordered by the integer in their name (never by listdir, whose order is
# arbitrary), the timestamp folder is found, not parsed, and every gap is an error: the
# reference's silent skipping shifted every later pair into the wrong fold.

MSAME_PATTERN = re.compile(r"^(\d+)_output_(\d+)\.(bin|txt)$")
AIS_BENCH_PATTERN = re.compile(r"^(\d+)_(\d+)\.(bin|txt|npy)$")
OUTPUT_SUFFIXES = (".bin", ".txt", ".npy")
DTYPES = {"float32": np.float32, "float16": np.float16}


@dataclass
class OutputFolder:
    """The per-image output files of one msame/ais_bench run, keyed by input index."""

    folder: Path
    tool: str
    ext: str
    output_index: int
    files: dict[int, Path]

    def missing(self, expected: int) -> list[int]:
        """Indices in ``0..expected-1`` with no file."""
        return [i for i in range(expected) if i not in self.files]

    def extra(self, expected: int) -> list[int]:
        """Indices at or beyond ``expected`` (more outputs than labelled images)."""
        return sorted(i for i in self.files if i >= expected)

    def expected_name(self, index: int) -> str:
        namer = msame_output_name if self.tool == "msame" else ais_bench_output_name
        return namer(index, self.output_index, self.ext)


def _classify(name: str) -> tuple[str, int, int, str] | None:
    for tool, pattern in (("msame", MSAME_PATTERN), ("ais_bench", AIS_BENCH_PATTERN)):
        m = pattern.match(name)
        if m:
            return tool, int(m.group(1)), int(m.group(2)), m.group(3)
    return None


def _output_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix in OUTPUT_SUFFIXES)


def find_output_folder(path: str | os.PathLike[str]) -> Path:
    """The folder holding the output files: ``path`` itself or its single subfolder.

    msame and ais_bench write into ``<output>/<timestamp>/``; the timestamp's format changed
    between versions, so it is never parsed: the one non-hidden subfolder is taken, and
    several are an error (which run is meant?).
    """
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder of msame/ais_bench outputs")
    try:
        if any(_classify(p.name) for p in _output_files(root)):
            return root
        subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        raise InputError(f"{root}: cannot list folder: {exc}") from exc
    runs = [d for d in subdirs if any(_classify(p.name) for p in _output_files(d))]
    if len(runs) == 1:
        return runs[0]
    if not runs:
        raise InputError(f"{root}: no msame (<i>_output_<k>.bin|txt) or ais_bench "
                         "(<i>_<k>.bin|txt|npy) output files in it or in a subfolder")
    names = ", ".join(d.name for d in runs)
    raise InputError(f"{root}: {len(runs)} subfolders hold outputs ({names}): pass the one "
                     "you mean")


def scan_output_folder(path: str | os.PathLike[str], output_index: int = 0) -> OutputFolder:
    """Find and index the output files (of model output ``output_index``) under ``path``."""
    folder = find_output_folder(path)
    found: dict[tuple[str, str], dict[int, dict[int, Path]]] = {}
    strangers: list[str] = []
    for p in _output_files(folder):
        kind = _classify(p.name)
        if kind is None:
            strangers.append(p.name)
            continue
        tool, index, k, ext = kind
        found.setdefault((tool, ext), {}).setdefault(k, {})[index] = p
    if strangers:
        shown = ", ".join(strangers[:5]) + (" ..." if len(strangers) > 5 else "")
        raise InputError(f"{folder}: {len(strangers)} file(s) not named like msame or "
                         f"ais_bench outputs: {shown}")
    if len(found) > 1:
        kinds = ", ".join(f"{t} .{e}" for t, e in sorted(found))
        raise InputError(f"{folder}: mixed output files ({kinds}): one run per folder")
    (tool, ext), by_k = next(iter(found.items()))
    if output_index not in by_k:
        raise InputError(f"{folder}: no files for model output {output_index} "
                         f"(outputs present: {', '.join(map(str, sorted(by_k)))})")
    return OutputFolder(folder, tool, ext, output_index, by_k[output_index])


def _vector_from_file(path: Path, ext: str, dtype: np.dtype | None) -> np.ndarray:
    try:
        if ext == "bin":
            return np.frombuffer(path.read_bytes(), dtype=dtype)
        if ext == "npy":
            return np.asarray(load_array(path, "output file")).ravel()
        return np.array(path.read_text(encoding="ascii").split(), dtype=np.float64)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: unreadable output file: {exc}") from exc


def bin_dtype(sizes: dict[int, list[Path]], dtype: str, dim: int | None) -> np.dtype:
    """The element type of raw ``.bin`` outputs: given, or inferred from size and ``dim``."""
    if len(sizes) > 1:
        detail = "; ".join(f"{s} bytes: {', '.join(p.name for p in ps[:3])}"
                           for s, ps in sorted(sizes.items())[:4])
        raise InputError(f"{next(iter(sizes.values()))[0].parent}: output files of different "
                         f"sizes (mixed dimensions): {detail}")
    size, paths = next(iter(sizes.items()))
    if dtype != "auto":
        if dtype not in DTYPES:
            raise InputError(f"unknown dtype {dtype!r}: choose float32, float16 or auto")
        dt = np.dtype(DTYPES[dtype])
        if size % dt.itemsize or (dim is not None and size != dim * dt.itemsize):
            raise InputError(f"{paths[0]}: {size} bytes is not {dim or 'a whole number of'} "
                             f"{dtype} values")
        return dt
    if dim is not None:
        for t in DTYPES.values():
            if size == dim * np.dtype(t).itemsize:
                return np.dtype(t)
        raise InputError(f"{paths[0]}: {size} bytes is neither float32 nor float16 x {dim}")
    if size % 4:
        if size % 2 == 0:
            return np.dtype(np.float16)
        raise InputError(f"{paths[0]}: {size} bytes is not a whole number of float16 values")
    raise InputError(f"{paths[0]}: {size} bytes could be float32 x {size // 4} or float16 x "
                     f"{size // 2}: pass --dtype float32|float16 or --dim")


def read_outputs(
    outputs: OutputFolder,
    indices: list[int],
    *,
    dtype: str = "auto",
    dim: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Rows ``[len(indices), D]`` read from the output files of ``indices``, in that order."""
    paths = [outputs.files[i] for i in indices]
    dt = None
    if outputs.ext == "bin":
        sizes: dict[int, list[Path]] = {}
        for p in paths:
            try:
                sizes.setdefault(p.stat().st_size, []).append(p)
            except OSError as exc:
                raise InputError(f"{p}: unreadable output file: {exc}") from exc
        dt = bin_dtype(sizes, dtype, dim)
    rows = []
    for n, p in enumerate(paths):
        rows.append(_vector_from_file(p, outputs.ext, dt))
        if progress is not None:
            progress(n + 1)
    lengths: dict[int, list[Path]] = {}
    for p, r in zip(paths, rows, strict=True):
        lengths.setdefault(r.size, []).append(p)
    if len(lengths) > 1:
        detail = "; ".join(f"{n} values: {', '.join(p.name for p in ps[:3])}"
                           for n, ps in sorted(lengths.items())[:4])
        raise InputError(f"{outputs.folder}: output files of different lengths (mixed "
                         f"dimensions): {detail}")
    width = next(iter(lengths)) if lengths else 0
    if width == 0:
        raise InputError(f"{outputs.folder}: output files are empty")
    if dim is not None and width != dim:
        raise InputError(f"{paths[0]}: {width} values per output, expected --dim {dim}")
    return np.stack(rows)


#: Label tokens accepted in label files (case-insensitive).
LABEL_WORDS = {"1": True, "0": False, "true": True, "false": False, "same": True,
               "different": False}
LABELS_ACCEPTED = "0/1, true/false or same/different"


def read_labels_file(path: str | os.PathLike[str]) -> np.ndarray:
    """calAcc's ``actual_issame.txt``: whitespace-separated ``1``/``0`` tokens (also
    ``true``/``false``, ``same``/``different``), as bool."""
    p = Path(path)
    try:
        tokens = p.read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read labels: {exc}") from exc
    bad = [(i, t) for i, t in enumerate(tokens) if t.lower() not in LABEL_WORDS]
    if bad:
        shown = ", ".join(f"#{i}={excerpt(t)}" for i, t in bad[:10])
        raise InputError(f"{p}: {len(bad)} label(s) are not {LABELS_ACCEPTED}: {shown}")
    if not tokens:
        raise InputError(f"{p}: no labels in file")
    return np.array([LABEL_WORDS[t.lower()] for t in tokens], dtype=bool)


def write_labels_file(path: str | os.PathLike[str], issame: Any) -> None:
    """Write ``actual_issame.txt`` the calAcc way (one line), atomically."""
    from massface.io import write_text

    write_text(path, " ".join("1" if bool(x) else "0" for x in issame) + "\n")


# --- The msame command a user runs on prepare-bins' output ---------------------------
# Checked against msame's source (github.com/Ascend/tools, msame/src/main.cpp,
# sample_process.cpp, model_process.cpp): folder mode only when the first --input path
# contains no ".bin" anywhere (else it is a comma-separated file list); the
# ascend_mbatch_shape_data input is created and aclmdlSetDynamicBatchSize called only with
# --dymBatch, so without it every execute of a dynamic-batch .om fails (and folder mode
# skips failed files); --output is created with one mkdir (no parents) and without it
# msame writes under "/"; outputs go to <output>/<timestamp>/<stem>_output_<k>.bin, the
# output length cut to dymBatch/max_gear of the buffer.

MSAME_OUTPUT_DIR = "msame"  # prepare-bins' suggested --output, inside its own folder
AIS_BENCH_OUTPUT_DIR = "ais_bench"


def msame_command(model: str | os.PathLike[str], inputs: Path, output: Path, *,
                  gears: tuple[int, ...] = (), static_batch: int | None = None) -> list[str]:
    """The msame argv that feeds one-image bins in ``inputs`` to ``model``.

    ``gears``: the model's dynamic batch sizes (empty for a static model, whose batch is
    ``static_batch``). Refuses what msame would silently get wrong."""
    if ".bin" in str(inputs):
        raise InputError(f"{inputs}: msame reads an --input path containing '.bin' anywhere "
                         "as a list of files, not a folder: choose an output folder whose "
                         "path has no '.bin' in it")
    argv = ["msame", "--model", str(model), "--input", str(inputs), "--output", str(output),
            "--outfmt", "BIN"]
    if gears:
        if 1 not in gears:
            raise InputError(f"{model}: batch gears {gears} have no 1, and each input bin "
                             "holds one image: rebuild the .om with 1 among its "
                             "--dynamic_batch_size gears (massface-export's default 1,8,32)")
        return [*argv, "--dymBatch", "1"]
    if static_batch not in (None, 1):
        raise InputError(f"{model}: static batch {static_batch}, and each input bin holds "
                         "one image: rebuild the .om with batch 1 or dynamic gears")
    return argv


def ais_bench_command(model: str | os.PathLike[str], inputs: Path, output: Path, *,
                      gears: tuple[int, ...] = (), static_batch: int | None = None
                      ) -> list[str]:
    """The ais_bench argv for the same bins (github.com/Ascend/tools,
    ais-bench_workload/tool/ais_bench/ais_bench/infer/: it feeds as many files per
    execute as the input holds at the chosen gear, so ``--dymBatch 1`` keeps one image per
    execute; outputs ``<output>/<timestamp>/<i>_<k>.bin``). Same refusals as msame's."""
    argv = msame_command(model, inputs, output, gears=gears, static_batch=static_batch)
    return ["python3", "-m", "ais_bench", *argv[1:]]
