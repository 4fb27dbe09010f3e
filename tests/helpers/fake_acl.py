"""A test double of CANN's ``acl`` module (pyACL), faithful to shared/docs/ascend.md.

It keeps real byte buffers for "device" and "host" memory, runs an ONNX model (through
ONNX Runtime) where ``acl.mdl.execute`` would run the ``.om``, and checks what the real
runtime would refuse or what would silently corrupt results:

* call order: ``init`` before everything, device and context before loading, gears set
  (``set_dynamic_batch_size``) before ``execute`` on a dynamic-batch model;
* sizes: every ``memcpy`` fits its destination's ``dst_max`` and the source; data buffers
  and dataset buffers match allocations; the ``ascend_mbatch_shape_data`` buffer is never
  written by the host;
* memcpy kinds match the run mode (host mode: 1 host->device, 2 device->host);
* teardown: every buffer, dataset and allocation released, in the documented order;
* one ``acl.init`` per process: a repeat returns ACL_ERROR_REPEAT_INITIALIZE (100002), and
  ``init`` after ``finalize`` is refused. CANN 5.0.4's pyACL reference (acl.init: "only
  once in a process"); the status codes are those of mindspore-ai/graphengine
  ``910/inc/external/acl/acl_base.h`` (100002 REPEAT_INITIALIZE, 100037 REPEAT_FINALIZE);
* output names as a real ``.om`` reports them (``acl.mdl.get_output_dims``' ``name``):
  ``op:index`` for a TensorFlow source (ATC ``--out_nodes=embeddings:0``) and
  ``op:index:tensor`` for ONNX, never the bare tensor name;
* the input data type from ``acl.mdl.get_input_data_type`` (aclmdlGetInputDataType in
  graphengine ``910/inc/external/acl/acl_mdl.h``): float32, float16 (ATC
  ``--input_fp16_nodes``) or uint8 (AIPP); the host must copy exactly that many bytes;
* ``.om`` files that only load on the OS/architecture they were built for: a model whose
  description says ``linux_x86_64`` fails ``load_from_file`` on a ``linux_aarch64`` host,
  with the same generic status the runtime gives (ATC's ``--host_env_os`` /
  ``--host_env_cpu``, graphengine ``910/inc/external/ge/ge_api_types.h``
  OPTION_HOST_ENV_OS/CPU, and the ``NAME_<os>_<arch>.om`` names ATC writes).

Every call is appended to ``calls`` so tests can assert the sequence. ``fail`` maps a call
name to a status to return once (to test error handling).
"""

from __future__ import annotations

import itertools
import json
import platform
import types
from pathlib import Path
from typing import Any

import numpy as np

MBATCH = "ascend_mbatch_shape_data"
DTYPE_CODES = {"float32": 0, "float16": 1, "uint8": 4, "int64": 9}
ACL_ERROR_REPEAT_INITIALIZE = 100002
ACL_ERROR_REPEAT_FINALIZE = 100037
LOAD_FAILURE = 145000  # the generic status a model that cannot be read/loaded gives
OM_MAGIC = b"FOM1"
#: what a real ``.om`` reports as its output name, by source framework
OUTPUT_NAMES = {"tensorflow": "embeddings:0", "onnx": "embeddings_node:0:embeddings"}


def host_platform() -> str:
    """``<os>_<arch>`` as ATC spells it in ``NAME_<os>_<arch>.om`` (e.g. linux_x86_64)."""
    return f"{platform.system().lower()}_{platform.machine().lower()}"


class FakeAclError(AssertionError):
    """The code under test used the API in a way the real runtime would reject."""


