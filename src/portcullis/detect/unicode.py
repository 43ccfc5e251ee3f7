r"""Hidden-character detection: invisible Unicode, terminal escapes and mixed-script words.

``scan_unicode`` reports, ``strip_hidden`` removes. Both are pure and linear in the input.

What counts as *hidden* (reported, and removed by :func:`strip_hidden`):

* Unicode tag characters U+E0000-E007F (the "ASCII smuggler" channel): a run is decoded back to
  ASCII and the decoded message is the evidence. Emoji subdivision flags (U+1F3F4 followed by
  tag letters and U+E007F CANCEL TAG) are legitimate and left alone.
* Zero-width characters (ZWSP, ZWNJ, ZWJ, WJ, BOM inside the text, Mongolian vowel separator,
  invisible math operators). A ZWJ *between two emoji* (family, rainbow flag, ...) is legitimate
  and kept; every other zero-width character is hidden.
* Bidi controls: embeddings, overrides and isolates (LRE, RLE, PDF, LRO, RLO, LRI, RLI, FSI,
  PDI: Trojan Source, CVE-2021-42574) and the implicit marks (LRM, RLM, ALM).
* Every other format (``Cf``) character, the Hangul fillers, and variation selectors other than
  VS15/VS16 (U+FE0E/U+FE0F, the text/emoji presentation selectors, which are kept): runs of
  selectors are a known way to hide bytes after an emoji. Ideographic variation sequences
  (U+E0100-E01EF after a Han character) are rare in tool text and are removed too.
* Terminal escapes: CSI (``ESC [`` ...), OSC (``ESC ]`` ..., including OSC 8 hyperlinks), other
  ``ESC`` sequences, the 8-bit C1 controls (U+0080-U+009F), backspace, and other C0 controls
  except tab, newline, carriage return, form feed and vertical tab. A carriage return that is not
  followed by a newline (an overwrite of the current line) is hidden as well.

Not hidden, but reported: words that mix letters of two scripts among Latin, Cyrillic, Greek,
Armenian, Cherokee and full-width Latin (``unicode-mixed-script``), raised to
``unicode-homoglyph`` when the foreign letters are all look-alikes of Latin letters, so the word
reads as plain ASCII (``p\u0430ypal`` with a Cyrillic ``\u0430``).

The script table
----------------
Python 3.11's :mod:`unicodedata` has no script property, so :data:`SCRIPT_RANGES` is a compact
table of the code-point blocks of the scripts that matter for Latin confusables. It is
deliberately block-based (a block is assigned to its script, including its few unassigned
points) and covers only those six scripts; any other character has script ``None`` and never
makes a word "mixed". :data:`CONFUSABLES` is a hand-picked subset of Unicode's
``confusables.txt`` for those scripts (lower and upper case letters that render like a Latin
letter in common fonts).
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from typing import Final

from portcullis.detect._inj_engine import compile_linear
from portcullis.detect.findings import Finding, Severity

__all__ = [
    "CONFUSABLES",
    "HIDDEN_RULES",
    "SCRIPT_RANGES",
    "decode_tags",
    "scan_unicode",
    "script_of",
    "strip_hidden",
]

#: (first, last, script) code-point ranges, sorted, non-overlapping.
SCRIPT_RANGES: Final[tuple[tuple[int, int, str], ...]] = (
    (0x0041, 0x005A, "Latin"),
    (0x0061, 0x007A, "Latin"),
    (0x00C0, 0x00D6, "Latin"),
    (0x00D8, 0x00F6, "Latin"),
    (0x00F8, 0x024F, "Latin"),  # Latin-1 letters, Extended-A and -B
    (0x0370, 0x03FF, "Greek"),
    (0x0400, 0x052F, "Cyrillic"),  # Cyrillic and Cyrillic Supplement
    (0x0531, 0x058F, "Armenian"),
    (0x13A0, 0x13FF, "Cherokee"),
    (0x1C80, 0x1C8F, "Cyrillic"),  # Cyrillic Extended-C
    (0x1E00, 0x1EFF, "Latin"),  # Latin Extended Additional
    (0x1F00, 0x1FFF, "Greek"),  # Greek Extended
    (0x2DE0, 0x2DFF, "Cyrillic"),  # Cyrillic Extended-A
    (0xA640, 0xA69F, "Cyrillic"),  # Cyrillic Extended-B
    (0xAB70, 0xABBF, "Cherokee"),  # Cherokee Supplement
    (0xFB13, 0xFB17, "Armenian"),  # Armenian ligatures
    (0xFF21, 0xFF3A, "Fullwidth"),
    (0xFF41, 0xFF5A, "Fullwidth"),
)
_STARTS: Final = [r[0] for r in SCRIPT_RANGES]

# Pairs "<look-alike><Latin>" separated by spaces: Cyrillic, Greek, Armenian, Cherokee letters.
_CONFUSABLE_PAIRS: Final = (
    "\u0430a \u0432b \u0441c \u0435e \u04bbh \u0456i \u0458j \u043ak \u043cm \u043eo "
    "\u0440p \u051bq \u0455s \u0442t \u0443y \u0445x \u051dw \u04afy \u04cfl \u0501d "
    "\u0261g \u0578n \u0410A \u0412B \u0421C \u0415E \u041dH \u0406I \u0408J \u041aK "
    "\u041cM \u041eO \u0420P \u0405S \u0422T \u0425X \u0423Y \u051cW \u04aeY \u04c0I "
    "\u03b1a \u03bfo \u03c1p \u03bdv \u03c5u \u03b9i \u03bak \u03c4t \u0391A \u0392B "
    "\u0395E \u0396Z \u0397H \u0399I \u039aK \u039cM \u039dN \u039fO \u03a1P \u03a4T "
    "\u03a5Y \u03a7X \u0585o \u057du \u0581g \u0570h \u0566q \u057cn \u054fS \u0555O "
    "\u13aaA \u13f4B \u13dfC \u13acE \u13bbH \u13abJ \u13e6K \u13b7M \u13e2P \u13daS "
    "\u13a2T \u13b3W \u13c3Z \u13d9V \u13deL "
)
#: Letters of the table's scripts that look like a Latin letter (subset of confusables.txt).
CONFUSABLES: Final[dict[str, str]] = {p[0]: p[1] for p in _CONFUSABLE_PAIRS.split()}

#: Rule ids that report hidden (invisible or escape) characters.
HIDDEN_RULES: Final[frozenset[str]] = frozenset(
    {
        "unicode-tag-chars",
        "unicode-zero-width",
        "unicode-bidi-control",
        "unicode-invisible",
        "unicode-variation-selector",
        "unicode-ansi-escape",
        "unicode-control-char",
        "unicode-overwrite",
    }
)

_EVIDENCE_MAX: Final = 120

_FLAG_SEQ: Final = r"\U0001F3F4[\U000E0061-\U000E007A\U000E0030-\U000E0039]{2,6}\U000E007F"
_TAGS: Final = r"[\U000E0000-\U000E007F]+"
_ZW: Final = r"[\u200b\u200c\u2060\ufeff\u180e\u2061-\u2064]+"
_BIDI: Final = r"[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]+"
_VS: Final = r"[\ufe00-\ufe0d\U000E0100-\U000E01EF]+"
# Other Cf (format) characters, as ranges from Unicode 14.0 (Python 3.11's unicodedata), less
# those matched above, plus the Hangul fillers, which render as blanks. Written out rather than
# computed: scanning all 1.1 million code points cost 55 ms of every gateway start.
# tests/detect/test_unicode.py checks the table against unicodedata.
CF_RANGES: Final[tuple[tuple[int, int], ...]] = (
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x206A, 0x206F),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x13438),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
)
_CF_EXTRA: Final = (
    "".join(chr(c) for lo, hi in CF_RANGES for c in range(lo, hi + 1)) + "\u115f\u1160\u3164\uffa0"
)
_INVIS: Final = "[" + re.escape(_CF_EXTRA) + "]+"
_CSI: Final = r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
_OSC: Final = r"(?:\x1b\]|\x9d)[^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"
_ESC_OTHER: Final = r"\x1b[ -/]*[0-~]?"
_C1: Final = r"[\x80-\x9f]+"
_CTRL: Final = r"[\x00-\x08\x0e-\x1f\x7f]+"
_CR: Final = r"\r(?!\n)"

_SCAN_RE: Final = compile_linear(
    "|".join(
        (
            f"(?P<flag>{_FLAG_SEQ})",
            f"(?P<tag>{_TAGS})",
            f"(?P<zw>{_ZW})",
            f"(?P<bidi>{_BIDI})",
            f"(?P<vs>{_VS})",
            f"(?P<invis>{_INVIS})",
            f"(?P<csi>{_CSI})",
            f"(?P<osc>{_OSC})",
            f"(?P<esc>{_ESC_OTHER})",
            f"(?P<c1>{_C1})",
            f"(?P<ctrl>{_CTRL})",
            r"(?P<zwj>\u200d+)",
        )
    )
)

# Script classes for the mixed-script pre-filter (letters only).
_SCRIPT_CLASSES: Final[dict[str, str]] = {}
for _lo, _hi, _name in SCRIPT_RANGES:
    _SCRIPT_CLASSES[_name] = _SCRIPT_CLASSES.get(_name, "") + (
        f"{re.escape(chr(_lo))}-{re.escape(chr(_hi))}"
    )
# Two adjacent letters of different scripts (a consuming pair: RE2 has no lookahead; the word
# around the pair is rebuilt afterwards, so a missed overlapping pair loses nothing).
_MIXED_RE: Final = compile_linear(
    "|".join(
        f"[{cls}][{''.join(v for k, v in _SCRIPT_CLASSES.items() if k != name)}]"
        for name, cls in _SCRIPT_CLASSES.items()
    )
)
_NON_ASCII_OR_CTRL: Final = re.compile(r"[^\t\n\x20-\x7e]")


def script_of(ch: str) -> str | None:
    """The script of one character from :data:`SCRIPT_RANGES`, or ``None`` if not listed."""
    cp = ord(ch)
    i = bisect.bisect_right(_STARTS, cp) - 1
    if i >= 0 and cp <= SCRIPT_RANGES[i][1]:
        return SCRIPT_RANGES[i][2]
    return None


def decode_tags(run: str) -> str:
    """Decode a run of Unicode tag characters to the ASCII it smuggles (others become ``?``)."""
    out = []
    for ch in run:
        cp = ord(ch) - 0xE0000
        if 0x20 <= cp <= 0x7E:
            out.append(chr(cp))
        elif 0 <= cp <= 0x7F:
            continue  # language tag / cancel tag: no payload
        else:
            out.append("?")
    return "".join(out)


def _is_emoji(ch: str) -> bool:
    cp = ord(ch)
    return (
        0x1F000 <= cp <= 0x1FAFF
        or 0x2600 <= cp <= 0x27BF
        or cp in (0xFE0F, 0x2640, 0x2642, 0x2695, 0x2696, 0x2708, 0x2764)
        or unicodedata.category(ch) == "So"
    )


def _emoji_zwj(text: str, start: int, end: int) -> bool:
    """Whether the ZWJ run ``text[start:end]`` is a single ZWJ joining two emoji."""
    return (
        end - start == 1
        and start > 0
        and end < len(text)
        and _is_emoji(text[start - 1])
        and _is_emoji(text[end])
    )


def _clip(s: str) -> str:
    return s if len(s) <= _EVIDENCE_MAX else s[: _EVIDENCE_MAX - 1] + "…"


def _codepoints(s: str, limit: int = 8) -> str:
    shown = " ".join(f"U+{ord(c):04X}" for c in s[:limit])
    return shown + (f" …(+{len(s) - limit})" if len(s) > limit else "")


def _finding(rule: str, severity: Severity, start: int, end: int, evidence: str) -> Finding:
    return Finding(rule, "unicode", severity, start, end, _clip(evidence))


def _ansi_severity(seq: str) -> tuple[Severity, str]:
    """Grade one CSI sequence: colours are low, concealment and cursor movement are high."""
    final = seq[-1]
    params = seq[2:-1] if seq.startswith("\x1b") else seq[1:-1]
    if final == "m":
        codes = {p for p in re.split(r"[;:]", params) if p}
        if "8" in codes:
            return "high", "concealed text (SGR 8)"
        if codes & {"30", "40", "90", "100"} and codes & {"30", "40"}:
            return "medium", "black on black"
        return "low", "colour/style"
    if final in "ABCDEFGHJKSTfsu":
        return "high", "cursor movement or erase"
    return "medium", "terminal control"


def scan_unicode(text: str) -> list[Finding]:
    """Report hidden characters, terminal escapes and mixed-script words in ``text``.

    Runs of the same kind are merged into one finding. Severity: tag characters, bidi
    embeddings/overrides/isolates, OSC 8 hyperlinks, concealed text and cursor movement are
    ``high``; a single stray zero-width or invisible character is ``low``, longer runs
    ``medium`` (``high`` from 8 characters, the size of one smuggled byte).
    """
    findings: list[Finding] = []
    if _NON_ASCII_OR_CTRL.search(text) is None:
        return findings
    for m in _SCAN_RE.finditer(text):
        kind = m.lastgroup
        s, e = m.span()
        run = m.group()
        n = e - s
        if kind == "flag":
            continue
        if kind == "tag":
            decoded = decode_tags(run)
            findings.append(
                _finding(
                    "unicode-tag-chars",
                    "high" if decoded.strip() else "medium",
                    s,
                    e,
                    f"decoded: {decoded!r}" if decoded else _codepoints(run),
                )
            )
        elif kind in ("zw", "zwj"):
            if kind == "zwj" and _emoji_zwj(text, s, e):
                continue
            if s == 0 and run == "\ufeff":
                sev: Severity = "low"
            else:
                sev = "high" if n >= 8 else "medium" if n >= 2 else "low"
            findings.append(_finding("unicode-zero-width", sev, s, e, _codepoints(run)))
        elif kind == "bidi":
            strong = any(c not in "\u200e\u200f\u061c" for c in run)
            findings.append(
                _finding(
                    "unicode-bidi-control", "high" if strong else "low", s, e, _codepoints(run)
                )
            )
        elif kind == "vs":
            sev = "high" if n >= 2 else "low"
            findings.append(_finding("unicode-variation-selector", sev, s, e, _codepoints(run)))
        elif kind == "invis":
            sev = "high" if n >= 8 else "medium" if n >= 2 else "low"
            findings.append(_finding("unicode-invisible", sev, s, e, _codepoints(run)))
        elif kind == "csi":
            sev, what = _ansi_severity(run)
            findings.append(_finding("unicode-ansi-escape", sev, s, e, f"{what}: {run!r}"))
        elif kind == "osc":
            body = run[2:] if run.startswith("\x1b") else run[1:]
            if body.startswith("8;"):
                target = body.split(";", 2)[-1].rstrip("\x07\x1b\\\x9c")
                findings.append(
                    _finding("unicode-ansi-escape", "high", s, e, f"OSC 8 hyperlink to {target!r}")
                )
            else:
                findings.append(_finding("unicode-ansi-escape", "medium", s, e, f"OSC: {run!r}"))
        elif kind in ("esc", "c1"):
            findings.append(_finding("unicode-ansi-escape", "medium", s, e, repr(run)))
        elif kind == "ctrl":
            sev = "medium" if "\x08" in run or n >= 2 else "low"
            findings.append(_finding("unicode-control-char", sev, s, e, repr(run)))
    if "\r" in text:
        for m in _CR_RE.finditer(text):
            nxt = text[m.end() : m.end() + 1]
            if nxt and nxt != "\r":
                findings.append(
                    _finding(
                        "unicode-overwrite",
                        "medium",
                        m.start(),
                        m.end(),
                        "carriage return overwrites line",
                    )
                )
    findings.extend(_mixed_scripts(text))
    findings.sort(key=lambda f: (f.start, f.end))
    return findings


# Greek letters used as symbols and units ("12 micro-s", "Z-alpha", "Delta-t" written without
# the hyphen). A word whose only non-Latin letters are these, at the start or end of its
# letters, is notation, not a homoglyph.
_GREEK_SYMBOLS: Final = frozenset(
    "\u03b1\u03b2\u03b3\u03b4\u03b5\u03b8\u03bb\u03bc\u03c0\u03c3\u03c4\u03c6\u03c8\u03c9\u0394\u0398\u039b\u03a0\u03a3\u03a6\u03a8\u03a9"
)  # alpha beta gamma delta epsilon theta lambda mu pi sigma tau phi psi omega, capitals


def _greek_symbol_affix(word: str) -> bool:
    letters = [c for c in word if c.isalpha()]
    last = len(letters) - 1
    foreign = [(i, c) for i, c in enumerate(letters) if script_of(c) not in (None, "Latin")]
    return bool(foreign) and all(c in _GREEK_SYMBOLS and i in (0, last) for i, c in foreign)


def _mixed_scripts(text: str) -> list[Finding]:
    """Words (runs of letters) mixing two scripts of the table; homoglyphs when they fold."""
    out: list[Finding] = []
    last_end = -1
    n = len(text)
    for m in _MIXED_RE.finditer(text):
        if m.start() < last_end:
            continue
        s = m.start()
        while s > 0 and m.start() - s < 64 and (text[s - 1].isalnum() or text[s - 1] == "_"):
            s -= 1
        e = m.end()
        while e < n and e - m.end() < 64 and (text[e].isalnum() or text[e] == "_"):
            e += 1
        last_end = e
        word = text[s:e]
        scripts = {sc for c in word if (sc := script_of(c)) is not None}
        if len(scripts) < 2:
            continue
        if _greek_symbol_affix(word):
            continue
        major = max(scripts, key=lambda sc: sum(script_of(c) == sc for c in word))
        folded = "".join(CONFUSABLES.get(c, c) for c in word)
        folded = unicodedata.normalize("NFKC", folded)
        foreign = sorted(scripts - {major})
        if folded.isascii() and (major == "Latin" or "Latin" in scripts):
            out.append(
                Finding(
                    "unicode-homoglyph",
                    "unicode",
                    "high",
                    s,
                    e,
                    _clip(f"{word} reads as {folded!r} ({major} with {', '.join(foreign)})"),
                )
            )
        else:
            out.append(
                Finding(
                    "unicode-mixed-script",
                    "unicode",
                    "medium",
                    s,
                    e,
                    _clip(f"{word} ({', '.join(sorted(scripts))})"),
                )
            )
    return out


_STRIP_RE: Final = re.compile(
    "|".join(
        (
            f"(?P<flag>{_FLAG_SEQ})",
            _TAGS,
            _ZW,
            _BIDI,
            _VS,
            _INVIS,
            _CSI,
            _OSC,
            _ESC_OTHER,
            _C1,
            _CTRL,
        )
    )
)
_ZWJ_RE: Final = re.compile("\u200d+")
_CR_RE: Final = re.compile(_CR)


def strip_hidden(text: str) -> str:
    r"""Remove every hidden character and terminal escape sequence, keeping visible text.

    Removes what :data:`HIDDEN_RULES` report: tag characters (but keeps emoji subdivision flags),
    zero-width characters, bidi controls and marks, other ``Cf`` characters, Hangul fillers,
    variation selectors other than VS15/VS16, whole CSI/OSC/ESC sequences (with their
    parameters), C1 and C0 controls other than ``\t \n \r \f \v``, and carriage returns not
    followed by a newline. Keeps spaces, tabs, newlines (``\r\n`` too) and a ZWJ joining two
    emoji. Idempotent: the ZWJ and CR decisions are taken after everything else is removed.
    """
    if _NON_ASCII_OR_CTRL.search(text) is None:
        return text
    out = _STRIP_RE.sub(lambda m: m.group("flag") or "", text)
    if "\u200d" in out:
        out = _ZWJ_RE.sub(
            lambda m: m.group() if _emoji_zwj(m.string, m.start(), m.end()) else "", out
        )
    if "\r" in out:
        out = _CR_RE.sub("", out)
    return out
