"""Templates (registry and files) and the landmarks.json reader."""

from __future__ import annotations

import json

import numpy as np
import pytest

from massface.align.landmarks import entry_points, read_landmarks
from massface.align.templates import ARCFACE_POINTS, TEMPLATES, resolve_template
from massface.errors import InputError


def test_sphereface_is_arcface_eight_pixels_left_in_a_112x96_crop():
    arc, sphere = TEMPLATES.get("arcface"), TEMPLATES.get("sphereface")
    assert arc.size == (112, 112) and sphere.size == (112, 96)
    np.testing.assert_allclose(sphere.array, arc.array - [8.0, 0.0])
    assert arc.points == ARCFACE_POINTS


def test_template_file_and_errors(tmp_path):
    good = tmp_path / "t.json"
    good.write_text(json.dumps({"size": [128, 128],
                                "points": [[40, 50], [88, 50], [64, 72], [44, 96], [84, 96]]}))
    t = resolve_template(str(good))
    assert t.size == (128, 128) and t.array.shape == (5, 2)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"size": [128, 128], "points": [[1, 2]] * 4}))
    with pytest.raises(InputError, match=r"bad\.json.*five|bad\.json.*\(4, 2\)"):
        resolve_template(str(bad))
    with pytest.raises(InputError, match=r"arcface.*sphereface"):
        resolve_template("nosuch")


def test_read_landmarks_checks_every_entry(tmp_path, shared_landmarks_path):
    data = read_landmarks(shared_landmarks_path)
    assert len(data) == 13233
    entry = data["AJ_Cook/AJ_Cook_0001.jpg"]
    assert entry_points(entry, all_faces=False)[0].shape == (5, 2)
    bad = tmp_path / "l.json"
    bad.write_text(json.dumps({"a.jpg": {"lm": [[1, 2]] * 5}, "b.jpg": {"lm": [[1, "x"]] * 5}}))
    with pytest.raises(InputError, match=r"l\.json: entry 'b\.jpg'"):
        read_landmarks(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(InputError, match="JSON object keyed by relative image path"):
        read_landmarks(bad)
