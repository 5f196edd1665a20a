"""The Jinja2 environment the HTML report is rendered with: every value escaped.

Report text is attacker-controlled (anyone can get a certificate whose subject is markup), so
autoescaping is on and no template marks a value `|safe`. Every `{{ }}` value passes through
`shown` first: it makes control and format characters visible (a right-to-left override or a
newline cannot disguise a subject), has MarkupSafe escape the result, and prints floats (SVG
coordinates) to a tenth of a pixel. Only markup a template made itself, the output of a macro,
passes unchanged. Undefined names are errors, not empty text.
"""

from __future__ import annotations

from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from invsync.agent.report.render.text import visible

# Inside the installed package, so a wheel finds them as a source checkout does.
TEMPLATES = ("invsync.agent", "report/render/templates")


def shown(value: object) -> Markup:
    """`value` as HTML text or attribute content."""
    if isinstance(value, Markup):
        return value
    if isinstance(value, float):
        return Markup(f"{value:.1f}")  # a tenth of a pixel is enough, and stable
    # MarkupSafe spells quotes `&#34;` and `&#39;`; report pages have always spelt them as
    # `html.escape` does, and a search of a page for an escaped subject should still find it.
    escaped = str(escape(visible(str(value))))  # Markup.replace would escape its arguments
    return Markup(escaped.replace("&#34;", "&quot;").replace("&#39;", "&#x27;"))


@cache
def environment() -> Environment:
    """One environment for the process: it caches the compiled templates."""
    return Environment(
        loader=PackageLoader(*TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        finalize=shown,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(template: str, **context: object) -> str:
    return environment().get_template(template).render(**context)
