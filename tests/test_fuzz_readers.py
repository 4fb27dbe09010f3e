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
         read: Callable[[], object]) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(MUTATIONS):
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
