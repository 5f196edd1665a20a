"""Hostile source files (issue 12): oversized, FIFOs, devices, sockets, unreadable paths."""

from __future__ import annotations

import os
import re
import shutil
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest

from invsync.agent.errors import SourceError
from invsync.agent.sources import reading
from invsync.agent.sources.reading import (
    DEFAULT_MAX_SOURCE_BYTES,
    read_bytes,
    source_size_cap,
)
from invsync.agent.sources.registry import load_source
from tests.paths import SECOM_JPRS

NOW = datetime(2021, 3, 1, tzinfo=UTC)
ROOT_CA2_PEM = SECOM_JPRS / "individual" / "Security_Communication_RootCA2.pem"


def _fails(spec: str | Path, message: str) -> None:
    with pytest.raises(SourceError, match="^" + re.escape(message)):
        load_source(str(spec), NOW)


def test_the_default_cap_is_256_mib() -> None:
    assert DEFAULT_MAX_SOURCE_BYTES == 256 * 1024 * 1024
    assert reading.max_source_bytes() == DEFAULT_MAX_SOURCE_BYTES


def test_a_sparse_file_over_the_cap_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = tmp_path / "big.pem"
    with big.open("wb") as f:
        f.truncate(DEFAULT_MAX_SOURCE_BYTES + 1)  # sparse: no disk, and no read may happen

    def no_read(*args: object) -> bytes:
        raise AssertionError("an oversized file was read")

    monkeypatch.setattr(os, "read", no_read)
    size = DEFAULT_MAX_SOURCE_BYTES + 1
    _fails(
        big,
        f"{big}: file is {size} bytes, larger than the source size cap of "
        f"{DEFAULT_MAX_SOURCE_BYTES} bytes (raise it with --max-source-bytes",
    )


def test_the_cap_is_configurable_and_a_file_at_the_cap_is_read(tmp_path: Path) -> None:
    pem = tmp_path / "root.pem"
    shutil.copy(ROOT_CA2_PEM, pem)
    size = pem.stat().st_size
    with source_size_cap(size):
        assert len(load_source(str(pem), NOW)) == 1
    with source_size_cap(size - 1):
        _fails(pem, f"{pem}: file is {size} bytes, larger than the source size cap of {size - 1}")
    assert reading.max_source_bytes() == DEFAULT_MAX_SOURCE_BYTES  # restored


def test_a_gzip_bomb_is_held_to_the_cap(tmp_path: Path) -> None:
    import gzip

    bomb = tmp_path / "report.csv.gz"
    bomb.write_bytes(gzip.compress(b"Certificate\n" + b"x" * 100_000))
    with source_size_cap(50_000):
        _fails(bomb, f"{bomb}: decompresses to more than the source size cap of 50000 bytes")


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "roots.pem"
    os.mkfifo(fifo)
    _fails(fifo, f"{fifo}: is a FIFO (named pipe), not a regular file; refusing to read it")


def test_a_fifo_named_with_a_kind_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "log.jsonl"
    os.mkfifo(fifo)
    _fails(f"issuance-log:{fifo}", f"{fifo}: is a FIFO (named pipe)")


def test_a_fifo_inside_a_directory_is_refused(tmp_path: Path) -> None:
    shutil.copy(ROOT_CA2_PEM, tmp_path / "a.pem")
    os.mkfifo(tmp_path / "b.pem")
    _fails(tmp_path, f"{tmp_path / 'b.pem'}: is a FIFO (named pipe)")


def test_a_character_device_is_refused() -> None:
    with pytest.raises(SourceError, match=re.escape("/dev/zero: is a character device")):
        read_bytes(Path("/dev/zero"))


def test_a_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.pem"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(path))
        _fails(path, f"{path}: is a socket, not a regular file")
    finally:
        server.close()


def test_a_directory_read_as_a_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=re.escape(f"{tmp_path}: cannot read: Is a directory")):
        read_bytes(tmp_path)


# --- permissions: the tests run as root, whom chmod 000 does not stop, so the permission error
# is raised by a monkeypatched os.open / os.scandir when chmod has no effect.


def _root() -> bool:
    return os.geteuid() == 0


def test_an_unreadable_file_is_reported_as_permission_denied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pem = tmp_path / "root.pem"
    shutil.copy(ROOT_CA2_PEM, pem)
    pem.chmod(0)
    if _root():
        real_open = os.open

        def denied(path: object, *args: object, **kwargs: object) -> int:
            if Path(str(path)) == pem:
                raise PermissionError(13, "Permission denied", str(pem))
            return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "open", denied)
    _fails(pem, f"{pem}: cannot read: permission denied")


@pytest.mark.parametrize("depth", ["top", "nested"])
def test_an_unreadable_directory_is_reported_as_permission_denied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, depth: str
) -> None:
    top = tmp_path / "repo"
    locked = top if depth == "top" else top / "sub"
    locked.mkdir(parents=True)
    shutil.copy(ROOT_CA2_PEM, top / "a.pem")
    locked.chmod(0)
    try:
        if _root():
            real_scandir = os.scandir

            def denied(path: object = ".") -> object:
                if Path(str(path)) == locked:
                    raise PermissionError(13, "Permission denied", str(locked))
                return real_scandir(str(path))

            monkeypatch.setattr(os, "scandir", denied)
        _fails(top, f"{locked}: cannot list directory: permission denied")
    finally:
        locked.chmod(0o755)


def test_an_unreadable_ccadb_directory_is_reported_as_permission_denied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "ccadb"
    folder.mkdir()
    folder.chmod(0)
    try:
        if _root():

            def denied(self: Path) -> object:
                raise PermissionError(13, "Permission denied", str(self))

            monkeypatch.setattr(Path, "iterdir", denied)
        _fails(f"ccadb:{folder}", f"{folder}: cannot list directory: permission denied")
    finally:
        folder.chmod(0o755)
