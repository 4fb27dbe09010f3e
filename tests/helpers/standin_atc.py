"""A stand-in for CANN's ``atc`` executable (CANN cannot be installed here).

It refuses what real ATC refuses, so that a command massface builds is held to ATC's own
rules, not only to massface's idea of them. Sources (read, not copied): ATC's option
checks in mindspore-ai/graphengine (``ge/offline/main.cc``, ``ge/ir_build/option_utils.cc``
of the releases that carried the front end; option names in
``910/inc/external/ge/ge_api_types.h``: PRECISION_MODE ``ge.exec.precision_mode``,
PRECISION_MODE_V2 ``ge.exec.precision_mode_v2``, INSERT_OP_FILE), the AIPP schema
``insert_op.proto`` in Ascend/parser, and the CANN "ATC Instructions" reference
(--input_format, --dynamic_batch_size, --precision_mode, --precision_mode_v2):

* ONNX (``--framework=5``) takes ``--input_format`` NCHW, NCDHW or ND, never NHWC;
* ``--insert_op_conf`` (AIPP) needs ``--input_format`` NCHW or NHWC (not ND);
* ``--dynamic_batch_size`` lists 2 to 100 gears, each 1 to 2048, and the input's batch
  in ``--input_shape`` must be -1;
* ``--precision_mode`` / ``--precision_mode_v2`` take only their own values, and the two
  cannot be given together.

A refusal prints ATC's error line and "ATC run failed" and exits 255, like ATC. Then
MODE decides: ``success`` writes OUTPUT.om; ``renamed`` writes OUTPUT_linux_x86_64.om (as
ATC does for the host it builds for); ``fail`` a partial OUTPUT.om and exit 255;
``silent`` exits 0 without a model. argv and cwd are recorded beside the executable.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

FRAMEWORK_FORMATS = {"3": {"NCHW", "NHWC", "ND"}, "5": {"NCHW", "NCDHW", "ND"},
                     "0": {"NCHW", "ND"}, "1": {"NCHW", "NHWC", "ND"}}
PRECISION_V1 = {"force_fp32", "force_fp16", "allow_fp32_to_fp16", "must_keep_origin_dtype",
                "allow_mix_precision", "allow_mix_precision_fp16", "allow_mix_precision_bf16",
                "allow_fp32_to_bf16", "cube_fp16in_fp32out"}
PRECISION_V2 = {"fp16", "origin", "cube_fp16in_fp32out", "mixed_float16", "mixed_bfloat16",
                "cube_hif8", "mixed_hif8"}


def check(options: dict[str, str]) -> str | None:
    """ATC's refusal for these options (its error line), or None."""
    fw, fmt = options.get("framework"), options.get("input_format")
    if fw in FRAMEWORK_FORMATS and fmt is not None and fmt not in FRAMEWORK_FORMATS[fw]:
        return (f"E10001: Value [{fmt}] for parameter [--input_format] is invalid. Reason: "
                f"framework {fw} supports {', '.join(sorted(FRAMEWORK_FORMATS[fw]))}")
    if "insert_op_conf" in options and fmt not in ("NCHW", "NHWC"):
        return (f"E10001: Value [{fmt}] for parameter [--input_format] is invalid. Reason: "
                "--insert_op_conf needs NCHW or NHWC")
    if "dynamic_batch_size" in options:
        gears = options["dynamic_batch_size"].split(",")
        if not 2 <= len(gears) <= 100:
            return ("E10035: [--dynamic_batch_size] has " + str(len(gears)) + " gears; "
                    "it must have 2 to 100")
        if any(not g.isdigit() or not 1 <= int(g) <= 2048 for g in gears):
            return "E10036: each [--dynamic_batch_size] value must be 1 to 2048"
        dims = options.get("input_shape", "").rpartition(":")[2].split(",")
        if dims[0] != "-1":
            return "E10031: with [--dynamic_batch_size] the batch in --input_shape must be -1"
    if "precision_mode" in options and "precision_mode_v2" in options:
        return "E10001: [--precision_mode] and [--precision_mode_v2] cannot both be set"
    for key, allowed in (("precision_mode", PRECISION_V1), ("precision_mode_v2", PRECISION_V2)):
        if key in options and options[key] not in allowed:
            return f"E10001: Value [{options[key]}] for parameter [--{key}] is invalid."
    return None


def main(argv: list[str], mode: str) -> int:
    here = Path(__file__).parent if mode == "check" else Path(os.environ["STANDIN_ATC_DIR"])
    (here / "argv.txt").write_text("".join(f"{a}\n" for a in argv))
    (here / "cwd.txt").write_text(os.getcwd() + "\n")
    options = dict(a[2:].partition("=")[::2] for a in argv if a.startswith("--"))
    out = options.get("output", "")
    refusal = check(options)
    if refusal:
        print(refusal)
        print("ATC run failed, Please check the detail log, Try 'atc --help' for more "
              "information")
        return 255
    success = "ATC run success, welcome to the next use."
    if mode == "success":
        Path(f"{out}.om").write_bytes(b"OM")
    elif mode == "renamed":
        Path(f"{out}_linux_x86_64.om").write_bytes(b"OM")
    elif mode == "fail":
        Path(f"{out}.om").write_bytes(b"half")
        print("E10001: Value [Ascend999] for parameter [--soc_version] is invalid.")
        print("ATC run failed, Please check the detail log, Try 'atc --help' for more "
              "information")
        return 255
    print(success)
    return 0


def install_standin_atc(folder: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Write the stand-in `atc` (behaving as ``mode``) into ``folder``, first on PATH."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "atc"
    repo = Path(__file__).resolve().parents[2]
    exe.write_text(f'#!/usr/bin/env bash\nSTANDIN_ATC_DIR="{folder}" PYTHONPATH="{repo}" '
                   f'exec "{sys.executable}" -m tests.helpers.standin_atc {mode} "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    return folder


if __name__ == "__main__":
    sys.exit(main(sys.argv[2:], sys.argv[1]))
