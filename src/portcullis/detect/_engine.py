"""The multi-pattern engine behind ``scan_secrets``: rules from TOML, one pass over the text.

hyperscan compiles every rule into one database and scans the text once; each rule that fires
gives a candidate region, and only those regions are re-checked with the rule's own Python
``re`` (cheap: a few hundred bytes, literal-first patterns) to get the exact span and the
capture group. (Buffers of 1 MiB and more are scanned by two databases at once, the rules
and the encoding triggers, on two threads; see ``HyperscanEngine``.) Where hyperscan does not
import (macOS arm64, Windows), google-re2 stands in: ``re2.Set`` says which rules occur in each
chunk and each such rule's own re2 pattern finds them. No Python ``re`` alternation ever runs
over a whole payload (DESIGN §5: 0.5 MB/s).

The compiled hyperscan database is cached in ``<state dir>/cache/`` keyed by a hash of the
rules and the library versions, because compiling ~130 patterns takes far longer than the
start-up budget (DESIGN §6).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import threading
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal

__all__ = ["Engine", "Match", "Rule", "get_engine", "load_rules"]

EngineName = Literal["hyperscan", "re2"]
# (rule index, start byte, end byte) of one confirmed match's secret part.
Match = tuple[int, int, int]

# Matches sort by start, end, then rule.
_BY_POSITION = itemgetter(1, 2, 0)

_SEVERITY_RANK = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}

# Internal "trigger" rules: not findings themselves, but places where a secret may hide under
# an encoding. secrets.py decodes the token around each one and scans it again.
TRIGGERS: tuple[tuple[str, str], ...] = (
    ("_json-escape", r"\\u00[0-9A-Fa-f]{2}"),
    ("_url-escape", r"%[0-9A-Fa-f]{2}"),
    # Fixed width with a non-base64 byte in front: fires once per blob (at its start), not at
    # every byte of a 100 KB image. Each 4-character group of base64-encoded ASCII text starts
    # with one of [CI-Za-f] (the top 6 bits of a byte 0x09..0x7F), so ten such groups in a row
    # pass for text while random blobs, images and hex hashes almost never do (≈ 0.5^10).
    # The byte before must be a delimiter that holds values (quote, =, :, >, whitespace): this
    # halves the scan cost against "any non-base64 byte"; a blob at offset 0 is checked apart.
    ("_base64", r"[\s\"'=:>](?:[CI-Za-f][A-Za-z0-9+/]{3}){10}"),
)


@dataclass(frozen=True)
class Rule:
    """One detection rule, loaded from ``rules/*.toml``."""

    id: str
    kind: Literal["secret", "pii"]
    severity: Literal["info", "low", "medium", "high", "critical"]
    pattern: str
    group: int
    validator: str | None
    entropy: float
    max_len: int
    priority: int
    som: bool
    regex: re.Pattern[bytes]
    extends: bool
    allow: re.Pattern[str] | None

    @property
    def rank(self) -> tuple[int, int]:
        """Who wins an overlap: severity first, then how specific the rule is."""
        return (_SEVERITY_RANK[self.severity], self.priority)


def _rules_text(pii: bool) -> str:
    files = ["secrets.toml", "pii.toml"] if pii else ["secrets.toml"]
    base = resources.files("portcullis.detect") / "rules"
    return "\n".join((base / f).read_text(encoding="utf-8") for f in files)


def load_rules(pii: bool) -> list[Rule]:
    """Parse the TOML rule files (secrets, plus PII when asked) into ``Rule`` objects."""
    rules: list[Rule] = []
    base = resources.files("portcullis.detect") / "rules"
    files = ["secrets.toml", "pii.toml"] if pii else ["secrets.toml"]
    for name in files:
        data = tomllib.loads((base / name).read_text(encoding="utf-8"))
        for r in data["rule"]:
            confirm = r.get("confirm", r["pattern"])
            allow = r.get("allow")
            rules.append(
                Rule(
                    id=r["id"],
                    kind=r.get("kind", "secret"),
                    severity=r["severity"],
                    pattern=r["pattern"],
                    group=int(r.get("group", 0)),
                    validator=r.get("validator"),
                    entropy=float(r.get("entropy", 0.0)),
                    max_len=int(r.get("max_len", 256)),
                    priority=int(r.get("priority", 0)),
                    som=bool(r.get("som", True)),
                    regex=re.compile(confirm.encode()),
                    extends="confirm" in r,
                    allow=re.compile(allow) if allow else None,
                )
            )
    return rules


def _merge(regions: list[tuple[int, int]]) -> list[tuple[int, int]]:
    regions.sort()
    out: list[tuple[int, int]] = []
    for lo, hi in regions:
        if out and lo <= out[-1][1]:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


class Engine:
    """Rules plus a compiled multi-pattern matcher; ``scan(buf)`` gives confirmed matches."""

    name: EngineName

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self.n_rules = len(rules)
        self.trigger_regex = [re.compile(p.encode()) for _, p in TRIGGERS]
        self._b64_at_start = re.compile(TRIGGERS[-1][1][len(r"[\s\"'=:>]") :].encode())

    def _candidates(self, buf: bytes) -> dict[int, list[tuple[int, int]]]:
        raise NotImplementedError

    def scan(self, buf: bytes) -> tuple[list[Match], list[tuple[str, int, int]]]:
        """Confirmed rule matches (secret group spans) and trigger positions in ``buf``."""
        matches: set[Match] = set()
        triggers: list[tuple[str, int, int]] = []
        if self._b64_at_start.match(buf):
            triggers.append((TRIGGERS[-1][0], 0, 40))
        for idx, regions in self._candidates(buf).items():
            if idx >= self.n_rules:
                name = TRIGGERS[idx - self.n_rules][0]
                rx = self.trigger_regex[idx - self.n_rules]
                for lo, hi in _merge(regions):
                    for m in rx.finditer(buf, lo, hi):
                        triggers.append((name, m.start(), m.end()))
                continue
            rule = self.rules[idx]
            if rule.extends:
                # The engine found the header; the confirm pattern finds where the block ends.
                regions = [(lo, min(len(buf), hi + rule.max_len)) for lo, hi in regions]
            if self._exact(idx):
                self._confirm_at_starts(idx, rule, buf, regions, matches)
                continue
            for lo, hi in _merge(regions):
                for m in rule.regex.finditer(buf, lo, hi):
                    s, e = m.span(rule.group)
                    if s < e:
                        matches.add((idx, s, e))
        return sorted(matches, key=_BY_POSITION), triggers

    @staticmethod
    def _confirm_at_starts(
        idx: int, rule: Rule, buf: bytes, regions: list[tuple[int, int]], out: set[Match]
    ) -> None:
        # Start offsets are exact: an anchored match at each start is far cheaper than a
        # search, which matters for case-insensitive context rules that sre cannot skip ahead in.
        ends: dict[int, int] = {}
        for lo, hi in regions:
            if hi > ends.get(lo, -1):
                ends[lo] = hi
        done = -1
        for lo in sorted(ends):
            if lo < done:
                continue
            hi = ends[lo]
            m = rule.regex.match(buf, lo, hi)
            found = [m] if m is not None else list(rule.regex.finditer(buf, lo, hi))
            for m in found:
                s, e = m.span(rule.group)
                if s < e:
                    out.add((idx, s, e))
                done = max(done, m.end())

    def _exact(self, idx: int) -> bool:
        """Whether candidate regions of rule ``idx`` start exactly where a match starts."""
        return False

    def _window(self, idx: int) -> int:
        return self.rules[idx].max_len if idx < self.n_rules else 64


class HyperscanEngine(Engine):
    """One hyperscan block-mode database over every rule and trigger.

    The base64 trigger has no literal to anchor on and costs about as much as all the rules
    together. Large buffers are therefore scanned by two databases at once, the rules and the
    triggers, on two threads (hyperscan releases the GIL while it scans); small buffers, the
    usual MCP message, go through the single database, where a second thread costs more.
    """

    name: EngineName = "hyperscan"
    PARALLEL_MIN = 1 << 20

    def __init__(self, rules: list[Rule], variant: str) -> None:
        import hyperscan

        super().__init__(rules)
        self._hs = hyperscan
        self._variant = variant
        self._patterns = [r.pattern for r in rules] + [p for _, p in TRIGGERS]
        hints = [r.som for r in rules] + [True] * len(TRIGGERS)
        self.db, self.som = _load_or_compile(hyperscan, self._patterns, variant, hints)
        self._lock = threading.Lock()
        # (rules database, triggers database), built on the first large buffer; False when
        # the split databases disagree with the combined one on start-of-match.
        self._split: tuple[Any, Any] | Literal[False] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0

    def _exact(self, idx: int) -> bool:
        return bool(self.som[idx])

    def _candidates(self, buf: bytes) -> dict[int, list[tuple[int, int]]]:
        hits: dict[int, list[tuple[int, int]]] = {}
        som = self.som

        def on_match(idx: int, frm: int, to: int, flags: int, ctx: Any) -> None:
            lst = hits.get(idx)
            if lst is None:
                lst = hits[idx] = []
            # Without start-of-match the region is bounded by the rule's longest match.
            lst.append((frm if som[idx] else max(0, to - self._window(idx)), to))

        # A database's scratch space serves one scan at a time.
        with self._lock:
            split = self._split_dbs() if len(buf) >= self.PARALLEL_MIN else None
            if not split:
                self.db.scan(buf, match_event_handler=on_match)
                return hits
            rules_db, trigger_db = split
            # The worker thread fills its own dict; trigger ids follow the rules' as in self.db.
            trigger_hits: dict[int, list[tuple[int, int]]] = {}
            n = self.n_rules

            def on_trigger(idx: int, frm: int, to: int, flags: int, ctx: Any) -> None:
                trigger_hits.setdefault(n + idx, []).append((frm, to))

            pending = self._executor().submit(trigger_db.scan, buf, match_event_handler=on_trigger)
            try:
                rules_db.scan(buf, match_event_handler=on_match)
            finally:
                pending.result()
        hits.update(trigger_hits)
        return hits

    def _split_dbs(self) -> tuple[Any, Any] | Literal[False]:
        # Called under the lock. The combined database's start-of-match flags are the hints,
        # so both halves report regions exactly as the combined one does.
        if self._split is None:
            n = self.n_rules
            rules_db, rules_som = _load_or_compile(
                self._hs, self._patterns[:n], f"{self._variant}-rules", self.som[:n]
            )
            trigger_db, trigger_som = _load_or_compile(
                self._hs, self._patterns[n:], "triggers", self.som[n:]
            )
            same = rules_som + trigger_som == self.som
            self._split = (rules_db, trigger_db) if same else False
        return self._split

    def _executor(self) -> ThreadPoolExecutor:
        # Called under the lock. A forked child inherits the pool but not its thread: new pool.
        if self._pool is None or self._pool_pid != os.getpid():
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="portcullis-hs")
            self._pool_pid = os.getpid()
        return self._pool


def _cache_dir() -> Path | None:
    try:
        from portcullis._state import state_dir

        d = state_dir() / "cache"
        d.mkdir(mode=0o700, exist_ok=True)
        return d
    except Exception:  # no usable state dir: compile every time, still correct
        return None


def _load_or_compile(
    hs: Any, patterns: list[str], variant: str, hints: list[bool] | None = None
) -> tuple[Any, list[bool]]:
    key = hashlib.sha256(
        json.dumps(
            [
                patterns,
                getattr(hs, "__version__", ""),
                platform.machine(),
                platform.python_version(),
            ]
        ).encode()
    ).hexdigest()[:32]
    cache = _cache_dir()
    path = cache / f"hyperscan-{variant}-{key}.db" if cache else None
    if path is not None and path.exists():
        cached = _load_cached(hs, path, len(patterns))
        if cached is not None:
            return cached
    # Some patterns are "too large" with start-of-match tracking; they run without it and
    # their region is bounded by max_len instead. The rules say which (`som = false`), which
    # saves probing each pattern (0.7 s); a library that disagrees gets probed.
    try:
        som = list(hints) if hints is not None else [True] * len(patterns)
        db = _compile(hs, patterns, som)
    except hs.error:
        som = [_som_ok(hs, p) for p in patterns]
        db = _compile(hs, patterns, som)
    if path is not None:
        _atomic_write(path, json.dumps([int(s) for s in som]).encode() + b"\n" + hs.dumpb(db))
    return db, som


def _som_ok(hs: Any, pattern: str) -> bool:
    try:
        hs.Database(mode=hs.HS_MODE_BLOCK).compile(
            expressions=[pattern.encode()], flags=[hs.HS_FLAG_SOM_LEFTMOST]
        )
    except hs.error:
        return False
    return True


def _compile(hs: Any, patterns: list[str], som: list[bool]) -> Any:
    db = hs.Database(mode=hs.HS_MODE_BLOCK)
    db.compile(
        expressions=[p.encode() for p in patterns],
        ids=list(range(len(patterns))),
        elements=len(patterns),
        flags=[hs.HS_FLAG_SOM_LEFTMOST if s else 0 for s in som],
    )
    return db


def _load_cached(hs: Any, path: Path, n: int) -> tuple[Any, list[bool]] | None:
    try:
        head, _, blob = path.read_bytes().partition(b"\n")
        som = [bool(x) for x in json.loads(head)]
        db = hs.loadb(blob, hs.HS_MODE_BLOCK)
        db.scratch = hs.Scratch(db)
    except Exception:  # a corrupt or foreign cache file is just recompiled
        return None
    return (db, som) if len(som) == n else None


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError:
        # A read-only home must not stop detection; the next start compiles again.
        tmp.unlink(missing_ok=True)


class Re2Engine(Engine):
    """google-re2 fallback: ``re2.Set`` per chunk, then each rule that fired on its own."""

    name: EngineName = "re2"
    CHUNK = 1 << 20
    OVERLAP = 32 << 10  # longer than any rule's max_len, so no match is cut in two

    def __init__(self, rules: list[Rule]) -> None:
        import re2  # type: ignore[import-untyped]

        super().__init__(rules)
        opts = re2.Options()
        # Byte semantics like hyperscan: a class such as [^\s"'] matches one byte, not a rune.
        opts.encoding = re2.Options.Encoding.LATIN1
        opts.max_mem = 256 << 20
        opts.log_errors = False
        patterns = [r.pattern for r in rules] + [p for _, p in TRIGGERS]
        self._set = re2.Set.SearchSet(opts)
        for p in patterns:
            self._set.Add(p.encode("latin-1"))
        self._set.Compile()
        self._each = [re2.compile(p.encode("latin-1"), opts) for p in patterns]

    def _exact(self, idx: int) -> bool:
        return True

    def _candidates(self, buf: bytes) -> dict[int, list[tuple[int, int]]]:
        hits: dict[int, list[tuple[int, int]]] = {}
        pos, n = 0, len(buf)
        while True:
            end = min(n, pos + self.CHUNK + self.OVERLAP)
            chunk = buf[pos:end] if (pos or end < n) else buf
            for idx in self._set.Match(chunk) or ():
                lst = hits.setdefault(idx, [])
                for m in self._each[idx].finditer(chunk):
                    lst.append((pos + m.start(), pos + m.end()))
            if end >= n:
                return hits
            pos += self.CHUNK


_ENGINES: dict[tuple[str, bool], Engine] = {}
_LOCK = threading.Lock()


def default_engine_name() -> EngineName:
    """``$PORTCULLIS_DETECT_ENGINE`` if set, else hyperscan when it imports, else re2."""
    env = os.environ.get("PORTCULLIS_DETECT_ENGINE", "").strip().lower()
    if env in ("hyperscan", "re2"):
        return env  # type: ignore[return-value]
    try:
        import hyperscan  # noqa: F401
    except ImportError:
        return "re2"
    return "hyperscan"


def get_engine(pii: bool, engine: str | None = None) -> Engine:
    """The compiled engine for secrets (plus PII rules when ``pii``), built once per process."""
    name = engine or default_engine_name()
    if name not in ("hyperscan", "re2"):
        raise ValueError(f"unknown detection engine {name!r}; use 'hyperscan' or 're2'")
    key = (name, pii)
    eng = _ENGINES.get(key)
    if eng is None:
        with _LOCK:
            eng = _ENGINES.get(key)
            if eng is None:
                rules = load_rules(pii)
                variant = "secrets-pii" if pii else "secrets"
                eng = HyperscanEngine(rules, variant) if name == "hyperscan" else Re2Engine(rules)
                _ENGINES[key] = eng
    return eng
