"""What every large-scale protocol result offers the reports (console, Markdown, JSON).

A result is a dataclass with ``to_dict()`` (every figure, the curves and the per-trial
values, JSON-ready), ``headline()`` (the few figures a comparison table shows),
``tables()`` (titled tables for the console and Markdown) and ``notes()`` (what the reader
must know: dropped images, the search backend...). Reports render only these, so a new
protocol needs no report code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass
class ReportTable:
    """A titled table; ``brief`` tables are printed on the console, all go to Markdown."""

    title: str
    header: list[str]
    rows: list[list[str]]
    brief: bool = True


class ProtocolResult(Protocol):
    """The interface :mod:`massface.evaluate.report` renders."""

    protocol_name: str

    def describe(self) -> str: ...

    def headline(self) -> list[tuple[str, str]]: ...

    def tables(self) -> list[ReportTable]: ...

    def notes(self) -> list[str]: ...

    def to_dict(self) -> dict[str, Any]: ...


def pct(x: float | None, digits: int = 2) -> str:
    """A rate as a percentage, ``-`` when missing or NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{100 * x + 0.0:.{digits}f}"  # + 0.0: no "-0.00"


def floats(a: Any) -> Any:
    """Nested lists of Python floats (NaN -> None) for JSON."""
    arr = np.asarray(a, dtype=np.float64)
    return [None if math.isnan(x) else float(x) for x in arr.ravel()] if arr.ndim <= 1 else \
        [floats(row) for row in arr]


def ints(a: Any) -> list[int]:
    return [int(x) for x in np.asarray(a).ravel()]


@dataclass
class Timing:
    """Wall-clock seconds of the parts of an evaluation."""

    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.seconds.items()}
