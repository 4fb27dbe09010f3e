"""The package's floors, read from the source with ``ast`` (nothing is imported).

Ground floor (errors, cli, registry, io, formats, ...), core floor (``runtime``: a model
file and a dataset become embeddings; ``scoring``: embeddings and pairs become numbers),
then the stages, each with its command. The rules: the core floor imports no stage; no
stage imports another stage's command module; no two modules import each other, directly
or around a circle (lazy imports inside functions count too).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "massface"
STAGES = {"train", "export", "infer", "evaluate", "align", "report", "tools"}
CORE = {"runtime", "scoring"}
# Command modules: any ``cli`` / ``*_cli`` module, and the console script not so named.
OTHER_COMMANDS = {"massface.tools.pairs_generate"}


def _is_command(module: str) -> bool:
    last = module.rpartition(".")[2]
    named = last == "cli" or last.endswith("_cli")
    return (_floor(module) in STAGES and named) or module in OTHER_COMMANDS


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The massface modules ``path`` imports (``from a import b`` names a.b when b is one)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known)
    return {m for m in found if m in known and m != name}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(path, name, set(mods)) for name, path in mods.items()}


def _floor(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_the_graph_is_read(graph: dict[str, set[str]]) -> None:
    # Guards the checks below against an empty or misread graph.
    assert "massface.runtime.backends" in graph["massface.infer.runner"]
    assert "massface.scoring.verification" in graph["massface.scoring"]
    assert "massface.report.html" in graph["massface.evaluate.cli"]


def test_core_floor_imports_no_stage(graph: dict[str, set[str]]) -> None:
    bad = sorted(f"{m} -> {t}" for m, ts in graph.items() if _floor(m) in CORE
                 for t in ts if _floor(t) in STAGES)
    assert not bad, "the core floor imports a stage:\n" + "\n".join(bad)


def test_no_stage_imports_another_stages_command(graph: dict[str, set[str]]) -> None:
    bad = sorted(f"{m} -> {t}" for m, ts in graph.items() for t in ts
                 if _is_command(t) and _floor(t) != _floor(m))
    assert not bad, "imports of another stage's command module:\n" + "\n".join(bad)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, or None (depth-first search, colouring the stack)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _without_packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    # A package's __init__ re-exporting its own submodules is not a circle of concepts.
    return {m: {t for t in ts if not (t in graph and m.startswith(t + "."))}
            for m, ts in graph.items()}


def test_no_import_circle(graph: dict[str, set[str]]) -> None:
    cycle = _cycle(_without_packages(graph))
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_cycle_finder_finds_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
