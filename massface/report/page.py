"""The view-model of a report page, and the one template that renders it.

A :class:`Page` is a title and :class:`Section` s of blocks: :class:`Figure` (an inline
SVG chart), :class:`Table`, :class:`KeyValues`, :class:`Notes`, :class:`Preformatted` and
:class:`Gallery` (failed pairs, worst images). Builders (:mod:`.pairs`, :mod:`.labelled`,
:mod:`.training`, :mod:`.compare`) fill these from result objects; ``page.html.j2``
(jinja2, autoescaped) lays them out. The page is one self-contained file: no script, CSS
inline, charts as inline SVG, images as ``data:`` URIs, and a Content-Security-Policy
that forbids the browser to load anything else, so a stray reference fails loudly in a
browser (a console error) instead of quietly reaching the network.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from massface import __version__, io
from massface.optional import require

#: The page may load nothing but its own inline content.
CONTENT_SECURITY_POLICY = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
                           "base-uri 'none'; form-action 'none'")


@dataclass
class Figure:
    svg: str
    caption: str = ""
    kind: str = "figure"


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    caption: str = ""
    wide: bool = True             # spans the whole width (else one grid column)
    kind: str = "table"


@dataclass
class KeyValues:
    title: str
    items: list[tuple[str, str]]
    kind: str = "keyvalues"


@dataclass
class Notes:
    lines: list[str]
    warning: bool = False
    kind: str = "notes"


@dataclass
class Preformatted:
    title: str
    text: str
    kind: str = "pre"


@dataclass
class Face:
    """One image of a card: its reference (always shown) and thumbnail (when found)."""

    path: str
    src: str | None = None


@dataclass
class Card:
    title: str
    faces: list[Face]
    facts: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Gallery:
    title: str
    cards: list[Card]
    caption: str = ""
    empty: str = "none"
    kind: str = "gallery"


Block = Figure | Table | KeyValues | Notes | Preformatted | Gallery


@dataclass
class Section:
    title: str
    blocks: list[Block]
    anchor: str = ""


@dataclass
class Page:
    title: str
    subtitle: str
    sections: list[Section]
    generated: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc)
                           .strftime("%Y-%m-%d %H:%M UTC"))
    version: str = __version__


def _environment() -> Any:
    jinja2 = require("jinja2", extra="report", purpose="the HTML report")
    return jinja2.Environment(loader=jinja2.PackageLoader("massface.report", "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)


def render(page: Page) -> str:
    """The page as one HTML document."""
    from markupsafe import Markup

    env = _environment()
    env.filters["svg"] = Markup  # charts come from matplotlib, whose SVG escapes its text
    return env.get_template("page.html.j2").render(page=page, csp=CONTENT_SECURITY_POLICY)


def write_page(path: str | Path, page: Page) -> int:
    """Render ``page`` and write it atomically; returns the size in bytes."""
    html = render(page).encode("utf-8")
    io.write_bytes(path, html)
    return len(html)


def anchor(text: str) -> str:
    """A fragment id from a title (letters, digits and dashes)."""
    out = "".join(c.lower() if c.isalnum() else "-" for c in text)
    return "-".join(part for part in out.split("-") if part) or "section"
