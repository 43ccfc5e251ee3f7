"""Decisions per second of every argument guard, in one run.

Runs benchmarks/guards_paths.py, guards_sql.py and guards_urls.py one after another (each prints
its own figures and its target) so that the issue's single command gives all of them:

    .venv/bin/python benchmarks/guards.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    status = 0
    for name in ("guards_paths.py", "guards_sql.py", "guards_urls.py"):
        print(f"== {name}", flush=True)
        done = subprocess.run([sys.executable, str(HERE / name)], check=False)
        status = status or done.returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
