"""Numbers that prove an exported artifact computes what its source computes.

For each artifact: the largest absolute element difference and the smallest per-image
cosine similarity between its embeddings and the reference's, on the same real faces.
Cosine is what verification uses (distances between L2-normalised embeddings), so the
export fails when any image's cosine falls below :data:`MIN_COSINE`; the absolute
difference is reported alongside, with the reference's scale, to read it against.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from massface.errors import ParityError
from massface.scoring.distances import cosine_rows

MIN_COSINE = 0.9999



@dataclass(frozen=True)
class Parity:
    """How closely ``artifact`` reproduces ``reference`` on ``count`` images."""

    artifact: str
    reference: str
    count: int
    max_abs_diff: float
    min_cosine: float
    mean_cosine: float
    reference_max_abs: float
    batch_sizes: tuple[int, ...]
    bound: float = MIN_COSINE

    @property
    def passed(self) -> bool:
        return self.min_cosine >= self.bound

    def to_dict(self) -> dict:
        d = asdict(self)
        d["batch_sizes"] = list(self.batch_sizes)
        d["passed"] = self.passed
        return d

    def describe(self) -> str:
        return (
            f"{self.artifact} vs {self.reference} on {self.count} faces: min cosine "
            f"{self.min_cosine:.10f} (bound {self.bound}), mean cosine {self.mean_cosine:.10f}, "
            f"max |diff| {self.max_abs_diff:.3g} (reference max |value| "
            f"{self.reference_max_abs:.3g})"
        )


def compare(
    artifact: str,
    reference: str,
    ref: np.ndarray,
    out: np.ndarray,
    *,
    batch_sizes: tuple[int, ...] = (),
    bound: float = MIN_COSINE,
) -> Parity:
    """Parity numbers of ``out`` against ``ref`` (both [N, D])."""
    ref = np.asarray(ref)
    out = np.asarray(out)
    if ref.shape != out.shape:
        raise ParityError(
            f"{artifact}: output shape {out.shape} differs from {reference}'s {ref.shape}"
        )
    if not np.all(np.isfinite(out)):
        raise ParityError(f"{artifact}: output contains NaN or infinity")
    cos = cosine_rows(ref, out)
    return Parity(
        artifact=artifact,
        reference=reference,
        count=int(ref.shape[0]),
        max_abs_diff=float(np.max(np.abs(ref.astype(np.float64) - out.astype(np.float64)))),
        min_cosine=float(np.min(cos)),
        mean_cosine=float(np.mean(cos)),
        reference_max_abs=float(np.max(np.abs(ref))),
        batch_sizes=tuple(int(b) for b in batch_sizes) or (int(ref.shape[0]),),
        bound=bound,
    )


def require(parities: list[Parity]) -> None:
    """Raise :class:`ParityError` (with every number) when any artifact is below bound."""
    failed = [p for p in parities if not p.passed]
    if failed:
        lines = "\n".join(f"  {p.describe()}" for p in parities)
        names = ", ".join(p.artifact for p in failed)
        raise ParityError(
            f"parity check failed for {names}: embeddings differ from the reference "
            f"(minimum cosine must be >= {failed[0].bound}):\n{lines}"
        )


def split_batches(n: int) -> list[slice]:
    """Run an artifact as a batch of 1 then the rest, so one check also exercises a
    dynamic batch dimension at two sizes."""
    if n <= 1:
        return [slice(0, n)]
    return [slice(0, 1), slice(1, n)]
