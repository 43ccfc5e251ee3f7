"""Validators and helpers that run on candidates only (never on whole payloads).

Each validator takes the secret text (the rule's group) and the surrounding buffer with the
secret's byte span, and returns whether the candidate is real. They are small, pure and cheap:
the multi-pattern engine has already narrowed the text to a handful of candidates.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import math
import re
import zlib
from collections import Counter
from collections.abc import Callable

__all__ = [
    "VALIDATORS",
    "Validator",
    "entropy",
    "github_checksum",
    "is_placeholder",
    "is_published_example",
    "luhn_ok",
    "mask",
]

Validator = Callable[[str, bytes, int, int], bool]

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def entropy(s: str) -> float:
    """Shannon entropy of ``s`` in bits per character."""
    if not s:
        return 0.0
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def mask(s: str) -> str:
    """Evidence for a finding: enough to recognise the value, never the value itself."""
    if len(s) >= 16:
        return f"{s[:4]}…{s[-4:]}"
    if len(s) >= 8:
        return f"{s[:2]}…"
    return "…"


def github_checksum(body: str) -> str:
    """The 6-character base62 CRC32 that ends a GitHub token whose random part is ``body``."""
    n = zlib.crc32(body.encode())
    out = ""
    while n:
        n, r = divmod(n, 62)
        out = _B62[r] + out
    return out.rjust(6, "0")


def _github_crc32(s: str, buf: bytes, start: int, end: int) -> bool:
    # ghp_ + 30 random base62 characters + the checksum of those 30 (GitHub's 2021 format).
    token = s.split("_", 1)[1]
    return github_checksum(token[:-6]) == token[-6:]


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check used by payment card numbers."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


_IIN = re.compile(
    r"4[0-9]{12}(?:[0-9]{3}){0,2}|5[1-5][0-9]{14}|2(?:22[1-9]|2[3-9][0-9]|[3-6][0-9]{2}|7[01][0-9]|720)[0-9]{12}"
    r"|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])[0-9]{11,16}|6(?:011|5[0-9]{2}|4[4-9][0-9])[0-9]{12,15}"
    r"|35(?:2[89]|[3-8][0-9])[0-9]{12,15}|62[0-9]{14,17}"
)


def _luhn(s: str, buf: bytes, start: int, end: int) -> bool:
    seps = {c for c in s if not c.isdigit()}
    if len(seps) > 1:
        return False
    digits = "".join(c for c in s if c.isdigit())
    if not 13 <= len(digits) <= 19 or len(set(digits)) < 3:
        return False
    return _IIN.fullmatch(digits) is not None and luhn_ok(digits)


_IBAN_LEN = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20,
    "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18,
    "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30,
    "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
    "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28,
    "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24,
    "SM": 27, "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}  # fmt: skip


def _iban(s: str, buf: bytes, start: int, end: int) -> bool:
    v = s.replace(" ", "")
    if _IBAN_LEN.get(v[:2]) != len(v):
        return False
    moved = v[4:] + v[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _ssn(s: str, buf: bytes, start: int, end: int) -> bool:
    area, group, serial = s.split("-")
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    # Published examples (the Woolworth wallet card, the usual sample) are not anyone's.
    return s not in ("078-05-1120", "123-45-6789", "219-09-9999")


_VERSION_CTX = re.compile(
    rb"(?i)(?:version|ver|v|release|build|rev|section|sec\.|\xc2\xa7|rfc [0-9]+|[=~<>!]=)"
    rb"[\s:=\"']{0,3}$"
)


def _ipv4(s: str, buf: bytes, start: int, end: int) -> bool:
    # Decision (documented in docs): a dotted quad after "version"/"v"/"release" is a version
    # number, not an address; loopback, unspecified and broadcast addresses identify nobody.
    if _VERSION_CTX.search(buf[max(0, start - 12) : start]):
        return False
    # Four single digits (4.1.2.1, 1.0.0.0) is a section or version number far more often
    # than an address, and the few such addresses (1.1.1.1, 8.8.8.8) are public resolvers.
    if all(len(p) == 1 for p in s.split(".")):
        return False
    # A CIDR range names a network, not a host; TEST-NET ranges are documentation.
    if buf[end : end + 1] == b"/" or any(ip_in(s, n) for n in _DOC_NETS_V4):
        return False
    ip = ipaddress.IPv4Address(s)
    return not (ip.is_loopback or ip.is_unspecified or s == "255.255.255.255")


_DOC_NETS_V4 = tuple(
    ipaddress.IPv4Network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
)


def ip_in(s: str, net: ipaddress.IPv4Network) -> bool:
    """True when the IPv4 address ``s`` is inside ``net``."""
    return ipaddress.IPv4Address(s) in net


def _ipv6(s: str, buf: bytes, start: int, end: int) -> bool:
    try:
        ip = ipaddress.IPv6Address(s)
    except ValueError:
        return False
    groups = [g for g in s.split(":") if g]
    if buf[end : end + 1] == b"/" or ip in _DOC_NET_V6:
        return False
    if len(groups) < 3 or ip.is_loopback or ip.is_unspecified:
        return False
    # Something with a letter-only group like "dead:beef:cafe" is usually a word game, but a
    # real address has digits in it.
    return any(c.isdigit() for c in s)


_DOC_NET_V6 = ipaddress.IPv6Network("2001:db8::/32")


def _phone(s: str, buf: bytes, start: int, end: int) -> bool:
    digits = sum(c.isdigit() for c in s)
    if s.startswith("+"):
        return 8 <= digits <= 15 and not re.search(r"[.-]{2}|\s{2}", s)
    return digits == 10


_DOC_DOMAINS = re.compile(
    r"(?i)@(?:[a-z0-9-]+\.)*example\.(?:com|org|net)$|\.(?:test|invalid|local|localhost|example)$"
)
_NOT_TLD = re.compile(r"(?i)\.(?:png|jpe?g|gif|svg|webp|js|py|css|html?|json|txt|md|so|whl|gz)$")


def _email(s: str, buf: bytes, start: int, end: int) -> bool:
    # user@example.com is documentation; name@2x.png and pkg@1.2.3 are file names and versions.
    return not (_DOC_DOMAINS.search(s) or _NOT_TLD.search(s))


def _jwt(s: str, buf: bytes, start: int, end: int) -> bool:
    try:
        head = s.split(".", 1)[0]
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return False
    return isinstance(header, dict) and "alg" in header


def _pem(s: str, buf: bytes, start: int, end: int) -> bool:
    # A header alone (documentation, a regex in source) is not a key: require a key body.
    parts = s.split("-----")
    body = parts[2] if len(parts) > 2 else ""
    body = body.replace("\\n", "").replace("\\r", "")
    return len(re.sub(r"[^A-Za-z0-9+/=]", "", body)) >= 64


_PLACEHOLDER = re.compile(
    r"(?i)^(?:.*x{4,}.*|.*\*{3,}.*|<[^>]*>?|\$\{?[A-Za-z_].*|\{\{.*|%\(?[A-Za-z_].*|\[.*\]|"
    r".*(?:your|my)[_-]?(?:api[_-]?)?(?:key|token|secret|password|pass).*|.*changeme.*|.*change[_-]?me.*|"
    r".*placeholder.*|.*redacted.*|.*dummy.*|.*insert[_-]?.*here.*|.*replace[_-]?me.*|"
    r"(?:example|sample|test|fake|secret|password|passwd|token|none|null|undefined|true|false)[0-9_-]*)$"
)


# Values published in vendor documentation (AWS's example key pair, jwt.io's sample token,
# Stripe's docs key). Any rule, generic ones included, skips a value containing one of them.
_PUBLISHED_EXAMPLES = re.compile(
    r"AKIAIOSFODNN7EXAMPLE|AKIAI44QH8DHBEXAMPLE|wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY|"
    r"je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY|"
    r"eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ|"
    r"sk_test_4eC39HqLyjWDarjtT1zdp7dc|sk_test_BQokikJOvBiI2HlWgH4olfQ2"
)


def is_published_example(s: str) -> bool:
    """True when ``s`` contains a credential published as an example in vendor docs."""
    return _PUBLISHED_EXAMPLES.search(s) is not None


def is_placeholder(s: str) -> bool:
    """True for values that stand for a secret instead of being one (``xxxx``, ``${VAR}``)."""
    return bool(_PLACEHOLDER.match(s)) or len(set(s)) <= 2


_CODE_VALUE = re.compile(
    r"^(?:[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+|[a-z_]+|[A-Z_]+|[A-Za-z_][A-Za-z0-9_]*\(.*|"
    r"(?:self|cls|this|os|process|env|config|settings|request|args|kwargs)\b.*|_*[A-Z][a-z]+(?:[A-Z][a-z]+)*)$"
)


def _classes(s: str) -> int:
    return sum(
        (
            any(c.islower() for c in s),
            any(c.isupper() for c in s),
            any(c.isdigit() for c in s),
            any(not c.isalnum() for c in s),
        )
    )


def _password(s: str, buf: bytes, start: int, end: int) -> bool:
    if is_placeholder(s) or _CODE_VALUE.match(s):
        return False
    return _classes(s) >= 2


def _generic_secret(s: str, buf: bytes, start: int, end: int) -> bool:
    if is_placeholder(s) or _CODE_VALUE.match(s) or ("/" in s.strip("/") and s.count("/") > 2):
        return False
    # A real token mixes letters and digits; paths, words and snake_case names do not.
    return any(c.isdigit() for c in s) and any(c.isalpha() for c in s)


def _basic_auth(s: str, buf: bytes, start: int, end: int) -> bool:
    try:
        decoded = base64.b64decode(s + "=" * (-len(s) % 4), validate=True).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return False
    user, sep, pw = decoded.partition(":")
    return bool(sep and user and pw and decoded.isprintable() and not is_placeholder(pw))


VALIDATORS: dict[str, Validator] = {
    "github_crc32": _github_crc32,
    "luhn": _luhn,
    "iban": _iban,
    "ssn": _ssn,
    "ipv4": _ipv4,
    "ipv6": _ipv6,
    "phone": _phone,
    "email": _email,
    "jwt": _jwt,
    "pem": _pem,
    "password": _password,
    "generic_secret": _generic_secret,
    "basic_auth": _basic_auth,
}
