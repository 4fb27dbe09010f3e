"""The run monitors on their own: CSV logs cut back on resume, warnings once, due checks."""

from __future__ import annotations

import csv

from massface.train import callbacks
from massface.train.callbacks import (
    MINING_FIELDS,
    CsvLog,
    NoTripletWarning,
    RunLog,
    Verification,
)
from massface.train.config import load_config


def test_csv_log_truncates_to_the_resumed_step(tmp_path):
    log = CsvLog(tmp_path / "mining.csv", MINING_FIELDS)
    for step in range(1, 6):
        log.append({"step": step, "triplets": 3.0, "extra": "ignored"})
    log.truncate(3)
    with open(tmp_path / "mining.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert list(rows[0]) == list(MINING_FIELDS) and rows[0]["d_ap"] == ""
    off = CsvLog(tmp_path / "other.csv", MINING_FIELDS, enabled=False)  # not the chief
    off.append({"step": 1})
    assert not (tmp_path / "other.csv").exists()


def test_no_triplet_warning_once(monkeypatch):
    monkeypatch.setattr(callbacks, "ZERO_TRIPLET_STEPS", 2)
    log = RunLog()
    warn = NoTripletWarning(log, load_config(None, ["loss.kind=triplet"]))
    for step, n in enumerate([0, 1, 0, 0, 0, 0, 0], start=1):
        warn.on_step(step, {"triplets": float(n)})
    warn.on_step(8, {"loss": 1.0})  # a step without mining statistics changes nothing
    assert len(log.warnings) == 1 and log.warnings[0].startswith("step 4: no triplet")
    assert "loss.mining=batch_min_max" in log.warnings[0] and log.warned("no triplet")


def test_verification_due_only_with_pairs(tmp_path):
    kw = dict(every=10, flip=True, run_dir=tmp_path, chief=True, log=RunLog())
    none = Verification(None, model=None, **kw)
    assert not none.enabled and not none.due(10, 100) and none.evaluate() == {}
    some = Verification(object(), model=None, **kw)
    assert [s for s in range(1, 101) if some.due(s, 100)] == list(range(10, 100, 10))
