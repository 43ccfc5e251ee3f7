r"""Secret (and, opt-in, PII) detection: ``scan_secrets(text)`` → sorted, non-overlapping findings.

The rules are data (``rules/secrets.toml``, ``rules/pii.toml``); the engine (``_engine.py``)
runs them all in one hyperscan pass, or google-re2 where hyperscan is missing. Validation
(checksums, entropy, placeholders, published examples) runs only on the candidates.

Secrets hidden under an encoding are found too: a JSON ``\u00XX`` escape or URL ``%XX``
escape inside a token, or a base64 blob whose decoded text holds a secret. The token is
decoded, scanned again, and the finding reports the span of the encoded form in the input.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from urllib.parse import unquote

from portcullis.detect._engine import Engine, Rule, get_engine
from portcullis.detect._engine import default_engine_name as _default_engine_name
from portcullis.detect._validate import (
    VALIDATORS,
    entropy,
    is_placeholder,
    is_published_example,
    mask,
)
from portcullis.detect.findings import Finding

__all__ = ["engine_name", "is_published_example", "scan_secrets"]

# Secrets wrapped in encodings inside encodings are rare; two levels bound the work a hostile
# payload can cause.
_MAX_DEPTH = 2
# A delimiter ends the token around an escape: whitespace, quotes, brackets, separators.
_TOKEN_STOP = frozenset(" \t\r\n\"'<>()[]{},;`")
# In a URL, query separators end a value too.
_URL_STOP = _TOKEN_STOP | frozenset("=&?")
_MAX_TOKEN = 8192
_JSON_ESC = re.compile(r"\\u([0-9A-Fa-f]{4})|\\([\\/\"bfnrt])")
_SIMPLE_ESC = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_B64_BLOB = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def engine_name() -> str:
    """The engine ``scan_secrets`` uses by default here: ``"hyperscan"`` or ``"re2"``."""
    return _default_engine_name()


def scan_secrets(text: str, *, pii: bool = False, engine: str | None = None) -> list[Finding]:
    """Find secrets (and PII when ``pii``) in ``text``.

    Returns findings sorted by position, never overlapping: where two rules claim the same
    characters the more severe, then the more specific, then the longer one wins. ``start``
    and ``end`` are character offsets; ``evidence`` is masked (``AKIA…WXYZ``), never the secret.
    ``engine`` forces ``"hyperscan"`` or ``"re2"`` (default: ``$PORTCULLIS_DETECT_ENGINE``, else
    hyperscan when it imports).
    """
    if not text:
        return []
    eng = get_engine(pii, engine)
    raw = _scan(eng, text, 0)
    return _resolve(raw)


# Validators that read the bytes around the candidate, not only the candidate itself.
_CONTEXT_VALIDATORS = frozenset({"ipv4", "ipv6"})

# A raw finding before overlap resolution: (rule, start, end, secret text).
_Raw = tuple[Rule, int, int, str]


def _scan(eng: Engine, text: str, depth: int) -> list[_Raw]:
    buf = text.encode("utf-8", "surrogatepass")
    matches, triggers = eng.scan(buf)
    to_char = _offset_mapper(
        text,
        buf,
        [o for _, s, e in matches for o in (s, e)] + [o for _, s, e in triggers for o in (s, e)],
    )
    out: list[_Raw] = []
    # The same candidate recurs in generated text (`password = process.env.X` in every file);
    # validators that look only at the secret decide once per (rule, secret).
    seen: dict[tuple[int, str], bool] = {}
    rules = eng.rules
    for idx, bs, be in matches:
        rule = rules[idx]
        start, end = to_char(bs), to_char(be)
        secret = text[start:end]
        if rule.validator in _CONTEXT_VALIDATORS:
            ok = _valid(rule, secret, buf, bs, be)
        else:
            key = (idx, secret)
            cached = seen.get(key)
            if cached is None:
                cached = seen[key] = _valid(rule, secret, buf, bs, be)
            ok = cached
        if ok:
            out.append((rule, start, end, secret))
    if triggers and depth < _MAX_DEPTH:
        out.extend(
            _scan_encoded(eng, text, [(k, to_char(s), to_char(e)) for k, s, e in triggers], depth)
        )
    return out


def _valid(rule: Rule, secret: str, buf: bytes, bs: int, be: int) -> bool:
    # Cheapest rejections first: most candidates of the generic rules are code, not secrets.
    if rule.allow is not None and rule.allow.fullmatch(secret):
        return False
    if rule.validator is not None:
        try:
            if not VALIDATORS[rule.validator](secret, buf, bs, be):
                return False
        except (ValueError, IndexError):
            return False
    if is_published_example(secret):
        return False
    if rule.kind == "secret" and rule.validator not in ("pem", "jwt") and is_placeholder(secret):
        return False
    return not (rule.entropy and entropy(secret) < rule.entropy)


def _offset_mapper(text: str, buf: bytes, offsets: list[int]) -> Callable[[int], int]:
    """Byte offsets in ``buf`` → character offsets in ``text`` (identity for ASCII)."""
    if len(buf) == len(text):
        return lambda o: o
    table: dict[int, int] = {}
    prev_b, prev_c = 0, 0
    for o in sorted(set(offsets)):
        # A byte class can stop inside a multi-byte character; snap back to its first byte.
        b = o
        while 0 < b < len(buf) and buf[b] & 0xC0 == 0x80:
            b -= 1
        prev_c += len(buf[prev_b:b].decode("utf-8", "surrogatepass"))
        prev_b = b
        table[o] = prev_c
    return table.__getitem__


def _token_around(text: str, start: int, end: int, stop: frozenset[str]) -> tuple[int, int]:
    lo = start
    limit = max(0, start - _MAX_TOKEN)
    while lo > limit and text[lo - 1] not in stop:
        lo -= 1
    hi = end
    limit = min(len(text), end + _MAX_TOKEN)
    while hi < limit and text[hi] not in stop:
        hi += 1
    return lo, hi


def _scan_encoded(
    eng: Engine, text: str, triggers: list[tuple[str, int, int]], depth: int
) -> list[_Raw]:
    out: list[_Raw] = []
    # Each token is decoded once: triggers inside a token already handled are skipped, so a
    # hostile run of a million escapes costs one pass, not a million overlapping ones.
    covered: dict[str, int] = {}
    for kind, s, e in sorted(triggers):
        if s < covered.get(kind, -1):
            continue
        if kind == "_base64":
            # The trigger includes the byte before the blob; the blob runs to its last '='.
            lo = s if text[s].isalnum() or text[s] in "+/" else s + 1
            m = _B64_BLOB.match(text, lo)
            hi = m.end() if m else e
        else:
            lo, hi = _token_around(text, s, e, _URL_STOP if kind == "_url-escape" else _TOKEN_STOP)
        covered[kind] = max(hi, e)
        decoded = _decode(kind, text[lo:hi])
        if decoded is None or decoded == text[lo:hi]:
            continue
        for rule, _, _, secret in _scan(eng, decoded, depth + 1):
            # The whole encoded token is what must go: its parts are the secret, encoded.
            out.append((rule, lo, hi, secret))
    return out


def _decode(kind: str, token: str) -> str | None:
    if kind == "_url-escape":
        return unquote(token, errors="replace") if "%" in token else None
    if kind == "_json-escape":
        try:
            # The C decoder when the token is a valid JSON string body; else the regex below.
            decoded = json.loads(f'"{token}"')
        except ValueError:
            pass
        else:
            return decoded if isinstance(decoded, str) else None

        def one(m: re.Match[str]) -> str:
            if m.group(1):
                return chr(int(m.group(1), 16))
            c = m.group(2)
            return _SIMPLE_ESC.get(c, c)

        return _JSON_ESC.sub(one, token)
    if len(token) > 1 << 20:
        return None
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
        decoded = raw.decode("utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    # Images, hashes and compressed data decode to bytes, not text; only text can hold a key.
    if not decoded.isprintable() and sum(c.isprintable() or c in "\r\n\t" for c in decoded) < len(
        decoded
    ):
        return None
    return decoded


def _resolve(raw: list[_Raw]) -> list[Finding]:
    """Drop overlaps: severity, then specificity, then length, then position decide."""
    raw.sort(key=lambda r: (-r[0].rank[0], -r[0].rank[1], -(r[2] - r[1]), r[1]))
    taken: list[tuple[int, int]] = []
    kept: list[_Raw] = []
    for r in raw:
        s, e = r[1], r[2]
        if any(s < te and ts < e for ts, te in taken):
            continue
        taken.append((s, e))
        kept.append(r)
    kept.sort(key=lambda r: (r[1], r[2]))
    return [
        Finding(rule=r.id, kind=r.kind, severity=r.severity, start=s, end=e, evidence=mask(secret))
        for r, s, e, secret in kept
    ]
