"""A stand-in for CANN's ``atc`` executable (CANN cannot be installed here)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

#: A stand-in for CANN's `atc`: records its argv, then behaves as MODE says. Success
#: prints ATC's success line and writes OUTPUT.om (or OUTPUT_linux_x86_64.om, as some
#: releases do); failure prints ATC's failure line and exits 255 (as ATC does);
#: "silent" exits 0 without writing a model.
STANDIN_ATC = """#!/usr/bin/env bash
printf '%s\\n' "$@" > "$(dirname "$0")/argv.txt"
pwd > "$(dirname "$0")/cwd.txt"
out=""
for a in "$@"; do case "$a" in --output=*) out="${a#--output=}";; esac; done
case "MODE" in
  success) printf 'OM' > "$out.om"; echo "ATC run success, welcome to the next use."; exit 0;;
  renamed) printf 'OM' > "${out}_linux_x86_64.om"
           echo "ATC run success, welcome to the next use."; exit 0;;
  fail) printf 'half' > "$out.om"
        echo "E10001: Value [Ascend999] for parameter [--soc_version] is invalid."
        echo "ATC run failed, Please check the detail log, Try 'atc --help' for more information"
        exit 255;;
  silent) echo "ATC run success, welcome to the next use."; exit 0;;
esac
"""


def install_standin_atc(folder: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Write the stand-in `atc` (behaving as ``mode``) into ``folder``, first on PATH."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "atc"
    exe.write_text(STANDIN_ATC.replace("MODE", mode))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    return folder
