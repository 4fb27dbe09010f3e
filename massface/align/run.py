"""``massface-align``: a folder of photos -> a mirrored folder of aligned crops.

For each image under SRC (natural order, hidden files skipped) the crop goes to the same
relative path under DST (``.jpg`` JPEG quality 95, or ``.png``; ``<stem>_<k>`` per face
with ``--all-faces``), its entry to ``DST/landmarks.json`` and any image with nothing to
write to ``DST/skipped.txt`` (``path<TAB>reason: detail``, reasons: no face, too small,
unreadable, no landmarks, bad landmarks; tabs, newlines and backslashes in a path or
message written as ``\\t``, ``\\n``, ``\\\\``). ``DST/align.json`` (settings, counts,
speed, files written) is written last and marks the folder complete.

Resumable: each finished image (crop files written atomically first) is appended to
``DST/.align-partial/journal.jsonl``; a rerun with the same settings skips what the
journal holds, so an interrupted run continues where it stopped (a photo whose size or
modification time changed since is aligned again). Other settings are
refused unless ``--overwrite``. A lock file (:mod:`massface.lock`) keeps a second process
out of DST while one runs.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from massface import io
from massface.align.faces import SKIP_REASONS, AlignSettings, FaceAligner, Found, NoFaceError
from massface.align.images import load_rgb
from massface.align.landmarks import LANDMARKS_FILE, read_landmarks, write_landmarks
from massface.align.weights import SHA256
from massface.errors import InputError
from massface.formats.pairs import IMAGE_EXTENSIONS
from massface.io import check_output_dir, read_json, sha256_file, tsv_field
from massface.outdir import COMPLETE, RESUME, ResumableFolder, finished_fingerprint
from massface.progress import ProgressBar
from massface.registry import Registry

DONE_FILE = "align.json"
SKIPPED_FILE = "skipped.txt"
PARTIAL = ".align-partial"
JOURNAL = "journal.jsonl"

FORMATS: Registry[str] = Registry("image format")
FORMATS.register("jpg", "JPEG", description="JPEG, --quality (default 95)")
FORMATS.register("png", "PNG", description="PNG, lossless")


@dataclass
class AlignJob:
    """One ``massface-align`` run."""

    src: Path
    out: Path
    settings: AlignSettings
    landmarks: Path | None = None  # align from these points instead of detecting
    image_format: str = "jpg"
    quality: int = 95
    workers: int = 2
    overwrite: bool = False
    batch: int = 8  # images detected together (each MTCNN stage: one call per group)
    progress: bool = True
    engine: str = "local"  # an EXECUTION_ENGINES name: who detects and aligns
    ray_address: str | None = None  # --engine ray: the cluster (None: RAY_ADDRESS or local)


@dataclass
class AlignSummary:
    images: int = 0
    aligned: int = 0  # images with at least one crop written
    faces_written: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> images
    resumed: int = 0  # images done by an earlier, interrupted run
    redone: int = 0  # ... of which redone because the photo changed since
    ignored: dict[str, int] = field(default_factory=dict)  # files passed over, by reason
    wall_s: float = 0.0
    images_per_s: float = 0.0  # images processed by this run / its wall time
    already_complete: bool = False
    engine: str = "local"  # who detected and aligned (an EXECUTION_ENGINES name)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def list_images(src: Path, out: Path) -> tuple[list[str], dict[str, int]]:
    """Relative paths of the images under ``src`` (not under ``out``), natural order, and
    what was passed over (reason -> count: not an image, dangling link, not a file)."""
    from massface.formats.pairs import natural_key

    if not src.is_dir():
        raise InputError(f"{src}: source folder not found")
    out_abs = out.resolve()
    if src.resolve().is_relative_to(out_abs):
        raise InputError(f"--out {out}: is the source folder {src} (or contains it); the "
                         "crops would mix with the photos. Choose another --out")
    keys: list[str] = []
    ignored: dict[str, int] = {}
    for p in src.rglob("*"):
        rel = p.relative_to(src)
        if any(part.startswith(".") for part in rel.parts) or p.is_dir():
            continue
        if p.resolve().is_relative_to(out_abs):
            continue  # earlier crops (--out inside SRC)
        reason = ("dangling link" if p.is_symlink() and not p.exists()
                  else "not an image" if p.suffix.lower() not in IMAGE_EXTENSIONS
                  else "not a regular file" if not p.is_file() else "")
        if reason:
            ignored[reason] = ignored.get(reason, 0) + 1
        else:
            keys.append(rel.as_posix())
    if not keys:
        what = ", ".join(f"{n} {r}" for r, n in ignored.items()) or "nothing"
        raise InputError(f"{src}: no images ({', '.join(IMAGE_EXTENSIONS)}) found "
                         f"(ignored: {what})")
    return sorted(keys, key=natural_key), ignored


def output_names(key: str, image_format: str, count: int, all_faces: bool) -> list[str]:
    """Where the crops of ``key`` go: the same relative path (suffix of the format)."""
    path = Path(key)
    suffix = path.suffix if image_format == "jpg" and path.suffix.lower() in (
        ".jpg", ".jpeg") else f".{image_format}"
    if not all_faces:
        return [path.with_suffix(suffix).as_posix()]
    return [path.with_name(f"{path.stem}_{k}{suffix}").as_posix() for k in range(count)]


def _check_collisions(keys: list[str], image_format: str, src: Path) -> None:
    seen: dict[str, str] = {}
    for key in keys:
        name = output_names(key, image_format, 1, False)[0].lower()
        if name in seen:
            raise InputError(f"{src}: {seen[name]!r} and {key!r} would both be written as "
                             f"{name!r}; rename one, or use --format png")
        seen[name] = key


def _fingerprint(job: AlignJob, keys: list[str]) -> dict[str, Any]:
    return {"settings": job.settings.to_dict(), "format": job.image_format,
            "quality": job.quality if job.image_format == "jpg" else None,
            "landmarks": (None if job.landmarks is None else
                          {"path": str(job.landmarks), "sha256": sha256_file(job.landmarks)}),
            "weights_sha256": None if job.landmarks is not None else SHA256,
            "images_sha256": io.keys_sha256(keys), "images": len(keys)}


def _encode(crop: Any, image_format: str, quality: int) -> bytes:
    import io as _io

    from PIL import Image

    buf = _io.BytesIO()
    kwargs = {"quality": quality} if image_format == "jpg" else {}
    Image.fromarray(crop).save(buf, FORMATS.get(image_format), **kwargs)
    return buf.getvalue()


def _align_group(aligner: FaceAligner, job: AlignJob, keys: list[str],
                 write: Callable[[Path, bytes], None] = io.write_bytes) -> list[dict[str, Any]]:
    """Everything for a group of images, detection batched over them, crops through
    ``write``; their journal lines."""
    names = [str(job.src / key) for key in keys]
    # before reading: a change made during the read shows on resume
    stamps = [_source_stamp(job.src / key) for key in keys]
    images: dict[int, Any] = {}
    recs: dict[int, dict[str, Any]] = {}
    for i, (key, name) in enumerate(zip(keys, names, strict=True)):
        try:
            images[i] = load_rgb(job.src / key, name)
        except InputError as exc:  # undecodable or unsupported image
            recs[i] = _unreadable(key, name, exc)
    todo = sorted(images)
    found = aligner.find_many([images[i] for i in todo], [keys[i] for i in todo],
                              [names[i] for i in todo])
    for i, f in zip(todo, found, strict=True):
        recs[i] = _write_crops(aligner, job, keys[i], names[i], images[i], f, write)
    return [{**recs[i], "stamp": stamps[i]} for i in range(len(keys))]


def _write_crops(aligner: FaceAligner, job: AlignJob, key: str, name: str, image: Any,
                 found: Found | NoFaceError, write: Callable[[Path, bytes], None]
                 ) -> dict[str, Any]:
    """Warp and write one image's faces; its journal line."""
    if isinstance(found, NoFaceError):
        return {"key": key, "ok": False, "reason": found.reason,
                "message": str(found).removeprefix(f"{name}: ")}
    names = output_names(key, job.image_format, len(found.points), aligner.settings.all_faces)
    for rel, points in zip(names, found.points, strict=True):
        crop = aligner.crop(image, points)
        write(job.out / rel, _encode(crop, job.image_format, job.quality))
    return {"key": key, "ok": True, "entry": found.entry, "outputs": names}


