"""An evidence bundle on disk: written all at once, read back file by file against its manifest.

A bundle is written into a temporary directory beside its destination and renamed into place
once every file is on disk, so that no reader ever sees half a bundle; an existing non-empty
destination is refused, never merged into or overwritten.

Reading walks the directory once (never following a link) and reads each file once, bounded;
`check_digests` (the first check of `verify`) compares those bytes with the listed SHA-256s
before any of them but the manifest is parsed, and the same bytes are then parsed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Mapping
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
from invsync.agent.files import fsync_directory


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
        fsync_directory(directory)
    try:
        os.replace(temp, out)  # replaces an empty directory; refuses a non-empty one
    except OSError as e:
        raise ExportError(f"{out}: cannot move the bundle into place ({e.strerror})") from e
    fsync_directory(out.parent)


# --- reading ----------------------------------------------------------------------------------

MAX_FILE_BYTES = 1 << 30  # a bundle file larger than this is refused before it is read in full


def read_files(root: Path) -> dict[str, bytes]:
    """Every file of the bundle at `root` by its path in the bundle, each read once: the bytes
    that are digested are the bytes that are parsed. The tree is walked with lstat, never
    following a link; anything but a regular file or a directory (a symbolic link, a FIFO that
    would block a reader, a device) fails the manifest check, named."""
    if not root.is_dir():
        raise BundleError(f"{root}: not a directory (an evidence bundle is one)")
    files: dict[str, bytes] = {}
    pending = [root]
    while pending:
        directory = pending.pop()
        for path in sorted(_children(directory)):
            mode = _lstat(path).st_mode
            if stat.S_ISDIR(mode):
                pending.append(path)
            elif stat.S_ISREG(mode):
                files[path.relative_to(root).as_posix()] = _read_once(path)
            else:
                name = path.relative_to(root).as_posix()
                raise CheckFailed("manifest", name, f"{_kind(mode)}, not a file of the bundle")
    return files


def _children(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except OSError as e:
        raise BundleError(f"{directory}: cannot read ({e.strerror})") from e


def _lstat(path: Path) -> os.stat_result:
    try:
        return path.lstat()
    except OSError as e:
        raise BundleError(f"{path}: cannot read ({e.strerror})") from e


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"  # a bundle holds its files; a link could point anywhere
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"


def _read_once(path: Path) -> bytes:
    """The file's bytes, at most MAX_FILE_BYTES; opened without following a link and checked
    regular again once open, so a file swapped after the walk is not read either."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        raise BundleError(f"{path}: cannot read ({e.strerror})") from e
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BundleError(f"{path}: no longer a regular file")
        data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise BundleError(f"{path}: over {MAX_FILE_BYTES} bytes, more than a bundle file may be")
    return data


def read_manifest(root: Path, files: Mapping[str, bytes]) -> Manifest:
    """The manifest among the bundle's `files`; BundleError if there is no readable one."""
    if MANIFEST not in files:
        raise BundleError(f"{root / MANIFEST}: cannot read (No such file or directory)")
    manifest = read_manifest_json(files[MANIFEST])
    for name in manifest.files:
        _check_path(name)
    return manifest


def _check_path(name: str) -> None:
    """A listed file stays inside the bundle: relative, no `..`, not the manifest itself."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or str(path) != name or name == MANIFEST:
        raise BundleError(f"{MANIFEST}: lists {name!r}, which is not a file path in the bundle")


def check_digests(manifest: Manifest, files: Mapping[str, bytes]) -> None:
    """The first check: every listed file is there with its SHA-256, and no file is unlisted."""
    for name, digest in sorted(manifest.files.items()):
        if name not in files:
            raise CheckFailed("manifest", name, "the file is missing")
        actual = hashlib.sha256(files[name]).hexdigest()
        if actual != digest:
            raise CheckFailed("manifest", name, f"SHA-256 is {actual}, the manifest lists {digest}")
    for name in sorted(files):
        if name != MANIFEST and name not in manifest.files:
            raise CheckFailed("manifest", name, "the file is not listed in the manifest")


def read_bundle(root: Path) -> Bundle:
    """The bundle at `root`, read once, once the manifest check has passed."""
    files = read_files(root)
    manifest = read_manifest(root, files)
    check_digests(manifest, files)
    return read_bundle_files(manifest, {n: d for n, d in files.items() if n != MANIFEST})
