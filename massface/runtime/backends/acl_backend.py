"""Ascend ``.om`` backend through pyACL, written against ``shared/docs/ascend.md``.

``acl`` exists only where CANN's ``set_env.sh`` has been sourced, so it is imported here
and nowhere else. The life cycle follows the documented API:

1. ``acl.init`` once per process (CANN allows one: see :func:`finalize_acl`), then per
   backend ``rt.set_device``, ``rt.create_context``, ``rt.get_run_mode``;
2. ``mdl.load_from_file``, ``mdl.create_desc`` + ``mdl.get_desc``;
3. device buffers at each input's and output's reported size (the largest gear for
   dynamic-batch models, whose extra ``ascend_mbatch_shape_data`` input is allocated and
   added to the dataset but never written), wrapped in data buffers and datasets;
4. per batch: host -> device copy of the input (a host pointer from
   ``util.bytes_to_ptr`` on current CANN, ``util.numpy_to_ptr`` on older releases,
   detected by feature), ``mdl.set_dynamic_batch_size`` with the gear, ``mdl.execute``,
   device -> host copy of the valid ``size * gear / max_gear`` output bytes, read in the
   dtype the model reports (``mdl.get_output_data_type``);
5. teardown: data buffers, datasets, device (and host) buffers, ``mdl.unload``,
   ``mdl.destroy_desc``, ``rt.destroy_context``, ``rt.reset_device``. ``acl.finalize``
   runs once, at process exit, and only when massface initialised ACL itself.

Names and types come from the model, not from guesses: the input's data type from
``mdl.get_input_data_type`` (float32, float16 for ATC ``--input_fp16_nodes``, uint8 for
AIPP), and ``--output-name`` is matched against the names a real ``.om`` reports,
``op:index`` (TensorFlow source) or ``op:index:tensor`` (ONNX source); see
:func:`match_output_name`.

A model built with AIPP (``massface-export --aipp``: ATC ``--insert_op_conf``) takes
uint8 RGB pixels, NHWC, and normalises them on the chip: its input holds one byte per
value instead of four, and ``export.json`` beside it says so; the backend then reports
``input_dtype`` uint8 and massface-infer feeds the decoded pixels as they are.

This backend has been exercised only against a test double of ``acl`` (see
``tests/helpers/fake_acl.py``), never on Ascend hardware.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import platform
import warnings
from typing import Any

import numpy as np

from massface.errors import AclError, InputError
from massface.formats.msame import PLATFORM_SUFFIX, om_platform
from massface.runtime.backends.base import (
    GEARS,
    Backend,
    BackendOptions,
    ModelInfo,
    image_input,
    model_path,
)

ACL_SUCCESS = 0
ACL_ERROR_REPEAT_INITIALIZE = 100002
ACL_MEM_MALLOC_HUGE_FIRST = 0
ACL_DEVICE, ACL_HOST = 0, 1
MEMCPY_HOST_TO_DEVICE, MEMCPY_DEVICE_TO_HOST, MEMCPY_DEVICE_TO_DEVICE = 1, 2, 3
MBATCH_INPUT = "ascend_mbatch_shape_data"
NPY_BYTE = 1  # numpy type code for ptr_to_numpy on old pyACL
ACL_DTYPES = {0: "float32", 1: "float16", 2: "int8", 3: "int32", 4: "uint8", 6: "int16",
              7: "uint16", 8: "uint32", 9: "int64", 10: "uint64", 11: "float64", 12: "bool"}
#: input data types massface-infer can feed: normalised floats, or AIPP's raw pixels
FED_DTYPES = ("float32", "float16", "uint8")


def host_platform() -> str:
    """This host as ATC spells it in ``NAME_<os>_<arch>.om`` (e.g. ``linux_aarch64``)."""
    return f"{platform.system().lower()}_{platform.machine().lower()}"


def check_platform(path: str | os.PathLike[str]) -> None:
    """Refuse an ``.om`` whose ATC name suffix says another OS/architecture: the runtime
    would only report a generic load failure."""
    built_for, here = om_platform(path), host_platform()
    if built_for is not None and built_for != here:
        raise InputError(
            f"{path}: ATC built this .om for {built_for} (its name's suffix) and this host "
            f"is {here}; such an .om loads only on the OS/architecture it was built for. "
            f"Rebuild it for {here} (run atc.sh on this host, or add ATC's --host_env_os/"
            "--host_env_cpu for it)")


# --- one aclInit per process ----------------------------------------------------------
# CANN 5.0.4's pyACL reference: acl.init may be called once per process, acl.finalize
# once at its end. So massface initialises ACL on first use, never finalizes it in
# close() (a second backend would otherwise need a second init), and finalizes at exit
# only if it was the one that initialised it; ACL initialised by another owner in the
# process (status 100002 on our init) is left to that owner.
_ACL_STATE: dict[str, Any] = {"module": None, "owner": False, "finalized": False}


def _ensure_initialised(acl: Any, path: object) -> None:
    state = _ACL_STATE
    if state["module"] is not acl:  # a new acl module (only tests swap it): fresh state
        state.update(module=acl, owner=False, finalized=False)
        ret = acl.init()
        if ret not in (ACL_SUCCESS, ACL_ERROR_REPEAT_INITIALIZE):
            state["module"] = None
            raise AclError(f"{path}: acl.init failed with status {ret}")
        state["owner"] = ret == ACL_SUCCESS
        return
    if state["finalized"]:
        raise AclError(f"{path}: ACL was finalized in this process (finalize_acl) and CANN "
                       "allows one acl.init per process: run it in a new process")


def finalize_acl() -> bool:
    """``acl.finalize`` if massface initialised ACL and has not finalized it yet (runs at
    exit). Returns whether it finalized. Every backend must be closed first."""
    state = _ACL_STATE
    acl = state["module"]
    if acl is None or not state["owner"] or state["finalized"]:
        return False
    state["finalized"] = True
    ret = acl.finalize()
    if ret != ACL_SUCCESS:
        warnings.warn(f"acl.finalize returned status {ret}", RuntimeWarning, stacklevel=2)
    return True


def _finalize_quietly() -> None:
    with contextlib.suppress(Exception):
        finalize_acl()


atexit.register(_finalize_quietly)


def match_output_name(names: list[str], wanted: str, path: object) -> int:
    """Index of the output ``--output-name`` means. A real ``.om`` names its outputs
    ``op:index`` (TensorFlow source, e.g. ``embeddings:0``) or ``op:index:tensor`` (ONNX,
    e.g. ``Gemm_95:0:embeddings``), so ``embeddings`` matches the whole name, its op, its
    ``op:index`` or its tensor name; more than one match is refused."""
    if wanted in names:
        return names.index(wanted)
    hits = []
    for i, name in enumerate(names):
        parts = name.split(":")
        keys = {parts[0]}
        if len(parts) >= 2:
            keys.add(f"{parts[0]}:{parts[1]}")
        if len(parts) >= 3:
            keys.add(":".join(parts[2:]))
        if wanted in keys:
            hits.append(i)
    if len(hits) == 1:
        return hits[0]
    listed = ", ".join(names)
    if hits:
        raise InputError(f"{path}: --output-name {wanted!r} matches {len(hits)} outputs "
                         f"({', '.join(names[i] for i in hits)}): give the full name")
    raise InputError(f"{path}: no output named {wanted!r} (outputs: {listed}; a name may "
                     "be given whole, as its op, op:index or tensor name)")



def import_acl(path: object) -> Any:
    """The ``acl`` module, or an :class:`InputError` saying how to get it."""
    try:
        import acl
    except ImportError as exc:
        raise InputError(
            f"{path}: an Ascend .om model needs CANN's pyACL (Python module 'acl'), which is "
            "not importable here. Run on a machine with an Ascend NPU after sourcing "
            "<CANN>/set_env.sh (e.g. /usr/local/Ascend/ascend-toolkit/set_env.sh). The PyPI "
            "package 'pyacl' is an unrelated library."
        ) from exc
    return acl


class AclBackend(Backend):
    """One ``.om`` model loaded on one Ascend device."""

    name = "acl"
    suffixes = (".om",)
    options = frozenset({"device_id", "output_name"})

    def __init__(self, path: str | os.PathLike[str], options: BackendOptions | None = None
                 ) -> None:
        o = options or BackendOptions()
        device_id, output_name = o.device_id, o.output_name
        p = model_path(path)
        self._path = p
        check_platform(p)
        acl = import_acl(p)
        self.acl = acl
        self.device_id = int(device_id)
        self._device_set = False
        self._context = self._desc = self._model_id = None
        self._in_ds = self._out_ds = None
        self._buffers: list[Any] = []
        self._device_ptrs: list[int] = []
        self._host_ptrs: list[int] = []
        self._use_bytes = "bytes_to_ptr" in dir(acl.util)
        try:
            self._open(p, output_name)
        except BaseException:
            self.close()
            raise

    # -- status helpers -------------------------------------------------------------------
    def _check(self, ret: int, call: str) -> None:
        if ret != ACL_SUCCESS:
            raise AclError(f"{self._path}: acl.{call} failed with status {ret}")

    def _value(self, result: tuple[Any, int], call: str) -> Any:
        value, ret = result
        self._check(ret, call)
        return value

    # -- set-up ---------------------------------------------------------------------------
    def _open(self, p: os.PathLike[str], output_name: str | None) -> None:
        acl = self.acl
        _ensure_initialised(acl, p)
        self._check(acl.rt.set_device(self.device_id), "rt.set_device")
        self._device_set = True
        self._context = self._value(acl.rt.create_context(self.device_id), "rt.create_context")
        run_mode = self._value(acl.rt.get_run_mode(), "rt.get_run_mode")
        on_host = run_mode == ACL_HOST
        self._h2d = MEMCPY_HOST_TO_DEVICE if on_host else MEMCPY_DEVICE_TO_DEVICE
        self._d2h = MEMCPY_DEVICE_TO_HOST if on_host else MEMCPY_DEVICE_TO_DEVICE
        model_id, ret = acl.mdl.load_from_file(str(p))
        if ret != ACL_SUCCESS:
            raise InputError(f"{p}: acl.mdl.load_from_file failed with status {ret}: not an "
                             ".om model for this device, CANN version or host OS/"
                             f"architecture (this host: {host_platform()}; ATC builds "
                             "for one, see --host_env_os/--host_env_cpu)")
        self._model_id = model_id
        self._desc = acl.mdl.create_desc()
        self._check(acl.mdl.get_desc(self._desc, model_id), "mdl.get_desc")
        self._describe(p, output_name)
        self._allocate()

    def _describe(self, p: os.PathLike[str], output_name: str | None) -> None:
        acl, desc = self.acl, self._desc
        n_in = acl.mdl.get_num_inputs(desc)
        names = [self._value(acl.mdl.get_input_dims(desc, i), "mdl.get_input_dims")["name"]
                 for i in range(n_in)]
        mbatch = None
        if MBATCH_INPUT in names:
            mbatch = self._value(acl.mdl.get_input_index_by_name(desc, MBATCH_INPUT),
                                 "mdl.get_input_index_by_name")
        data_inputs = [i for i in range(n_in) if i != mbatch]
        if len(data_inputs) != 1:
            raise InputError(f"{p}: model has {len(data_inputs)} data inputs "
                             f"({', '.join(names)}); massface-infer feeds single-image models")
        self._in_index = data_inputs[0]
        self._mbatch_index = mbatch
        in_dims = self._value(acl.mdl.get_input_dims(desc, self._in_index), "mdl.get_input_dims")
        shape = [int(d) if int(d) > 0 else None for d in in_dims["dims"]]
        layout, h, w, c = image_input(p, in_dims["name"], shape)
        if h is None or w is None:
            raise InputError(f"{p}: input {in_dims['name']!r} has dynamic height/width {shape}; "
                             "massface-infer needs a fixed image size for .om models")
        dyn = self._value(acl.mdl.get_dynamic_batch(desc), "mdl.get_dynamic_batch")
        gears = tuple(sorted(int(b) for b in (dyn.get("batch") or [])[: dyn.get("batchCount", 0)]))
        if gears:
            if mbatch is None:
                raise InputError(f"{p}: model lists batch gears {gears} but has no "
                                 f"{MBATCH_INPUT} input")
            batch, sizes = GEARS, gears
        else:
            if shape[0] is None:
                raise InputError(f"{p}: input batch dimension is dynamic but the model has no "
                                 "batch gears (ATC --dynamic_batch_size)")
            batch, sizes = "static", (shape[0],)
        self._max_gear = sizes[-1]
        self._in_sizes = [acl.mdl.get_input_size_by_index(desc, i) for i in range(n_in)]
        reported = None
        if hasattr(acl.mdl, "get_input_data_type"):
            code = acl.mdl.get_input_data_type(desc, self._in_index)
            reported = ACL_DTYPES.get(code, f"aclDataType {code}")
        in_dtype, contract = input_contract(p, self._in_sizes[self._in_index],
                                            self._max_gear * h * w * c, in_dims["name"],
                                            reported)
        if in_dtype == "uint8":
            layout = "NHWC"  # ATC forces the AIPP input to NHWC whatever the model declared
        n_out = acl.mdl.get_num_outputs(desc)
        out_dims = [self._value(acl.mdl.get_output_dims(desc, i), "mdl.get_output_dims")
                    for i in range(n_out)]
        out_names = [d["name"] for d in out_dims]
        self._out_index = 0 if output_name is None else \
            match_output_name(out_names, output_name, p)
        self._out_sizes = [acl.mdl.get_output_size_by_index(desc, i) for i in range(n_out)]
        code = acl.mdl.get_output_data_type(desc, self._out_index)
        if code not in ACL_DTYPES:
            raise InputError(f"{p}: output data type {code} is not a known aclDataType")
        self._out_dtype = np.dtype(ACL_DTYPES[code])
        out_bytes = self._out_sizes[self._out_index]
        dim = out_bytes // (self._max_gear * self._out_dtype.itemsize)
        self.info = ModelInfo(
            backend=self.name, path=str(p), input_name=in_dims["name"], input_shape=shape,
            layout=layout, height=h, width=w, channels=c, batch=batch, batch_sizes=sizes,
            input_dtype=in_dtype,
            output_name=out_names[self._out_index], output_dtype=self._out_dtype.name,
            output_dim=int(dim),
            extra={"device_id": self.device_id, "soc": _soc_name(self.acl),
                   "host_pointers": "bytes_to_ptr" if self._use_bytes else "numpy_to_ptr",
                   "run_mode": "host" if self._h2d == MEMCPY_HOST_TO_DEVICE else "device",
                   "input_contract": contract},
        )

    def _allocate(self) -> None:
        acl = self.acl
        self._in_ptrs = [self._malloc(size) for size in self._in_sizes]
        self._out_ptrs = [self._malloc(size) for size in self._out_sizes]
        self._in_ds = acl.mdl.create_dataset()
        for ptr, size in zip(self._in_ptrs, self._in_sizes, strict=True):
            self._add_buffer(self._in_ds, ptr, size)
        self._out_ds = acl.mdl.create_dataset()
        for ptr, size in zip(self._out_ptrs, self._out_sizes, strict=True):
            self._add_buffer(self._out_ds, ptr, size)
        host = self._value(acl.rt.malloc_host(self._out_sizes[self._out_index]),
                           "rt.malloc_host")
        self._host_ptrs.append(host)
        self._host_out = host

    def _malloc(self, size: int) -> int:
        ptr = self._value(self.acl.rt.malloc(size, ACL_MEM_MALLOC_HUGE_FIRST), "rt.malloc")
        self._device_ptrs.append(ptr)
        return ptr

    def _add_buffer(self, dataset: Any, ptr: int, size: int) -> None:
        buf = self.acl.create_data_buffer(ptr, size)
        self._buffers.append(buf)
        self._value(self.acl.mdl.add_dataset_buffer(dataset, buf), "mdl.add_dataset_buffer")

    # -- inference ------------------------------------------------------------------------
    def _run(self, batch: np.ndarray) -> np.ndarray:
        acl = self.acl
        gear = batch.shape[0]
        data = np.ascontiguousarray(batch, dtype=self.info.input_dtype)
        if self._use_bytes:
            keep_alive: Any = data.tobytes()
            ptr = acl.util.bytes_to_ptr(keep_alive)
        else:
            keep_alive = data
            ptr = acl.util.numpy_to_ptr(data)
        in_size = self._in_sizes[self._in_index]
        self._check(acl.rt.memcpy(self._in_ptrs[self._in_index], in_size, ptr, data.nbytes,
                                  self._h2d), "rt.memcpy (input)")
        del keep_alive
        if self.info.batch == GEARS:
            self._check(acl.mdl.set_dynamic_batch_size(self._model_id, self._in_ds,
                                                       self._mbatch_index, gear),
                        "mdl.set_dynamic_batch_size")
        self._check(acl.mdl.execute(self._model_id, self._in_ds, self._out_ds), "mdl.execute")
        out_size = self._out_sizes[self._out_index]
        valid = out_size * gear // self._max_gear
        self._check(acl.rt.memcpy(self._host_out, out_size, self._out_ptrs[self._out_index],
                                  valid, self._d2h), "rt.memcpy (output)")
        if self._use_bytes:
            raw = bytes(acl.util.ptr_to_bytes(self._host_out, valid))
        else:
            raw = acl.util.ptr_to_numpy(self._host_out, (valid,), NPY_BYTE).tobytes()
        return np.frombuffer(raw, dtype=self._out_dtype).reshape(gear, -1).copy()

    # -- teardown -------------------------------------------------------------------------
    def close(self) -> None:
        """Release everything in the documented order; tolerate a partial set-up."""
        acl = getattr(self, "acl", None)
        if acl is None:
            return
        failures: list[str] = []

        def step(call: str, fn: Any, *args: Any) -> None:
            try:
                ret = fn(*args)
            except Exception as exc:  # teardown must go on; report below
                failures.append(f"{call}: {exc}")
                return
            if ret not in (ACL_SUCCESS, None):
                failures.append(f"{call}: status {ret}")

        for buf in self._buffers:
            step("destroy_data_buffer", acl.destroy_data_buffer, buf)
        self._buffers = []
        for ds in (self._in_ds, self._out_ds):
            if ds is not None:
                step("mdl.destroy_dataset", acl.mdl.destroy_dataset, ds)
        self._in_ds = self._out_ds = None
        for ptr in self._device_ptrs:
            step("rt.free", acl.rt.free, ptr)
        self._device_ptrs = []
        for ptr in self._host_ptrs:
            step("rt.free_host", acl.rt.free_host, ptr)
        self._host_ptrs = []
        if self._model_id is not None:
            step("mdl.unload", acl.mdl.unload, self._model_id)
            self._model_id = None
        if self._desc is not None:
            step("mdl.destroy_desc", acl.mdl.destroy_desc, self._desc)
            self._desc = None
        if self._context is not None:
            step("rt.destroy_context", acl.rt.destroy_context, self._context)
            self._context = None
        if self._device_set:
            step("rt.reset_device", acl.rt.reset_device, self.device_id)
            self._device_set = False
        self.acl = None  # acl.finalize: once, at exit (finalize_acl)
        if failures:
            warnings.warn(f"{self._path}: pyACL teardown reported: {'; '.join(failures)}",
                          RuntimeWarning, stacklevel=2)


def _aipp_section(p: os.PathLike[str]) -> dict | None:
    """``export.json``'s AIPP section when it describes this very ``.om``."""
    from massface.runtime.preprocess import read_export_json

    export = read_export_json(p)
    aipp = (export or {}).get("aipp")
    # ATC may have written NAME_<os>_<arch>.om for the NAME.om export.json names
    name = PLATFORM_SUFFIX.sub(".om", os.path.basename(p))
    if isinstance(aipp, dict) and aipp.get("om_file") in (os.path.basename(p), name):
        return aipp
    return None


