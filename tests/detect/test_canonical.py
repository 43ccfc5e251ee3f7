"""RFC 8785 canonical JSON: the RFC's own examples, the documented departures, properties."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portcullis.detect.canonical import canonical_json, definition_hash

# RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical JSON spelling.
NUMBER_TABLE = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "expected"), NUMBER_TABLE)
def test_rfc8785_number_table(bits: str, expected: str) -> None:
    """Every IEEE 754 value in RFC 8785 Appendix B serialises as the RFC says."""
    value = struct.unpack(">d", bytes.fromhex(bits))[0]
    assert canonical_json(value) == expected.encode()


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_nan_and_infinity_are_refused(bits: str) -> None:
    """NaN and ±Infinity (RFC 8785 Appendix B) are errors, not numbers."""
    with pytest.raises(ValueError, match="NaN and Infinity"):
        canonical_json({"x": struct.unpack(">d", bytes.fromhex(bits))[0]})


def test_rfc8785_section_3_2_2_example() -> None:
    """The RFC's main example: literals, numbers and string escapes, keys sorted."""
    source = r"""{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }"""
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical_json(json.loads(source)).decode() == expected


def test_rfc8785_section_3_2_3_sorting() -> None:
    """Keys sort by UTF-16 code units: an astral emoji sorts before U+FB33."""
    source = r"""{
      "\u20ac": "Euro Sign",
      "\r": "Carriage Return",
      "\ufb33": "Hebrew Letter Dalet With Dagesh",
      "1": "One",
      "\ud83d\ude00": "Emoji: Grinning Face",
      "\u0080": "Control",
      "\u00f6": "Latin Small Letter O With Diaeresis"
    }"""
    out = json.loads(canonical_json(json.loads(source)), object_pairs_hook=list)
    assert [value for _, value in out] == [
        "Carriage Return",
        "One",
        "Control",
        "Latin Small Letter O With Diaeresis",
        "Euro Sign",
        "Emoji: Grinning Face",
        "Hebrew Letter Dalet With Dagesh",
    ]
    assert canonical_json({"\r": 1}) == b'{"\\r":1}'


def test_rfc8785_section_3_2_4_utf8_bytes() -> None:
    """The output is UTF-8 with non-ASCII written raw (RFC 8785 §3.2.4)."""
    assert (
        canonical_json(
            {
                "peach": "This sorting order",
                "péché": "is wrong according to French",
                "pêche": "but canonicalization MUST",
                "sin": "ignore locale",
            }
        )
        == (
            '{"peach":"This sorting order","péché":"is wrong according to French",'
            '"pêche":"but canonicalization MUST","sin":"ignore locale"}'
        ).encode()
    )


def test_minimal_escapes() -> None:
    """Only quote, backslash and C0 controls are escaped; DEL, U+2028 and / are not."""
    assert canonical_json('\b\t\n\f\r\x01\x1f"\\/\x7f\u2028') == (
        '"\\b\\t\\n\\f\\r\\u0001\\u001f\\"\\\\/\x7f\u2028"'.encode()
    )


def test_number_spellings_agree() -> None:
    """`1`, `1.0` and `1e0` are one number; so are `-0` and `0`."""
    values = [json.loads(s) for s in ("1", "1.0", "1e0", "10e-1")]
    assert {canonical_json(v) for v in values} == {b"1"}
    assert canonical_json(-0.0) == canonical_json(0) == b"0"


def test_large_integers_keep_every_digit() -> None:
    """Integers beyond 2**53 are not rounded, so neighbours never share a hash (documented)."""
    assert canonical_json(2**53 + 1) == b"9007199254740993"
    assert definition_hash(2**53 + 1) != definition_hash(2**53)
    assert canonical_json(2**53) == canonical_json(float(2**53))


def test_lone_surrogates_are_escaped() -> None:
    """A lone surrogate is written as an escape rather than refused, and stays distinct."""
    assert canonical_json("a\ud800b") == b'"a\\ud800b"'
    assert definition_hash("\ud800") != definition_hash("\ud801")
    assert canonical_json("\U0001f600") == '"\U0001f600"'.encode()


def test_booleans_are_not_numbers() -> None:
    """True is the literal true, not 1."""
    assert canonical_json([True, 1, False, 0]) == b"[true,1,false,0]"


@pytest.mark.parametrize("value", [{1: "x"}, {"x": object()}, {"x": b"bytes"}])
def test_non_json_values_are_refused(value: Any) -> None:
    """Non-string keys and non-JSON values raise TypeError."""
    with pytest.raises(TypeError):
        canonical_json(value)


def test_definition_hash_form() -> None:
    """A hash is sha256: plus 64 hex digits."""
    digest = definition_hash({"name": "read_file"})
    assert digest.startswith("sha256:")
    assert len(digest) == 71


# -- properties ------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6), st.randoms())
def test_key_order_does_not_matter(value: dict[str, Any], rnd: Any) -> None:
    """Shuffling an object's keys leaves its hash alone."""
    items = list(value.items())
    rnd.shuffle(items)
    assert definition_hash(dict(items)) == definition_hash(value)


@given(json_values, st.sampled_from([None, 0, 1, 2, "\t"]), st.booleans())
def test_whitespace_and_escapes_do_not_matter(value: Any, indent: Any, ascii_only: bool) -> None:
    """Any JSON spelling of a value (indentation, escapes) canonicalises the same."""
    spelled = json.dumps(value, indent=indent, ensure_ascii=ascii_only)
    assert canonical_json(json.loads(spelled)) == canonical_json(value)


@given(json_values)
def test_canonical_form_round_trips(value: Any) -> None:
    """The canonical bytes are JSON that decodes to an equal value and is its own canonical form."""
    out = canonical_json(value)
    assert canonical_json(json.loads(out)) == out


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_numbers_round_trip_exactly(value: float) -> None:
    """Every double's canonical spelling parses back to the same double."""
    assert float(canonical_json(value)) == value


@given(st.integers(min_value=-(2**53), max_value=2**53))
def test_integer_and_float_spellings_agree(value: int) -> None:
    """An integer and the same value as a float hash alike, within the exact range."""
    assert canonical_json(value) == canonical_json(float(value))


@given(st.text(), st.text(min_size=1), st.integers(min_value=0))
def test_any_string_change_changes_the_hash(text: str, insert: str, at: int) -> None:
    """Inserting anything into a description changes the definition hash."""
    at = at % (len(text) + 1)
    changed = text[:at] + insert + text[at:]
    assert definition_hash({"description": changed}) != definition_hash({"description": text})


@given(st.text(), st.text())
def test_distinct_strings_hash_distinctly(a: str, b: str) -> None:
    """Two different strings never share a canonical form."""
    if a != b:
        assert canonical_json(a) != canonical_json(b)


def test_deep_nesting_is_a_value_error() -> None:
    """Hostile nesting fails as ValueError rather than RecursionError."""
    value: Any = []
    for _ in range(100_000):
        value = [value]
    with pytest.raises(ValueError, match="too deeply nested"):
        canonical_json(value)
