"""The .om backend against a test double of pyACL (tests/infer/fake_acl.py).

The double runs a small ONNX model where the .om would run, so the embeddings can be
compared with ONNX Runtime's; it refuses out-of-order calls, oversize copies, writes to
the dynamic-batch input and teardown in the wrong order.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from massface.errors import InputError
from massface.infer.backends import open_backend
from massface.infer.backends.acl_backend import AclError
from tests.helpers.fake_acl import FakeAcl, write_fake_om
from tests.helpers.models import make_linear_onnx

SIZE = (16, 16)
TEARDOWN = ["destroy_data_buffer", "mdl.destroy_dataset", "rt.free", "rt.free_host",
            "mdl.unload", "mdl.destroy_desc", "rt.destroy_context", "rt.reset_device",
            "finalize"]


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "lin.onnx"
    weight = make_linear_onnx(path, size=SIZE, dim=8)
    return path, weight


def install(monkeypatch, fake: FakeAcl) -> FakeAcl:
    monkeypatch.setitem(sys.modules, "acl", fake)
    return fake


def images(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, *SIZE, 3)).astype(np.float32)


def _collapse(calls: list[str]) -> list[str]:
    out: list[str] = []
    for c in calls:
        if not out or out[-1] != c:
            out.append(c)
    return out


@pytest.mark.parametrize("new_util", [True, False], ids=["bytes_to_ptr", "numpy_to_ptr"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_dynamic_batch_gears(monkeypatch, tmp_path, model, new_util, dtype):
    path, weight = model
    fake = install(monkeypatch, FakeAcl(path, gears=(1, 4, 8), output_dtype=dtype,
                                        new_util=new_util, image=(*SIZE, 3), dim=8))
    om = write_fake_om(tmp_path / "m.om")
    x = images(13)
    with open_backend(om) as backend:
        info = backend.info
        assert (info.backend, info.layout, info.batch, info.batch_sizes) == \
            ("acl", "NHWC", "gears", (1, 4, 8))
        assert (info.input_name, info.output_dtype, info.output_dim) == ("input", dtype, 8)
        assert info.extra["host_pointers"] == ("bytes_to_ptr" if new_util else "numpy_to_ptr")
        y = backend.embed(x)
    # 13 rows -> gears 8 + 8 (5 padded; the padding rows are dropped)
    assert fake.executions == [8, 8]
    want = x.reshape(13, -1) @ weight
    tol = 1e-5 if dtype == "float32" else 2e-2 * np.abs(want).max()
    np.testing.assert_allclose(y, want, atol=tol)
    assert y.dtype == np.float32
    calls = fake.calls
    assert calls[:3] == ["init", "rt.set_device", "rt.create_context"]
    assert calls.index("mdl.load_from_file") < calls.index("mdl.get_desc")
    runs = [c for c in calls if c in ("rt.memcpy", "mdl.set_dynamic_batch_size", "mdl.execute")]
    assert runs == ["rt.memcpy", "mdl.set_dynamic_batch_size", "mdl.execute", "rt.memcpy"] * 2
    tail = _collapse(calls[calls.index("destroy_data_buffer"):])
    assert tail == TEARDOWN
    assert not fake.mem and not fake.host and not fake.buffers and not fake.datasets


def test_small_batches_use_the_smallest_gear(monkeypatch, tmp_path, model):
    path, weight = model
    fake = install(monkeypatch, FakeAcl(path, gears=(1, 4, 8), image=(*SIZE, 3), dim=8))
    with open_backend(write_fake_om(tmp_path / "m.om")) as backend:
        for n in (1, 3, 4, 6):
            x = images(n, seed=n)
            np.testing.assert_allclose(backend.embed(x), x.reshape(n, -1) @ weight, atol=1e-5)
    assert fake.executions == [1, 4, 4, 8]


def test_static_batch_and_device_run_mode(monkeypatch, tmp_path, model):
    path, weight = model
    fake = install(monkeypatch, FakeAcl(path, static_batch=4, run_mode=0, image=(*SIZE, 3),
                                        dim=8))
    with open_backend(write_fake_om(tmp_path / "m.om")) as backend:
        assert backend.info.batch == "static" and backend.info.batch_sizes == (4,)
        assert backend.info.extra["run_mode"] == "device"
        x = images(6)
        np.testing.assert_allclose(backend.embed(x), x.reshape(6, -1) @ weight, atol=1e-5)
    assert "mdl.set_dynamic_batch_size" not in fake.calls
    assert fake.executions == [4, 4]


def test_failed_execute_names_the_call_and_still_tears_down(monkeypatch, tmp_path, model):
    path, _ = model
    fake = install(monkeypatch, FakeAcl(path, image=(*SIZE, 3), dim=8))
    fake.fail["mdl.execute"] = 507011
    backend = open_backend(write_fake_om(tmp_path / "m.om"))
    with pytest.raises(AclError, match=r"mdl\.execute failed with status 507011"):
        backend.embed(images(2))
    backend.close()
    assert _collapse(fake.calls[fake.calls.index("destroy_data_buffer"):]) == TEARDOWN
    assert not fake.mem


def test_not_an_om_file(monkeypatch, tmp_path, model):
    path, _ = model
    fake = install(monkeypatch, FakeAcl(path, image=(*SIZE, 3), dim=8))
    bad = tmp_path / "garbage.om"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(InputError, match=r"garbage\.om: acl\.mdl\.load_from_file failed"):
        open_backend(bad)
    # what was set up before the failure is released, in order
    assert fake.calls[-3:] == ["rt.destroy_context", "rt.reset_device", "finalize"]


def test_acl_absent_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "acl", None)  # import acl -> ImportError
    with pytest.raises(InputError, match="CANN's pyACL"):
        open_backend(write_fake_om(tmp_path / "m.om"))


def test_cli_runs_om_end_to_end(monkeypatch, tmp_path, pretrained_onnx, lfw_dir):
    """massface-infer on an .om (the double runs the shared model) == on the ONNX."""
    from typer.testing import CliRunner

    from massface.formats.embedding_dir import read_embedding_dir
    from massface.infer.cli import app

    install(monkeypatch, FakeAcl(pretrained_onnx, gears=(1, 8), output_dtype="float32"))
    om = write_fake_om(tmp_path / "m.om")
    lst = tmp_path / "list.txt"
    names = sorted(p.relative_to(lfw_dir).as_posix() for p in
                   (lfw_dir / "Aaron_Peirsol").glob("*.jpg"))[:3] + \
        sorted(p.relative_to(lfw_dir).as_posix() for p in (lfw_dir / "Abdullah").glob("*.jpg"))
    lst.write_text("\n".join(names) + "\n")
    runner = CliRunner()
    for model, out in ((om, tmp_path / "om"), (pretrained_onnx, tmp_path / "onnx")):
        r = runner.invoke(app, ["--model", str(model), "--list", str(lst), "--root",
                                str(lfw_dir), "--out", str(out), "--quiet", "--batch-size", "4"])
        assert r.exit_code == 0, r.output
    a, b = read_embedding_dir(tmp_path / "om"), read_embedding_dir(tmp_path / "onnx")
    assert a.meta["model"]["backend"] == "acl" and a.paths == b.paths
    np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-4)