def input_contract(p: os.PathLike[str], size: int, values: int, name: str,
                   reported: str | None = None) -> tuple[str, str]:
    """(input dtype, where the contract came from) of an ``.om`` input of ``size`` bytes
    holding ``values`` values. ``reported``: the type ``acl.mdl.get_input_data_type``
    gives (None on a pyACL without it: then the byte count decides between float32 and
    uint8). float32 is a plain model, float16 one built with ``--input_fp16_nodes``,
    uint8 one built with AIPP, whose host feeds raw RGB pixels. ``export.json`` beside
    the model, when it has an AIPP section for it, must agree."""
    if reported is not None:
        if reported not in FED_DTYPES:
            raise InputError(f"{p}: input {name!r} is {reported}; massface-infer feeds "
                             f"{', '.join(FED_DTYPES)} images")
        itemsize = np.dtype(reported).itemsize
        if size != itemsize * values:
            raise InputError(f"{p}: input {name!r} is {reported} but holds {size} bytes for "
                             f"{values} values ({itemsize * values} expected)")
        if reported == "float16":
            if _aipp_section(p) is not None:
                raise InputError(f"{p}: export.json says this .om was built with AIPP (uint8 "
                                 f"input) but its input {name!r} is float16: rebuild it "
                                 "with the export's atc.sh")
            return "float16", "float16 input (ATC --input_fp16_nodes), reported by the model"
        size = 4 * values if reported == "float32" else values  # the checks below
    aipp = _aipp_section(p)
    if size == 4 * values:
        if aipp is not None:
            raise InputError(f"{p}: export.json says this .om was built with AIPP (uint8 "
                             f"input) but its input {name!r} holds {size} bytes, float32: "
                             "it was built without --insert_op_conf; rebuild it with the "
                             "export's atc.sh")
        return "float32", "float32 input (no AIPP)"
    if size == values:
        if aipp is None:
            return "uint8", ("uint8 input of the size of the images: built with AIPP; RGB "
                             "assumed (no export.json AIPP section beside the model)")
        color = (aipp.get("input") or {}).get("color", "RGB")
        if color != "RGB":
            raise InputError(f"{p}: export.json's AIPP input contract feeds {color}; "
                             "massface-infer feeds RGB pixels")
        return "uint8", "AIPP (export.json): uint8 RGB pixels, normalised on the chip"
    raise InputError(f"{p}: input {name!r} holds {size} bytes for {values} values: neither "
                     "float32 (4 bytes each) nor uint8 AIPP input (1 byte each)")


def _soc_name(acl: Any) -> str | None:
    with contextlib.suppress(Exception):
        return acl.get_soc_name()
    return None
