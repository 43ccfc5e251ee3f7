r"""Prompt-injection and tool-poisoning detection on text aimed at (or read by) the model.

How it works (rules in ``rules/injection.toml``, loaded once at import):

1. Hidden characters are reported by :func:`portcullis.detect.unicode.scan_unicode`. When
   there are any, the cues below are searched in the *visible view* of the text (hidden
   characters removed, Unicode-tag runs decoded to the ASCII they smuggle), with offsets mapped
   back to the original, so ``ig\u200bnore previous instructions`` and tag-smuggled messages
   are judged like plain text.
2. One regular-expression pass finds *cues*, each belonging to a weighted family (override,
   fake tags, role claims, model address, secrecy, argument steering, sensitive paths, user data,
   shadowing, authorisation claims, urgency, directives, action verbs) in English, Spanish,
   French, German, Chinese and Russian.
3. Cues closer than ``cluster_gap`` characters form a cluster, scored as the sum of the weights
   of its distinct families. A cluster scoring at least ``threshold`` with an *anchor* family
   (a cue rare in honest text) is a finding: ``injection-shadowing`` when it steers another
   tool, ``injection-credential-access`` when it names a sensitive path, else
   ``injection-instruction``. Severity depends on ``where``: text the model treats as
   instructions (``description``, ``schema``, ``instructions``, ``prompt``) is ``high``
   (``critical`` from the ``critical`` score); data the model reads (``result``, ``resource``,
   ``text``) is ``medium`` (``high`` from the ``critical`` score).
4. Weaker single signals are reported on their own: a sensitive path (``injection-sensitive-path``),
   a fake ``<IMPORTANT>``/``<system>`` tag (``injection-tag``), markdown images and links that
   carry data to a remote URL (``injection-markdown-image``, ``injection-link-exfil``) and
   instructions to append data to a URL (``injection-url-exfil``).

The cue pass is a single linear ``re`` scan; clustering is linear in the number of cues.
"""

from __future__ import annotations

import bisect
import heapq
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, Literal

from portcullis.detect._inj_engine import Matcher, compile_linear
from portcullis.detect.findings import SEVERITIES, Finding, Severity
from portcullis.detect.unicode import HIDDEN_RULES, decode_tags, scan_unicode, strip_hidden

__all__ = ["WHERE", "Where", "sanitize", "scan_definition", "scan_injection"]

Where = Literal["description", "schema", "instructions", "prompt", "resource", "result", "text"]
#: The places text can come from; the first four are read by the model as instructions.
WHERE: Final[tuple[str, ...]] = (
    "description",
    "schema",
    "instructions",
    "prompt",
    "resource",
    "result",
    "text",
)
_MODEL_FACING: Final = frozenset({"description", "schema", "instructions", "prompt"})
_EVIDENCE_MAX: Final = 120


@dataclass(frozen=True, slots=True)
class _Family:
    name: str
    weight: float
    anchor: bool
    repeat: bool


def _load() -> tuple[dict[str, _Family], Matcher, Matcher, dict[str, float]]:
    """Read the rules; build the action pass and the object pass (``pass = 2`` families).

    Two passes because one alternation consumes text: "include the user's previous messages
    in the 'x' field" is one argument-steering cue, and the data it names would be lost.
    """
    raw = tomllib.loads(
        resources.files("portcullis.detect").joinpath("rules/injection.toml").read_text("utf-8")
    )
    families: dict[str, _Family] = {}
    groups: dict[int, list[str]] = {1: [], 2: []}
    for name, spec in raw["families"].items():
        families[name] = _Family(
            name, float(spec["weight"]), bool(spec["anchor"]), bool(spec.get("repeat", False))
        )
        alts = [(r"\b" + p if p[:1].isascii() and p[:1].isalpha() else p) for p in spec["patterns"]]
        groups[int(spec.get("pass", 1))].append(f"(?P<{name}>{'|'.join(alts)})")
    first = compile_linear("|".join(groups[1]), ignorecase=True)
    second = compile_linear("|".join(groups[2]), ignorecase=True)
    scoring = {k: float(v) for k, v in raw["scoring"].items()}
    return families, first, second, scoring


