"""The report's packages load only when a page is written: massface-eval without --html
imports neither jinja2 nor matplotlib, and massface-train report imports no TensorFlow.
Checked in a fresh interpreter, after real runs."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers.report_world import pairs_world, run_folder

SCRIPT = """
import sys
from massface.evaluate.cli import main as evaluate
from massface.train.cli import main as train

def run(cmd, argv):
    sys.argv = ["massface", *argv]
    try:
        cmd()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise

run(evaluate, {eval_args!r})
print("EVAL=" + ",".join(m for m in ("jinja2", "matplotlib") if m in sys.modules))
run(train, ["report", {run!r}])
print("TRAIN=" + ",".join(m for m in ("tensorflow", "keras") if m in sys.modules))
"""


def test_report_packages_load_only_for_a_page(tmp_path):
    folder = pairs_world(tmp_path, with_images=False)["folder"]
    run = run_folder(tmp_path / "run")
    script = SCRIPT.format(eval_args=[str(folder), "--json", str(tmp_path / "e.json")],
                           run=str(run))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "EVAL=\n" in proc.stdout and "TRAIN=\n" in proc.stdout, proc.stdout
    assert (tmp_path / "e.json").is_file() and (run / "report.html").is_file()
