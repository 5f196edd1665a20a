"""Every input the fuzzer found a crash with, kept in tests/fixtures/fuzz/ as KIND-name.suffix and
replayed through the registry: only SourceError naming the file may come out."""

from __future__ import annotations

from pathlib import Path

import pytest

from invsync.agent.errors import SourceError
from invsync.agent.sources.registry import read_source
from tests.fuzz.test_fuzz_sources import CTX

FOUND = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "fuzz").glob("*-*.*"))
KINDS = ("pkcs7", "ct")


@pytest.mark.parametrize("path", FOUND, ids=lambda p: p.name)
def test_a_crash_the_fuzzer_found_is_a_source_error_naming_the_file(path: Path) -> None:
    kind = next(k for k in KINDS if path.name.startswith(f"{k}-"))
    with pytest.raises(SourceError, match=path.name):
        read_source(f"{kind}:{path}", CTX)
