"""A stand-in for ``python3 -m ais_bench`` (Ascend's inference benchmark), its command line
and output layout, written from its source, github.com/Ascend/tools
``ais-bench_workload/tool/ais_bench/ais_bench/infer/`` (``__main__.py`` argument parser
and output folder, ``io_oprations.py`` batching and output names, ``utils.py`` file
listing); nothing is copied. It runs the pyACL double (``tests/helpers/fake_acl.py``) on an
``.om`` double, through msame's stand-in model plumbing.

* argparse options ``--model/-m`` (required), ``--input/-i``, ``--output/-o``,
  ``--output_dirname`` (only with ``--output``), ``--outfmt`` BIN|NPY|TXT, ``--loop``,
  ``--device``, ``--dymBatch``; an unknown option or a bad value is argparse's exit 2;
* ``--input``: comma-separated folders (their ``*.bin``/``*.npy`` files in natural sort
  order) or files;
* files per execute = the input's size at the chosen gear / one file's size (must
  divide, else an error); the last batch is padded with the first file, whose outputs
  are not written;
* outputs in ``<output>/<%Y_%m_%d-%H_%M_%S>/`` (or ``<output>/<output_dirname>/``),
  named ``<input file name up to its first '.'>_<k>.<fmt>``;
* a failed execute raises (exit 1), unlike msame, which skips it.

Assumption, not read in the source: a dynamic-batch model run without ``--dymBatch``
fails its first execute, as with msame (the gear input is never set).
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import sys
import time
from pathlib import Path

import numpy as np

from tests.helpers.standin_msame import REPO, Model, _device_buffer


def _natural(names: list[str]) -> list[str]:
    def key(s: str) -> list:
        return [int(t) if t.isdigit() else t.lower() for t in re.split(r"([0-9]+)", s)]
    return sorted(sorted(names), key=key)


def _files(inputs: str) -> list[Path]:
    first = inputs.split(",")[0]
    if os.path.isdir(first):
        names = [n for n in os.listdir(first) if n.lower().endswith((".bin", ".npy"))]
        if not names:
            raise RuntimeError(f"{first} of input args not find valid file")
        return [Path(first) / n for n in _natural(names)]
    return [Path(p) for p in inputs.split(",")]


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ais_bench")
    parser.add_argument("--model", "-m", required=True)
    parser.add_argument("--input", "-i", default=None)
    parser.add_argument("--output", "-o", default=None)
    parser.add_argument("--output_dirname", default=None)
    parser.add_argument("--outfmt", default="BIN", choices=["NPY", "BIN", "TXT"])
    parser.add_argument("--loop", "-l", type=int, default=1)
    parser.add_argument("--device", "-d", type=int, default=0)
    parser.add_argument("--dymBatch", type=int, default=0)
    args = parser.parse_args(argv)
    if args.output is None and args.output_dirname is not None:
        raise RuntimeError("error bad parameters --output_dirname")
    if args.input is None or args.output is None:
        raise SystemExit("stand-in ais_bench: pure inference and no --output not modelled")
    from tests.helpers.fake_acl import FakeAcl

    acl = FakeAcl.from_om(args.model)
    acl.init()
    acl.rt.set_device(args.device)
    acl.rt.create_context(args.device)
    model = Model(acl, args.model)
    if args.dymBatch and args.dymBatch not in model.gears:
        raise RuntimeError(f"dymBatch {args.dymBatch} is not a gear of the model {model.gears}")
    mbatch = model.mbatch_index() if args.dymBatch else None
    data_index = 0 if mbatch != 0 else 1
    full = acl.mdl.get_input_size_by_index(model.desc, data_index)
    size = full * args.dymBatch // max(model.gears) if args.dymBatch else full
    files = _files(args.input)
    per = size // files[0].stat().st_size
    if per == 0 or size % files[0].stat().st_size:
        raise RuntimeError(f"arg0 tensorsize: {size} filesize: {files[0].stat().st_size} "
                           "not match")
    folder = Path(args.output) / (args.output_dirname or time.strftime("%Y_%m_%d-%H_%M_%S"))
    folder.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(files), per):
        batch = files[start:start + per]
        padded = batch + [files[0]] * (per - len(batch))
        joined = folder / ".batch.bin"
        joined.write_bytes(b"".join(p.read_bytes() for p in padded))
        got = _device_buffer(acl, joined)
        joined.unlink()
        model.add_input(*got)
        if mbatch is not None:
            model.add_mbatch_input(mbatch)
            acl.mdl.set_dynamic_batch_size(model.model_id, model.in_ds, mbatch, args.dymBatch)
        if model.execute():
            raise RuntimeError("model execute failed")
        _save(acl, model, folder, batch, per, args)
        model.destroy_input()
    return 0


def _save(acl, model: Model, folder: Path, batch: list[Path], per: int, args) -> None:
    max_gear = max(model.gears) if model.gears else 0
    for k, (ptr, size) in enumerate(zip(model.out_ptrs, model.out_sizes, strict=True)):
        n = size * args.dymBatch // max_gear if args.dymBatch and max_gear else size
        host, _ = acl.rt.malloc_host(n)
        acl.rt.memcpy(host, n, ptr, n, 2)
        raw = acl.util.ptr_to_bytes(host, n)
        acl.rt.free_host(host)
        code = acl.mdl.get_output_data_type(model.desc, k)
        rows = np.frombuffer(raw, {0: np.float32, 1: np.float16}[code]).reshape(per, -1)
        for path, row in zip(batch, rows, strict=False):  # padded rows are not written
            out = folder / f"{path.name.split('.')[0]}_{k}.{args.outfmt.lower()}"
            if args.outfmt == "NPY":
                np.save(out, row)
            elif args.outfmt == "TXT":
                out.write_text(" ".join(f"{float(v):g}" for v in row) + "\n")
            else:
                out.write_bytes(row.tobytes())


def install_standin_ais_bench(folder: Path) -> Path:
    """An ``ais_bench`` executable running this stand-in (the real one is
    ``python3 -m ais_bench``; the executable takes the same arguments)."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "ais_bench"
    exe.write_text(f'#!/usr/bin/env bash\nPYTHONPATH="{REPO}" exec "{sys.executable}" '
                   f'-m tests.helpers.standin_ais_bench "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return exe


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
