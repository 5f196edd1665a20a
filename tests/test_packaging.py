"""What a real install holds: one top-level import package, `invsync`, with every subpackage of
the source tree and the data files the code reads at run time."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "protos", "agent", "server")


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    # Built from a copy, so that the build's own files (build/, *.egg-info) stay out of the tree.
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=_caches)
        else:
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = out.glob("invsync-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def _caches(directory: str, names: list[str]) -> set[str]:
    return {n for n in names if n in {"__pycache__", ".mypy_cache"}}


def test_the_only_top_level_package_is_invsync(wheel_names: set[str]) -> None:
    tops = {name.split("/")[0] for name in wheel_names if not name.split("/")[0].endswith("-info")}
    assert tops == {"invsync"}


def test_every_source_package_is_in_the_wheel(wheel_names: set[str]) -> None:
    packages = {
        "invsync/" + str(init.parent.relative_to(ROOT)).replace("\\", "/")
        for top in ("agent", "server")
        for init in (ROOT / top).rglob("__init__.py")
    } | {"invsync/v1"}
    missing = sorted(p for p in packages if f"{p}/__init__.py" not in wheel_names)
    assert missing == []


def test_the_wheel_holds_the_files_read_at_run_time(wheel_names: set[str]) -> None:
    needed = {
        "invsync/py.typed",
        "invsync/agent/py.typed",
        "invsync/server/py.typed",
        "invsync/v1/invsync.proto",
        "invsync/v1/invsync_pb2.pyi",
        "invsync/agent/demo_data/secom_issuance_log.jsonl",
        "invsync/agent/demo_data/jprs_ca_certificates.pem",
        "invsync/agent/report/render/templates/report.html.j2",
        "invsync/agent/report/render/templates/chart.svg.j2",
        "invsync/agent/evidence/templates/evidence.html.j2",
        "invsync/agent/evidence/templates/evidence.md.j2",
    }
    assert needed - wheel_names == set()


def test_the_namespace_links_point_at_the_top_level_folders() -> None:
    # protos/invsync/agent and protos/invsync/server are what make `invsync.agent` importable
    # from the checkout; a copied folder in their place would silently go stale.
    for name in ("agent", "server"):
        link = ROOT / "protos" / "invsync" / name
        assert link.is_symlink()
        assert link.resolve() == (ROOT / name).resolve()
