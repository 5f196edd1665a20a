"""The Jinja2 templates of the HTML report: found in the installed package, escaping everything,
and never evaluating template syntax that arrives in a report."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from fnmatch import fnmatch
from html.parser import HTMLParser
from pathlib import Path

import pytest
from jinja2 import PackageLoader, UndefinedError
from markupsafe import Markup

import invsync.agent
from invsync.agent.report.body import parse_report_body
from invsync.agent.report.render.html import report_html
from invsync.agent.report.render.markup import TEMPLATES, environment, shown
from tests.paths import ROOT
from tests.report_helpers import body_bytes, hostile_findings, hostile_record

NAMES = [
    "changes.html.j2",
    "chart.svg.j2",
    "doppelgangers.html.j2",
    "findings.html.j2",
    "macros.html.j2",
    "report.html.j2",
    "signatures.html.j2",
    "summary.html.j2",
]


class Text(HTMLParser):
    """The text a browser would show, one string per text node."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.nodes: list[str] = []
        self.feed(page)
        self.close()

    def handle_data(self, data: str) -> None:
        self.nodes.append(data)


# --- template injection -------------------------------------------------------------------------


INJECTED = "{{ 7*7 }}|{% raw %}|{{ self.__init__ }}|{# gone? #}|{% endraw %}"


def test_template_syntax_in_body_text_is_shown_not_evaluated() -> None:
    (finding,) = hostile_findings([hostile_record()])
    sneaky = replace(
        finding,
        subject=f"CN={INJECTED}",
        message=f"m{INJECTED}",
        party=f"p{INJECTED}",
        policy=f"r{INJECTED}",
    )
    page = report_html(parse_report_body(body_bytes([sneaky])), None)
    nodes = Text(page).nodes
    for prefix in ("CN=", "m", "p", "r"):
        assert f"{prefix}{INJECTED}" in nodes, prefix
        assert f"{prefix}49" not in page, prefix
    assert "bound method" not in page


# --- the templates ------------------------------------------------------------------------------


def test_the_templates_are_found_through_the_installed_package() -> None:
    env = environment()
    assert isinstance(env.loader, PackageLoader)
    assert env.list_templates() == NAMES
    templates = Path(invsync.agent.__file__).parent / TEMPLATES[1]
    for name in NAMES:
        _, filename, _ = env.loader.get_source(env, name)
        assert Path(filename) == templates / name


def test_the_wheel_ships_every_template() -> None:
    """pyproject's package data of `invsync.agent` must match each template the loader lists."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = pyproject["tool"]["setuptools"]["package-data"][TEMPLATES[0]]
    for name in NAMES:
        path = f"{TEMPLATES[1]}/{name}"
        assert any(fnmatch(path, glob) and "/" not in name for glob in globs), path


@pytest.mark.parametrize("name", NAMES)
def test_no_template_marks_a_value_safe(name: str) -> None:
    env = environment()
    assert env.loader is not None
    source, _, _ = env.loader.get_source(env, name)
    squeezed = "".join(source.split())
    for bypass in ("|safe", "autoescapefalse", "Markup"):
        assert bypass not in squeezed, f"{name}: {bypass}"


def test_the_environment_escapes_and_refuses_undefined_names() -> None:
    env = environment()
    assert env.from_string("<p>{{ x }}</p>").render(x="<i>") == "<p>&lt;i&gt;</p>"
    with pytest.raises(UndefinedError, match="'nope' is undefined"):
        env.from_string("{{ nope }}").render()
    with pytest.raises(UndefinedError, match="has no attribute 'typo'"):
        env.from_string("{{ x.typo }}").render(x=Path("."))


# --- shown: every printed value -----------------------------------------------------------------


def test_shown_escapes_text_as_html_escape_spells_it() -> None:
    assert shown("<b>\"&'") == "&lt;b&gt;&quot;&amp;&#x27;"
    assert shown('x" onload="y') == "x&quot; onload=&quot;y"
    assert shown("&#34;") == "&amp;#34;"  # already-escaped text is text, escaped again


def test_shown_makes_control_characters_visible() -> None:
    assert shown("a\tb\u202ec\nd") == "a\\tb\\u202ec\\nd"


def test_shown_passes_template_markup_and_rounds_coordinates() -> None:
    assert shown(Markup("<b>x</b>")) == "<b>x</b>"
    assert shown(1.25) == "1.2" and shown(20.0) == "20.0"
    assert shown(7) == "7"
    assert isinstance(shown("<"), Markup)
