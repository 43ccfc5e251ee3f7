"""Secret rules: true positives per rule, near-misses, examples, encodings, engines, cache."""

from __future__ import annotations

import base64
import itertools
import json
import os
import stat
import urllib.parse

import pytest

from portcullis.detect import _engine
from portcullis.detect._engine import load_rules
from portcullis.detect.findings import Finding
from portcullis.detect.secrets import engine_name, scan_secrets
from tests.detect.test_secrets_samples import AN, SAMPLES, github_token, jwt, rand

ENGINES = ["hyperscan", "re2"]
SECRET_RULES = [r.id for r in load_rules(False)]


def test_rule_count_and_ids() -> None:
    """At least 80 credential types, with unique kebab-case ids."""
    assert len(SECRET_RULES) >= 80
    assert len(set(SECRET_RULES)) == len(SECRET_RULES)
    assert all(r.replace("-", "").isalnum() and r == r.lower() for r in SECRET_RULES)


def test_every_rule_has_a_sample() -> None:
    """Each rule is exercised by a structurally correct test key."""
    assert set(SAMPLES) == set(SECRET_RULES)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("rule", sorted(SAMPLES))
def test_true_positive(rule: str, engine: str) -> None:
    """The sample is found by its own rule, with exactly the secret's span."""
    text, secret = SAMPLES[rule]
    found = scan_secrets(text, engine=engine)
    assert [f.rule for f in found] == [rule]
    f = found[0]
    assert text[f.start : f.end] == secret
    assert f.kind == "secret"
    assert secret not in f.evidence


NEAR_MISSES = [
    "id: 123e4567-e89b-12d3-a456-426614174000",
    "commit 9fceb02d0ae598e95dc970b74767f19372d61af8 merged",
    '"integrity": "sha512-' + base64.b64encode(bytes(range(64))).decode() + '"',
    "sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "color: #ff00aa; background: #123456",
    '<img src="data:image/png;base64,'
    + base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4).decode()
    + '">',
    "the AWS example key AKIAIOSFODNN7EXAMPLE is in the docs",
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "token: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    "API_KEY=xxxxxxxxxxxxxxxxxxxxxxxx",
    "api_key: <your-api-key-here>",
    "password = ${DB_PASSWORD}",
    "password: changeme",
    "password = get_password()",
    "password: str | None = None",
    "secret_key = settings.SECRET_KEY",
    "postgres://user:password@localhost/db",
    "-----BEGIN RSA PRIVATE KEY-----",
    "ghp_" + "a" * 36,
    "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
    "version 1.2.3.4 of the tool, build 20260101",
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("text", NEAR_MISSES)
def test_near_miss(text: str, engine: str) -> None:
    """Hashes, ids, colours, images, published examples and placeholders are not secrets."""
    assert scan_secrets(text, engine=engine) == []


