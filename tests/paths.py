"""Where the test data lives: the demo data shipped in the package, and the real public data
copied under tests/fixtures (each folder with its PROVENANCE.md)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "agent" / "demo_data"
FIXTURES = ROOT / "tests" / "fixtures"
SECOM_JPRS = FIXTURES / "secom_jprs"
