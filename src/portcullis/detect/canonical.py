r"""RFC 8785 (JSON Canonicalization Scheme) canonical JSON and definition hashes.

Pinning compares what a server *means*, not how it spelled it: key order, whitespace, string
escapes and number spelling (``1``, ``1.0``, ``1e0``) must not change a hash, while any change
to a string or a value must.

Two deliberate departures from a strict reading of RFC 8785, both chosen so that two
*different* values never share a canonical form (a shared hash would hide a rug pull):

* **Integers beyond ±2**53** are written with all their digits. JCS would round them to the
  nearest IEEE double, so ``9007199254740993`` and ``9007199254740992`` would hash alike. The
  cost: a huge integer and the same value spelled as a float hash differently, which reports a
  change (safe) rather than hiding one.
* **Lone surrogates** (possible in Python strings, forbidden by I-JSON) are written as
  ``\udxxx`` escapes instead of being refused, so hashing never fails on hostile input and
  distinct strings stay distinct. Well-formed text is written as UTF-8, exactly as JCS says.

NaN and the infinities are refused with ``ValueError``: JSON cannot carry them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["canonical_json", "definition_hash"]

# Integers in this range are exactly representable as doubles, so writing their digits is
# what ECMAScript's Number.prototype.toString would print too.
_SAFE_INT = 2**53

_ESCAPES = {
    0x08: "\\b",
    0x09: "\\t",
    0x0A: "\\n",
    0x0C: "\\f",
    0x0D: "\\r",
    0x22: '\\"',
    0x5C: "\\\\",
}


def canonical_json(value: Any) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of a JSON value.

    Accepts ``None``, ``bool``, ``int``, ``float``, ``str``, lists and tuples, and mappings with
    string keys. Raises ``TypeError`` for anything else and ``ValueError`` for NaN/Infinity
    and for nesting deeper than Python's recursion limit.
    """
    parts: list[str] = []
    try:
        _write(value, parts)
    except RecursionError:
        # Hostile nesting must fail as a value error the caller handles, not crash a gateway.
        raise ValueError("JSON value is too deeply nested to canonicalise") from None
    return "".join(parts).encode("utf-8", "surrogatepass")


def definition_hash(value: Any) -> str:
    """Return ``"sha256:"`` followed by the hex SHA-256 of the value's canonical JSON."""
    return "sha256:" + hashlib.sha256(canonical_json(value)).hexdigest()


def _write(value: Any, out: list[str]) -> None:
    # bool before int: True is an int in Python but a literal in JSON.
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, int):
        out.append(_integer(value))
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, Mapping):
        _object(value, out)
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"not a JSON value: {type(value).__name__}")


def _object(value: Mapping[Any, Any], out: list[str]) -> None:
    for key in value:
        if not isinstance(key, str):
            raise TypeError(f"JSON object keys must be strings, not {type(key).__name__}")
    out.append("{")
    for i, key in enumerate(sorted(value, key=_utf16_key)):
        if i:
            out.append(",")
        out.append(_string(key))
        out.append(":")
        _write(value[key], out)
    out.append("}")


def _utf16_key(key: str) -> bytes:
    # RFC 8785 §3.2.3 sorts by UTF-16 code units; big-endian UTF-16 bytes compare the same way.
    # surrogatepass keeps lone surrogates sortable instead of raising.
    return key.encode("utf-16-be", "surrogatepass")


def _string(value: str) -> str:
    chars = ['"']
    for ch in value:
        code = ord(ch)
        if code in _ESCAPES:
            chars.append(_ESCAPES[code])
        elif code < 0x20 or 0xD800 <= code <= 0xDFFF:
            # Controls as JCS says; lone surrogates escaped (see the module docstring).
            chars.append(f"\\u{code:04x}")
        else:
            chars.append(ch)
    chars.append('"')
    return "".join(chars)


def _integer(value: int) -> str:
    # Within ±2**53 this is exactly what ECMAScript prints for the same double; beyond it a
    # double cannot tell neighbours apart, so every digit is kept (see the module docstring).
    return str(value)


def _number(value: float) -> str:
    """Format a double as ECMAScript's Number.prototype.toString does (ECMA-262 §7.1.12.1)."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError("NaN and Infinity are not JSON numbers")
    if value == 0:
        return "0"  # also -0
    if value.is_integer() and abs(value) < _SAFE_INT:
        return str(int(value))
    sign = "-" if value < 0 else ""
    digits, n = _shortest_digits(abs(value))
    k = len(digits)
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * -n + digits
    else:
        exp = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        body = f"{mantissa}e{'+' if exp >= 0 else '-'}{abs(exp)}"
    return sign + body


def _shortest_digits(value: float) -> tuple[str, int]:
    """Return (digits, n) with value == 0.digits * 10**n, digits the shortest round trip.

    Python's ``repr`` already produces the shortest round-trip digits (the same requirement
    ECMA-262 places on ``s`` and ``k``); only the layout differs.
    """
    text = repr(value)
    mantissa, _, exp_text = text.partition("e")
    exp = int(exp_text) if exp_text else 0
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    # Position of the decimal point relative to the first significant digit.
    leading_zeros = len(whole + frac) - len((whole + frac).lstrip("0"))
    n = len(whole) - leading_zeros + exp
    digits = digits.rstrip("0")
    return digits, n