def test_random_key_next_to_the_word_example_is_found() -> None:
    """Only the published example values are exempt, not anything near the word."""
    key = "AKIA" + rand("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
    found = scan_secrets(f"for example: {key} (example only)")
    assert [f.rule for f in found] == ["aws-access-key-id"]


def test_github_checksum_is_checked() -> None:
    """A ghp_ token whose last six characters are not its CRC32 is not reported."""
    good = github_token()
    bad = good[:-1] + ("A" if good[-1] != "A" else "B")
    assert [f.rule for f in scan_secrets(good)] == ["github-pat-classic"]
    assert scan_secrets(bad) == []


def test_jwt_needs_alg_in_header() -> None:
    """A three-part eyJ token whose header has no "alg" is not a JWT."""
    assert [f.rule for f in scan_secrets(jwt())] == ["jwt"]
    assert scan_secrets(jwt({"typ": "JWT"})) == []


def test_evidence_is_masked() -> None:
    """Evidence shows the first and last four characters only."""
    key = "AKIA" + rand("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
    (f,) = scan_secrets(key)
    assert f.evidence == f"{key[:4]}…{key[-4:]}"


def test_whole_pem_block_is_the_span() -> None:
    """The finding covers the private key from BEGIN to END."""
    text, secret = SAMPLES["private-key-pem"]
    (f,) = scan_secrets("before\n" + text + "after")
    assert f.end - f.start == len(secret)


def test_findings_sorted_and_non_overlapping() -> None:
    """Overlaps are resolved: the specific, more severe rule wins over generic ones."""
    gh = github_token()
    text = f'api_key = "{gh}"\npassword: hunter2x!Q\nAKIA{rand("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)}'
    found = scan_secrets(text)
    assert [f.rule for f in found] == [
        "github-pat-classic",
        "generic-password",
        "aws-access-key-id",
    ]
    for a, b in itertools.pairwise(found):
        assert a.end <= b.start


class TestEncodings:
    """Secrets split by JSON escapes, URL-encoded or base64-wrapped are found."""

    def test_json_unicode_escape(self) -> None:
        """A JSON unicode escape inside a key in raw text does not hide it; span is the escaped form."""
        key = "AKIA" + rand("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
        escaped = key[:4] + "\\u00" + format(ord(key[4]), "02x") + key[5:]
        text = f'{{"k": "{escaped}"}}'
        (f,) = scan_secrets(text)
        assert f.rule == "aws-access-key-id"
        assert text[f.start : f.end] == escaped

    def test_url_encoded(self) -> None:
        """%2B and friends inside a secret are decoded before matching."""
        secret = rand(AN, 20) + "+/" + rand(AN, 18)
        text = "q=aws_secret_access_key%3D" + urllib.parse.quote(secret, safe="")
        found = scan_secrets(text)
        assert [f.rule for f in found] == ["aws-secret-access-key"]

    def test_base64_wrapped(self) -> None:
        """A base64 blob that decodes to text holding a token is reported on the blob."""
        gh = github_token()
        blob = base64.b64encode(f"export GITHUB_TOKEN={gh}\n".encode()).decode()
        text = f"config: {blob} end"
        (f,) = scan_secrets(text)
        assert f.rule == "github-pat-classic"
        assert text[f.start : f.end] == blob

    def test_non_ascii_offsets(self) -> None:
        """Character offsets stay right when multi-byte text comes before the secret."""
        key = "AKIA" + rand("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
        text = f"naïve café — 🔑 {key} ✓"
        (f,) = scan_secrets(text)
        assert text[f.start : f.end] == key


def test_engine_name_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hyperscan is the default here; the env var forces the fallback."""
    assert engine_name() == "hyperscan"
    monkeypatch.setenv("PORTCULLIS_DETECT_ENGINE", "re2")
    assert engine_name() == "re2"
    text, _ = SAMPLES["stripe-secret-key"]
    assert [f.rule for f in scan_secrets(text)] == ["stripe-secret-key"]


def test_unknown_engine() -> None:
    """A bad engine name is an error, not a silent fallback."""
    with pytest.raises(ValueError, match="unknown detection engine"):
        scan_secrets("x", engine="pcre")


def _corpus() -> str:
    parts = []
    for i, (_rule, (text, _)) in enumerate(sorted(SAMPLES.items())):
        parts.append(json.dumps({"row": i, "id": f"{i:08x}-aaaa-bbbb", "rule_text": text}))
        parts.append(f"2026-11-24T20:00:{i % 60:02d}Z INFO request {rand(AN, 32)} ok\n")
        parts.append(text)
        parts.append("def f(x):\n    return x  # token handling\n")
    return "\n".join(parts)


@pytest.mark.parametrize("pii", [False, True])
def test_fallback_engine_gives_same_findings(pii: bool) -> None:
    """re2 and hyperscan agree on a mixed corpus with every rule planted."""
    corpus = _corpus()
    hs = scan_secrets(corpus, pii=pii, engine="hyperscan")
    r2 = scan_secrets(corpus, pii=pii, engine="re2")
    assert hs == r2
    assert len(hs) >= 2 * len(SAMPLES) - 5


def test_parallel_scan_gives_same_findings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large buffers scan rules and triggers on two threads; the findings do not change."""
    gh = github_token()
    blob = base64.b64encode(f"export GITHUB_TOKEN={gh}\n".encode()).decode()
    corpus = _corpus() + f"\nconfig: {blob} end\n"
    sequential = scan_secrets(corpus, engine="hyperscan")
    assert any(
        f.rule == "github-pat-classic" and corpus[f.start : f.end] == blob for f in sequential
    )
    monkeypatch.setattr(_engine.HyperscanEngine, "PARALLEL_MIN", 0)
    assert scan_secrets(corpus, engine="hyperscan") == sequential


def test_cache_written_private_and_reused(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled database is cached 0600 and loads back; a corrupt file is recompiled."""
    import hyperscan

    monkeypatch.setenv("PORTCULLIS_HOME", str(tmp_path / "state"))
    patterns = [r.pattern for r in load_rules(False)[:5]]
    _db, som = _engine._load_or_compile(hyperscan, patterns, "test")
    (path,) = (tmp_path / "state" / "cache").iterdir()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    db2, som2 = _engine._load_or_compile(hyperscan, patterns, "test")
    assert som2 == som
    hits: list[int] = []
    db2.scan(
        SAMPLES["aws-access-key-id"][0].encode(), match_event_handler=lambda i, *a: hits.append(i)
    )
    assert 0 in hits
    path.write_bytes(b"[1]\ngarbage")
    _db3, som3 = _engine._load_or_compile(hyperscan, patterns, "test")
    assert som3 == som


def test_finding_shape() -> None:
    """Findings are the shared Finding struct with character offsets."""
    (f,) = scan_secrets(SAMPLES["npm-access-token"][0])
    assert isinstance(f, Finding)
    assert set(f.to_dict()) == {"rule", "kind", "severity", "start", "end", "evidence"}


def test_empty() -> None:
    """Empty text has no findings."""
    assert scan_secrets("") == []


def test_wrong_som_hint_falls_back_to_probing(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pattern too large for start-of-match is found by probing when the hint is wrong."""
    import hyperscan

    monkeypatch.setenv("PORTCULLIS_HOME", str(tmp_path / "state"))
    rules = {r.id: r for r in load_rules(False)}
    big = rules["openai-project-key"]
    assert big.som is False
    patterns = [rules["npm-access-token"].pattern, big.pattern]
    _db, som = _engine._load_or_compile(hyperscan, patterns, "probe", [True, True])
    assert som == [True, False]
