"""Distinguished names as people read them: escapes gone, one attribute never passing for two."""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from invsync.agent.report.render.names import readable_dn

JPRS_OV_G3 = (
    "CN=JPRS Organization Validation Authority - G3,O=Japan Registry Services Co.\\, Ltd.,C=JP"
)


def test_the_real_jprs_subject_reads_without_backslashes() -> None:
    assert readable_dn(JPRS_OV_G3) == (
        "CN=JPRS Organization Validation Authority - G3, O=Japan Registry Services Co., Ltd., C=JP"
    )


def test_escaped_markup_hex_pairs_and_multi_valued_rdns_are_undone() -> None:
    assert readable_dn('CN=\\<script\\>,O=\\"q\\"') == 'CN=<script>, O="q"'
    assert readable_dn("CN=caf\\C3\\A9") == "CN=café"
    assert readable_dn("CN=a+OU=b,C=JP") == "CN=a + OU=b, C=JP"
    assert readable_dn("CN=back\\\\slash") == "CN=back\\slash"


def test_a_value_that_would_read_as_more_attributes_keeps_its_escapes() -> None:
    assert readable_dn("CN=evil\\, O=Google,C=US") == "CN=evil\\, O=Google, C=US"
    assert readable_dn("CN=a\\+OU=b") == "CN=a\\+OU=b"
    assert readable_dn("CN=x\\;2.5.4.3=y") == "CN=x\\;2.5.4.3=y"


def test_text_that_is_no_rfc_4514_name_is_returned_unchanged() -> None:
    for text in ("", "junk", "CN=x\\", "CN=a,junk"):
        assert readable_dn(text) == text


@given(st.text(max_size=200))
def test_any_text_reads_without_error(text: str) -> None:
    assert isinstance(readable_dn(text), str)


SAFE_VALUE = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters=",+;="),
    min_size=1,
    max_size=40,
)


@given(st.lists(SAFE_VALUE, min_size=1, max_size=4))
def test_a_name_from_cryptography_reads_as_its_values(values: list[str]) -> None:
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, v) for v in values])
    # RFC 4514 lists the last RDN first; its escapes (quotes, backslashes, leading # or space,
    # trailing space) are all undone.
    expected = ", ".join(f"OU={value}" for value in reversed(values))
    assert readable_dn(name.rfc4514_string()) == expected
