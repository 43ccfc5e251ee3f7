"""False positives of the secret (and PII) rules on real, secret-free text that ships here.

Scans the ``.py`` source of installed packages (pip, setuptools, pydantic, …) and
``tests/servers/package-lock.json``, and prints the number of findings per rule. Every finding
here is a false positive (these files hold no live credentials), except deliberate test vectors
inside a package's own tests.

    .venv/bin/python benchmarks/false_positives.py [--pii] [--packages pip setuptools ...] [-v]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

from portcullis.detect.secrets import scan_secrets

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PACKAGES = [
    "pip",
    "setuptools",
    "pydantic",
    "pydantic_core",
    "yaml",
    "msgspec",
    "hypothesis",
    "_pytest",
    "mcp",
    "httpx",
    "starlette",
]


def main() -> int:
    """Scan the corpus and print counts per rule."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pii", action="store_true")
    ap.add_argument("--packages", nargs="*", default=DEFAULT_PACKAGES)
    ap.add_argument("-v", "--verbose", action="store_true", help="print each finding's context")
    args = ap.parse_args()
    site = next((ROOT / ".venv" / "lib").glob("python3*/site-packages"))
    files = [p for pkg in args.packages for p in sorted((site / pkg).rglob("*.py"))]
    lock = ROOT / "tests" / "servers" / "package-lock.json"
    if lock.exists():
        files.append(lock)
    counts: Counter[str] = Counter()
    total = 0
    t0 = time.perf_counter()
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        total += len(text)
        for f in scan_secrets(text, pii=args.pii):
            counts[f.rule] += 1
            if args.verbose:
                ctx = text[max(0, f.start - 40) : f.end + 20].replace("\n", "⏎")
                where = path.relative_to(site) if site in path.parents else path.name
                print(f"{f.rule:32} {where}: {ctx}")
    dt = time.perf_counter() - t0
    print(f"scanned {len(files)} files, {total / 1e6:.1f} MB in {dt:.1f} s (pii={args.pii})")
    print(f"findings: {sum(counts.values())}")
    for rule, n in counts.most_common():
        print(f"  {rule:40} {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
