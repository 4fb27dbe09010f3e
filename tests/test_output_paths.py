"""Output paths that cannot be written are refused before any work starts (exit 2)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from massface.errors import InputError
from massface.io import check_output_dir, check_output_file
from tests.helpers.cli import run_cli


@pytest.fixture
def blocker(tmp_path):
    """A plain file where a folder would have to be."""
    f = tmp_path / "a-file"
    f.write_text("x")
    return f


def test_check_output_file(tmp_path, blocker):
    assert check_output_file(tmp_path / "new" / "deep" / "r.json", "--json")
    with pytest.raises(InputError, match=r"--json .*a-file/r.json: .*a-file is a file"):
        check_output_file(blocker / "r.json", "--json")
    with pytest.raises(InputError, match="is a folder"):
        check_output_file(tmp_path, "--json")


def test_check_output_dir(tmp_path, blocker):
    assert check_output_dir(tmp_path / "new" / "out", "--out")
    with pytest.raises(InputError, match="exists and is not a folder"):
        check_output_dir(blocker, "--out")
    with pytest.raises(InputError, match="is a file, not a folder"):
        check_output_dir(blocker / "sub" / "out", "--out")


def test_read_only_folder(tmp_path, monkeypatch):
    """As a non-root user a read-only folder is refused (simulated: CI runs as root, which
    may write anywhere, so os.access is made to answer as for an ordinary user)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode: os.fspath(path) != str(ro))
    with pytest.raises(InputError, match=r"cannot write in .*ro \(permission denied\)"):
        check_output_file(ro / "r.json", "--json")
    with pytest.raises(InputError, match="permission denied"):
        check_output_dir(ro / "out", "--out")


@pytest.mark.parametrize("option", ["--json", "--markdown", "--roc"])
def test_eval_refuses_unwritable_reports_before_scoring(tmp_path, blocker, option):
    from massface.evaluate.cli import app

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "r.npz", embeddings=rng.standard_normal((40, 4)),
             issame=np.array([1, 0] * 10))
    result = run_cli(app, [str(tmp_path / "r.npz"), "--folds", "2", option,
                                      str(blocker / "report")])
    assert result.exit_code == 2, result.output
    assert "is a file" in result.output and "accuracy" not in result.output


def test_infer_refuses_out_under_a_file(tmp_path, blocker):
    from massface.infer.cli import app
    from tests.helpers.models import make_linear_onnx

    model = tmp_path / "m.onnx"
    make_linear_onnx(model, size=(8, 8), dim=4)
    (tmp_path / "ds" / "p").mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "ds" / "p" / "0.png")
    result = run_cli(app, ["--model", str(model), "--images", str(tmp_path / "ds"),
                                      "--out", str(blocker / "out"), "--quiet"])
    assert result.exit_code == 2 and "is a file, not a folder" in result.output, result.output
