"""``massface-align --engine ray``: detection and alignment on a pool of Ray actors.

The driver keeps everything of :func:`massface.align.run.run_align` (listing, lock,
journal, resume, final files); only the per-image work moves. Images go out in chunks of
:data:`CHUNK_IMAGES`; each actor (``--workers`` of them, one CPU each) holds one MTCNN
detector and returns, per image, its journal line with the encoded crops, which the
driver writes (so the actors need to read the photos but never write to ``--out``) before
journaling the image. Chunks come back in order; a replica that dies is restarted and its
chunk redone; a killed driver resumes after the last journaled image.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from massface import io
from massface.align.faces import AlignSettings, FaceAligner
from massface.runtime.ray_pool import FAULT_ENV, ChunkActor, connect, replica_resources, stream

CHUNK_IMAGES = 16


@dataclass
class _Keys:
    index: int
    keys: list[str]


@dataclass
class AlignerSpec:
    job: Any  # massface.align.run.AlignJob (run imports this module: no import back)
    align_group: Callable[..., list[dict[str, Any]]]  # run._align_group: crops to a writer
    settings: AlignSettings
    given: dict[str, dict[str, Any]] | None
    given_from: Path | None
    cwd: str
    fault: str | None


class AlignReplica(ChunkActor):
    """One detector; aligns whole chunks of images, returning the crops' bytes."""

    def __init__(self, spec: AlignerSpec) -> None:
        if os.path.isdir(spec.cwd):
            os.chdir(spec.cwd)
        self.spec = spec
        self.fault = spec.fault
        self.aligner = FaceAligner(spec.settings, spec.given, spec.given_from)

    def process(self, work: _Keys) -> dict[str, Any]:
        out = self.spec.job.out
        files: dict[str, bytes] = {}

        def keep(path: Path, data: bytes) -> None:
            files[path.relative_to(out).as_posix()] = data

        # the chunk is one detection group: each MTCNN stage runs once over its images
        records = [{**rec, "files": [(rel, files[rel]) for rel in rec.get("outputs", [])]}
                   for rec in self.spec.align_group(self.aligner, self.spec.job, work.keys,
                                                    keep)]
        return {"records": records, "pid": os.getpid()}


def align_on_ray(aligner: FaceAligner, job: Any, keys: list[str],
                 align_group: Callable[..., list[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    """Journal lines of ``keys`` in order (``align_group`` makes a chunk's, in a replica); each
    image's crops are written before its line is yielded (the driver journals it next)."""
    import ray

    session = connect(job.ray_address)
    try:
        cpus, _ = replica_resources(session, job.workers, 1, "cpu")
        spec = AlignerSpec(replace(job, progress=False), align_group, aligner.settings,
                           aligner.given, aligner.given_from, os.getcwd(),
                           os.environ.get(FAULT_ENV))
        todo = [_Keys(i, keys[s:s + CHUNK_IMAGES])
                for i, s in enumerate(range(0, len(keys), CHUNK_IMAGES))]
        for _, res in stream(ray, AlignReplica, spec, todo, job.workers, cpus, 0,
                             str(job.src)):
            for rec in res["records"]:
                for rel, data in rec.pop("files"):
                    io.write_bytes(job.out / rel, data)
                yield rec
    finally:
        if session.started_here:
            ray.shutdown()