_FAMILIES, _CUES, _CUES2, _SCORING = _load()

_MD_TAIL: Final = r'>?(?:\s+"[^"\n]{0,200}")?\s*\)?'
_IMAGE_RE: Final = re.compile(
    r"!\[([^\]\n]{0,300})\]\(\s*<?((?:https?:)?//[^)\s>]{1,2048})" + _MD_TAIL
)
_LINK_RE: Final = re.compile(
    r"(?<!!)\[([^\]\n]{0,300})\]\(\s*<?((?:https?:)?//[^)\s>]{1,2048})" + _MD_TAIL
)
_PLACEHOLDER_RE: Final = re.compile(
    r"\{[^}]{0,80}\}?|<|\$\{?[A-Za-z_]|%s|=[A-Z][A-Z0-9]*_[A-Z0-9_]+|\[[^\]]{0,40}\]"
)
_URL_APPEND_RE: Final = compile_linear(
    r"\b(?:append|add|attach|include|put|encode|concatenate)\b[^.\n]{0,60}?"
    r"\b(?:user|users|conversation|chat|session|tokens?|secrets?|keys?|passwords?|messages?"
    r"|history|credentials?|cookies?|emails?)\b[^.\n]{0,40}?"
    r"\b(?:to|in|into|onto)\s+(?:the\s+)?(?:url|link|query(?:\s+string)?|https?://\S+)",
    ignorecase=True,
)
_EXFIL_KEYS_RE: Final = re.compile(
    r"[?&](?:d|data|q|c|t|secret|token|key|msg|message|conv|history|payload|content)=",
    re.IGNORECASE,
)


def _clip(s: str) -> str:
    s = " ".join(s.split())
    return s if len(s) <= _EVIDENCE_MAX else s[: _EVIDENCE_MAX - 1] + "…"


def _f(rule: str, severity: Severity, start: int, end: int, evidence: str) -> Finding:
    return Finding(rule, "injection", severity, start, end, _clip(evidence))


class _View:
    """The visible view of a text: hidden characters dropped, tag runs decoded.

    ``text`` is the view; :meth:`orig` maps a view offset back to the original string.
    """

    __slots__ = ("_norm_starts", "_segments", "text")

    def __init__(self, original: str, hidden: list[Finding]) -> None:
        pieces: list[str] = []
        segments: list[tuple[int, int, int]] = []  # (view start, orig start, orig end)
        pos = 0
        npos = 0
        for f in hidden:
            if f.start < pos:
                continue
            if f.start > pos:
                chunk = original[pos : f.start]
                segments.append((npos, pos, f.start))
                pieces.append(chunk)
                npos += len(chunk)
            if f.rule == "unicode-tag-chars":
                decoded = "\n" + decode_tags(original[f.start : f.end]) + "\n"
                segments.append((npos, f.start, f.end))
                pieces.append(decoded)
                npos += len(decoded)
            pos = f.end
        if pos < len(original):
            segments.append((npos, pos, len(original)))
            pieces.append(original[pos:])
        self.text = "".join(pieces)
        self._segments = segments
        self._norm_starts = [s[0] for s in segments]

    def orig(self, i: int) -> int:
        """The original offset of view offset ``i``."""
        k = bisect.bisect_right(self._norm_starts, i) - 1
        if k < 0:
            return 0
        vstart, ostart, oend = self._segments[k]
        return min(ostart + (i - vstart), oend)


@dataclass(slots=True)
class _Cluster:
    start: int
    end: int
    families: dict[str, tuple[int, int]]
    repeats: dict[str, int]


def _cue_stream(matcher: Matcher, text: str) -> Iterator[tuple[int, int, str]]:
    for m in matcher.finditer(text):
        fam = m.lastgroup
        if fam is not None:
            s, e = m.span()
            yield s, e, fam


