"""massface.lock: one process per output folder; a dead holder never blocks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from massface.errors import InputError
from massface.lock import LOCK_FILE, folder_lock

HOLD = """
import sys, time
from massface.lock import folder_lock
with folder_lock(sys.argv[1], "holder-prog"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_second_process_is_refused_with_the_holders_pid(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=rf"in use by PID {proc.pid} \(holder-prog\)"), \
                folder_lock(tmp_path, "me"):
            pass
    finally:
        proc.kill()
        proc.wait()
    # the holder died without cleaning up: its lock went with it
    with folder_lock(tmp_path, "me") as path:
        assert path.read_text().split()[:2] == [str(os.getpid()), "me"]
    assert not (tmp_path / LOCK_FILE).exists()


def test_stale_lock_file_does_not_block(tmp_path):
    (tmp_path / LOCK_FILE).write_text("999999 crashed-prog\n")
    with folder_lock(tmp_path, "me"):
        pass


def test_lock_is_released_after_an_error(tmp_path):
    with pytest.raises(RuntimeError), folder_lock(tmp_path / "new", "me"):
        raise RuntimeError("boom")
    with folder_lock(tmp_path / "new", "me"):
        pass


def test_a_folder_the_lock_made_and_nothing_filled_is_removed(tmp_path):
    with pytest.raises(RuntimeError), folder_lock(tmp_path / "new", "me"):
        raise RuntimeError("failed before writing anything")
    assert not (tmp_path / "new").exists()
    with folder_lock(tmp_path / "kept", "me"):
        (tmp_path / "kept" / "out.npy").write_bytes(b"x")
    assert (tmp_path / "kept" / "out.npy").is_file()
    (tmp_path / "existing").mkdir()  # the user's own empty folder stays
    with folder_lock(tmp_path / "existing", "me"):
        pass
    assert (tmp_path / "existing").is_dir()
