"""The .om backend against a test double of pyACL (tests/infer/fake_acl.py).

The double runs a small ONNX model where the .om would run, so the embeddings can be
compared with ONNX Runtime's; it refuses out-of-order calls, oversize copies, writes to
the dynamic-batch input and teardown in the wrong order.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from massface.errors import InputError
from massface.runtime.backends import open_backend
from massface.runtime.backends.acl_backend import AclError
from tests.helpers.fake_acl import FakeAcl, write_fake_om
from tests.helpers.models import make_linear_onnx

SIZE = (16, 16)
TEARDOWN = ["destroy_data_buffer", "mdl.destroy_dataset", "rt.free", "rt.free_host",
            "mdl.unload", "mdl.destroy_desc", "rt.destroy_context", "rt.reset_device"]


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
    # what was set up before the failure is released, in order (finalize: at exit)
    assert fake.calls[-2:] == ["rt.destroy_context", "rt.reset_device"]


def test_acl_absent_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "acl", None)  # import acl -> ImportError
    with pytest.raises(InputError, match="CANN's pyACL"):
        open_backend(write_fake_om(tmp_path / "m.om"))


def test_cli_runs_om_end_to_end(monkeypatch, tmp_path, pretrained_onnx, lfw_dir):
    """massface-infer on an .om (the double runs the shared model) == on the ONNX."""
    from massface.formats.embedding_dir import read_embedding_dir
    from massface.infer.cli import app
    from tests.helpers.cli import run_cli

    install(monkeypatch, FakeAcl(pretrained_onnx, gears=(1, 8), output_dtype="float32"))
    om = write_fake_om(tmp_path / "m.om")
    lst = tmp_path / "list.txt"
    names = sorted(p.relative_to(lfw_dir).as_posix() for p in
                   (lfw_dir / "Aaron_Peirsol").glob("*.jpg"))[:3] + \
        sorted(p.relative_to(lfw_dir).as_posix() for p in (lfw_dir / "Abdullah").glob("*.jpg"))
    lst.write_text("\n".join(names) + "\n")
    for model, out in ((om, tmp_path / "om"), (pretrained_onnx, tmp_path / "onnx")):
        r = run_cli(app, ["--model", str(model), "--list", str(lst), "--root",
                                str(lfw_dir), "--out", str(out), "--quiet", "--batch-size", "4"])
        assert r.exit_code == 0, r.output
    a, b = read_embedding_dir(tmp_path / "om"), read_embedding_dir(tmp_path / "onnx")
    assert a.meta["model"]["backend"] == "acl" and a.paths == b.paths
    np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-4)


# --- AIPP: an .om built with --insert_op_conf takes uint8 RGB pixels ------------------


def _twin_onnx(src, dst, size=None):
    """The AIPP twin of ``src`` (uint8 input): what the double runs for an AIPP .om."""
    import onnx

    from massface.export.aipp import AippConfig, twin
    from massface.formats.preprocessing import Preprocessing

    prep = Preprocessing(size=size or (112, 112))
    onnx.save(twin(onnx.load(str(src)), AippConfig.from_preprocessing(prep)), str(dst))
    return dst


def _aipp_export_json(folder, om_name="m.om", color="RGB"):
    from massface.io import write_json

    write_json(folder / "export.json", {
        "format": "massface-export", "version": 1,
        "preprocessing": {"color": "RGB", "mean": 127.5, "std": 128.0, "size": [112, 112]},
        "aipp": {"config": "aipp.cfg", "om_file": om_name,
                 "input": {"dtype": "uint8", "layout": "NHWC", "color": color,
                           "shape": [-1, 112, 112, 3]}}})


def test_aipp_om_is_fed_uint8_pixels_of_the_right_byte_size(monkeypatch, tmp_path, model):
    path, weight = model
    twin = _twin_onnx(path, tmp_path / "twin.onnx", size=SIZE)
    # the model reports NCHW dims: ATC still forces the AIPP input to NHWC
    fake = install(monkeypatch, FakeAcl(twin, gears=(1, 4, 8), image=(*SIZE, 3), dim=8,
                                        input_dtype="uint8", input_dims=[-1, 3, *SIZE]))
    pixels = np.random.default_rng(5).integers(0, 256, (6, *SIZE, 3), dtype=np.uint8)
    with open_backend(write_fake_om(tmp_path / "m.om")) as backend:
        info = backend.info
        assert (info.input_dtype, info.layout) == ("uint8", "NHWC")
        assert "RGB assumed" in info.extra["input_contract"]  # no export.json beside it
        y = backend.embed(pixels)
        with pytest.raises(InputError, match="takes uint8 input"):
            backend.embed(pixels.astype(np.float32))
    want = ((pixels.astype(np.float64) - 127.5) / 128).reshape(6, -1) @ weight
    np.testing.assert_allclose(y, want, atol=1e-4)
    assert fake.executions == [8]  # 6 rows -> gear 8; the double checked 8x16x16x3 bytes
    assert len(fake.copied) == 1 and next(iter(fake.copied.values())) == 8 * 16 * 16 * 3


def test_float32_bytes_to_an_aipp_model_are_caught_by_the_double(monkeypatch, tmp_path,
                                                                 model):
    """The double itself refuses 4-byte values for a uint8 input: the size check that
    makes the AIPP tests above mean something."""
    path, _ = model
    twin = _twin_onnx(path, tmp_path / "twin.onnx", size=SIZE)
    fake = install(monkeypatch, FakeAcl(twin, gears=(1, 4), image=(*SIZE, 3), dim=8,
                                        input_dtype="uint8"))
    from tests.helpers.fake_acl import FakeAclError

    with open_backend(write_fake_om(tmp_path / "m.om")) as backend:
        backend.info.input_dtype = "float32"  # pretend the backend ignored the contract
        with pytest.raises(FakeAclError, match="memcpy"):
            backend._run(np.zeros((4, *SIZE, 3), np.float32))
    assert fake.executions == []


def test_export_json_saying_aipp_with_a_float_input_is_refused(monkeypatch, tmp_path, model):
    path, _ = model
    install(monkeypatch, FakeAcl(path, image=(*SIZE, 3), dim=8))
    _aipp_export_json(tmp_path)
    with pytest.raises(InputError, match="built without --insert_op_conf"):
        open_backend(write_fake_om(tmp_path / "m.om"))


@pytest.fixture
def small_lfw(tmp_path, lfw_dir, lfw_pairs):
    """20 LFW pairs (2 per fold) under tmp/lfw/lfw-112x112, their pairs.txt beside it."""
    from massface.export.budget import select_pairs
    from massface.formats.pairs import read_pairs, resolve_reference, write_path_pairs

    pairs, _ = select_pairs(read_pairs(lfw_pairs), 20)
    root = tmp_path / "lfw" / "lfw-112x112"
    for p in pairs:
        for ref in (p.a, p.b):
            src = resolve_reference(lfw_dir, ref)
            dst = root / src.relative_to(lfw_dir)
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.exists():
                dst.symlink_to(src)
    write_path_pairs(root.parent / "pairs.txt", pairs)
    return root


@pytest.mark.slow
def test_om_spelling_lfw_alone_and_aipp_end_to_end(monkeypatch, tmp_path, pretrained_onnx,
                                                   small_lfw):
    """`massface-infer --om m.om --lfw DIR` (pairs.txt found beside DIR) on an AIPP .om
    gives the float model's embeddings; massface-eval reads its outputs, both formats,
    as it reads the float model's."""
    from massface.evaluate.cli import app as eval_app
    from massface.formats.embedding_dir import read_embedding_dir
    from massface.infer.cli import app
    from tests.helpers.cli import run_cli

    models = tmp_path / "export"
    models.mkdir()
    install(monkeypatch, FakeAcl(_twin_onnx(pretrained_onnx, tmp_path / "twin.onnx"),
                                 gears=(1, 8), input_dtype="uint8"))
    _aipp_export_json(models)
    om = write_fake_om(models / "m.om")
    runs = {"om": ["--om", om], "onnx": ["--model", pretrained_onnx],
            "om-msame": ["--om", om, "--format", "msame"]}
    for name, model_args in runs.items():
        r = run_cli(app, [*map(str, model_args), "--lfw", str(small_lfw), "--out",
                                str(tmp_path / name), "--quiet", "--batch-size", "8"])
        assert r.exit_code == 0, r.output
        assert f"using pairs {small_lfw.parent / 'pairs.txt'}" in r.output
    a, b = read_embedding_dir(tmp_path / "om"), read_embedding_dir(tmp_path / "onnx")
    assert a.meta["model"]["input_dtype"] == "uint8"
    assert "AIPP (export.json)" in a.meta["model"]["extra"]["input_contract"]
    assert np.abs(a.embeddings - b.embeddings).max() <= 1e-4
    accuracy = {}
    for name in runs:
        r = run_cli(eval_app, [str(tmp_path / name), "--json",
                                     str(tmp_path / f"{name}.json")])
        assert r.exit_code == 0, r.output
        accuracy[name] = json.loads((tmp_path / f"{name}.json").read_text())["accuracy"]
    assert accuracy["om"] == accuracy["onnx"] == accuracy["om-msame"]


