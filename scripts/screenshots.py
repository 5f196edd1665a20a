"""Regenerate the report screenshots in docs/screenshots from the demo's real report.

Runs `invsync demo` in a temporary directory and lays out the HTML report JPRS's agent wrote at
desktop and phone widths in the system Chromium (`make browser`): the whole page on a desktop,
the top of the findings on a phone (the whole page is one long column of cards there). Run from
the project root:

    make screenshots        # or: .venv/bin/python -m scripts.screenshots docs/screenshots
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from tests.browser import PHONE, VIEWPORTS, chromium, opened, screenshot


def demo_report(workdir: Path) -> Path:
    """The HTML report of the demo run in `workdir`."""
    command = [sys.executable, "-m", "invsync.server.cli", "demo", "--workdir", str(workdir)]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
    (page,) = sorted((workdir / "reports" / "jprs").glob("*.html"))
    return page


def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        page_file = demo_report(Path(tmp) / "demo")
        with chromium() as browser:
            for viewport in VIEWPORTS:
                path = out / f"report-{viewport.name}.png"
                with opened(browser, page_file, viewport) as page:
                    if viewport == PHONE:
                        print(screenshot(page, path, start="#findings", height=2 * PHONE.height))
                    else:
                        print(screenshot(page, path))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"))
