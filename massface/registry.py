"""One registry mechanism for every kind of named choice (heads, backends, distances...).

    DISTANCES = Registry("distance")

    @DISTANCES.register("cosine", description="arccos(cosine)/pi")
    def _cosine(a, b): ...

    DISTANCES.get("cosin")  # InputError: unknown distance 'cosin' (choose one of: ...)

An entry is any object with a description; :meth:`Registry.get` is the only lookup, so
every "unknown name" message lists the choices the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from massface.errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind, in registration order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, tuple[T, str]] = {}

    def register(self, name: str, obj: T | None = None, *,
                 description: str = "") -> Callable[[T], T] | T:
        """Add ``obj`` under ``name`` (or use as a decorator when ``obj`` is omitted)."""
        def add(o: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = (o, description)
            return o

        return add if obj is None else add(obj)

    def get(self, name: str, where: str = "") -> T:
        """The entry called ``name``; :class:`InputError` listing the choices otherwise."""
        if name not in self._entries:
            prefix = f"{where}: " if where else ""
            raise InputError(f"{prefix}unknown {self.kind} {name!r} (choose one of: "
                             f"{', '.join(self._entries)})")
        return self._entries[name][0]

    def names(self) -> list[str]:
        return list(self._entries)

    def description(self, name: str) -> str:
        self.get(name)
        return self._entries[name][1]

    def choices(self) -> str:
        """``"a (what a is), b (what b is)"``: the choices for a command's ``--help``."""
        return ", ".join(f"{n} ({d})" if d else n for n, (_, d) in self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
