"""agent.kept: values made once and reused, never more than `most` of them."""

from __future__ import annotations

from invsync.agent.kept import Kept


def test_a_kept_value_comes_back_and_the_map_never_grows_past_its_bound() -> None:
    kept: Kept[int, str] = Kept(most=3)
    assert kept.keep(1, "one") == "one"
    assert kept.get(1) == "one" and kept.get(2) is None
    for key in range(2, 10):
        kept.keep(key, str(key))
        assert len(kept) <= 3
    assert kept.get(9) == "9"
