"""JSON that someone else wrote (a bundle's files, a log entry's envelope, a server-signed
report body), read so that no input ends in anything but the caller's own project error.

`json.loads` alone lets hostile input escape as foreign exceptions: nesting deep enough raises
RecursionError, an integer of more than 4300 digits ValueError, bytes that are not UTF-8
UnicodeDecodeError. `read_json` bounds the size before parsing and the nesting depth after it,
refuses the non-standard constants NaN and Infinity, and turns every one of those into
`error(f"{where}: ...")`, so a caller names its file or entry and keeps its own hint.
"""

from __future__ import annotations

import json

from invsync.agent.errors import InvsyncError

MAX_DEPTH = 64  # far beyond any shape invsync writes (its deepest is about 6)
MAX_BYTES = 64 * 1024 * 1024


def read_json(
    data: bytes, where: str, error: type[InvsyncError], max_bytes: int = MAX_BYTES
) -> object:
    """The JSON value of `data`; `error` naming `where` for anything else."""
    if len(data) > max_bytes:
        raise error(f"{where}: {len(data)} bytes, over the limit of {max_bytes} for JSON")
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError as e:
        raise error(_invalid(where, f"{e.reason} at byte {e.start}")) from e
    except RecursionError as e:
        raise error(_invalid(where, "nested too deeply to read")) from e
    except ValueError as e:  # JSONDecodeError, an integer over Python's digit limit, NaN
        raise error(_invalid(where, str(e).split(";")[0])) from e
    if _depth(value) > MAX_DEPTH:
        raise error(_invalid(where, f"nested deeper than {MAX_DEPTH} levels"))
    return value


def _invalid(where: str, detail: str) -> str:
    return f"{where}: not valid UTF-8 JSON ({detail})"


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _depth(value: object) -> int:
    """How deeply `value` nests, walked without recursion (so the walk itself cannot fail)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in item)
    return deepest
