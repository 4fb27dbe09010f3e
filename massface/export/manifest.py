"""``export.json``: what was exported, from what, and the numbers that prove it.

Written last, into the staging folder, so that a folder holding an ``export.json`` is a
finished export. ``massface-infer`` reads its ``preprocessing`` (and the input/output
names) when it sits beside the model it is given.
"""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from massface.io import sha256_file

FORMAT = "massface-export"
VERSION = 1
MANIFEST_NAME = "export.json"
#: Reported name -> distributions that provide it (the first one installed counts).
_TOOLS = {
    "massface": ("massface",),
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
    "tf2onnx": ("tf2onnx",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "numpy": ("numpy",),
}



def artifact_entry(path: Path, **extra) -> dict:
    """``{"file", "bytes", "sha256", ...extra}`` for a file in the export folder."""
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path), **extra}


def tool_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name, dists in _TOOLS.items():
        for dist in dists:
            try:
                out[name] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return out


def now_utc() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def new_manifest(*, source: dict, input_spec: dict, output_spec: dict,
                 preprocessing: dict) -> dict:
    """The manifest skeleton; stages add ``artifacts``, ``parity``, ``atc``."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "created_utc": now_utc(),
        "source": source,
        "input": input_spec,
        "output": output_spec,
        "preprocessing": preprocessing,
        "artifacts": {},
        "parity": {},
        "atc": {},
        "tools": tool_versions(),
    }
