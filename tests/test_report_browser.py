"""The HTML report as a real browser lays it out: the system Chromium, headless, at desktop and
phone widths (tests/browser.py). A missing chromium fails the test naming it (`make browser`).

The page is the real incident (SECOM's issuance log against JPRS's list) with one more
certificate whose subject is markup and script: the page must not scroll sideways, must keep the
full SHA-256 for hover and copy, must say what to do, and must show the hostile subject as text.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from invsync.agent.model.findings import CATALOGUE, MISSING_AT_SUBORDINATE
from invsync.agent.report.body import build_report_body, parse_report_body
from invsync.agent.report.certificates import lookup_in
from invsync.agent.report.render.html import report_html
from tests.browser import (
    DESKTOP,
    PHONE,
    VIEWPORTS,
    ChromiumMissingError,
    Viewport,
    chromium,
    chromium_path,
    opened,
    screenshot,
)
from tests.report_helpers import (
    AS_OF,
    JPRS_LIST,
    OV_BUG,
    ROOT_REF,
    SCRIPT_CN,
    SECOM_LOG,
    SUB_REF,
    demo_findings,
    hostile_findings,
    hostile_record,
    signers,
)

ACTION = CATALOGUE[MISSING_AT_SUBORDINATE].action


@pytest.fixture(scope="module")
def page_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    hostile = hostile_record()
    body = build_report_body(
        pairing="secom-jprs",
        as_of=AS_OF,
        root=ROOT_REF,
        subordinate=SUB_REF,
        findings=[*demo_findings(), *hostile_findings([hostile])],
        signers=signers(),
        certificates=lookup_in(SECOM_LOG, JPRS_LIST, [hostile]),
    )
    path = tmp_path_factory.mktemp("browser") / "report.html"
    path.write_text(report_html(parse_report_body(body), None), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=lambda v: v.name)
def test_the_page_fits_the_width_and_keeps_the_full_sha256(
    browser: Browser, page_file: Path, viewport: Viewport, tmp_path: Path
) -> None:
    with opened(browser, page_file, viewport) as page:
        width, inner = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
        assert width <= inner, f"the page scrolls sideways at {viewport.name}: {width} > {inner}"
        sha = page.locator(f'#findings code.sha[title="{OV_BUG}"]').first
        assert sha.get_attribute("data-sha256") == OV_BUG
        assert sha.text_content() == OV_BUG  # what a select-all copies
        # Shown shortened: the element is narrower than its text.
        assert sha.evaluate("e => e.scrollWidth > e.clientWidth")
        action = page.get_by_text(ACTION).first
        assert action.is_visible()
        assert screenshot(page, tmp_path / f"report-{viewport.name}.png").stat().st_size > 0


def test_on_a_phone_every_finding_is_a_card_within_the_screen(
    browser: Browser, page_file: Path
) -> None:
    with opened(browser, page_file, PHONE) as page:
        assert not page.locator("table.findings thead").is_visible()
        boxes = [row.bounding_box() for row in page.locator("table.findings tbody tr").all()]
        assert boxes and all(b is not None and b["x"] >= 0 for b in boxes)
        assert all(b is not None and b["x"] + b["width"] <= PHONE.width for b in boxes)
        label = _label_of(page, "#finding-1 td.action")
        assert label == '"what to do"'


def test_on_a_desktop_the_findings_are_one_table_with_its_header(
    browser: Browser, page_file: Path
) -> None:
    with opened(browser, page_file, DESKTOP) as page:
        headers = page.locator("table.findings thead th").all_inner_texts()
        assert [h.lower() for h in headers] == [
            "severity", "code", "subject", "issuer", "serial", "valid", "sha-256", "must act",
            "due", "what to do", "message",
        ]  # fmt: skip
        assert _label_of(page, "#finding-1 td.action") == "none"


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=lambda v: v.name)
def test_a_hostile_subject_is_text_in_the_browser_too(
    browser: Browser, page_file: Path, viewport: Viewport
) -> None:
    with opened(browser, page_file, viewport) as page:
        assert page.evaluate("document.querySelectorAll('script, img').length") == 0
        assert page.evaluate("window.__pwned === undefined")
        shown = page.locator("#findings .dn", has_text=SCRIPT_CN).first
        assert shown.is_visible()
        assert SCRIPT_CN in shown.inner_text()


def _label_of(page: Page, selector: str) -> str:
    """The label a narrow layout puts before a cell (CSS `content`), "none" when it puts none."""
    script = "e => getComputedStyle(e, '::before').content"
    return str(page.locator(selector).first.evaluate(script))


def test_a_missing_chromium_fails_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ChromiumMissingError, match=r"chromium is not installed.*make browser"):
        chromium_path()