def _clusters(text: str) -> Iterator[_Cluster]:
    gap = int(_SCORING["cluster_gap"])
    cmax = int(_SCORING["cluster_max"])
    cur: _Cluster | None = None
    cues = heapq.merge(_cue_stream(_CUES, text), _cue_stream(_CUES2, text))
    for s, e, fam in cues:
        if cur is not None and s - cur.end <= gap and e - cur.start <= cmax:
            cur.end = max(cur.end, e)
            cur.families.setdefault(fam, (s, e))
            cur.repeats[fam] = cur.repeats.get(fam, 0) + 1
            continue
        if cur is not None:
            yield cur
        cur = _Cluster(s, e, {fam: (s, e)}, {fam: 1})
    if cur is not None:
        yield cur


def _score(c: _Cluster) -> tuple[float, bool]:
    """Score a cluster: the sum of its distinct families' weights, plus a repeat bonus.

    Each repeat (at most two) of a family marked ``repeat`` adds half its weight again: two
    shadowing cues say more than one.
    """
    fams = [_FAMILIES[n] for n in c.families]
    bonus = sum(0.5 * f.weight * min(c.repeats[f.name] - 1, 2) for f in fams if f.repeat)
    return sum(f.weight for f in fams) + bonus, any(f.anchor for f in fams)


def _cue_findings(text: str, where: str) -> list[Finding]:
    model_facing = where in _MODEL_FACING
    threshold = _SCORING["threshold"]
    critical = _SCORING["critical"]
    out: list[Finding] = []
    for c in _clusters(text):
        score, anchored = _score(c)
        fams = c.families
        if score >= threshold and anchored:
            if "shadow" in fams or "self_promo" in fams:
                rule = "injection-shadowing"
            elif "sensitive" in fams:
                rule = "injection-credential-access"
            else:
                rule = "injection-instruction"
            sev: Severity
            if model_facing:
                sev = "critical" if score >= critical else "high"
            else:
                sev = "high" if score >= critical else "medium"
            names = "+".join(sorted(fams))
            out.append(
                _f(rule, sev, c.start, c.end, f"[{names} {score:g}] {text[c.start : c.end]}")
            )
            continue
        if "sensitive" in fams:
            s, e = fams["sensitive"]
            steered = score >= threshold - 1 and ("verb" in fams or "steer_arg" in fams)
            sev = ("medium" if model_facing else "low") if steered else "low"
            out.append(_f("injection-sensitive-path", sev, s, e, text[s:e]))
        if "tag" in fams:
            s, e = fams["tag"]
            out.append(_f("injection-tag", "medium" if model_facing else "low", s, e, text[s:e]))
    return out


def _exfil_findings(text: str, where: str) -> list[Finding]:
    out: list[Finding] = []
    if "](" in text:
        for m in _IMAGE_RE.finditer(text):
            url = m.group(2)
            if _PLACEHOLDER_RE.search(url):
                out.append(_f("injection-markdown-image", "high", *m.span(), m.group()))
            elif "?" in url:
                sev: Severity = "medium" if _EXFIL_KEYS_RE.search(url) else "low"
                out.append(_f("injection-markdown-image", sev, *m.span(), m.group()))
        for m in _LINK_RE.finditer(text):
            if _PLACEHOLDER_RE.search(m.group(2)):
                out.append(_f("injection-link-exfil", "medium", *m.span(), m.group()))
    for m in _URL_APPEND_RE.finditer(text):
        start, end = m.span()
        out.append(_f("injection-url-exfil", "medium", start, end, m.group()))
    return out


