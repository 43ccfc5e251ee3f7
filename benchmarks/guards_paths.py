"""Path guard throughput: decisions per second on a mix of 10k values (target >= 50,000/s).

A real temporary tree (a root with sub-directories, files and symlinks, an outside directory)
so that symlink resolution does real ``lstat`` calls; values mix ordinary in-root paths
(absolute and relative), traversal, encodings, Windows forms, file URIs, symlink escapes and
protected client configs. Median of 5 runs.

    .venv/bin/python benchmarks/guards_paths.py [--n 10000] [--runs 5]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from portcullis.detect.paths import PathGuard, default_protected  # noqa: E402


def build(base: Path) -> Path:
    root = base / "project"
    for d in ("src/pkg/sub", "docs", "tests", "data"):
        (root / d).mkdir(parents=True)
    for f in ("src/pkg/mod.py", "src/pkg/sub/x.py", "docs/index.md", "README.md", ".env"):
        (root / f).write_text("x")
    out = base / "outside"
    out.mkdir()
    (out / "secret").write_text("s")
    (root / "link_src").symlink_to(root / "src")
    (root / "escape").symlink_to(out)
    return root


def values(root: Path, n: int) -> list[str]:
    r = random.Random(7)
    legit = [
        f"{root}/src/pkg/mod.py",
        f"{root}/docs/index.md",
        "README.md",
        "src/pkg/sub/x.py",
        f"{root}/data/new_file.csv",
        f"{root}/link_src/pkg/mod.py",
        "./docs/",
        ".env",
        f"{root}/src/../README.md",
        f"{root}/a b/c d.txt",
        f"file://{root}/README.md",
        f"{root}/caf%C3%A9.txt",
    ]
    attacks = [
        "/etc/passwd",
        "../../etc/passwd",
        "%2e%2e/%2e%2e/etc/passwd",
        "..\\..\\windows",
        "C:\\Windows",
        f"{root}/escape/secret",
        f"{root}-evil/x",
        "file:///etc/shadow",
        "~/.ssh/id_rsa",
        "$HOME/x",
        f"{root}/.mcp.json",
        "\uff0e\uff0e\uff0fetc",
        f"{root}/x\x00",
        f"{root}/.cursor/mcp.json",
    ]
    # Realistic traffic is mostly legitimate: 80 / 20.
    return [r.choice(legit) if r.random() < 0.8 else r.choice(attacks) for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="pc-bench-paths-"))
    try:
        root = build(base)
        t0 = time.perf_counter()
        guard = PathGuard(
            [str(root)], protected=default_protected(None, str(base / "state")), cwd=str(root)
        )
        compile_ms = (time.perf_counter() - t0) * 1000
        vals = values(root, args.n)
        rates = []
        denied = 0
        for _ in range(args.runs):
            t0 = time.perf_counter()
            denied = sum(guard.check(v, argument="path").decision == "deny" for v in vals)
            rates.append(args.n / (time.perf_counter() - t0))
        print(f"compile: {compile_ms:.2f} ms")
        print(f"values: {args.n} ({denied} denied)")
        print(
            f"paths guard: {statistics.median(rates):,.0f} decisions/s (median of {args.runs};"
            f" min {min(rates):,.0f}, max {max(rates):,.0f}); target >= 50,000/s"
        )
    finally:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
