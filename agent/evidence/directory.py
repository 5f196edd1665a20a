"""An evidence bundle on disk: written all at once, read back file by file against its manifest.

A bundle is written into a temporary directory beside its destination and renamed into place
once every file is on disk, so that no reader ever sees half a bundle; an existing non-empty
destination is refused, never merged into or overwritten.

Reading starts with the manifest alone; `check_digests` (the first check of `verify`) compares
every file with its listed SHA-256 before any of them is parsed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from invsync.agent.evidence.bundle import (
    MANIFEST,
    Bundle,
    Manifest,
    bundle_files,
    manifest_json,
    read_bundle_files,
    read_manifest_json,
)
from invsync.agent.evidence.failures import BundleError, CheckFailed, ExportError


def write_bundle(bundle: Bundle, out: Path) -> None:
    """Write `bundle` to the directory `out`, which must not exist or be empty."""
    refuse_existing(out)
    files = bundle_files(bundle)
    digests = {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}
    manifest = Manifest(bundle.server, bundle.server, bundle.scope, bundle.created_at, digests)
    files[MANIFEST] = manifest_json(manifest)
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        for path, data in files.items():
            _write(temp / path, data)
        _rename(temp, out)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def refuse_existing(out: Path) -> None:
    """ExportError unless `out` is free: checked before the export starts, and again at the end."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} exists and is not an empty directory: choose a new --out")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _rename(temp: Path, out: Path) -> None:
    for directory in sorted({p for p in temp.rglob("*") if p.is_dir()} | {temp}):
        _fsync_directory(directory)
    try:
        os.replace(temp, out)  # replaces an empty directory; refuses a non-empty one
    except OSError as e:
        raise ExportError(f"{out}: cannot move the bundle into place ({e.strerror})") from e
    _fsync_directory(out.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- reading ----------------------------------------------------------------------------------


def read_manifest(root: Path) -> Manifest:
    """The manifest of the bundle at `root`; BundleError if there is no readable one."""
    path = root / MANIFEST
    if not root.is_dir():
        raise BundleError(f"{root}: not a directory (an evidence bundle is one)")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BundleError(f"{path}: cannot read ({e.strerror})") from e
    manifest = read_manifest_json(data)
    for name in manifest.files:
        _check_path(name)
    return manifest


def _check_path(name: str) -> None:
    """A listed file stays inside the bundle: relative, no `..`, not the manifest itself."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or str(path) != name or name == MANIFEST:
        raise BundleError(f"{MANIFEST}: lists {name!r}, which is not a file path in the bundle")


def check_digests(root: Path, manifest: Manifest) -> None:
    """The first check: every listed file is there with its SHA-256, and no file is unlisted."""
    for name, digest in sorted(manifest.files.items()):
        path = root / name
        if path.is_symlink():  # a bundle holds its files; a link could point anywhere
            raise CheckFailed("manifest", name, "a symbolic link, not a file of the bundle")
        if not path.is_file():
            raise CheckFailed("manifest", name, "the file is missing")
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != digest:
            raise CheckFailed("manifest", name, f"SHA-256 is {actual}, the manifest lists {digest}")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix()
        if name != MANIFEST and name not in manifest.files:
            raise CheckFailed("manifest", name, "the file is not listed in the manifest")


def read_bundle(root: Path, manifest: Manifest) -> Bundle:
    """The bundle's content, once `check_digests` has passed."""
    files = {name: (root / name).read_bytes() for name in manifest.files}
    return read_bundle_files(manifest, files)
