"""Seeded random mutations of real inputs through every reader: each ends in a result or
the project's error, quickly. No traceback type other than :class:`MassfaceError` and no
hang (each call runs under a SIGALRM deadline)."""

from __future__ import annotations

import contextlib
import pickle
import signal
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from massface.errors import MassfaceError

DEADLINE_S = 10
MUTATIONS = 150  # per input kind: about 1,500 mutations in all, a few seconds


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"reader ran longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One of: flip bytes, truncate, insert junk, duplicate a slice, zero a run."""
    b = bytearray(data)
    kind = rng.integers(5)
    if kind == 0 and b:
        for i in rng.integers(0, len(b), size=rng.integers(1, 8)):
            b[i] = int(rng.integers(256))
    elif kind == 1:
        del b[int(rng.integers(0, len(b) + 1)):]
    elif kind == 2:
        at = int(rng.integers(0, len(b) + 1))
        b[at:at] = rng.integers(0, 256, size=int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    elif kind == 3 and b:
        i, j = sorted(int(x) for x in rng.integers(0, len(b), size=2))
        b[j:j] = b[i:j]
    elif b:
        i = int(rng.integers(0, len(b)))
        b[i:i + int(rng.integers(1, 32))] = bytes(min(32, len(b) - i))
    return bytes(b)


def fuzz(seed: int, original: bytes, write: Callable[[bytes], None],
         read: Callable[[], object], count: int = MUTATIONS) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(count):
        write(mutate(original, rng))
        with deadline(DEADLINE_S):
            try:
                read()
                outcomes["ok"] += 1
            except MassfaceError:
                outcomes["refused"] += 1
    return outcomes


def test_fuzz_image_decoder(lfw_dir):
    from massface.runtime.preprocess import decode_image

    jpeg = (lfw_dir / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg").read_bytes()
    holder: dict[str, bytes] = {}

    def read() -> None:
        arr = decode_image(holder["data"], "fuzz.jpg", (112, 112))
        assert arr.shape == (112, 112, 3) and arr.dtype == np.uint8

    outcomes = fuzz(1, jpeg, lambda d: holder.__setitem__("data", d), read)
    assert outcomes["refused"] > 0  # truncations at least are refused


def test_fuzz_npy_embeddings(tmp_path):
    from massface.evaluate.inputs import LoadOptions, load_input

    rng = np.random.default_rng(0)
    path, labels = tmp_path / "emb.npy", tmp_path / "labels.txt"
    np.save(path, rng.standard_normal((40, 8)).astype(np.float32))
    labels.write_text(" ".join(["1", "0"] * 10))
    opts = LoadOptions(labels=labels, n_folds=2, progress=False)
    fuzz(2, path.read_bytes(), path.write_bytes, lambda: load_input(path, opts))


def test_fuzz_npz_archive(tmp_path):
    from massface.evaluate.inputs import LoadOptions, load_input

    rng = np.random.default_rng(0)
    path = tmp_path / "run.npz"
    np.savez(path, embeddings=rng.standard_normal((40, 8)), issame=np.array([1, 0] * 10))
    opts = LoadOptions(n_folds=2, progress=False)
    fuzz(3, path.read_bytes(), path.write_bytes, lambda: load_input(path, opts))


def test_fuzz_msame_output_folder(tmp_path):
    from massface.evaluate.inputs import LoadOptions, load_input
    from massface.formats import msame

    rng = np.random.default_rng(0)
    folder = tmp_path / "out" / "20240101_000000"
    folder.mkdir(parents=True)
    for i in range(40):
        rng.standard_normal(8).astype(np.float32).tofile(folder / msame.msame_output_name(i))
    labels = tmp_path / "out" / msame.LABELS_FILE
    labels.write_text(" ".join(["1", "0"] * 10) + "\n")
    opts = LoadOptions(n_folds=2, progress=False)
    victims = [folder / msame.msame_output_name(i) for i in (0, 17, 39)] + [labels]
    originals = {p: p.read_bytes() for p in victims}
    for k, victim in enumerate(victims):
        fuzz(10 + k, originals[victim], victim.write_bytes,
             lambda: load_input(tmp_path / "out", opts))
        victim.write_bytes(originals[victim])


def test_fuzz_pairs_and_label_files(tmp_path, lfw_pairs):
    from massface.evaluate.labels import read_labels

    text = "\n".join(lfw_pairs.read_text().splitlines()[:40]).encode() + b"\n"
    path = tmp_path / "pairs.txt"
    fuzz(4, text, path.write_bytes, lambda: read_labels(path))
    path_pairs = b"# massface-pairs v1\na/1.jpg\tb/2.jpg\t1\nc/3.jpg\td/4.jpg\t0\n"
    fuzz(5, path_pairs, path.write_bytes, lambda: read_labels(path))


def test_fuzz_insightface_bin(tmp_path, lfw_dir):
    from massface.formats.insightface_bin import read_insightface_bin

    jpegs = [p.read_bytes() for p in sorted((lfw_dir / "Aaron_Eckhart").iterdir())][:1] * 4
    path = tmp_path / "set.bin"
    for protocol in (2, 4):
        blob = pickle.dumps((jpegs, [True, False]), protocol=protocol)
        fuzz(6 + protocol, blob, path.write_bytes, lambda: read_insightface_bin(path))


@pytest.mark.parametrize("seed", [0])
def test_mutate_is_seeded(seed: int) -> None:
    data = bytes(range(200))
    a = [mutate(data, np.random.default_rng(seed)) for _ in range(3)]
    b = [mutate(data, np.random.default_rng(seed)) for _ in range(3)]
    assert a == b and any(x != data for x in a)


# --- issue 20: landmarks files, templates, BLUFR configs, --input-bins folders ----------

ODD_NUMBERS = (0.0, -1.0, 1e308, -1e308, 5000.0, 0.5, 1e-300, 111.5, 112.0, 2**53)


def mutate_numbers(obj: object, rng: np.random.Generator) -> object:
    """``obj`` (parsed JSON) with some numbers replaced by edge values, some lists cut or
    every point collapsed to one: the geometry mistakes byte flips rarely make."""
    if isinstance(obj, dict):
        return {k: mutate_numbers(v, rng) for k, v in obj.items()}
    if isinstance(obj, list):
        if obj and rng.random() < 0.05:
            return [obj[0]] * len(obj)  # coincident points
        if obj and rng.random() < 0.03:
            return obj[:-1]
        return [mutate_numbers(v, rng) for v in obj]
    if isinstance(obj, int | float) and not isinstance(obj, bool) and rng.random() < 0.1:
        return float(rng.choice(ODD_NUMBERS)) * float(rng.choice([1, -1]))
    return obj


def fuzz_json(seed: int, original: object, path, read: Callable[[], object]) -> None:
    """:func:`fuzz` on the bytes of ``original``, then as many structural mutations."""
    import json

    fuzz(seed, json.dumps(original).encode(), path.write_bytes, read)
    rng = np.random.default_rng(seed + 1000)
    for _ in range(MUTATIONS):
        path.write_text(json.dumps(mutate_numbers(original, rng)))
        with deadline(DEADLINE_S), contextlib.suppress(MassfaceError):
            read()


def _photo(folder) -> str:
    from PIL import Image

    (folder / "a").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)).save(
        folder / "a" / "p.png")
    return "a/p.png"


