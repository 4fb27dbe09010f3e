"""The ATC step against a stand-in `atc` executable (CANN is not installable here)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from massface.errors import InputError
from massface.export.atc import (
    DEFAULT_PRECISION_MODE,
    AtcError,
    AtcSpec,
    parse_gears,
    run_atc,
    validate_precision_mode,
    validate_soc,
)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "export"
    d.mkdir()
    (d / "model.pb").write_bytes(b"graph")
    (d / "model.onnx").write_bytes(b"onnx")
    return d


def test_command_for_frozen_graph_is_the_documented_one():
    spec = AtcSpec(model="model.pb", output="model", soc="Ascend310P3")
    assert spec.argv() == [
        "atc", "--model=model.pb", "--framework=3", "--output=model",
        "--soc_version=Ascend310P3", "--input_shape=input:-1,112,112,3",
        "--input_format=NHWC", "--dynamic_batch_size=1,8,32",
        "--precision_mode=allow_fp32_to_fp16", "--output_type=FP32",
        "--out_nodes=embeddings:0", "--log=error",
    ]
    assert DEFAULT_PRECISION_MODE == "allow_fp32_to_fp16"


def test_command_for_onnx_static_batch():
    spec = AtcSpec(model="m.onnx", output="m", soc="Ascend910B2", gears=(16,),
                   precision_mode="must_keep_origin_dtype")
    argv = spec.argv()
    assert "--framework=5" in argv
    assert "--input_shape=input:16,112,112,3" in argv  # one gear: static batch
    assert "--input_format=ND" in argv  # ATC's ONNX formats: NCHW, NCDHW, ND
    assert not any(a.startswith("--dynamic_batch_size") for a in argv)
    assert not any(a.startswith("--out_nodes") for a in argv)
    assert "--precision_mode=must_keep_origin_dtype" in argv


@pytest.mark.parametrize("text, expected", [("1,8,32", (1, 8, 32)), (" 4, 2 ", (4, 2)),
                                            ("2048,1", (2048, 1)), ("7", (7,))])
def test_gears_accepted(text, expected):
    assert parse_gears(text) == expected


@pytest.mark.parametrize("text, why", [
    ("0,8", "out of range"), ("1,2049", "out of range"), ("1,8,8", "repeated"),
    ("1,x", "integers"), (",".join(str(i) for i in range(1, 102)), "ATC accepts 2 to 100"),
])
def test_gears_rejected(text, why):
    with pytest.raises(InputError, match=why):
        parse_gears(text)


def test_soc_and_precision_validation():
    assert validate_soc("Ascend910B3") == "Ascend910B3"
    with pytest.raises(InputError, match="did you mean Ascend310P3"):
        validate_soc("ascend310p3")
    with pytest.raises(InputError, match="not an Ascend SoC"):
        validate_soc("Ascend999")
    assert validate_soc("Ascend999", trust=True) == "Ascend999"
    with pytest.raises(InputError, match="precision-mode"):
        validate_precision_mode("fp8")


def test_success_runs_the_exact_command_in_the_export_folder(model_dir, standin_atc):
    bin_dir = standin_atc("success")
    spec = AtcSpec(model="model.pb", output="model", soc="Ascend910")
    result = run_atc(spec, model_dir)
    assert result.status == "built"
    assert result.om_file == "model.om" and result.produced_as == "model.om"
    assert (model_dir / "model.om").read_bytes() == b"OM"
    assert (bin_dir / "argv.txt").read_text().splitlines() == spec.argv()[1:]
    assert Path((bin_dir / "cwd.txt").read_text().strip()) == model_dir
    assert "ATC run success" in (model_dir / "atc.log").read_text()
    # atc.sh holds the same command
    script = (model_dir / "atc.sh").read_text()
    assert spec.shell_command() in script


def test_platform_named_output_keeps_its_name(model_dir, standin_atc):
    """ATC's NAME_<os>_<arch>.om loads only on that OS/arch: the name is kept and the
    platform recorded, not hidden behind NAME.om."""
    standin_atc("renamed")
    result = run_atc(AtcSpec(model="model.onnx", output="model"), model_dir)
    assert result.status == "built"
    assert result.om_file == result.produced_as == "model_linux_x86_64.om"
    assert result.platform == "linux_x86_64" and "loads only on linux_x86_64" in result.message
    assert (model_dir / "model_linux_x86_64.om").is_file()
    assert not (model_dir / "model.om").exists()


def test_failure_exit_255_is_an_error_with_atc_output(model_dir, standin_atc):
    standin_atc("fail")
    with pytest.raises(AtcError) as info:
        run_atc(AtcSpec(model="model.pb", output="model"), model_dir)
    msg = str(info.value)
    assert "exit status 255" in msg and "ATC run failed" in msg and "E10001" in msg
    assert not (model_dir / "model.om").exists()  # the partial model is removed
    assert "exit status 255" in (model_dir / "atc.log").read_text()


def test_exit_zero_without_model_is_an_error(model_dir, standin_atc):
    standin_atc("silent")
    with pytest.raises(AtcError, match=r"exited 0 but wrote no model\*\.om"):
        run_atc(AtcSpec(model="model.pb", output="model"), model_dir)


def test_stale_om_from_an_earlier_run_does_not_count(model_dir, standin_atc):
    (model_dir / "model.om").write_bytes(b"old")
    standin_atc("silent")
    with pytest.raises(AtcError, match="wrote no"):
        run_atc(AtcSpec(model="model.pb", output="model"), model_dir)


def test_without_atc_the_script_is_written_and_runs_with_atc_later(model_dir, no_atc,
                                                                   standin_atc, tmp_path,
                                                                   monkeypatch):
    spec = AtcSpec(model="model.pb", output="model", soc="Ascend310")
    result = run_atc(spec, model_dir)
    assert result.status == "deferred"
    assert "atc is not on PATH" in result.message
    assert not (model_dir / "model.om").exists()
    script = model_dir / "atc.sh"
    assert script.stat().st_mode & 0o111
    # The script, run from elsewhere with an atc that writes NAME_<os>_<arch>.om, ends
    # with that model beside it, under its own name, and no stale model.om.
    bin_dir = standin_atc("renamed")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    (model_dir / "model.om").write_bytes(b"stale")  # from an earlier conversion
    proc = subprocess.run(["bash", str(script)], cwd=tmp_path, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (model_dir / "model_linux_x86_64.om").read_bytes() == b"OM"
    assert not (model_dir / "model.om").exists()
    assert "built" in proc.stdout and "loads only on the OS/architecture" in proc.stdout
    assert (bin_dir / "argv.txt").read_text().splitlines() == shlex.split(
        spec.shell_command())[1:]


def test_script_fails_when_atc_writes_nothing(model_dir, no_atc, standin_atc, monkeypatch):
    run_atc(AtcSpec(model="model.pb", output="model"), model_dir)
    bin_dir = standin_atc("silent")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    proc = subprocess.run(["bash", str(model_dir / "atc.sh")], capture_output=True,
                          text=True, check=False)
    assert proc.returncode != 0 and "wrote no model" in proc.stderr


def test_unknown_model_suffix_and_missing_model(model_dir, no_atc):
    with pytest.raises(InputError, match="frozen TensorFlow graph"):
        AtcSpec(model="model.tflite", output="model").argv()
    with pytest.raises(InputError, match="not found"):
        run_atc(AtcSpec(model="other.pb", output="model"), model_dir)


# --- the stand-in is as strict as ATC (issue 21) --------------------------------------


@pytest.mark.parametrize("bad, why", [
    (["--framework=5", "--input_format=NHWC"], "input_format"),
    (["--framework=3", "--input_format=ND", "--insert_op_conf=aipp.cfg"], "insert_op_conf"),
    (["--input_shape=input:-1,112,112,3", "--dynamic_batch_size=8"], "2 to 100"),
    (["--input_shape=input:8,112,112,3", "--dynamic_batch_size=1,8"], "must be -1"),
    (["--precision_mode=fp8"], "precision_mode"),
    (["--precision_mode=force_fp16", "--precision_mode_v2=fp16"], "cannot both"),
])
def test_standin_atc_refuses_what_atc_refuses(model_dir, standin_atc, bad, why):
    bin_dir = standin_atc("success")
    proc = subprocess.run([str(bin_dir / "atc"), "--model=model.onnx", "--output=model",
                           *bad], cwd=model_dir, capture_output=True, text=True, check=False)
    assert proc.returncode == 255 and why in proc.stdout and "ATC run failed" in proc.stdout
    assert not (model_dir / "model.om").exists()


@pytest.mark.parametrize("model", ["model.pb", "model.onnx"])
@pytest.mark.parametrize("aipp", [False, True])
@pytest.mark.parametrize("gears", [(1, 8, 32), (4,)])
def test_every_command_massface_builds_passes_the_strict_standin(model_dir, standin_atc,
                                                                 model, aipp, gears):
    standin_atc("success")
    (model_dir / "aipp.cfg").write_text("aipp_op {}\n")
    layout = "NCHW" if aipp and model.endswith(".onnx") else "NHWC"
    spec = AtcSpec(model=model, output="model", gears=gears, layout=layout,
                   insert_op_conf="aipp.cfg" if aipp else None)
    assert run_atc(spec, model_dir).status == "built"


def test_every_precision_mode_massface_offers_passes_the_strict_standin(model_dir,
                                                                        standin_atc):
    from massface.export.atc import PRECISION_MODES

    standin_atc("success")
    for mode in PRECISION_MODES:
        spec = AtcSpec(model="model.onnx", output="model", precision_mode=mode)
        assert run_atc(spec, model_dir).status == "built", mode
