"""Every package of the source tree is installed: a package missing from pyproject.toml works
in the editable checkout and fails in a real install."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_python_package_is_listed_for_installation() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(init.parent.relative_to(base).parts)
        for top, base in (("agent", ROOT), ("server", ROOT), ("invsync", ROOT / "protos"))
        for init in (base / top).rglob("__init__.py")
    }
    assert found == listed
