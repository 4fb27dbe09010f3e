"""A missing optional package is a clear message naming the extra, not a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from massface.errors import InputError
from massface.optional import require


def test_require_returns_the_module():
    assert require("json", extra="x", purpose="p").dumps([1]) == "[1]"


def test_missing_package_names_the_extra():
    with pytest.raises(InputError, match=r"--roc needs the Python package 'nosuchpkg'.*"
                                         r"pip install 'massface\[report\]'"):
        require("nosuchpkg.sub", extra="report", purpose="--roc")


def test_eval_roc_without_matplotlib_exits_2(tmp_path):
    """Block matplotlib's import in a fresh interpreter: --roc then fails cleanly."""
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "r.npz", embeddings=rng.standard_normal((40, 4)),
             issame=np.array([1, 0] * 10))
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from massface.evaluate.cli import main; main()")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r.npz"), "--roc",
                           str(tmp_path / "roc.png")], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "massface[report]" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "roc.png").exists()
