"""Build (and, where ATC is installed, run) the Ascend ATC command that makes a ``.om``.

ATC (Huawei's Ascend Tensor Compiler) is part of CANN, which cannot be installed here: the
command is built from the documented options (``/work/shared/docs/ascend.md``), run when an
``atc`` executable is on ``PATH``, and otherwise written to ``atc.sh`` beside the model so
that it can be run unchanged on the Ascend host. Nothing here has run on Ascend hardware;
the tests drive it through a stand-in ``atc`` executable.

Why the checks are strict: ATC has two quiet ways of going wrong. Current releases write
``NAME_<os>_<arch>.om`` (e.g. ``model_linux_aarch64.om``) instead of ``NAME.om``: such a
model loads only on that OS and architecture (ATC's ``--host_env_os``/``--host_env_cpu``;
graphengine ``910/inc/external/ge/ge_api_types.h`` OPTION_HOST_ENV_OS/CPU), so the file
keeps the name ATC gave it and the platform is recorded; renaming it to ``NAME.om`` would
hide why it fails to load on another host. And an exit status of 0 is not a promise that
a model was written. So success means *both* exit status 0 *and* a new, non-empty
``NAME*.om`` file.

Precision (``--precision_mode``; CANN "ATC Instructions", --precision_mode, and the
graphengine option ``ge.exec.precision_mode``): what each mode does to an fp32 graph
changed between CANN generations, see :data:`PRECISION_MODES`. massface's default is
``allow_fp32_to_fp16``: on current CANN (6.x and later) the matrix (Cube) operators,
convolutions and MatMul, run in fp16 whatever the mode except ``must_keep_origin_dtype``/
``force_fp32``, and this mode keeps the vector operators (PReLU, BatchNorm, Add, the
final L2 norm) in fp32 where they have an fp32 kernel; on CANN 5.x and earlier it kept
every operator with an fp32 kernel in fp32. It builds on every SoC, and the fp16
simulation (every operator in fp16, the worst case) costs the shared MobileFaceNet
nothing on LFW (docs/device.md). ATC's own default, ``force_fp16``, puts the vector
operators in fp16 too. ``must_keep_origin_dtype`` does not fail where the AI Core has no
fp32 kernel (convolutions on the Ascend 310 family): it falls back to an AI CPU kernel
when there is one, which runs but is slow. Together with ``--output_type=FP32`` the
embeddings always come back as float32.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from massface.errors import AtcError, InputError
from massface.formats.msame import om_platform
from massface.io import write_text
from massface.registry import Registry

#: ``--soc_version`` names ATC accepts in public CANN releases (the chip name as
#: ``npu-smi info`` prints it). Value: the product family, for messages and the README.
SOC_VERSIONS: dict[str, str] = {
    "Ascend310": "Atlas 200/300/500 inference (Ascend 310)",
    "Ascend310B1": "Atlas 200I/500 A2 (Ascend 310B)",
    "Ascend310B2": "Atlas 200I/500 A2 (Ascend 310B)",
    "Ascend310B3": "Atlas 200I/500 A2 (Ascend 310B)",
    "Ascend310B4": "Atlas 200I/500 A2 (Ascend 310B)",
    "Ascend310P1": "Atlas 300I Pro / 300V (Ascend 310P)",
    "Ascend310P3": "Atlas 300I Pro / 300V Pro / 300I Duo (Ascend 310P)",
    "Ascend310P5": "Ascend 310P",
    "Ascend310P7": "Ascend 310P",
    "Ascend910": "Atlas 300T / 800 training (Ascend 910)",
    "Ascend910A": "Ascend 910 (A)",
    "Ascend910B": "Ascend 910 (B)",
    "Ascend910ProA": "Ascend 910 Pro A",
    "Ascend910ProB": "Ascend 910 Pro B",
    "Ascend910PremiumA": "Ascend 910 Premium A",
    "Ascend910B1": "Atlas 800T/800I A2 (Ascend 910B)",
    "Ascend910B2": "Atlas 800T/800I A2 (Ascend 910B)",
    "Ascend910B2C": "Atlas 800T/800I A2 (Ascend 910B)",
    "Ascend910B3": "Atlas 800T/800I A2 (Ascend 910B)",
    "Ascend910B4": "Atlas 800T/800I A2 (Ascend 910B)",
    "Ascend910B4-1": "Atlas 800T/800I A2 (Ascend 910B)",
    "Ascend910_9391": "Atlas A3 (Ascend 910C)",
    "Ascend910_9392": "Atlas A3 (Ascend 910C)",
    "Ascend910_9381": "Atlas A3 (Ascend 910C)",
    "Ascend910_9382": "Atlas A3 (Ascend 910C)",
    "Ascend910_9372": "Atlas A3 (Ascend 910C)",
    "Ascend910_9362": "Atlas A3 (Ascend 910C)",
}

#: ``--precision_mode`` values and what each does to an fp32 graph. Source: CANN "ATC
#: Instructions", --precision_mode (CANN 5.0.x and 6.0/7.0/8.0 editions). ATC refuses
#: ``--precision_mode`` together with ``--precision_mode_v2`` (CANN 7+: fp16, origin,
#: cube_fp16in_fp32out, mixed_float16, ...); massface sets only the first.
PRECISION_MODES: Registry[str] = Registry("ATC precision mode")
PRECISION_MODES.register("allow_fp32_to_fp16", "allow_fp32_to_fp16", description=(
    "CANN 6+: matrix (Cube) operators in fp16 always, vector operators kept in fp32 where "
    "they have an fp32 kernel, else fp16; CANN 5.x and earlier: every operator kept in fp32 "
    "where it has an fp32 kernel (massface's default: builds on every SoC; the all-fp16 "
    "simulation costs MobileFaceNet nothing)"))
PRECISION_MODES.register("must_keep_origin_dtype", "must_keep_origin_dtype", description=(
    "the graph's own dtypes; an fp32 operator without an fp32 AI Core kernel (e.g. "
    "convolutions on Ascend 310) falls back to an AI CPU kernel if one exists (runs, "
    "slowly), and only otherwise does ATC fail"))
PRECISION_MODES.register("force_fp32", "force_fp32", description=(
    "fp32 for operators that have an fp32 kernel; operators without one still run in fp16 "
    "(not 'fp32 everywhere'; newer CANN)"))
PRECISION_MODES.register("allow_mix_precision", "allow_mix_precision", description=(
    "fp16 for operators on ATC's mixed-precision list, fp32 for the others"))
PRECISION_MODES.register("force_fp16", "force_fp16", description=(
    "ATC's own default: fp16 for every operator that has an fp16 kernel, vector operators "
    "included (can cost verification accuracy)"))
DEFAULT_PRECISION_MODE = "allow_fp32_to_fp16"
DEFAULT_SOC = "Ascend310"
DEFAULT_GEARS = (1, 8, 32)

MIN_GEARS, MAX_GEARS = 2, 100  # ATC: 2 to 100 dynamic-batch gears ...
MIN_GEAR_VALUE, MAX_GEAR_VALUE = 1, 2048  # ... each from 1 to 2048


@dataclass(frozen=True)
class AtcFramework:
    """How ATC reads one source format."""

    code: int  # --framework
    input_format: str  # --input_format for an NHWC input
    pin_output_node: bool  # pass --out_nodes (TensorFlow graphs can have several ends)


#: Source suffix -> framework. ONNX inputs may only be declared NCHW, NCDHW or ND to ATC;
#: massface's ONNX input is NHWC, so it is declared ``ND`` (declaring NCHW would be false).
FRAMEWORKS: dict[str, AtcFramework] = {
    ".pb": AtcFramework(code=3, input_format="NHWC", pin_output_node=True),
    ".onnx": AtcFramework(code=5, input_format="ND", pin_output_node=False),
}



def validate_soc(soc: str, *, trust: bool = False) -> str:
    """``soc`` if ATC knows it; ``trust`` lets a name newer than this list through."""
    if soc in SOC_VERSIONS or trust:
        return soc
    close = [s for s in SOC_VERSIONS if s.lower() == soc.lower()]
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise InputError(
        f"--soc {soc!r} is not an Ascend SoC name ATC accepts{hint}. Known: "
        f"{', '.join(SOC_VERSIONS)}. Use the chip name `npu-smi info` prints; for a chip "
        "newer than this list pass --trust-soc."
    )


def validate_precision_mode(mode: str) -> str:
    return PRECISION_MODES.get(mode, "--precision-mode")


def parse_gears(text: str | Sequence[int]) -> tuple[int, ...]:
    """Dynamic-batch gears from ``"1,8,32"``: 2 to 100 distinct sizes, each 1 to 2048.

    A single value means a static batch of that size (no ``--dynamic_batch_size``).
    """
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",")]
        try:
            gears = tuple(int(p) for p in parts)
        except ValueError:
            raise InputError(
                f"--dynamic-batch {text!r}: expected comma-separated integers such as 1,8,32"
            ) from None
    else:
        gears = tuple(int(g) for g in text)
    label = ",".join(str(g) for g in gears)
    if not gears:
        raise InputError("--dynamic-batch: no batch sizes given")
    bad = [g for g in gears if not MIN_GEAR_VALUE <= g <= MAX_GEAR_VALUE]
    if bad:
        raise InputError(
            f"--dynamic-batch {label}: batch sizes must be {MIN_GEAR_VALUE} to "
            f"{MAX_GEAR_VALUE} (ATC's limit); out of range: {bad}"
        )
    if len(set(gears)) != len(gears):
        raise InputError(f"--dynamic-batch {label}: repeated batch sizes")
    if len(gears) > MAX_GEARS:
        raise InputError(
            f"--dynamic-batch: {len(gears)} gears given; ATC accepts {MIN_GEARS} to {MAX_GEARS}"
        )
    return gears


@dataclass(frozen=True)
class AtcSpec:
    """Everything that decides the ATC command for one model file."""

    model: str  # model file name, relative to the folder ATC runs in
    output: str  # --output stem (ATC appends .om)
    soc: str = DEFAULT_SOC
    gears: tuple[int, ...] = DEFAULT_GEARS
    precision_mode: str = DEFAULT_PRECISION_MODE
    input_name: str = "input"
    output_name: str = "embeddings"
    image_shape: tuple[int, int, int] = (112, 112, 3)  # H, W, C
    log_level: str = "error"
    layout: str = "NHWC"  # the model file's input layout; NCHW for ONNX with AIPP
    insert_op_conf: str | None = None  # AIPP config file (the .om then takes uint8 input)

    @property
    def framework(self) -> AtcFramework:
        suffix = Path(self.model).suffix.lower()
        if suffix not in FRAMEWORKS:
            raise InputError(
                f"{self.model}: ATC input must be a frozen TensorFlow graph (.pb) or ONNX "
                f"(.onnx), not {suffix or 'a file without suffix'!r}"
            )
        return FRAMEWORKS[suffix]

    @property
    def input_format(self) -> str:
        """``--input_format``: the framework's for an NHWC input, else the layout.

        ATC takes ``--insert_op_conf`` only with NCHW or NHWC (ONNX: NCHW only), so an
        AIPP model must say which axis holds the channels; ``ND`` cannot.
        """
        fmt = self.framework.input_format if self.layout == "NHWC" else self.layout
        if self.insert_op_conf is not None and fmt not in ("NCHW", "NHWC"):
            raise InputError(f"{self.model}: ATC applies AIPP (--insert_op_conf) only to an "
                             f"NCHW or NHWC input, and this one is declared {fmt}: give ATC "
                             "the NCHW-input ONNX (massface-export --aipp writes it)")
        return fmt

    def argv(self) -> list[str]:
        """The ATC command line (argv; no shell quoting needed)."""
        fw = self.framework
        dynamic = len(self.gears) > 1
        batch = "-1" if dynamic else str(self.gears[0])
        h, w, c = self.image_shape
        shape = (h, w, c) if self.layout == "NHWC" else (c, h, w)
        dims = ",".join([batch, *(str(d) for d in shape)])
        argv = [
            "atc",
            f"--model={self.model}",
            f"--framework={fw.code}",
            f"--output={self.output}",
            f"--soc_version={self.soc}",
            f"--input_shape={self.input_name}:{dims}",
            f"--input_format={self.input_format}",
        ]
        if dynamic:
            argv.append(f"--dynamic_batch_size={','.join(str(g) for g in self.gears)}")
        if self.insert_op_conf is not None:
            argv.append(f"--insert_op_conf={self.insert_op_conf}")
        argv += [f"--precision_mode={self.precision_mode}", "--output_type=FP32"]
        if fw.pin_output_node:
            argv.append(f"--out_nodes={self.output_name}:0")
        argv.append(f"--log={self.log_level}")
        return argv

    def shell_command(self) -> str:
        return shlex.join(self.argv())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["gears"] = list(self.gears)
        d["image_shape"] = list(self.image_shape)
        d["framework"] = self.framework.code
        d["input_format"] = self.input_format
        d["dynamic_batch"] = len(self.gears) > 1
        d["command"] = self.shell_command()
        return d


@dataclass
class AtcResult:
    """What the ATC step did. ``status``: built | deferred | failed."""

    status: str
    command: str
    script: str | None = None
    om_file: str | None = None
    produced_as: str | None = None
    returncode: int | None = None
    log_file: str | None = None
    atc_path: str | None = None
    message: str = ""
    seconds: float | None = None
    platform: str | None = None  # <os>_<arch> of ATC's NAME_<os>_<arch>.om, if so named
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def write_script(spec: AtcSpec, folder: Path) -> Path:
    """Write ``atc.sh``: the exact command, run from the folder it sits in, with checks."""
    om = f"{spec.output}.om"
    script = (
        "#!/usr/bin/env bash\n"
        "# Built by massface-export: converts the model beside this script to an Ascend .om.\n"
        "# Run on a machine with CANN's ATC (source <CANN>/set_env.sh first).\n"
        "set -euo pipefail\n"
        'cd "$(dirname "$0")"\n'
        f"rm -f -- {shlex.quote(om)}  # a stale model must not pass for a new one\n"
        "# Extra ATC options may be appended: ./atc.sh --log=debug\n"
        f"rm -f -- {shlex.quote(spec.output)}_*_*.om\n"
        f'{spec.shell_command()} "$@"\n'
        "# Current ATC writes NAME_<os>_<arch>.om, which loads only on that OS/arch: it\n"
        "# keeps that name (renaming it would hide why it fails on another host).\n"
        f"found=$(ls {shlex.quote(spec.output)}.om {shlex.quote(spec.output)}_*_*.om "
        "2>/dev/null | head -n 1 || true)\n"
        'if [ -z "$found" ] || [ ! -s "$found" ]; then\n'
        f'  echo "atc exited 0 but wrote no {spec.output}*.om" >&2; exit 1\n'
        "fi\n"
        'echo "built $(pwd)/$found"\n'
        f'case "$found" in {shlex.quote(spec.output)}_*_*.om) echo "(it loads only on the OS/'
        'architecture its name ends with)";; esac\n'
    )
    path = folder / "atc.sh"
    write_text(path, script)
    path.chmod(0o755)
    return path


def _om_snapshot(folder: Path, stem: str) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob(f"{stem}*.om") if p.is_file()}


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def find_atc() -> str | None:
    """Path of the ``atc`` executable on ``PATH``, or None."""
    return shutil.which("atc")


def run_atc(spec: AtcSpec, folder: Path, *, timeout_s: float | None = 3600) -> AtcResult:
    """Run ATC in ``folder`` (where ``spec.model`` lies) or, without ATC, write ``atc.sh``.

    Returns an :class:`AtcResult` with status ``built`` or ``deferred`` (no ``atc`` on
    PATH: the script is written, nothing else); raises :class:`AtcError` when ATC ran and
    failed, after removing any partial ``.om`` it left. ``atc.sh`` and ``atc.log`` (ATC's
    full output) are written in every case.
    """
    folder = Path(folder)
    if not (folder / spec.model).is_file():
        raise InputError(f"{folder / spec.model}: model file for ATC not found")
    script = write_script(spec, folder)
    command = spec.shell_command()
    atc = find_atc()
    if atc is None:
        return AtcResult(
            status="deferred",
            command=command,
            script=script.name,
            message=(
                "atc is not on PATH (CANN is not installed here). Run "
                f"{script.name} from the export folder on the Ascend host (after sourcing "
                "CANN's set_env.sh)."
            ),
        )
    before = _om_snapshot(folder, spec.output)
    argv = [atc, *spec.argv()[1:]]
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            argv, cwd=folder, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise AtcError(f"atc did not finish within {timeout_s} s: {command}") from exc
    seconds = time.perf_counter() - start
    output = (proc.stdout or "") + (proc.stderr or "")
    log = folder / "atc.log"
    write_text(log, f"$ {command}\n# exit status {proc.returncode}\n{output}")
    after = _om_snapshot(folder, spec.output)
    new = sorted(n for n, t in after.items() if before.get(n) != t)
    if proc.returncode != 0:
        for name in new:
            (folder / name).unlink(missing_ok=True)
        raise AtcError(
            f"atc failed (exit status {proc.returncode}) for {folder / spec.model}; "
            f"command: {command}\nfull log: {log}\nlast lines:\n{_tail(output)}"
        )
    new = [n for n in new if (folder / n).stat().st_size > 0]
    if not new:
        raise AtcError(
            f"atc exited 0 but wrote no {spec.output}*.om in {folder}; command: {command}\n"
            f"full log: {log}\nlast lines:\n{_tail(output)}"
        )
    wanted = f"{spec.output}.om"
    if wanted in new:
        produced = wanted
    elif len(new) == 1:
        produced = new[0]  # NAME_<os>_<arch>.om: kept, see the module docstring
    else:
        raise AtcError(
            f"atc wrote several models in {folder}: {new}; cannot tell which is {wanted}"
        )
    built_for = om_platform(produced)
    return AtcResult(
        status="built",
        command=command,
        script=script.name,
        om_file=produced,
        produced_as=produced,
        returncode=proc.returncode,
        log_file=log.name,
        atc_path=atc,
        seconds=round(seconds, 3),
        platform=built_for,
        message=f"built {produced}"
        + (f" (loads only on {built_for} hosts, as its name says)" if built_for else ""),
    )
