"""Reading msame / ais_bench output folders and calAcc's label file."""

from __future__ import annotations

import numpy as np
import pytest

from massface.errors import InputError
from massface.formats import msame


def _write(folder, n, namer=msame.msame_output_name, k=0, dim=4, dtype=np.float32):
    folder.mkdir(parents=True, exist_ok=True)
    rows = np.arange(n * dim, dtype=np.float32).reshape(n, dim) + 1
    for i, row in enumerate(rows):
        (folder / namer(i, k)).write_bytes(row.astype(dtype).tobytes())
    return rows


def test_naming_conventions():
    assert msame.input_name(7) == "7.bin"
    assert msame.msame_output_name(7) == "7_output_0.bin"
    assert msame.ais_bench_output_name(7, 1, "npy") == "7_1.npy"


def test_single_timestamp_subfolder_is_found_not_parsed(tmp_path):
    _write(tmp_path / "whatever-format 2025.1.1", 3)
    (tmp_path / ".hidden").mkdir()
    assert msame.find_output_folder(tmp_path) == tmp_path / "whatever-format 2025.1.1"
    _write(tmp_path / "direct", 3)
    assert msame.find_output_folder(tmp_path / "direct") == tmp_path / "direct"


def test_rows_follow_integer_index_not_listdir(tmp_path):
    rows = _write(tmp_path / "ts", 25)
    out = msame.scan_output_folder(tmp_path)
    assert out.tool == "msame" and out.ext == "bin"
    got = msame.read_outputs(out, list(range(25)), dtype="float32")
    np.testing.assert_array_equal(got, rows)


def test_output_index_selects_model_output(tmp_path):
    _write(tmp_path, 4, k=0)
    rows1 = _write(tmp_path, 4, k=1, dim=2)
    out = msame.scan_output_folder(tmp_path, output_index=1)
    np.testing.assert_array_equal(msame.read_outputs(out, [0, 1, 2, 3], dim=2, dtype="float32"),
                                  rows1)
    with pytest.raises(InputError, match=r"no files for model output 5 \(outputs present: 0, 1\)"):
        msame.scan_output_folder(tmp_path, output_index=5)


def test_missing_and_extra(tmp_path):
    _write(tmp_path, 10)
    (tmp_path / "3_output_0.bin").unlink()
    out = msame.scan_output_folder(tmp_path)
    assert out.missing(8) == [3]
    assert out.extra(8) == [8, 9]
    assert out.expected_name(3) == "3_output_0.bin"


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_dtype_inferred_from_size_and_dim(tmp_path, dtype):
    rows = _write(tmp_path, 3, dim=6, dtype=dtype)
    out = msame.scan_output_folder(tmp_path)
    got = msame.read_outputs(out, [0, 1, 2], dim=6)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, rows.astype(dtype))
    with pytest.raises(InputError, match="could be float32 x"):
        msame.read_outputs(out, [0, 1, 2])
    with pytest.raises(InputError, match="neither float32 nor float16 x 5"):
        msame.read_outputs(out, [0, 1, 2], dim=5)


def test_odd_byte_count_means_float16_and_bad_sizes_are_refused(tmp_path):
    (tmp_path / "0_output_0.bin").write_bytes(np.ones(3, np.float16).tobytes())
    out = msame.scan_output_folder(tmp_path)
    assert msame.read_outputs(out, [0]).dtype == np.float16
    (tmp_path / "0_output_0.bin").write_bytes(b"\x00" * 5)
    with pytest.raises(InputError, match="not a whole number"):
        msame.read_outputs(msame.scan_output_folder(tmp_path), [0])


def test_labels_file_round_trip(tmp_path):
    path = tmp_path / msame.LABELS_FILE
    msame.write_labels_file(path, [True, False, 1, 0])
    assert path.read_text() == "1 0 1 0\n"
    np.testing.assert_array_equal(msame.read_labels_file(path), [True, False, True, False])
    path.write_text("1 0 x 1\n")
    with pytest.raises(InputError, match=r"1 label\(s\) are not 0/1, true/false or "
                                         r"same/different: #2='x'"):
        msame.read_labels_file(path)
    path.write_text("\n")
    with pytest.raises(InputError, match="no labels"):
        msame.read_labels_file(path)
