"""Run a native library on an untrusted file in a child process first.

Some native readers crash the whole process (a segmentation fault, no Python exception)
on a truncated or damaged file: TensorFlow Lite's interpreter does on a cut ``.tflite``.
:func:`probe_in_child` runs a small reader script in a fresh interpreter; a crash or a
failure there becomes an :class:`InputError` naming the file, and only a file the child
could read is opened in this process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from massface.errors import InputError

_checked: set[tuple[str, int, int]] = set()


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def probe_in_child(script: str, path: str | os.PathLike[str], what: str, *,
                   timeout_s: float = 300) -> None:
    """Run ``script`` (Python source; ``sys.argv[1]`` is ``path``) in a child process.

    Returns when it exits 0; raises :class:`InputError` naming ``path`` when it crashes,
    fails or times out. A file that passed (same size and mtime) is not probed again.
    """
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key in _checked:
        return
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    try:
        proc = subprocess.run([sys.executable, "-c", script, str(p)], capture_output=True,
                              text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        raise InputError(f"{p}: reading it as {what} did not finish within {timeout_s:.0f} s "
                         "(damaged file?)") from None
    if proc.returncode < 0:
        raise InputError(f"{p}: the {what} reader crashed on this file "
                         f"({_signal_name(proc.returncode)}): it is truncated or damaged")
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"exit status {proc.returncode}"
        raise InputError(f"{p}: not a readable {what}: {reason[:500]}")
    _checked.add(key)