def test_fuzz_landmarks_file_through_massface_align(tmp_path):
    from massface.align import TEMPLATES, AlignSettings
    from massface.align.run import AlignJob, run_align
    from massface.align.templates import ARCFACE_POINTS

    key = _photo(tmp_path / "src")
    path = tmp_path / "lm.json"
    original = {key: {"box": [10.0, 10.0, 100.0, 100.0], "prob": 0.99,
                      "lm": [list(p) for p in ARCFACE_POINTS], "nfaces": 1}}

    def read() -> None:
        job = AlignJob(tmp_path / "src", tmp_path / "out", AlignSettings(TEMPLATES.get("arcface")),
                       path, "png", workers=1, overwrite=True, progress=False)
        s = run_align(job)
        if s.aligned:  # what is called aligned is the face, not warped-in black border
            from PIL import Image

            crop = np.asarray(Image.open(tmp_path / "out" / key))
            assert crop.reshape(-1, 3).std(axis=0).max() > 0

    fuzz_json(20, original, path, read)


def test_fuzz_template_file(tmp_path):
    from massface.align import AlignSettings
    from massface.align.faces import FaceAligner
    from massface.align.templates import ARCFACE_POINTS, resolve_template

    path = tmp_path / "t.json"
    image = np.random.default_rng(1).integers(0, 255, (112, 112, 3), dtype=np.uint8)

    def read() -> None:
        template = resolve_template(str(path))
        crop = FaceAligner(AlignSettings(template)).crop(image, np.array(ARCFACE_POINTS))
        assert crop.shape == (*template.size, 3)

    fuzz_json(22, {"size": [112, 112], "points": [list(p) for p in ARCFACE_POINTS]}, path,
              read)


