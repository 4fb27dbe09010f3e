"""A stand-in for Ascend's ``msame`` (CANN cannot be installed here), strict as the real one.

Written from msame's source, github.com/Ascend/tools (msame/src/main.cpp,
sample_process.cpp, model_process.cpp, utils.cpp); nothing is copied from it. It drives
the pyACL double (``tests/helpers/fake_acl.py``) with the calls msame makes, on an
``.om`` double that names the ONNX model run in its place (``write_fake_om(onnx=...)``).
What it reproduces, because each is a way to get no or wrong outputs:

* options as ``getopt_long`` takes them (``--opt value`` or ``--opt=value``); an unknown
  option, a ``--model`` without ``.om`` in it, a bad ``--loop``/``--dymBatch``/``--device``
  print an error and exit **0** (main.cpp calls ``exit(0)``);
* ``--input``: comma-separated; **folder mode only when the first path contains no
  ``.bin`` anywhere**, otherwise it is a list of files (a folder there fails to read);
  folder mode feeds every non-hidden file, in byte-wise sorted name order;
* ``--dymBatch N``: N must be one of the model's gears (else exit 1); only then are the
  ``ascend_mbatch_shape_data`` input created and ``set_dynamic_batch_size`` called.
  Without it, each execute of a dynamic-batch model fails;
* a failed execute in folder mode is logged and **skipped**, except for the second file
  (index 1), which makes msame stop with exit 1 (sample_process.cpp's ``i != 1`` test);
* ``--output``: created with one ``mkdir`` (no parents), then ``<output>/<timestamp>``
  (``printCurrentTime``: year, month, day without padding, ``_h_m_s_usec``); when that
  fails msame prints "current user does not have permission" and exits **0**. Without
  ``--output`` the folder is ``/<timestamp>`` (the stand-in never writes there: it behaves
  as for a user who may not write to ``/``);
* outputs ``<stem>_output_<k>.bin`` (the input file's name up to its last ``.``; in
  file-list mode the model's name), holding ``size * dymBatch / max_gear`` bytes of each
  output buffer (the whole buffer without ``--dymBatch``), or ``.txt`` with
  ``--outfmt TXT``;
* exit 0 at the end whatever was skipped.

``install_standin_msame`` puts an ``msame`` executable running this module first on PATH.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import stat
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
OPTIONS = ("model", "input", "output", "outfmt", "help", "dump", "profiler", "loop",
           "dymBatch", "dymDims", "dymHW", "dymShape", "device", "outputSize", "debug")
FAILED = 1  # msame's Result FAILED, returned from main


def _parse(argv: list[str]) -> dict[str, str] | None:
    """getopt_long over msame's options; None after an error (msame then exits 0)."""
    params: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            i += 1  # getopt permutes non-options to the end; msame ignores them
            continue
        name, eq, value = arg[2:].partition("=")
        if name not in OPTIONS:
            print("[ERROR] unknown paramenter")
            return None
        if name == "help":
            print("msame stand-in: see tests/helpers/standin_msame.py")
            return None
        if not eq:
            if i + 1 >= len(argv):
                print(f"[ERROR] option --{name} requires an argument")
                return None
            value = argv[i + 1]
            i += 1
        params[name] = value
        i += 1
    return params


def _timestamp() -> str:
    now = _dt.datetime.now()
    return (f"{now.year}{now.month}{now.day}_{now.hour}_{now.minute}_{now.second}_"
            f"{now.microsecond}")


