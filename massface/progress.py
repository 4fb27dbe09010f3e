"""The one progress bar: training steps, images embedded, outputs read.

    with ProgressBar("embedding", total=7701, completed=resumed) as bar:
        bar.update(done)                       # the rate is measured from here on

Shows done/total, the rate since the bar opened (``per_unit`` x units per second, e.g.
images per step), elapsed time and ETA, plus any ``fields`` (``loss=...``) given to
:meth:`ProgressBar.update`. Disabled, it costs nothing and prints nothing.
"""

from __future__ import annotations

import time
from typing import Any


class ProgressBar:
    """A rich progress bar on stderr (or on ``console``); a no-op when not ``enabled``."""

    def __init__(self, label: str, total: int, *, completed: int = 0, enabled: bool = True,
                 console: Any = None, rate_unit: str = "img/s", per_unit: float = 1.0,
                 fields: tuple[str, ...] = ()) -> None:
        self._bar: Any = None
        self._per_unit = per_unit
        self._base = completed
        self._start = time.perf_counter()
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = [TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn()]
        columns += [TextColumn(f"{name} {{task.fields[{name}]}}") for name in fields]
        columns += [TextColumn(f"{{task.fields[rate]}} {rate_unit}"), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn()]
        self._bar = Progress(*columns, console=console or Console(stderr=True),
                             transient=False)
        self._task = self._bar.add_task(label, total=total, completed=completed, rate="-",
                                        **dict.fromkeys(fields, "-"))
        self._bar.start()

    def update(self, completed: int, rate: float | None = None, **fields: float) -> None:
        """Set the units done; ``rate`` overrides the measured one; ``fields`` are shown."""
        if self._bar is None:
            return
        if rate is None:
            elapsed = max(time.perf_counter() - self._start, 1e-9)
            rate = (completed - self._base) * self._per_unit / elapsed
        shown = {k: f"{v:.4f}" for k, v in fields.items()}
        self._bar.update(self._task, completed=completed, rate=f"{rate:.1f}", **shown)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
