"""Redaction of text and of decoded JSON values; hypothesis properties."""

from __future__ import annotations

import copy
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portcullis.detect.redact import marker, redact_text, redact_value
from portcullis.detect.secrets import scan_secrets
from tests.detect.test_secrets_samples import SAMPLES, card, github_token


def test_redact_text_markers() -> None:
    """Each finding's span becomes [REDACTED:<rule-id>]; the rest is untouched."""
    gh = github_token()
    text = f"token={gh} ok"
    out = redact_text(text, scan_secrets(text))
    assert out == "token=[REDACTED:github-pat-classic] ok"


def test_redact_text_no_findings_is_identity() -> None:
    """No findings, same string."""
    assert redact_text("hello", []) == "hello"


def test_key_is_context_for_value() -> None:
    """A password under a "password" key is redacted; the key is kept."""
    out, counts = redact_value({"password": "hunter2x!Q", "user": "bob"})
    assert out == {"password": marker("generic-password"), "user": "bob"}
    assert counts == {"generic-password": 1}


def test_number_secret_becomes_marker() -> None:
    """A card number held as an int becomes the marker string (with pii)."""
    n = int(card("4"))
    out, counts = redact_value({"card": n, "qty": 3}, pii=True)
    assert out == {"card": marker("payment-card"), "qty": 3}
    assert counts == {"payment-card": 1}
    assert redact_value({"card": n})[0] == {"card": n}


def test_input_not_mutated_and_structure_kept() -> None:
    """The input is left as it was; nested lists and dicts keep their shape."""
    gh = github_token()
    value = {"content": [{"type": "text", "text": f"key {gh}"}], "isError": False, "n": None}
    before = copy.deepcopy(value)
    out, counts = redact_value(value)
    assert value == before
    assert out == {
        "content": [{"type": "text", "text": "key [REDACTED:github-pat-classic]"}],
        "isError": False,
        "n": None,
    }
    assert counts == {"github-pat-classic": 1}


def test_json_in_json_escaped_quotes() -> None:
    """A JSON document inside a string value is scanned decoded (escaped quotes hide nothing)."""
    inner = json.dumps({"password": "hunter2x!Q"})
    out, _ = redact_value({"text": inner})
    assert "hunter2x!Q" not in json.dumps(out)


_secrets = st.sampled_from(sorted(SAMPLES.items()))
_filler = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), max_codepoint=0x2FFF), max_size=30
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(_secrets, _filler, _filler)
def test_property_text_never_leaves_planted_secret(sample, before: str, after: str) -> None:
    """Whatever surrounds a planted secret, redacted text no longer contains it."""
    _, (text, secret) = sample
    full = f"{before} {text} {after}"
    out = redact_text(full, scan_secrets(full))
    assert secret not in out


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _filler)
_json = st.recursive(
    _json_leaf,
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(_filler, kids, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(_json, _secrets, st.integers(min_value=0, max_value=3))
def test_property_json_stays_json_and_secret_gone(doc, sample, where: int) -> None:
    """redact_value output re-encodes as JSON and the planted value is absent."""
    _, (text, secret) = sample
    planted = {"wrapper": doc, "payload": [text] if where % 2 else {"v": text}, "n": where}
    before = json.dumps(planted)
    out, counts = redact_value(planted, pii=bool(where & 2))
    encoded = json.dumps(out)
    json.loads(encoded)
    assert secret not in encoded
    assert sum(counts.values()) >= 1
    assert json.dumps(planted) == before