class Model:
    """msame's ModelProcess over the pyACL double."""

    def __init__(self, acl, path: str) -> None:
        self.acl = acl
        self.model_id, ret = acl.mdl.load_from_file(path)
        if ret:
            raise RuntimeError(f"load model from file failed ({ret})")
        self.desc = acl.mdl.create_desc()
        acl.mdl.get_desc(self.desc, self.model_id)
        dyn, _ = acl.mdl.get_dynamic_batch(self.desc)
        self.gears = tuple(dyn["batch"][: dyn["batchCount"]])
        self.n_out = acl.mdl.get_num_outputs(self.desc)
        self.out_sizes = [acl.mdl.get_output_size_by_index(self.desc, k)
                          for k in range(self.n_out)]
        self.out_ptrs = [acl.rt.malloc(n, 0)[0] for n in self.out_sizes]
        self.out_ds = acl.mdl.create_dataset()
        for ptr, n in zip(self.out_ptrs, self.out_sizes, strict=True):
            acl.mdl.add_dataset_buffer(self.out_ds, acl.create_data_buffer(ptr, n))
        self.in_ds = None
        self.in_bufs: list[tuple[int, int]] = []  # (data buffer, device pointer)

    def mbatch_index(self) -> int:
        index, ret = self.acl.mdl.get_input_index_by_name(self.desc,
                                                          "ascend_mbatch_shape_data")
        if ret:
            raise RuntimeError("get dynamic index failed")
        return index

    def add_input(self, ptr: int, size: int) -> None:
        acl = self.acl
        if self.in_ds is None:
            self.in_ds = acl.mdl.create_dataset()
        buf = acl.create_data_buffer(ptr, size)
        acl.mdl.add_dataset_buffer(self.in_ds, buf)
        self.in_bufs.append((buf, ptr))

    def add_mbatch_input(self, index: int) -> None:
        size = self.acl.mdl.get_input_size_by_index(self.desc, index)
        ptr, _ = self.acl.rt.malloc(size, 0)
        self.add_input(ptr, size)

    def execute(self) -> int:
        from tests.helpers.fake_acl import FakeAclError

        try:
            return self.acl.mdl.execute(self.model_id, self.in_ds, self.out_ds)
        except FakeAclError as exc:  # the runtime returns an error status instead
            print(f"[ERROR] {exc}")
            return 145000

    def write_outputs(self, folder: Path, stem: str, dym_batch: int, txt: bool) -> None:
        acl = self.acl
        max_gear = max(self.gears) if self.gears else 0
        for k, (ptr, size) in enumerate(zip(self.out_ptrs, self.out_sizes, strict=True)):
            n = size // (max_gear // dym_batch) if dym_batch and max_gear else size
            host, _ = acl.rt.malloc_host(n)
            acl.rt.memcpy(host, n, ptr, n, 2)
            raw = acl.util.ptr_to_bytes(host, n)
            acl.rt.free_host(host)
            code = acl.mdl.get_output_data_type(self.desc, k)
            if txt:
                values = np.frombuffer(raw, {0: np.float32, 1: np.float16}[code])
                text = " ".join(f"{float(v):g}" for v in values) + " \n"
                (folder / f"{stem}_output_{k}.txt").write_text(text)
            else:
                (folder / f"{stem}_output_{k}.bin").write_bytes(raw)

    def destroy_input(self) -> None:
        acl = self.acl
        for buf, ptr in self.in_bufs:
            acl.destroy_data_buffer(buf)
            acl.rt.free(ptr)
        if self.in_ds is not None:
            acl.mdl.destroy_dataset(self.in_ds)
        self.in_ds, self.in_bufs = None, []


def _device_buffer(acl, path: Path) -> tuple[int, int] | None:
    """Utils::GetDeviceBufferOfFile: the whole file copied to a device buffer its size."""
    try:
        data = path.read_bytes()
    except OSError:
        print(f"[ERROR] read file {path} failed")
        return None
    ptr, _ = acl.rt.malloc(len(data), 0)
    acl.rt.memcpy(ptr, len(data), acl.util.bytes_to_ptr(data), len(data), 1)
    return ptr, len(data)


def run(argv: list[str]) -> int:
    params = _parse(argv)
    if params is None or not params:
        return 0 if params is None else FAILED
    model_path = params.get("model", "")
    if ".om" not in model_path:
        print("[ERROR] input model file type is not .om , please check your model type!")
        return 0
    loop = int(params.get("loop", "1"))
    if not 1 <= loop <= 100:
        print("[ERROR] loop must in 1 to 100")
        return 0
    dym_batch = int(params["dymBatch"]) if "dymBatch" in params else 0
    if dym_batch > 2048:
        print("[ERROR] dymBatch must in 1 to 2048")
        return 0
    device = int(params.get("device", "0"))
    if not 0 <= device <= 255:
        print("[ERROR] device id must in 0 to 255")
        return 0
    if sum(k in params for k in ("dymBatch", "dymDims", "dymHW", "dymShape")) > 1:
        print("[ERROR] dymBatch dymDims dymHW dymShape cannot be set at the same time")
        return FAILED
    if any(k in params for k in ("dymDims", "dymHW", "dymShape", "dump", "profiler")):
        raise SystemExit("stand-in msame: this option is not modelled")
    from tests.helpers.fake_acl import FakeAcl, read_fake_om

    if read_fake_om(Path(model_path)) is None:
        print("[ERROR] load model from file failed")
        return FAILED
    acl = FakeAcl.from_om(model_path)
    acl.init()
    acl.rt.set_device(device)
    acl.rt.create_context(device)
    try:
        model = Model(acl, model_path)
    except RuntimeError as exc:
        print(f"[ERROR] {exc}")
        return FAILED
    if "dymBatch" in params:
        if not model.gears:
            print("[ERROR] the dynamic_batch_size parameter is not specified for model "
                  "conversion")
            return FAILED
        if dym_batch not in model.gears:
            print("[ERROR] the dymBatch parameter is not correct")
            return FAILED
    mbatch = model.mbatch_index() if dym_batch else None
    out_root = params.get("output", "")
    if out_root and not os.path.isdir(out_root):
        with contextlib.suppress(OSError):
            os.mkdir(out_root, 0o775)  # one level, as msame: no parents
    stamp = _timestamp()
    folder = Path(out_root + "/" + stamp)
    print(folder)
    if not out_root:  # "/<timestamp>": a user who may not write to / gets this
        print("[ERROR] current user does not have permission")
        return 0
    try:
        folder.mkdir(0o775)
    except OSError:
        print("[ERROR] current user does not have permission")
        return 0
    txt = params.get("outfmt") == "TXT"
    inputs = [p for p in params.get("input", "").split(",") if p] if "input" in params else []
    if inputs and ".bin" not in inputs[0]:
        return _folder_mode(acl, model, inputs, folder, mbatch, dym_batch, txt)
    if not inputs:
        raise SystemExit("stand-in msame: zero-input mode is not modelled")
    return _file_mode(acl, model, inputs, folder, mbatch, dym_batch, txt, model_path, loop)


