"""SQL guard throughput: statements checked per second, per dialect.

Targets (issue 4): PostgreSQL >= 5,000 statements/s, sqlglot dialects >= 1,000/s.
Run: .venv/bin/python benchmarks/guards_sql.py [seconds-per-dialect]
"""

from __future__ import annotations

import random
import sys
import time

from portcullis.detect.sql import SqlGuard

TARGETS = {"postgres": 5000, "sqlite": 1000, "mysql": 1000}

_TABLES = ["orders", "customers", "public.events", "sales.invoices", "products", "line_items"]
_COLS = ["id", "customer_id", "created_at", "amount", "status", "region", "name", "email"]


def _q(rng: random.Random, dialect: str) -> str:
    t1, t2 = rng.sample(_TABLES, 2)
    c1, c2, c3 = rng.sample(_COLS, 3)
    if dialect == "postgres":
        ident = '"Order Notes"'
        cast = f"{c1}::text"
    elif dialect == "mysql":
        ident = "`Order Notes`"
        cast = f"CAST({c1} AS CHAR)"
    else:
        ident = '"Order Notes"'
        cast = f"CAST({c1} AS TEXT)"
    shapes = [
        f"SELECT a.{c1}, b.{c2}, count(*) AS n FROM {t1} a JOIN {t2} b ON a.id = b.{c1} "
        f"WHERE a.{c3} > {rng.randint(1, 999)} AND b.{c2} IN ('x', 'y', 'DROP; TABLE') "
        f"GROUP BY a.{c1}, b.{c2} HAVING count(*) > 2 ORDER BY n DESC LIMIT 50",
        f"WITH recent AS (SELECT {c1}, {c2}, {c3} FROM {t1} WHERE {c3} IS NOT NULL) "
        f"SELECT r.{c1}, row_number() OVER (PARTITION BY r.{c2} ORDER BY r.{c3} DESC) AS rn, "
        f"lag(r.{c3}) OVER (ORDER BY r.{c1}) FROM recent r -- top rows; not a second statement",
        f"SELECT {c1}, sum({c2}) FROM {t1} WHERE EXISTS (SELECT 1 FROM {t2} x "
        f"WHERE x.{c1} = {t1.split('.')[-1]}.{c1}) GROUP BY {c1} "
        f"UNION ALL SELECT {c1}, 0 FROM {ident}",
        f"SELECT upper({c1}), coalesce({c2}, 'n/a'), round(avg({c3}), 2), {cast} "
        f"FROM {t1} /* report; weekly */ WHERE lower({c2}) LIKE '%a%' GROUP BY 1, 2, 4",
        f"SELECT * FROM {t1} WHERE {c1} = (SELECT max({c1}) FROM {t2}) OR {c2} BETWEEN 1 AND 9",
        f"SELECT CASE WHEN {c1} > 10 THEN 'big' ELSE 'small' END, length({c2}), "
        f"abs({c3}) FROM {t1} ORDER BY 2 DESC, 3 LIMIT 10 OFFSET 20",
    ]
    return rng.choice(shapes)


def _long(rng: random.Random, dialect: str) -> str:
    """About 350 characters, like the corpus of research/perf-feasibility.md section 3."""
    parts = []
    for _ in range(3):
        t1, t2 = rng.sample(_TABLES, 2)
        c1, c2 = rng.sample(_COLS, 2)
        parts.append(
            f"SELECT x.{c1}, max(x.{c2}) AS top FROM {t1} x JOIN {t2} y ON y.{c1} = x.{c1} "
            f"WHERE x.{c2} <> 'n/a' GROUP BY x.{c1}"
        )
    return " UNION ALL ".join(parts) + " ORDER BY 2 DESC LIMIT 100"


def bench(dialect: str, seconds: float, long: bool = False) -> tuple[float, int]:
    rng = random.Random(4)
    make = _long if long else _q
    corpus = [make(rng, dialect) for _ in range(500)]
    guard = SqlGuard(dialect, deny_tables=["api_keys", "public.sessions"])
    bad = [s for s in corpus if guard.check(s, argument="sql").decision != "allow"]
    if bad:
        sys.exit(f"{dialect}: legitimate statement denied: {bad[0]!r}")
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for s in corpus:
            guard.check(s, argument="sql")
        n += len(corpus)
    elapsed = time.perf_counter() - start
    return n / elapsed, sum(len(s) for s in corpus) // len(corpus)


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    failed = False
    for long in (False, True):
        for dialect, target in TARGETS.items():
            rate, avg = bench(dialect, seconds, long)
            ok = rate >= target
            failed |= not ok
            mix = "long mix " if long else "mixed    "
            print(
                f"{dialect:9s} {mix} {rate:9,.0f} statements/s  (avg {avg} chars; "
                f"target {target:,}/s; {rate / target:.2f}x) {'ok' if ok else 'BELOW TARGET'}"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
