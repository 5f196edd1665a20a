"""`--root A B C` means `--root A --root B --root C`, as the reconcile usage line promises."""

from __future__ import annotations

from invsync.agent.cli.commands import _spread

GREEDY = ("--root", "--subordinate")


def test_values_after_a_greedy_option_each_get_the_option() -> None:
    args = ["--root", "a.jsonl", "b.pem", "--subordinate", "c.pem", "d/"]
    assert _spread(args, GREEDY) == [
        "--root",
        "a.jsonl",
        "--root",
        "b.pem",
        "--subordinate",
        "c.pem",
        "--subordinate",
        "d/",
    ]


def test_other_options_end_the_run_and_keep_their_value() -> None:
    args = ["--root", "a.pem", "--format", "json", "--subordinate", "b.pem"]
    assert _spread(args, GREEDY) == args


def test_repeated_options_are_left_as_they_are() -> None:
    args = ["--root", "a.pem", "--root", "b.pem", "--subordinate", "c.pem"]
    assert _spread(args, GREEDY) == args