@pytest.mark.slow  # a child process per case: about 1 s each on 2 quiet cores
def test_fuzz_blufr_config(tmp_path):
    from massface.evaluate.protocols.blufr import evaluate_blufr
    from massface.evaluate.protocols.blufr_config import read_blufr_config
    from massface.evaluate.protocols.labelled import FeatureOptions, load_features
    from tests.evaluate.test_blufr import make_world

    world = make_world(tmp_path, 30, n_ids=12, n_trials=2)
    fo = FeatureOptions()
    features = load_features(world["folder"], fo, "blufr")
    path = tmp_path / "fuzz.mat"

    def read() -> None:
        res = evaluate_blufr(features, read_blufr_config(path), fo, allow_missing=True)
        assert np.isfinite(res.verification.rate).all()

    # each read probes scipy's MAT reader in a child process first (it segfaults on some
    # damaged files, the 55th mutation of this seed among them): fewer, slower cases
    outcomes = fuzz(24, world["config"].read_bytes(), path.write_bytes, read, count=40)
    assert outcomes["refused"] > 0


def test_fuzz_input_bins_folder(tmp_path):
    """Mutated inputs.json / labels, and bins renamed or removed: refused, or read in the
    numbering the pairs need (never shifted)."""
    import json

    from massface.runtime.loader import read_tensor
    from massface.runtime.sources import input_bins_dataset

    folder = tmp_path / "bins"
    (folder / "inputs").mkdir(parents=True)
    for i in range(6):
        np.full((1, 4, 4, 3), i, np.float32).tofile(folder / "inputs" / f"{i}.bin")
    (folder / "actual_issame.txt").write_text("1 0 1\n")
    meta = {"format": "massface-input-bins", "version": 1, "files": 6, "shape": [1, 4, 4, 3],
            "dtype": "float32", "layout": "NHWC", "order": [f"x{i}.png" for i in range(6)]}

    def read() -> None:
        ds = input_bins_dataset(folder)
        for i, item in enumerate(ds.items):  # bin i holds the value i: nothing shifted
            assert (read_tensor(item, (4, 4, 3)) == i).all()
        assert ds.pairs is None or len(ds.pairs) * 2 == len(ds.items)

    fuzz_json(26, meta, folder / "inputs.json", read)
    (folder / "inputs.json").write_text(json.dumps(meta))
    fuzz(27, b"1 0 1\n", (folder / "actual_issame.txt").write_bytes, read)
    (folder / "actual_issame.txt").write_text("1 0 1\n")
    moves = np.random.default_rng(28)
    for _ in range(MUTATIONS // 3):
        victim = folder / "inputs" / f"{int(moves.integers(6))}.bin"
        data = victim.read_bytes()
        renamed = victim.with_name(f"{int(moves.integers(6, 200))}.bin")
        victim.rename(renamed)
        with deadline(DEADLINE_S), pytest.raises(MassfaceError):
            read()
        renamed.rename(victim)
        assert victim.read_bytes() == data
