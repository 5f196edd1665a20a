"""The live CT client against a local log (http.server on loopback) serving real entries."""

from __future__ import annotations

import json
import re
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from invsync.agent.errors import SourceError
from invsync.agent.exchange.pki import make_federation
from invsync.agent.model.bundle import SourceContext
from invsync.agent.model.facts import Skipped
from invsync.agent.model.record import SourceRef, sha256_hex
from invsync.agent.sources.ct_client import (
    CtFetch,
    commit_ct_progress,
    fetch_ct_log,
    read_ct_progress,
)
from tests import ct_helpers as enc
from tests.ct_helpers import BUG_OV, JPRS, JPRS_2024, ROOT_CA2_SPKI, der

NOW = datetime(2021, 3, 1, tzinfo=UTC)
# Entries 0..15: the 16 JPRS CAs; 16: a precert entry. With only RootCA2's key as the party's,
# the four JPRS CAs of 2024 (under newer roots) are dropped.
ENTRIES = [*(enc.x509_entry(der(c)) for c in JPRS), enc.bug_ov_precert_entry()]
KEPT = [
    (i, sha256_hex(der(c)), "ct") for i, c in enumerate(JPRS) if sha256_hex(der(c)) not in JPRS_2024
]
KEPT_ALL = [*KEPT, (16, BUG_OV, "ct-precert")]


@dataclass
class FakeLog:
    """What the log serves: its entries, at most `page` an answer (fewer than a client asks for),
    or `failure` (status, body) for requests whose path contains `fail_on`."""

    entries: list[dict[str, str]]
    page: int = 5
    failure: tuple[int, bytes] | None = None
    fail_on: str = "/ct/v1/"
    requests: list[str] = field(default_factory=list)

    def answer(self, path: str) -> tuple[int, bytes]:
        self.requests.append(path)
        if self.failure is not None and self.fail_on in path:
            return self.failure
        url = urllib.parse.urlsplit(path)
        if url.path == "/log/ct/v1/get-sth":
            return 200, json.dumps({"tree_size": len(self.entries)}).encode()
        if url.path == "/log/ct/v1/get-entries":
            query = urllib.parse.parse_qs(url.query)
            start, end = int(query["start"][0]), int(query["end"][0])
            served = self.entries[start : min(end + 1, start + self.page)]
            return 200, json.dumps({"entries": served}).encode()
        return 404, b"not found"


class _LogServer(HTTPServer):
    def __init__(self, log: FakeLog) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.log = log


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        assert isinstance(self.server, _LogServer)
        status, body = self.server.log.answer(self.path)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None  # keep the test output quiet


@pytest.fixture
def log() -> FakeLog:
    return FakeLog(list(ENTRIES))


@contextmanager
def _serve(server: HTTPServer) -> Iterator[str]:
    # A short poll interval, so that shutdown() returns at once rather than after 0.5 s.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def url(log: FakeLog) -> Iterator[str]:
    with _serve(_LogServer(log)) as address:
        yield f"http://{address}/log"


def _ctx(progress: list[tuple[int, int | None]] | None = None, skip: bool = False) -> SourceContext:
    calls = progress if progress is not None else []
    return SourceContext(
        now=NOW,
        party_ca_spkis=[ROOT_CA2_SPKI],
        skip_invalid=skip,
        progress=lambda done, total: calls.append((done, total)),
    )


def _kept(fetch: CtFetch) -> list[tuple[int, str, str]]:
    prefix = f"{fetch.log_url}#"
    return [
        (int(r.sources[0].location.removeprefix(prefix)), r.sha256, r.sources[0].kind)
        for r in fetch.facts.records
    ]


def _before(index: int) -> list[tuple[int, str, str]]:
    return [k for k in KEPT if k[0] < index]


def _fails(message: str) -> AbstractContextManager[pytest.ExceptionInfo[SourceError]]:
    return pytest.raises(SourceError, match="^" + re.escape(message))