class FakeAcl(types.ModuleType):
    def __init__(self, onnx_model: str | Path, *, gears: tuple[int, ...] = (1, 4, 8),
                 static_batch: int | None = None, output_dtype: str = "float32",
                 run_mode: int = 1, new_util: bool = True, image=(112, 112, 3),
                 dim: int = 192, input_dtype: str = "float32",
                 input_dims: list[int] | None = None,
                 output_name: str = OUTPUT_NAMES["onnx"],
                 host: str | None = None) -> None:
        super().__init__("acl")
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(onnx_model), providers=["CPUExecutionProvider"])
        self.gears = () if static_batch else tuple(gears)
        self.static_batch = static_batch
        self.max_batch = static_batch or max(gears)
        self.output_dtype = np.dtype(output_dtype)
        self.run_mode = run_mode
        self.image = image
        self.dim = dim
        # uint8: a model built with AIPP (the ONNX underneath must take uint8 pixels, as
        # the AIPP twin does); input_dims: what get_input_dims reports, if not NHWC
        self.input_dtype = np.dtype(input_dtype)
        self.input_dims = input_dims
        self.output_name = output_name
        self.host_platform = host or host_platform()
        self.finalized = False
        self.copied: dict[int, int] = {}  # device pointer -> bytes the host last wrote
        self.calls: list[str] = []
        self.fail: dict[str, int] = {}
        self.mem: dict[int, bytearray] = {}  # device allocations
        self.host: dict[int, bytearray] = {}  # malloc_host allocations
        self.pinned: dict[int, Any] = {}  # pointers handed out for host objects
        self.buffers: dict[int, tuple[int, int]] = {}
        self.datasets: dict[int, list[int]] = {}
        self.ids = itertools.count(0x1000, 0x100)
        self.initialised = self.device = self.context = self.model = self.desc = None
        self.gear_set: int | None = None
        self.executions: list[int] = []
        self.loaded_path: str | None = None
        self.rt = types.SimpleNamespace(**{n: getattr(self, f"rt_{n}") for n in (
            "set_device", "reset_device", "create_context", "destroy_context", "get_run_mode",
            "malloc", "malloc_host", "free", "free_host", "memcpy")})
        self.mdl = types.SimpleNamespace(**{n: getattr(self, f"mdl_{n}") for n in (
            "load_from_file", "create_desc", "get_desc", "destroy_desc", "unload",
            "get_num_inputs", "get_num_outputs", "get_input_dims", "get_output_dims",
            "get_input_size_by_index", "get_output_size_by_index", "get_output_data_type",
            "get_input_data_type",
            "get_input_index_by_name", "get_dynamic_batch", "set_dynamic_batch_size",
            "create_dataset", "add_dataset_buffer", "destroy_dataset", "execute")})
        util = {"ptr_to_bytes": self.util_ptr_to_bytes, "bytes_to_ptr": self.util_bytes_to_ptr} \
            if new_util else {"numpy_to_ptr": self.util_numpy_to_ptr,
                              "ptr_to_numpy": self.util_ptr_to_numpy}
        self.util = types.SimpleNamespace(**util)

    # -- bookkeeping -------------------------------------------------------------------
    def _call(self, name: str, *, needs_init: bool = True) -> int | None:
        self.calls.append(name)
        if needs_init and not self.initialised:
            raise FakeAclError(f"{name} before acl.init")
        return self.fail.pop(name, None)

    @property
    def inputs(self) -> list[tuple[str, list[int], int]]:
        h, w, c = self.image
        per = h * w * c * self.input_dtype.itemsize
        dims = self.input_dims or [-1 if self.gears else self.max_batch, h, w, c]
        data = ("input", dims, per * self.max_batch)
        if self.gears:
            return [data, (MBATCH, [1], 8)]
        return [data]

    @property
    def out_size(self) -> int:
        return self.max_batch * self.dim * self.output_dtype.itemsize

    # -- top level ---------------------------------------------------------------------
    @classmethod
    def from_om(cls, path: str | Path, **overrides: Any) -> FakeAcl:
        """The double for the model an ``.om`` double (``write_fake_om``) describes."""
        desc = read_fake_om(Path(path))
        if desc is None or "onnx" not in desc:
            raise FakeAclError(f"{path}: not an .om double that names its ONNX model")
        kwargs = {k: desc[k] for k in ("gears", "static_batch", "output_dtype", "image", "dim",
                                       "input_dtype", "output_name") if k in desc}
        for k in ("gears", "image"):
            if k in kwargs:
                kwargs[k] = tuple(kwargs[k])
        return cls(desc["onnx"], **{**kwargs, **overrides})

    def init(self, *cfg: Any) -> int:
        """One aclInit per process: 100002 on a repeat, refused after finalize."""
        self.calls.append("init")
        if self.finalized:
            raise FakeAclError("acl.init after acl.finalize: CANN allows one acl.init per "
                               "process (pyACL reference, CANN 5.0.4)")
        st = self.fail.pop("init", None)
        if st:
            return st
        if self.initialised:
            return ACL_ERROR_REPEAT_INITIALIZE
        self.initialised = True
        return 0

    def finalize(self) -> int:
        self.calls.append("finalize")
        if not self.initialised:
            return ACL_ERROR_REPEAT_FINALIZE
        if self.device is not None or self.context is not None:
            raise FakeAclError("finalize before reset_device/destroy_context")
        self.initialised = False
        self.finalized = True
        return 0

    def get_soc_name(self) -> str:
        return "Ascend310P3(fake)"

    def create_data_buffer(self, ptr: int, size: int) -> int:
        self._call("create_data_buffer")
        if ptr not in self.mem or len(self.mem[ptr]) != size:
            raise FakeAclError(f"data buffer of {size} bytes on unknown/mismatched ptr {ptr}")
        buf = next(self.ids)
        self.buffers[buf] = (ptr, size)
        return buf

    def destroy_data_buffer(self, buf: int) -> int:
        self._call("destroy_data_buffer")
        if buf not in self.buffers:
            raise FakeAclError("destroy of unknown data buffer")
        del self.buffers[buf]
        return 0

    # -- rt ----------------------------------------------------------------------------
    def rt_set_device(self, dev: int) -> int:
        st = self._call("rt.set_device")
        self.device = dev
        return st or 0

    def rt_reset_device(self, dev: int) -> int:
        self._call("rt.reset_device")
        if self.context is not None:
            raise FakeAclError("reset_device before destroy_context")
        if self.mem or self.host:
            raise FakeAclError(f"reset_device with {len(self.mem) + len(self.host)} allocations "
                               "not freed")
        self.device = None
        return 0

    def rt_create_context(self, dev: int) -> tuple[int, int]:
        st = self._call("rt.create_context")
        if self.device != dev:
            raise FakeAclError("create_context on a device not set")
        self.context = next(self.ids)
        return self.context, st or 0

    def rt_destroy_context(self, ctx: int) -> int:
        self._call("rt.destroy_context")
        if self.model is not None or self.desc is not None:
            raise FakeAclError("destroy_context before unload/destroy_desc")
        self.context = None
        return 0

    def rt_get_run_mode(self) -> tuple[int, int]:
        self._call("rt.get_run_mode")
        return self.run_mode, 0

    def rt_malloc(self, size: int, policy: int) -> tuple[int, int]:
        st = self._call("rt.malloc")
        if self.context is None:
            raise FakeAclError("malloc without a context")
        ptr = next(self.ids)
        self.mem[ptr] = bytearray(size)
        return ptr, st or 0

    def rt_malloc_host(self, size: int) -> tuple[int, int]:
        st = self._call("rt.malloc_host")
        ptr = next(self.ids)
        self.host[ptr] = bytearray(size)
        return ptr, st or 0

    def rt_free(self, ptr: int) -> int:
        self._call("rt.free")
        if any(p == ptr for p, _ in self.buffers.values()):
            raise FakeAclError("device memory freed while a data buffer still wraps it")
        if ptr not in self.mem:
            raise FakeAclError("free of unknown device pointer")
        del self.mem[ptr]
        return 0

    def rt_free_host(self, ptr: int) -> int:
        self._call("rt.free_host")
        if ptr not in self.host:
            raise FakeAclError("free_host of unknown pointer")
        del self.host[ptr]
        return 0

    def _region(self, ptr: int, space: str) -> bytearray:
        if space == "device":
            if ptr not in self.mem:
                raise FakeAclError(f"{ptr:#x} is not device memory")
            return self.mem[ptr]
        if ptr in self.host:
            return self.host[ptr]
        if ptr in self.pinned:
            return self.pinned[ptr]
        raise FakeAclError(f"{ptr:#x} is not host memory")

    def rt_memcpy(self, dst: int, dst_max: int, src: int, count: int, kind: int) -> int:
        st = self._call("rt.memcpy")
        want = {1: (1, 2), 0: (3, 3)}[self.run_mode]
        if kind not in want:
            raise FakeAclError(f"memcpy kind {kind} in run mode {self.run_mode}")
        to_device = kind == want[0] and (dst in self.mem)
        d = self._region(dst, "device" if to_device else "host")
        s = self._region(src, "host" if to_device else "device")
        if count > dst_max or dst_max > len(d) or count > len(s):
            raise FakeAclError(f"memcpy of {count} bytes into {dst_max} (dst {len(d)}, "
                               f"src {len(s)})")
        if to_device and self._is_mbatch(dst):
            raise FakeAclError("the host wrote ascend_mbatch_shape_data")
        d[:count] = bytes(s[:count])
        if to_device:
            self.copied[dst] = count
        return st or 0

    def _is_mbatch(self, ptr: int) -> bool:
        if not self.gears or not self.datasets:
            return False
        first = next(iter(self.datasets.values()))
        return len(first) > 1 and self.buffers[first[1]][0] == ptr

    # -- util --------------------------------------------------------------------------
    def util_bytes_to_ptr(self, b: bytes) -> int:
        if not isinstance(b, bytes):
            raise FakeAclError("bytes_to_ptr takes bytes")
        ptr = next(self.ids)
        self.pinned[ptr] = b
        return ptr

    def util_ptr_to_bytes(self, ptr: int, n: int) -> bytes:
        return bytes(self._region(ptr, "host")[:n])

    def util_numpy_to_ptr(self, arr: np.ndarray) -> int:
        if not arr.flags.c_contiguous:
            raise FakeAclError("numpy_to_ptr of a non-contiguous array")
        ptr = next(self.ids)
        self.pinned[ptr] = arr.tobytes()
        return ptr

    def util_ptr_to_numpy(self, ptr: int, shape: tuple[int, ...], code: int) -> np.ndarray:
        if code != 1:
            raise FakeAclError("expected NPY_BYTE")
        return np.frombuffer(bytes(self._region(ptr, "host")[: int(np.prod(shape))]),
                             np.int8).reshape(shape)

    # -- mdl ---------------------------------------------------------------------------
    def mdl_load_from_file(self, path: str) -> tuple[int, int]:
        st = self._call("mdl.load_from_file")
        if self.context is None:
            raise FakeAclError("load_from_file without a context")
        desc = read_fake_om(Path(path))
        if desc is None:
            return 0, LOAD_FAILURE
        built_for = desc.get("platform")
        if built_for and built_for != self.host_platform:
            # an .om built for another OS/arch: the runtime's message does not say so
            return 0, LOAD_FAILURE
        self.model = next(self.ids)
        self.loaded_path = path
        return self.model, st or 0

    def mdl_create_desc(self) -> int:
        self._call("mdl.create_desc")
        self.desc = next(self.ids)
        return self.desc

    def mdl_get_desc(self, desc: int, model_id: int) -> int:
        st = self._call("mdl.get_desc")
        if desc != self.desc or model_id != self.model:
            raise FakeAclError("get_desc with wrong handles")
        return st or 0

    def mdl_destroy_desc(self, desc: int) -> int:
        self._call("mdl.destroy_desc")
        if self.model is not None:
            raise FakeAclError("destroy_desc before unload")
        self.desc = None
        return 0

    def mdl_unload(self, model_id: int) -> int:
        self._call("mdl.unload")
        if self.mem or self.buffers or self.datasets:
            raise FakeAclError("unload before buffers/datasets/device memory were released")
        self.model = None
        return 0

    def mdl_get_num_inputs(self, desc: int) -> int:
        self._call("mdl.get_num_inputs")
        return len(self.inputs)

    def mdl_get_num_outputs(self, desc: int) -> int:
        self._call("mdl.get_num_outputs")
        return 1

    def mdl_get_input_dims(self, desc: int, i: int) -> tuple[dict, int]:
        self._call("mdl.get_input_dims")
        name, dims, _ = self.inputs[i]
        return {"name": name, "dimCount": len(dims), "dims": dims}, 0

    def mdl_get_output_dims(self, desc: int, i: int) -> tuple[dict, int]:
        self._call("mdl.get_output_dims")
        return {"name": self.output_name, "dimCount": 2, "dims": [self.max_batch, self.dim]}, 0

    def mdl_get_input_data_type(self, desc: int, i: int) -> int:
        self._call("mdl.get_input_data_type")
        name = self.inputs[i][0]
        return DTYPE_CODES["int64" if name == MBATCH else self.input_dtype.name]

    def mdl_get_input_size_by_index(self, desc: int, i: int) -> int:
        self._call("mdl.get_input_size_by_index")
        return self.inputs[i][2]

    def mdl_get_output_size_by_index(self, desc: int, i: int) -> int:
        self._call("mdl.get_output_size_by_index")
        return self.out_size

    def mdl_get_output_data_type(self, desc: int, i: int) -> int:
        self._call("mdl.get_output_data_type")
        return DTYPE_CODES[self.output_dtype.name]

    def mdl_get_input_index_by_name(self, desc: int, name: str) -> tuple[int, int]:
        self._call("mdl.get_input_index_by_name")
        names = [n for n, _, _ in self.inputs]
        return (names.index(name), 0) if name in names else (0, 148046)

    def mdl_get_dynamic_batch(self, desc: int) -> tuple[dict, int]:
        self._call("mdl.get_dynamic_batch")
        return {"batchCount": len(self.gears), "batch": list(self.gears)}, 0

    def mdl_set_dynamic_batch_size(self, model_id: int, ds: int, index: int, batch: int) -> int:
        st = self._call("mdl.set_dynamic_batch_size")
        if batch not in self.gears:
            raise FakeAclError(f"batch {batch} is not a gear {self.gears}")
        if self.inputs[index][0] != MBATCH:
            raise FakeAclError(f"set_dynamic_batch_size index {index} is not {MBATCH}")
        if ds not in self.datasets:
            raise FakeAclError("unknown dataset")
        self.gear_set = batch
        return st or 0

    def mdl_create_dataset(self) -> int:
        self._call("mdl.create_dataset")
        ds = next(self.ids)
        self.datasets[ds] = []
        return ds

    def mdl_add_dataset_buffer(self, ds: int, buf: int) -> tuple[int, int]:
        st = self._call("mdl.add_dataset_buffer")
        if ds not in self.datasets or buf not in self.buffers:
            raise FakeAclError("add_dataset_buffer with unknown handles")
        self.datasets[ds].append(buf)
        return ds, st or 0

    def mdl_destroy_dataset(self, ds: int) -> int:
        self._call("mdl.destroy_dataset")
        if any(b in self.buffers for b in self.datasets.get(ds, [])):
            raise FakeAclError("dataset destroyed before its data buffers")
        del self.datasets[ds]
        return 0

    def mdl_execute(self, model_id: int, in_ds: int, out_ds: int) -> int:
        st = self._call("mdl.execute")
        if st:
            return st
        if self.gears and self.gear_set is None:
            raise FakeAclError("execute on a dynamic-batch model before set_dynamic_batch_size")
        n = self.gear_set if self.gears else self.max_batch
        in_ptr, _in_size = self.buffers[self.datasets[in_ds][0]]
        if len(self.datasets[in_ds]) != len(self.inputs):
            raise FakeAclError("input dataset lacks buffers (mbatch input must be added)")
        h, w, c = self.image
        nbytes = n * h * w * c * self.input_dtype.itemsize
        if self.copied.get(in_ptr) != nbytes:
            raise FakeAclError(f"the host wrote {self.copied.get(in_ptr)} input bytes for a "
                               f"batch of {n}: the model takes {self.input_dtype} "
                               f"[{n}, {h}, {w}, {c}] = {nbytes} bytes")
        x = np.frombuffer(bytes(self.mem[in_ptr][:nbytes]), self.input_dtype)
        if self.input_dtype == np.float16:  # the ONNX underneath takes float32
            x = x.astype(np.float32)
        y = self.session.run(None, {"input": x.reshape(n, h, w, c)})[0]
        out_ptr, out_size = self.buffers[self.datasets[out_ds][0]]
        raw = y.astype(self.output_dtype).tobytes()
        self.mem[out_ptr][: len(raw)] = raw
        self.mem[out_ptr][len(raw):] = b"\xff" * (out_size - len(raw))  # garbage past gear
        self.executions.append(n)
        self.gear_set = None
        return 0


def write_fake_om(path: Path, **desc: Any) -> Path:
    """A file the double accepts as an .om (real .om files are opaque to the test).

    ``desc`` is what the file says about itself: ``platform`` (the ``<os>_<arch>`` it
    loads on), and for :meth:`FakeAcl.from_om` and the stand-in msame ``onnx`` (the model
    run in its place) with any of FakeAcl's settings (gears, input_dtype, output_name...).
    """
    if "onnx" in desc:
        desc["onnx"] = str(desc["onnx"])
    path.write_bytes(OM_MAGIC + json.dumps(desc).encode() + b"\0" * 60)
    return path


def read_fake_om(path: Path) -> dict | None:
    """The description an ``.om`` double carries, or None when it is not one."""
    if not path.is_file():
        return None
    data = path.read_bytes()
    if data[:4] != OM_MAGIC:
        return None
    text = data[4:].rstrip(b"\0").decode()
    return json.loads(text) if text else {}