def _unreadable(key: str, name: str, exc: InputError) -> dict[str, Any]:
    text = str(exc).removeprefix(f"{name}: ")
    return {"key": key, "ok": False, "reason": "unreadable",
            "message": text if text.startswith("unreadable") else f"unreadable: {text}"}


def _source_stamp(path: Path) -> list[int] | None:
    """Size and mtime of a photo: a journal record is reused only while they hold."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _read_journal(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    return {rec["key"]: rec for rec in io.read_jsonl(path, "massface-align journal")}


def _folder(out: Path) -> ResumableFolder:
    """DST of massface-align: crops are written atomically all over the mirrored tree, so a
    killed run may have left temporaries anywhere in it."""
    return ResumableFolder(out, "massface-align", PARTIAL, recursive_temps=True)


def _start(job: AlignJob, fingerprint: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """Prepare DST; the records already done (None: the folder is complete)."""
    finished = finished_fingerprint(job.out / DONE_FILE, "finished massface-align run")
    state = _folder(job.out).prepare(fingerprint, finished, overwrite=job.overwrite,
                                     remove_outputs=lambda: _remove_previous(job.out))
    if state == COMPLETE:
        return None
    return _read_journal(job.out / PARTIAL / JOURNAL) if state == RESUME else {}


def _remove_previous(out: Path) -> None:
    """--overwrite: delete what an earlier run wrote (as its records say), nothing else."""
    written: list[str] = []
    done_file = out / DONE_FILE
    if done_file.is_file():
        old = read_json(done_file, "finished massface-align run")
        written += old.get("written", []) if isinstance(old, dict) else []
    for rec in _read_journal(out / PARTIAL / JOURNAL).values():
        written += rec.get("outputs", [])
    for rel in written:
        (out / rel).unlink(missing_ok=True)
    for name in (DONE_FILE, LANDMARKS_FILE, SKIPPED_FILE):
        (out / name).unlink(missing_ok=True)


def _pipeline(aligner: FaceAligner, job: AlignJob, keys: list[str]
              ) -> Iterator[dict[str, Any]]:
    """Journal lines of ``keys`` in order: groups of ``job.batch`` images (decoded, detected
    together, warped and written), ``job.workers`` groups at a time."""
    step = max(1, job.batch)
    groups = iter([keys[i:i + step] for i in range(0, len(keys), step)])
    with ThreadPoolExecutor(max_workers=max(1, job.workers),
                            thread_name_prefix="massface-align") as pool:
        pending: deque[Future[list[dict[str, Any]]]] = deque()
        try:
            for group in groups:
                pending.append(pool.submit(_align_group, aligner, job, group))
                if len(pending) >= 2 * max(1, job.workers):
                    break
            while pending:
                recs = pending.popleft().result()
                nxt = next(groups, None)
                if nxt is not None:
                    pending.append(pool.submit(_align_group, aligner, job, nxt))
                yield from recs
        finally:
            for f in pending:
                f.cancel()


def _pipeline_on_ray(aligner: FaceAligner, job: AlignJob, keys: list[str]
                     ) -> Iterator[dict[str, Any]]:
    """The same journal lines from a Ray actor pool (:mod:`massface.align.ray_align`)."""
    from massface.align.ray_align import align_on_ray

    return align_on_ray(aligner, job, keys, _align_group)


# Who detects and aligns: both yield the journal lines in order, crops written.
Aligning = Callable[[FaceAligner, AlignJob, list[str]], Iterator[dict[str, Any]]]
EXECUTION_ENGINES: Registry[Aligning] = Registry("execution engine")
EXECUTION_ENGINES.register("local", _pipeline, description="this process: --workers threads")
EXECUTION_ENGINES.register("ray", _pipeline_on_ray,
                 description="a Ray actor pool, --workers replicas (extra 'ray')")


def run_align(job: AlignJob) -> AlignSummary:
    """Align every image of ``job.src`` into ``job.out`` (see the module docstring)."""
    FORMATS.get(job.image_format, "--format")
    EXECUTION_ENGINES.get(job.engine, "--engine")
    if job.engine == "ray":
        from massface.runtime.ray_pool import require_ray

        require_ray()
    if not 1 <= job.quality <= 100:
        raise InputError(f"--quality {job.quality}: must lie in 1..100")
    check_output_dir(job.out, "--out")
    keys, ignored = list_images(job.src, job.out)
    _check_collisions(keys, job.image_format, job.src)
    given = read_landmarks(job.landmarks) if job.landmarks is not None else None
    fingerprint = _fingerprint(job, keys)
    with _folder(job.out).lock():
        done = _start(job, fingerprint)
        if done is None:
            old = read_json(job.out / DONE_FILE, "finished massface-align run")
            return AlignSummary(**{**old["summary"], "already_complete": True})
        aligner = FaceAligner(job.settings, given, job.landmarks)
        changed = [k for k, rec in done.items()
                   if rec.get("stamp") != _source_stamp(job.src / k)]
        for k in changed:  # edited (or replaced) since the interrupted run: align again
            del done[k]
        summary = AlignSummary(images=len(keys), resumed=len(done), redone=len(changed),
                               ignored=ignored, engine=job.engine)
        todo = [k for k in keys if k not in done]
        t0 = time.perf_counter()
        with io.Journal(job.out / PARTIAL / JOURNAL) as journal, \
                ProgressBar("aligning", len(keys), completed=len(done),
                            enabled=job.progress) as bar:
            for rec in EXECUTION_ENGINES.get(job.engine)(aligner, job, todo):
                journal.write(rec)
                done[rec["key"]] = rec
                bar.update(len(done))
        wall = time.perf_counter() - t0
        summary.wall_s = round(wall, 3)
        summary.images_per_s = round(len(todo) / wall, 2) if todo and wall > 0 else 0.0
        _finish(job, keys, done, fingerprint, summary)
        _folder(job.out).finish()
        return summary


def _finish(job: AlignJob, keys: list[str], done: dict[str, dict[str, Any]],
            fingerprint: dict[str, Any], summary: AlignSummary) -> None:
    records = [done[k] for k in keys]
    ok = [r for r in records if r["ok"]]
    bad = [r for r in records if not r["ok"]]
    summary.aligned = len(ok)
    summary.faces_written = sum(len(r["outputs"]) for r in ok)
    summary.skipped = {reason: n for reason in SKIP_REASONS
                       if (n := sum(r["reason"] == reason for r in bad))}
    write_landmarks(job.out / LANDMARKS_FILE, {r["key"]: r["entry"] for r in ok})
    lines = [f"# {len(bad)} of {len(keys)} images skipped: path<TAB>reason"]
    lines += [f"{tsv_field(r['key'])}\t{tsv_field(r['message'])}" for r in bad]
    io.write_text(job.out / SKIPPED_FILE, "\n".join(lines) + "\n")
    io.write_json(job.out / DONE_FILE, {
        "format": "massface-align", "version": 1, "source": str(job.src),
        "fingerprint": fingerprint, "summary": summary.to_dict(),
        "written": [name for r in ok for name in r["outputs"]]})