def test_full_fetch_follows_short_answers_and_writes_no_state(
    url: str, log: FakeLog, tmp_path: Path
) -> None:
    state = tmp_path / "ct-state.json"
    progress: list[tuple[int, int | None]] = []
    fetch = fetch_ct_log(url, _ctx(progress), state_path=state, batch_size=8)
    assert (fetch.log_url, fetch.next_index, fetch.tree_size) == (url, 17, 17)
    assert _kept(fetch) == KEPT_ALL
    assert fetch.facts.records[0].sources == (SourceRef("ct", f"{url}#4", NOW, NOW),)
    # Asked for 8 each time, served 5: each batch starts after the last entry returned.
    assert log.requests == [
        "/log/ct/v1/get-sth",
        "/log/ct/v1/get-entries?start=0&end=7",
        "/log/ct/v1/get-entries?start=5&end=12",
        "/log/ct/v1/get-entries?start=10&end=16",
        "/log/ct/v1/get-entries?start=15&end=16",
    ]
    assert progress == [(0, 17), (5, 17), (10, 17), (15, 17), (17, 17)]
    assert not state.exists()


def test_resume_starts_after_committed_progress_only(
    url: str, log: FakeLog, tmp_path: Path
) -> None:
    state = tmp_path / "ct-state.json"
    first = fetch_ct_log(url, _ctx(), state_path=state, max_entries=7)
    assert (first.next_index, _kept(first)) == (7, _before(7))
    # Not committed (the import's transaction did not commit): the same slice again.
    again = fetch_ct_log(url, _ctx(), state_path=state, max_entries=7)
    assert (again.next_index, _kept(again)) == (7, _before(7))
    commit_ct_progress(state, first.log_url, first.next_index)
    log.requests.clear()
    rest = fetch_ct_log(url + "/", _ctx(), state_path=state)  # the trailing slash is the same log
    assert (rest.next_index, _kept(rest)) == (17, [k for k in KEPT_ALL if k[0] >= 7])
    assert log.requests[1] == "/log/ct/v1/get-entries?start=7&end=16"
    assert json.loads(state.read_text()) == {"version": 1, "next_index": {url: 7}}


def test_a_caught_up_log_asks_for_no_entries(url: str, log: FakeLog, tmp_path: Path) -> None:
    state = tmp_path / "ct-state.json"
    commit_ct_progress(state, url, 17)
    fetch = fetch_ct_log(url, _ctx(), state_path=state)
    assert (fetch.next_index, fetch.facts.records) == (17, ())
    assert log.requests == ["/log/ct/v1/get-sth"]


def test_state_keeps_other_logs_and_is_replaced_whole(tmp_path: Path) -> None:
    state = tmp_path / "sub" / "ct-state.json"
    commit_ct_progress(state, "https://ct.example/b/", 5)
    commit_ct_progress(state, "https://ct.example/a", 9)
    commit_ct_progress(state, "https://ct.example/b", 6)
    assert read_ct_progress(state, "https://ct.example/b") == 6
    assert json.loads(state.read_text())["next_index"] == {
        "https://ct.example/a": 9,
        "https://ct.example/b": 6,
    }
    assert [p.name for p in state.parent.iterdir()] == ["ct-state.json"]  # no temporary left


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "CT resume state is not JSON: Expecting property name"),
        ('{"version": 2, "next_index": {}}', "not a version 1 CT resume state file"),
        ('{"version": 1, "next_index": {"x": -1}}', "next_index must map log URLs to entry"),
        ('{"version": 1, "next_index": {"x": true}}', "next_index must map log URLs to entry"),
    ],
)
def test_a_bad_state_file_is_an_error_naming_it(tmp_path: Path, content: str, message: str) -> None:
    state = tmp_path / "ct-state.json"
    state.write_text(content)
    with _fails(f"{state}: {message}"):
        fetch_ct_log("https://ct.example/log", _ctx(), state_path=state)
    with _fails(f"{state}: {message}"):
        commit_ct_progress(state, "https://ct.example/log", 1)


def test_state_beyond_the_tree_is_refused(url: str, tmp_path: Path) -> None:
    state = tmp_path / "ct-state.json"
    commit_ct_progress(state, url, 18)
    with _fails(f"{state}: {url} would resume at entry 18, but its tree has 17 entries"):
        fetch_ct_log(url, _ctx(), state_path=state)


def test_http_500_names_the_url_and_status(url: str, log: FakeLog, tmp_path: Path) -> None:
    log.failure = (500, b"oops")
    with _fails(f"{url}/ct/v1/get-sth: HTTP 500 Internal Server Error"):
        fetch_ct_log(url, _ctx(), state_path=tmp_path / "s.json")
    log.fail_on = "get-entries"
    with _fails(f"{url}/ct/v1/get-entries?start=0&end=16: HTTP 500 Internal Server Error"):
        fetch_ct_log(url, _ctx(), state_path=tmp_path / "s.json", batch_size=100)


