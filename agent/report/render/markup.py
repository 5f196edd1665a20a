"""The one way report HTML is built: markup is its own type, and all else is escaped.

Report text is attacker-controlled (anyone can get a certificate whose subject is markup), so
markup is `Html`, a str subclass that only `element`, `join` and `text` make. `element` escapes
every child that is not `Html` and every attribute value, so forgetting to escape cannot happen:
a plain string, even one built by formatting `Html`, is escaped again (visibly wrong, never
unsafe). Tag and attribute names come from the code, never from a report.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from invsync.agent.report.render.text import visible

AttrValue = str | int | float


class Html(str):
    """Markup made by this module; anything else handed to `element` is escaped."""

    __slots__ = ()


def text(value: str) -> Html:
    """`value` as HTML text or attribute content: controls shown, `<>&"'` escaped."""
    return Html(html.escape(visible(value), quote=True))


def element(tag: str, *children: Html | str, **attrs: AttrValue) -> Html:
    """`<tag attrs>children</tag>`.

    Attribute names are Python names made HTML: a trailing `_` is dropped (`class_`) and other
    `_` become `-` (`text_anchor`, `data_as_of`).
    """
    return Html(f"<{tag}{_attributes(attrs)}>{join(children)}</{tag}>")


def join(parts: Iterable[Html | str]) -> Html:
    """The parts in order, each escaped unless it is `Html`."""
    return Html("".join(part if isinstance(part, Html) else text(part) for part in parts))


def void_element(tag: str, **attrs: AttrValue) -> Html:
    """An element without content or end tag (`meta`)."""
    return Html(f"<{tag}{_attributes(attrs)}>")


def table(header: Sequence[str], rows: Iterable[Html], *, caption: str = "", **attrs: str) -> Html:
    """A table of `rows` (made by `row`) under a header row of plain text."""
    head = element("thead", element("tr", *(element("th", name, scope="col") for name in header)))
    title = [element("caption", caption)] if caption else []
    return element("table", *title, head, element("tbody", *rows), **attrs)


def row(cells: Iterable[Html | str], **attrs: str) -> Html:
    return element("tr", *(element("td", cell) for cell in cells), **attrs)


def section(anchor: str, title: str, *content: Html) -> Html:
    return element("section", element("h2", title), *content, id=anchor)


def _attributes(attrs: dict[str, AttrValue]) -> str:
    return "".join(
        f' {name.rstrip("_").replace("_", "-")}="{_value(value)}"' for name, value in attrs.items()
    )


def _value(value: AttrValue) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"  # SVG coordinates: a tenth of a pixel is enough, and stable
    return text(str(value))