def _feed(acl, model: Model, paths: list[Path], mbatch: int | None) -> bool:
    """Create the input dataset as msame does: the files in order, the dynamic-batch
    input where its index falls; False when a file cannot be read."""
    for count, path in enumerate(paths):
        if mbatch is not None and mbatch == count:
            model.add_mbatch_input(mbatch)
        got = _device_buffer(acl, path)
        if got is None:
            return False
        model.add_input(*got)
    if mbatch is not None and mbatch == len(paths):
        model.add_mbatch_input(mbatch)
    return True


def _folder_mode(acl, model: Model, inputs: list[str], folder: Path, mbatch: int | None,
                 dym_batch: int, txt: bool) -> int:
    for p in inputs:
        if os.path.isfile(p):
            print("[ERROR] input parameter must be folder or file ending in '.bin'")
            return 0
        if not os.path.exists(p):
            print(f"[ERROR] {inputs[0]} doesn't exist")
            return 0
    names = sorted(n for n in os.listdir(inputs[0]) if not n.startswith("."))
    if not names:
        print(f"[ERROR] No file in the directory[{inputs[0]}]")
    done, total = 0, 0.0
    for i, name in enumerate(names):
        if not _feed(acl, model, [Path(d) / name for d in inputs], mbatch):
            print("[ERROR] get pic device buffer failed")
            return FAILED
        if dym_batch:
            acl.mdl.set_dynamic_batch_size(model.model_id, model.in_ds, mbatch, dym_batch)
        start = time.perf_counter()
        ret = model.execute()
        if ret:
            print("[ERROR] model execute failed")
            if i == 1:  # sample_process.cpp: only the second file's failure is fatal
                return FAILED
            model.destroy_input()  # (msame leaks it; the double would object)
            continue
        total += time.perf_counter() - start
        done += 1
        model.write_outputs(folder, name[: name.rfind(".")] if "." in name else name,
                            dym_batch, txt)
        model.destroy_input()
    if done:
        print(f"Inference average time : {1000 * total / done:.2f} ms")
    return 0


def _file_mode(acl, model: Model, inputs: list[str], folder: Path, mbatch: int | None,
               dym_batch: int, txt: bool, model_path: str, loop: int) -> int:
    if not _feed(acl, model, [Path(p) for p in inputs], mbatch):
        print("[ERROR] get pic device buffer failed")
        return FAILED
    if dym_batch:
        acl.mdl.set_dynamic_batch_size(model.model_id, model.in_ds, mbatch, dym_batch)
    for _ in range(loop):
        if model.execute():
            print("[ERROR] model execute failed")
            return FAILED
        if dym_batch:  # the double forgets the gear after each execute; the chip does not
            acl.mdl.set_dynamic_batch_size(model.model_id, model.in_ds, mbatch, dym_batch)
    stem = model_path[model_path.rfind("/") + 1:]
    model.write_outputs(folder, stem[: stem.rfind(".")], dym_batch, txt)
    return 0


def install_standin_msame(folder: Path, monkeypatch=None) -> Path:
    """Write an ``msame`` executable (this stand-in) into ``folder``; first on PATH when
    ``monkeypatch`` is given. Returns the executable."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "msame"
    exe.write_text(f'#!/usr/bin/env bash\nPYTHONPATH="{REPO}" exec "{sys.executable}" '
                   f'-m tests.helpers.standin_msame "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    if monkeypatch is not None:
        monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    return exe


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
