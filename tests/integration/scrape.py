"""Scraping a daemon's /metrics and reading docs/metrics.md, for the metrics tests of both."""

from __future__ import annotations

import re
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.paths import ROOT

DOC = ROOT / "docs" / "metrics.md"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> tuple[str, Samples]:
    """The endpoint's text and its samples keyed by (sample name, labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text: str = answer.read().decode()
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return text, samples


def family_names(text: str) -> set[str]:
    """Every metric the endpoint declares, as documented: counters with `_total`.

    prometheus_client also writes each counter's and histogram's creation time as a sample
    `NAME_created`, which the text parser reads as a family of its own; those are left out.
    """
    families = {family.name: family.type for family in text_string_to_metric_families(text)}
    return {
        f"{name}_total" if kind == "counter" else name
        for name, kind in families.items()
        if not (name.endswith("_created") and name.removesuffix("_created") in families)
    }


def documented(section: str) -> set[str]:
    """The metric names in the table of `## {section}` in docs/metrics.md."""
    text = DOC.read_text()
    assert f"\n## {section}\n" in text, section
    table = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(invsync_[a-z_]+)` \|", table, re.MULTILINE))


def has_samples(samples: Samples, name: str) -> bool:
    """Whether metric `name` has a value: a histogram's count, or the sample itself."""
    return any(key[0] in (name, f"{name}_count") for key in samples)


def assert_serves_documented(section: str, text: str, samples: Samples) -> set[str]:
    """The endpoint serves every name of the section's table, with a value, and no other name."""
    names = documented(section)
    assert names, section
    assert family_names(text) == names, text
    for name in names:
        assert has_samples(samples, name), (name, text)
    return names


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))
