"""Reading a live Certificate Transparency log over HTTP(S), resuming where the last import ended.

`fetch_ct_log` asks the log for its tree size (`get-sth`), then for `get-entries` in batches
from the index the state file holds for that log, and keeps the party's CA certificates (see
`agent.sources.ct`). A log may answer with fewer entries than asked; the next batch starts after
the last entry it returned.

Resume state is advanced only by the caller: the import commits its records in one database
transaction, and only after that commit may the state say those entries are done; otherwise a
crash between the two would skip entries forever. So `fetch_ct_log` never writes the state
file; it returns `CtFetch.next_index`, which the caller hands to `commit_ct_progress` once its
transaction committed. A crash before that only makes the next run fetch the same entries again,
which merges into the same records (identity is the SHA-256).

The state file is JSON, `{"version": 1, "next_index": {"<log URL>": <int>}}`, replaced
atomically (temporary file, fsync, rename). One process at a time should commit to a given file.
Only the standard library is used; https verifies the log's certificate with the system's CAs.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from invsync.agent.errors import SourceError
from invsync.agent.files import write_atomically
from invsync.agent.model.bundle import Facts, SourceContext
from invsync.agent.sources.ct import entries_facts, party_keys, response_entries

STATE_VERSION = 1
MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # bytes; a get-entries batch of 256 is a few MB at most
_USER_AGENT = "invsync-ct/1"


@dataclass(frozen=True)
class CtFetch:
    """What one fetch read. Commit `next_index` with `commit_ct_progress` after the import."""

    facts: Facts
    log_url: str  # normalized: no trailing slash; the state file's key and the records' source
    next_index: int  # the first entry the next fetch should read
    tree_size: int  # the log's size when this fetch asked


def fetch_ct_log(
    url: str,
    ctx: SourceContext,
    *,
    state_path: Path,
    batch_size: int = 256,
    timeout: float = 10,  # seconds, for each request
    max_entries: int | None = None,
) -> CtFetch:
    """The party's CA certificates among the log's entries from the saved index on, up to
    `max_entries` of them (all when None) or the tree size. Never writes `state_path`."""
    log = log_url(url)
    _check_limits(log, batch_size, max_entries)
    start = read_ct_progress(state_path, log)
    keys = party_keys(ctx, log)
    tree_size = _tree_size(log, timeout)
    if start > tree_size:
        raise SourceError(
            f"{state_path}: {log} would resume at entry {start}, but its tree has {tree_size}"
            " entries (a log never shrinks: is this the same log?)"
        )
    end = tree_size if max_entries is None else min(tree_size, start + max_entries)
    bundles: list[Facts] = []
    index = start
    ctx.progress(index, tree_size)
    while index < end:
        entries = _get_entries(log, index, min(index + batch_size, end) - 1, timeout)
        bundles.append(entries_facts(entries, log, index, keys, ctx))
        index += len(entries)
        ctx.progress(index, tree_size)
    return CtFetch(Facts.combine(bundles), log, index, tree_size)


def commit_ct_progress(state_path: Path, url: str, next_index: int) -> None:
    """Record that entries before `next_index` of the log at `url` are imported. Call it only
    after the transaction holding a fetch's records committed."""
    if next_index < 0:
        raise SourceError(f"{state_path}: next index of {url} must be 0 or more, got {next_index}")
    progress = _read_state(state_path)
    progress[log_url(url)] = next_index
    document = {"version": STATE_VERSION, "next_index": dict(sorted(progress.items()))}
    _write_atomically(state_path, json.dumps(document, indent=2) + "\n")


def read_ct_progress(state_path: Path, url: str) -> int:
    """The index the next fetch of `url` starts at: 0 for a log (or a state file) never seen."""
    return _read_state(state_path).get(log_url(url), 0)


def log_url(url: str) -> str:
    """The log's base URL without a trailing slash, so `.../argon2021/` and `.../argon2021`
    share one resume index."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SourceError(f"{url}: not a CT log URL (expected https://host/path)")
    return url.rstrip("/")


def _check_limits(log: str, batch_size: int, max_entries: int | None) -> None:
    if batch_size < 1:
        raise SourceError(f"{log}: batch size must be at least 1, got {batch_size}")
    if max_entries is not None and max_entries < 1:
        raise SourceError(f"{log}: max entries must be at least 1, got {max_entries}")


def _tree_size(log: str, timeout: float) -> int:
    url = f"{log}/ct/v1/get-sth"
    body = _get_json(url, timeout)
    size = body.get("tree_size") if isinstance(body, dict) else None
    # bool is an int in Python, and `true` is no tree size.
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise SourceError(f"{url}: answer has no tree_size (a non-negative integer)")
    return size


def _get_entries(log: str, start: int, end: int, timeout: float) -> list[object]:
    """Entries start..end (inclusive, as RFC 6962 §4.6 counts); the log may return fewer."""
    url = f"{log}/ct/v1/get-entries?start={start}&end={end}"
    entries = response_entries(_get_json(url, timeout), url)
    asked = end - start + 1
    if not entries or len(entries) > asked:
        # None would loop forever; more than asked would number the extra ones wrongly.
        raise SourceError(f"{url}: log returned {len(entries)} entries, asked for {asked}")
    return entries


def _get_json(url: str, timeout: float) -> object:
    request = urllib.request.Request(
        url, headers={"Accept": "application/json", "User-Agent": _USER_AGENT}
    )
    status, body = _fetch(request, timeout)
    if status != 200:
        raise SourceError(f"{url}: HTTP {status}, expected 200")
    if len(body) > MAX_RESPONSE_BYTES:
        raise SourceError(f"{url}: answer is larger than {MAX_RESPONSE_BYTES} bytes")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SourceError(f"{url}: HTTP 200 but the body is not JSON: {e}") from e


def _fetch(request: urllib.request.Request, timeout: float) -> tuple[int, bytes]:
    url = request.full_url
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as e:
        e.close()  # it holds the error response's connection
        raise SourceError(f"{url}: HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        raise SourceError(f"{url}: cannot connect: {e.reason}") from e
    except TimeoutError as e:
        raise SourceError(f"{url}: no answer within {timeout} s") from e
    except (OSError, http.client.HTTPException) as e:
        raise SourceError(f"{url}: connection failed: {e!r}") from e


def _read_state(state_path: Path) -> dict[str, int]:
    try:
        text = state_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(f"{state_path}: cannot read CT resume state: {e}") from e
    try:
        document = json.loads(text)
    except json.JSONDecodeError as e:
        raise SourceError(f"{state_path}: CT resume state is not JSON: {e.msg}") from e
    return _progress(document, state_path)


def _progress(document: object, state_path: Path) -> dict[str, int]:
    if not isinstance(document, dict) or document.get("version") != STATE_VERSION:
        raise SourceError(f"{state_path}: not a version {STATE_VERSION} CT resume state file")
    progress = document.get("next_index")
    if not isinstance(progress, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in progress.values()
    ):
        raise SourceError(f"{state_path}: next_index must map log URLs to entry indexes")
    return dict(progress)


def _write_atomically(path: Path, text: str) -> None:
    """Replace `path` so that a crash leaves the old or the new file, never a part of one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, text)
    except OSError as e:
        raise SourceError(f"{path}: cannot write CT resume state: {e}") from e
