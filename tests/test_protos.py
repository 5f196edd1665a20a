"""The committed generated protocol code is exactly what `make protos` produces."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.paths import ROOT

GENERATED = (
    "invsync_pb2.py",
    "invsync_pb2.pyi",
    "invsync_pb2_grpc.py",
    "invsync_pb2_grpc.pyi",
)


def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-Iprotos",
            f"--python_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            f"--mypy_out={tmp_path}",
            f"--mypy_grpc_out={tmp_path}",
            "protos/invsync/v1/invsync.proto",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    stale = [
        name
        for name in GENERATED
        if (tmp_path / "invsync/v1" / name).read_bytes()
        != (ROOT / "protos/invsync/v1" / name).read_bytes()
    ]
    assert stale == [], f"run `make protos` and commit: {stale} differ from the .proto"