@pytest.mark.parametrize(
    ("fail_on", "body", "message"),
    [
        (
            "get-sth",
            b"<html>",
            "/ct/v1/get-sth: HTTP 200 but the body is not JSON: Expecting value",
        ),
        ("get-sth", b'{"tree_size": -1}', "/ct/v1/get-sth: answer has no tree_size"),
        ("get-sth", b'{"tree_size": true}', "/ct/v1/get-sth: answer has no tree_size"),
        ("get-entries", b"\xff", "/ct/v1/get-entries?start=0&end=16: HTTP 200 but the body is"),
        ("get-entries", b"[]", "/ct/v1/get-entries?start=0&end=16: not a get-entries response"),
        (
            "get-entries",
            b'{"entries": []}',
            "/ct/v1/get-entries?start=0&end=16: log returned 0 entries, asked for 17",
        ),
    ],
)
def test_a_bad_answer_names_the_url(
    url: str, log: FakeLog, tmp_path: Path, fail_on: str, body: bytes, message: str
) -> None:
    log.failure, log.fail_on = (200, body), fail_on
    with _fails(url + message):
        fetch_ct_log(url, _ctx(), state_path=tmp_path / "s.json", batch_size=100)


def test_more_entries_than_asked_is_refused(url: str, log: FakeLog, tmp_path: Path) -> None:
    log.failure, log.fail_on = (200, json.dumps({"entries": ENTRIES[:3]}).encode()), "get-entries"
    with _fails(f"{url}/ct/v1/get-entries?start=0&end=1: log returned 3 entries, asked for 2"):
        fetch_ct_log(url, _ctx(), state_path=tmp_path / "s.json", batch_size=2)


def test_a_malformed_entry_names_the_log_and_index(url: str, log: FakeLog, tmp_path: Path) -> None:
    log.entries[9] = {**log.entries[9], "leaf_input": "AA!A"}
    with _fails(f"{url}#9: leaf_input is not base64"):
        fetch_ct_log(url, _ctx(), state_path=tmp_path / "s.json")
    fetch = fetch_ct_log(url, _ctx(skip=True), state_path=tmp_path / "s.json")
    assert fetch.facts.skipped == (
        Skipped(f"{url}#9", "leaf_input is not base64 (Only base64 data is allowed)"),
    )
    assert _kept(fetch) == [k for k in KEPT_ALL if k[0] != 9]


def test_server_down_is_an_error_naming_the_url(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url = f"http://127.0.0.1:{port}/log"
    with _fails(f"{url}/ct/v1/get-sth: cannot connect: [Errno 111] Connection refused"):
        fetch_ct_log(url, _ctx(), state_path=tmp_path / "s.json")


def test_a_log_that_never_answers_times_out(tmp_path: Path) -> None:
    # The kernel accepts the connection into the backlog; nobody ever reads the request.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/log"
        with _fails(f"{url}/ct/v1/get-sth: no answer within 0.05 s"):
            fetch_ct_log(url, _ctx(), state_path=tmp_path / "s.json", timeout=0.05)


def test_https_verifies_the_log_certificate(log: FakeLog, tmp_path: Path) -> None:
    # A certificate from a CA the system does not trust: the default verification refuses it.
    tls = make_federation(tmp_path / "tls", "localhost", [])["server"]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert, tls.key)
    server = _LogServer(log)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with _serve(server) as address:
        url = f"https://{address}/log"
        with _fails(f"{url}/ct/v1/get-sth: cannot connect: [SSL: CERTIFICATE_VERIFY_FAILED]"):
            fetch_ct_log(url, _ctx(), state_path=tmp_path / "s.json")


@pytest.mark.parametrize(
    ("url", "kwargs", "message"),
    [
        ("file:///etc/passwd", {}, "file:///etc/passwd: not a CT log URL"),
        ("https://ct.example/log", {"batch_size": 0}, "https://ct.example/log: batch size must"),
        ("https://ct.example/log", {"max_entries": 0}, "https://ct.example/log: max entries must"),
    ],
)
def test_bad_arguments_are_refused_before_any_request(
    tmp_path: Path, url: str, kwargs: dict[str, int], message: str
) -> None:
    with _fails(message):
        fetch_ct_log(url, _ctx(), state_path=tmp_path / "s.json", **kwargs)


def test_commit_refuses_a_negative_index(tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    with _fails(f"{state}: next index of https://ct.example/log must be 0 or more, got -1"):
        commit_ct_progress(state, "https://ct.example/log", -1)
