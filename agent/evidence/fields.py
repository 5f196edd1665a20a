"""Typed reading of a bundle's JSON files: every wrong shape is a BundleError naming the file and
the field, so a malformed bundle is told apart from one that fails a check."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from invsync.agent.evidence.failures import BundleError
from invsync.agent.model.untrusted_json import read_json


def parse_json(data: bytes, where: str) -> Mapping[str, Any]:
    """A bundle file's JSON object; hostile input is a BundleError too (`read_json`)."""
    return obj(read_json(data, where, BundleError), where)


def obj(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise BundleError(f"{where}: expected a JSON object")
    return value


def field(data: Mapping[str, Any], name: str, where: str) -> object:
    if name not in data:
        raise BundleError(f"{where}: field {name!r} is missing")
    return data[name]


def text(data: Mapping[str, Any], name: str, where: str) -> str:
    value = field(data, name, where)
    if not isinstance(value, str):
        raise BundleError(f"{where}: field {name!r} must be a string")
    return value


def integer(data: Mapping[str, Any], name: str, where: str) -> int:
    value = field(data, name, where)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BundleError(f"{where}: field {name!r} must be a non-negative integer")
    return value


def items(data: Mapping[str, Any], name: str, where: str) -> list[object]:
    value = field(data, name, where)
    if not isinstance(value, list):
        raise BundleError(f"{where}: field {name!r} must be a list")
    return value


def b64(data: Mapping[str, Any], name: str, where: str) -> bytes:
    return decode_b64(text(data, name, where), f"{where}: field {name!r}")


def decode_b64(value: object, where: str) -> bytes:
    """Canonical standard base64 only: one spelling per byte string."""
    if not isinstance(value, str):
        raise BundleError(f"{where}: must be a base64 string")
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise BundleError(f"{where}: not base64") from e
    if base64.b64encode(decoded).decode() != value:
        raise BundleError(f"{where}: not canonical base64")
    return decoded


def encode_b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def dump(value: object) -> bytes:
    """A bundle file: sorted keys and indentation, so that people can read and diff it."""
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
