"""Click's own convention for several values: repeat the option, `--root A --root B`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

import pytest
from click.testing import CliRunner, Result

import invsync.agent.cli.reconcile as reconcile_cli
from invsync.agent.inventory.offline import PublicSources
from invsync.agent.model.bundle import SourceContext
from invsync.server.cli import invsync


class _Seen(Exception):
    """Stops `reconcile` once its sources are known, so no file needs to exist."""

    def __init__(self, root: Sequence[str], sub: Sequence[str], public: PublicSources) -> None:
        super().__init__()
        self.root, self.sub, self.public = root, sub, public


def _compared_sides(
    root: Sequence[str], sub: Sequence[str], public: PublicSources, ctx: SourceContext
) -> NoReturn:
    raise _Seen(root, sub, public)


@pytest.fixture
def sources_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconcile_cli, "compared_sides", _compared_sides)


def _reconcile(*args: str) -> Result:
    return CliRunner().invoke(invsync, ["reconcile", *args])


def _seen(result: Result) -> _Seen:
    assert isinstance(result.exception, _Seen), result.output
    return result.exception


@pytest.mark.usefixtures("sources_seen")
def test_repeated_options_reach_the_command_as_tuples_in_order() -> None:
    result = _reconcile(
        "--root", "a.jsonl", "--root", "b.pem", "--subordinate", "c.pem", "--subordinate", "d/"
    )
    seen = _seen(result)
    assert (seen.root, seen.sub) == (("a.jsonl", "b.pem"), ("c.pem", "d/"))


@pytest.mark.usefixtures("sources_seen")
def test_options_may_interleave_and_values_keep_their_kind_prefix() -> None:
    result = _reconcile(
        "--root", "issuance-log:a.txt", "--format", "json", "--subordinate", "c.pem",
        "--root", "b/", "--crl", "x.crl", "--crl", "y.crl",
    )  # fmt: skip
    seen = _seen(result)
    assert seen.root == ("issuance-log:a.txt", "b/")
    assert seen.sub == ("c.pem",)
    assert tuple(seen.public.crls) == ("x.crl", "y.crl")


@pytest.mark.usefixtures("sources_seen")
def test_one_value_each_is_a_one_tuple() -> None:
    seen = _seen(_reconcile("--root", "a.pem", "--subordinate", "b.pem"))
    assert (seen.root, seen.sub) == (("a.pem",), ("b.pem",))


@pytest.mark.usefixtures("sources_seen")
def test_the_space_separated_form_is_a_usage_error_naming_the_extra_argument() -> None:
    result = _reconcile("--root", "a.pem", "b.pem", "--subordinate", "c.pem")
    assert result.exit_code == 2
    assert "Error: Got unexpected extra argument (b.pem)" in result.output
    assert "Usage: invsync reconcile [OPTIONS]" in result.output


@pytest.mark.usefixtures("sources_seen")
def test_several_extra_arguments_are_all_named() -> None:
    result = _reconcile("--root", "a.pem", "--subordinate", "c.pem", "d.pem", "e/")
    assert result.exit_code == 2
    assert "Error: Got unexpected extra arguments (d.pem e/)" in result.output


def test_a_side_given_no_source_is_missing() -> None:
    result = _reconcile("--subordinate", "c.pem")
    assert result.exit_code == 2
    assert "Error: Missing option '--root'." in result.output
