"""Every unordered pair of a labelled set, scored block by block (cosine, float32).

The rows are ordered by label first (:func:`group_by_label`), so that the pairs of row
``i`` with earlier rows split into a rectangle of impostors (rows of earlier labels) and
the few genuine pairs of its own label. Row blocks end on label boundaries; block
``[r0, r1)`` then scores

* ``F[r0:r1] @ F[:r0].T``: all impostors, written by the matrix product straight into
  the caller's buffer when it gives one (no copy);
* ``F[r0:r1] @ F[r0:r1].T``: its strict lower triangle, split by label.

Each pair (i > j) is scored exactly once, so every consumer sees the same score for it.
The full score matrix is never formed: a block holds ``(r1 - r0) x r1`` scores.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

# Rows per block: the diagonal blocks (scored in full, half used, split by masks) cost
# n x BLOCK_ROWS; the products stay large enough for BLAS to run near its peak.
BLOCK_ROWS = 1024


def group_by_label(labels: np.ndarray) -> np.ndarray:
    """A stable order of the rows that puts equal labels next to each other."""
    return np.argsort(labels, kind="stable")


def pair_counts(labels: np.ndarray) -> tuple[int, int]:
    """(genuine, impostor) numbers of unordered pairs."""
    n = labels.size
    _, sizes = np.unique(labels, return_counts=True)
    genuine = int((sizes * (sizes - 1) // 2).sum())
    return genuine, n * (n - 1) // 2 - genuine


@dataclass
class Block:
    """Rows ``[r0, r1)`` of the label-sorted set."""

    r0: int
    r1: int

    @property
    def rect_size(self) -> int:
        return (self.r1 - self.r0) * self.r0


def blocks(sorted_labels: np.ndarray, block_rows: int | None = None) -> list[Block]:
    """Row blocks ending on label boundaries, each of at least ``block_rows`` rows (but
    the last; default :data:`BLOCK_ROWS`)."""
    block_rows = block_rows or BLOCK_ROWS
    n = sorted_labels.size
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    ends = np.r_[starts[1:], n]
    out: list[Block] = []
    r0 = 0
    for end in ends:
        rows = int(end) - r0
        if rows >= block_rows or end == n:
            out.append(Block(r0, int(end)))
            r0 = int(end)
    return out


def score_block(features: np.ndarray, sorted_labels: np.ndarray, block: Block,
                rect_out: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(impostor rectangle, other impostors, genuine) scores of one block's pairs.

    ``rect_out``: a float32 C-contiguous ``[(r1 - r0) * r0]`` buffer to write the
    rectangle into (it is returned reshaped).
    """
    r0, r1 = block.r0, block.r1
    rows = features[r0:r1]
    if rect_out is None:
        rect_out = np.empty(block.rect_size, dtype=np.float32)
    rect = rect_out.reshape(r1 - r0, r0)
    if r0:
        np.matmul(rows, features[:r0].T, out=rect)
    diag = rows @ rows.T
    lab = sorted_labels[r0:r1]
    lower = np.tri(r1 - r0, k=-1, dtype=bool)
    same = lab[:, None] == lab[None, :]
    return rect, diag[lower & ~same], diag[lower & same]


def iter_scores(features: np.ndarray, sorted_labels: np.ndarray,
                block_rows: int | None = None
                ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`score_block` over all blocks, reusing one rectangle buffer."""
    parts = blocks(sorted_labels, block_rows)
    scratch = np.empty(max((b.rect_size for b in parts), default=0), dtype=np.float32)
    for block in parts:
        yield score_block(features, sorted_labels, block, scratch[: block.rect_size])


def all_scores(features: np.ndarray, sorted_labels: np.ndarray,
               block_rows: int | None = None, buffer: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """(impostor, genuine) scores of every pair, in two flat float32 arrays.

    ``buffer``: a float32 array of at least the number of impostor pairs to write them
    into (reused across calls, it saves the page faults of a fresh 190 MB array).
    """
    n_gen, n_imp = pair_counts(sorted_labels)
    if buffer is None or buffer.size < n_imp:
        buffer = np.empty(n_imp, dtype=np.float32)
    imp = buffer[:n_imp]
    gen = np.empty(n_gen, dtype=np.float32)
    i = g = 0
    for block in blocks(sorted_labels, block_rows):
        _, other, genuine = score_block(features, sorted_labels, block,
                                        imp[i : i + block.rect_size])
        i += block.rect_size
        imp[i : i + other.size] = other
        i += other.size
        gen[g : g + genuine.size] = genuine
        g += genuine.size
    assert i == n_imp and g == n_gen
    return imp, gen