def test_om_spelling_refuses_other_models(tmp_path, pretrained_onnx):
    from massface.infer.cli import app
    from tests.helpers.cli import run_cli

    r = run_cli(app, ["--om", str(pretrained_onnx), "--images", str(tmp_path),
                                 "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "not an .om file" in r.output


# --- issue 21: what a real .om and a real pyACL do that the old double did not --------


@pytest.mark.parametrize("style", ["tensorflow", "onnx"])
def test_output_name_matches_the_names_a_real_om_reports(monkeypatch, tmp_path, style):
    """A real .om names its output `embeddings:0` (TensorFlow source) or
    `op:0:embeddings` (ONNX); `massface-infer --om M.om --output-name embeddings` works."""
    from PIL import Image

    from massface.formats.embedding_dir import read_embedding_dir
    from massface.infer.cli import app
    from tests.helpers.cli import run_cli
    from tests.helpers.fake_acl import OUTPUT_NAMES

    weight = make_linear_onnx(tmp_path / "lin.onnx", size=SIZE, dim=8)
    install(monkeypatch, FakeAcl(tmp_path / "lin.onnx", gears=(1, 4), image=(*SIZE, 3),
                                 dim=8, output_name=OUTPUT_NAMES[style]))
    folder = tmp_path / "faces" / "someone"
    folder.mkdir(parents=True)
    pixels = np.random.default_rng(3).integers(0, 256, (3, *SIZE, 3), dtype=np.uint8)
    for i, px in enumerate(pixels):
        Image.fromarray(px).save(folder / f"{i}.png")
    r = run_cli(app, ["--om", str(write_fake_om(tmp_path / "m.om")),
                                 "--output-name", "embeddings", "--images",
                                 str(tmp_path / "faces"), "--out", str(tmp_path / "out"),
                                 "--quiet"])
    assert r.exit_code == 0, r.output
    got = read_embedding_dir(tmp_path / "out")
    assert got.meta["model"]["output_name"] == OUTPUT_NAMES[style]
    want = ((pixels.astype(np.float64) - 127.5) / 128).reshape(3, -1) @ weight
    np.testing.assert_allclose(got.embeddings, want, atol=1e-4)


def test_output_name_ambiguous_or_absent_is_refused():
    from massface.runtime.backends.acl_backend import match_output_name

    names = ["Gemm_7:0:embeddings", "Gemm_8:0:logits", "embeddings:1"]
    assert match_output_name(names, "logits", "m.om") == 1
    assert match_output_name(names, "Gemm_7:0", "m.om") == 0
    assert match_output_name(names, "embeddings:1", "m.om") == 2
    with pytest.raises(InputError, match="matches 2 outputs"):
        match_output_name(names, "embeddings", "m.om")
    with pytest.raises(InputError, match=r"no output named 'feat'.*Gemm_7:0:embeddings"):
        match_output_name(names, "feat", "m.om")


def test_fp16_input_om_is_fed_float16(monkeypatch, tmp_path, model):
    """An .om built with --input_fp16_nodes reports float16 (get_input_data_type) and
    holds 2 bytes a value; the host copies float16 and the embeddings are right."""
    path, weight = model
    fake = install(monkeypatch, FakeAcl(path, gears=(1, 4), image=(*SIZE, 3), dim=8,
                                        input_dtype="float16"))
    x = images(5)
    with open_backend(write_fake_om(tmp_path / "m.om")) as backend:
        assert backend.info.input_dtype == "float16"
        assert "input_fp16_nodes" in backend.info.extra["input_contract"]
        y = backend.embed(x)
    assert fake.executions == [4, 1]
    want = x.astype(np.float16).astype(np.float64).reshape(5, -1) @ weight
    np.testing.assert_allclose(y, want, atol=1e-4)


def test_second_backend_in_one_process_initialises_acl_once(monkeypatch, tmp_path, model):
    """CANN allows one acl.init per process: close() must not finalize (a second backend
    would need a second init, which the runtime refuses); finalize runs once at exit."""
    from massface.runtime.backends.acl_backend import finalize_acl

    path, weight = model
    fake = install(monkeypatch, FakeAcl(path, gears=(1, 4), image=(*SIZE, 3), dim=8))
    om = write_fake_om(tmp_path / "m.om")
    x = images(2)
    for _ in range(2):
        with open_backend(om) as backend:
            np.testing.assert_allclose(backend.embed(x), x.reshape(2, -1) @ weight, atol=1e-5)
    assert fake.calls.count("init") == 1 and "finalize" not in fake.calls
    assert finalize_acl() is True and fake.finalized
    assert finalize_acl() is False  # once
    with pytest.raises(AclError, match=r"one acl\.init per process"):
        open_backend(om)


def test_acl_initialised_by_another_owner_is_not_finalized(monkeypatch, tmp_path, model):
    from massface.runtime.backends.acl_backend import finalize_acl

    path, _ = model
    fake = install(monkeypatch, FakeAcl(path, gears=(1, 4), image=(*SIZE, 3), dim=8))
    assert fake.init() == 0  # another library in this process initialised ACL
    with open_backend(write_fake_om(tmp_path / "m.om")) as backend:
        backend.embed(images(1))
    assert fake.calls.count("init") == 2  # ours got 100002: not our ACL
    assert finalize_acl() is False
    assert "finalize" not in fake.calls and fake.initialised


def test_om_built_for_another_platform_is_refused_by_name(monkeypatch, tmp_path, model):
    """ATC's NAME_<os>_<arch>.om loads only on that OS/arch: massface says so before the
    runtime's generic load failure; the right host loads it."""
    from massface.runtime.backends import acl_backend

    path, _ = model
    monkeypatch.setattr(acl_backend, "host_platform", lambda: "linux_aarch64")
    install(monkeypatch, FakeAcl(path, gears=(1, 4), image=(*SIZE, 3), dim=8,
                                 host="linux_aarch64"))
    x86 = write_fake_om(tmp_path / "m_linux_x86_64.om", platform="linux_x86_64")
    with pytest.raises(InputError, match=r"for linux_x86_64 .* this host is linux_aarch64"):
        open_backend(x86)
    arm = write_fake_om(tmp_path / "m_linux_aarch64.om", platform="linux_aarch64")
    with open_backend(arm) as backend:
        assert backend.info.batch_sizes == (1, 4)
    # renamed to hide its platform, the double still refuses it, as the runtime would
    hidden = write_fake_om(tmp_path / "renamed.om", platform="linux_x86_64")
    with pytest.raises(InputError, match="host OS/architecture"):
        open_backend(hidden)
