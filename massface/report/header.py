"""The inputs block of every evaluation page: what was scored, by which model, how.

Everything comes from the producer's description (``meta.json`` of an embedding folder,
``massface-infer.json`` of msame outputs) plus the input's own facts (kind, sha256s,
pairs scored); a fact the producer did not record is left out rather than guessed.
"""

from __future__ import annotations

from typing import Any

from massface.report.page import KeyValues


def _preprocessing(prep: Any) -> str | None:
    if isinstance(prep, str):
        return prep
    if not isinstance(prep, dict):
        return None
    size = prep.get("size")
    size_text = f"{size[0]}x{size[1]}" if isinstance(size, list | tuple) and len(size) == 2 \
        else size
    parts = [f"{prep.get('color', '?')}", f"(x - {prep.get('mean', '?')}) / "
             f"{prep.get('std', '?')}", f"size {size_text}", f"layout {prep.get('layout', '?')}"]
    return ", ".join(str(p) for p in parts)


def producer_facts(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """Model, sha256, backend, precision, preprocessing, dataset: as recorded."""
    model = meta.get("model") if isinstance(meta.get("model"), dict) else {}
    backend = meta.get("backend") or model.get("backend")
    dataset = meta.get("dataset") if isinstance(meta.get("dataset"), dict) else {}
    facts: list[tuple[str, Any]] = [
        ("model", model.get("path")),
        ("model sha256", model.get("sha256")),
        ("backend", f"{backend} ({meta['backend_choice']})" if backend and
         meta.get("backend_choice") else backend),
        ("precision", meta.get("precision")),
        ("preprocessing", _preprocessing(meta.get("preprocessing"))),
        ("dataset", f"{dataset.get('kind')}: {dataset.get('root')}" if dataset else None),
    ]
    return [(k, str(v)) for k, v in facts if v not in (None, "")]


def input_block(title: str, kind: str, meta: dict[str, Any],
                facts: list[tuple[str, str]]) -> KeyValues:
    """One input's key-value block: its kind, the producer's facts, then ``facts``."""
    return KeyValues(title, [("kind", kind), *producer_facts(meta), *facts])


def short_sha(files: dict[str, str], limit: int = 6) -> list[tuple[str, str]]:
    """``sha256 <file>`` rows for the input's files (the full digests are in --json)."""
    rows = [(f"sha256 {name.rsplit('/', 1)[-1]}", digest) for name, digest in files.items()]
    return rows[:limit]