def scan_injection(text: str, *, where: str = "text") -> list[Finding]:
    """Find injections, poisoning, shadowing, exfiltration and hidden characters in ``text``.

    Covers instructions aimed at the model, requests to read sensitive paths, steering of other
    tools, markdown image/link exfiltration and (via ``scan_unicode``) hidden characters.

    ``where`` is one of :data:`WHERE` and sets how severe a model-directed instruction is.
    Findings are sorted by position; offsets index ``text``.
    """
    if where not in WHERE:
        raise ValueError(f"unknown where {where!r}; expected one of {', '.join(WHERE)}")
    uni = scan_unicode(text)
    hidden = [f for f in uni if f.rule in HIDDEN_RULES]
    if hidden:
        view = _View(text, hidden)
        inner = _cue_findings(view.text, where) + _exfil_findings(view.text, where)
        found = [
            Finding(
                f.rule,
                f.kind,
                f.severity,
                view.orig(f.start),
                max(view.orig(f.end), view.orig(f.start)),
                f.evidence,
            )
            for f in inner
        ]
    else:
        found = _cue_findings(text, where) + _exfil_findings(text, where)
    found.extend(uni)
    found.sort(key=lambda f: (f.start, -SEVERITIES.index(f.severity), f.rule))
    return found


def _escape_pointer(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


_SCHEMA_KEYS: Final = frozenset({"inputSchema", "outputSchema", "arguments", "properties"})


def _walk(obj: Any, pointer: str, where: str) -> Iterator[tuple[str, str, str]]:
    if isinstance(obj, str):
        yield pointer, obj, where
    elif isinstance(obj, dict):
        for key, value in obj.items():
            k = str(key)
            child = f"{pointer}/{_escape_pointer(k)}"
            if k in _SCHEMA_KEYS or where == "schema":
                sub = "schema"
            elif k == "instructions":
                sub = "instructions"
            elif k == "messages":
                sub = "prompt"
            else:
                sub = where
            if pointer.endswith("/properties"):
                # property names are text the model reads too
                yield child, k, "schema"
            yield from _walk(value, child, sub)
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _walk(value, f"{pointer}/{i}", where)


def scan_definition(obj: dict[str, Any]) -> list[tuple[str, Finding]]:
    """Scan every string of a tool, prompt or resource definition.

    Walks name, title, description, annotations, ``inputSchema``/``outputSchema`` (property
    names, descriptions, titles, enums, defaults, examples), prompt arguments and messages and
    server ``instructions``. Returns ``(JSON pointer, finding)`` pairs; the pointer (RFC 6901)
    names the field, the finding's offsets index that field's string. Schema text is scanned
    with ``where="schema"``, ``instructions`` with ``"instructions"``, prompt ``messages`` with
    ``"prompt"``, everything else with ``"description"``.
    """
    out: list[tuple[str, Finding]] = []
    for pointer, text, where in _walk(obj, "", "description"):
        for finding in scan_injection(text, where=where):
            out.append((pointer, finding))
    return out


def _neutralise_image(m: re.Match[str]) -> str:
    alt = m.group(1).strip()
    return alt if alt else "[image]"


def _neutralise_link(m: re.Match[str]) -> str:
    return m.group(1) if _PLACEHOLDER_RE.search(m.group(2)) else m.group()


def sanitize(text: str) -> str:
    """``strip_hidden`` and neutralise markdown exfiltration; the ``sanitize`` policy action.

    Exactly: (1) :func:`strip_hidden`; (2) every markdown image whose target is remote
    (``http://``, ``https://`` or ``//``) is replaced by its alt text (``[image]`` when the alt
    text is empty), since a client that renders it fetches the URL with no click; (3) every
    markdown link whose URL holds a template placeholder (``{x}``, ``<x>``, ``$x``, ``%s``,
    ``=UPPER_CASE``) is replaced by its link text. Everything else, including the wording of
    any instruction, is left as it is: flagged text is reported, not rewritten.
    """
    out = strip_hidden(text)
    if "](" in out:
        out = _IMAGE_RE.sub(_neutralise_image, out)
        out = _LINK_RE.sub(_neutralise_link, out)
    return out
