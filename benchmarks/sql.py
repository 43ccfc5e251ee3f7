"""SQL server benchmark: what ``portcullis sql`` adds to a small query, SQLite and PostgreSQL.

    .venv/bin/python benchmarks/sql.py [--runs 5] [--calls 1000] [--quick] [--json] [--sqlite-only]

Each small query is timed two ways in the same run, interleaved: through ``portcullis sql``
(a raw JSON-RPC client, no SDK, timing ``tools/call query`` round trips over stdio) and through
the driver itself in this process (sqlite3, psycopg), on the same fixture database
(tests/fixtures/sql/schema.sql). PostgreSQL is the cluster in ``PORTCULLIS_TEST_PG_URL`` or, when
that is unset, a throw-away one from scripts/pg-test-server.sh. See benchmarks/README.md.
"""

import argparse
import contextlib
import gc
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
from stdio_client import BenchError, Conn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYTHON = sys.executable
SCHEMA = ROOT / "tests" / "fixtures" / "sql" / "schema.sql"
PG_SCRIPT = ROOT / "scripts" / "pg-test-server.sh"
WARMUP = 50
TARGET_ADDED_MS = 2.0

#: Small queries: a point lookup, and a join with an aggregate over the fixture's 60 orders.
#: ``{k}`` takes the values 1 to 5 in turn, so that no two consecutive calls send the same text.
QUERIES = {
    "point": "SELECT id, name, category, price_cents FROM products WHERE id = {k}",
    "join": (
        "SELECT c.country, count(*) AS n, sum(o.quantity) AS items FROM orders o "
        "JOIN customers c ON c.id = o.customer_id WHERE o.quantity >= {k} "
        "GROUP BY c.country ORDER BY c.country"
    ),
}
VARIANTS = 5


def texts(template: str) -> list:
    return [template.format(k=k) for k in range(1, VARIANTS + 1)]


DIALECTS = ("sqlite", "postgres")

# What a deployment would run with: blocked tables, masked columns, the default caps.
POLICY = """\
version: 1
servers:
  db:
    tools: {{default: allow}}
    sql:
      dialect: {dialect}
      deny_tables: [users_credentials, api_keys, sessions]
      mask_columns: [email, phone]
{extra}"""


class CallResult(msgspec.Struct, rename="camel"):
    is_error: bool = False
    structured_content: dict | None = None
    content: list = []


_decode_result = msgspec.json.Decoder(CallResult).decode


class Server(Conn):
    """``portcullis sql`` over the benchmarks' raw stdio client, with numbered queries."""

    def __init__(self, argv: list, env: dict, stderr_path: Path) -> None:
        super().__init__(argv, env, stderr_path)
        self.rid = 0

    def query_line(self, sql: str) -> tuple[bytes, int]:
        self.rid += 1
        message = {
            "jsonrpc": "2.0",
            "id": self.rid,
            "method": "tools/call",
            "params": {"name": "query", "arguments": {"sql": sql}},
        }
        return msgspec.json.encode(message) + b"\n", self.rid

    def query(self, sql: str) -> list:
        """One checked call: the rows of structuredContent."""
        line, rid = self.query_line(sql)
        result = _decode_result(bytes(self.call(rid, line).result))
        if result.is_error or result.structured_content is None:
            raise BenchError(f"the query failed: {str(result.content)[:300]}")
        return result.structured_content["rows"]


# -- the two ways of running a query -----------------------------------------------------------


def plain(rows: list) -> list:
    return [
        [v if isinstance(v, int | str | float | type(None)) else str(v) for v in r] for r in rows
    ]


class Direct:
    """The driver in this process, on the same database."""

    def __init__(self, dialect: str, target: str) -> None:
        self.dialect = dialect
        if dialect == "sqlite":
            self.conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
        else:
            import psycopg

            self.conn = psycopg.connect(target, autocommit=True)
            self.conn.execute("SET search_path = app")

    def query(self, sql: str) -> list:
        return self.conn.execute(sql).fetchall()

    def close(self) -> None:
        self.conn.close()


def time_direct(direct: Direct, template: str, calls: int) -> list:
    sqls = texts(template)
    for i in range(WARMUP):
        direct.query(sqls[i % VARIANTS])
    lat = []
    gc.disable()
    try:
        for i in range(calls):
            sql = sqls[i % VARIANTS]
            t0 = time.perf_counter_ns()
            direct.query(sql)
            lat.append(time.perf_counter_ns() - t0)
    finally:
        gc.enable()
    return lat


def time_server(server: Server, template: str, calls: int) -> list:
    sqls = texts(template)
    for i in range(WARMUP):
        line, rid = server.query_line(sqls[i % VARIANTS])
        server.call(rid, line)
    lat = []
    gc.disable()
    try:
        for i in range(calls):
            line, rid = server.query_line(sqls[i % VARIANTS])
            t0 = time.perf_counter_ns()
            server.call(rid, line)
            lat.append(time.perf_counter_ns() - t0)
    finally:
        gc.enable()
    return lat


# -- databases ------------------------------------------------------------------------------------


def sqlite_fixture(tmp: Path) -> Path:
    path = tmp / "fixture.db"
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA.read_text())
    conn.commit()
    conn.close()
    return path


@contextlib.contextmanager
def postgres_url():
    """The read-only role's URL: CI's cluster, or a throw-away one for this benchmark."""
    url = os.environ.get("PORTCULLIS_TEST_PG_URL")
    if url:
        yield url
        return
    done = subprocess.run(
        ["bash", str(PG_SCRIPT), "start"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"scripts/pg-test-server.sh start failed: {done.stderr.strip()}")
    values = {}
    for line in done.stdout.splitlines():
        if line.startswith("export ") and "=" in line:
            name, value = line[len("export ") :].split("=", 1)
            values[name] = value.strip("'")
    try:
        yield values["PORTCULLIS_TEST_PG_URL"]
    finally:
        subprocess.run(
            ["bash", str(PG_SCRIPT), "stop", values["PC_PG_DIR"]], capture_output=True, check=False
        )


def start_server(dialect: str, target: str, tmp: Path) -> Server:
    extra = "      schema: app\n" if dialect == "postgres" else ""
    policy = tmp / f"policy-{dialect}.yaml"
    policy.write_text(POLICY.format(dialect=dialect, extra=extra))
    env = {k: os.environ[k] for k in ("HOME", "PATH", "LANG") if k in os.environ}
    env["PORTCULLIS_HOME"] = str(tmp / "state")
    if dialect == "sqlite":
        db_args = ["--db-file", target]
    else:  # as docs recommend: the URL in the environment, not on the command line
        db_args = ["--db-env", "PORTCULLIS_BENCH_DB_URL"]
        env["PORTCULLIS_BENCH_DB_URL"] = target
    argv = [PYTHON, "-m", "portcullis", "sql", *db_args, "--policy", str(policy)]
    argv += ["--server", "db"]
    server = Server(argv, env, tmp / f"stderr-{dialect}.txt")
    server.handshake()
    return server


# -- the benchmark ---------------------------------------------------------------------------------


def benchmark(runs: int, calls: int, dialects: tuple, progress) -> dict:
    samples = {(d, q, way): [] for d in DIALECTS for q in QUERIES for way in ("direct", "server")}
    errors: dict = {}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pc-sqlbench-")))
        (tmp / "state").mkdir(mode=0o700)
        targets = {}
        if "sqlite" in dialects:
            targets["sqlite"] = str(sqlite_fixture(tmp))
        if "postgres" in dialects:
            try:
                targets["postgres"] = stack.enter_context(postgres_url())
            except BenchError as exc:
                errors["postgres"] = str(exc)
        for run in range(runs):
            for dialect, target in targets.items():
                if dialect in errors:
                    continue
                progress(f"run {run + 1}/{runs}: {dialect}")
                server = direct = None
                try:
                    server = start_server(dialect, target, tmp)
                    direct = Direct(dialect, target)
                    for qname, sql in QUERIES.items():
                        for text in texts(sql):  # the same work both ways
                            if server.query(text) != plain(direct.query(text)):
                                raise BenchError(f"{dialect} {qname}: the server's rows differ")
                        # Alternate which way goes first, so that drift hits both alike.
                        ways = ("direct", "server") if (run % 2 == 0) else ("server", "direct")
                        for way in ways:
                            if way == "direct":
                                lat = time_direct(direct, sql, calls)
                            else:
                                lat = time_server(server, sql, calls)
                            samples[(dialect, qname, way)].append(statistics.median(lat) / 1e6)
                except (BenchError, OSError, sqlite3.Error) as exc:
                    errors[dialect] = str(exc)
                except Exception as exc:  # psycopg errors, without importing psycopg for SQLite
                    errors[dialect] = f"{type(exc).__name__}: {exc}"
                finally:
                    if server is not None:
                        server.close()
                    if direct is not None:
                        direct.close()
    rows = []
    targets_out = []
    for dialect in dialects:
        for qname in QUERIES:
            direct_ms = samples[(dialect, qname, "direct")]
            server_ms = samples[(dialect, qname, "server")]
            row = {"dialect": dialect, "query": qname, "runs_ok": len(server_ms)}
            if server_ms and direct_ms:
                added = [s - d for s, d in zip(server_ms, direct_ms, strict=True)]
                row.update(
                    direct_ms=statistics.median(direct_ms),
                    server_ms=statistics.median(server_ms),
                    added_ms=statistics.median(added),
                    per_run_added_ms=added,
                    direct_qps=1000 / statistics.median(direct_ms),
                    server_qps=1000 / statistics.median(server_ms),
                )
                status = "PASS" if row["added_ms"] <= TARGET_ADDED_MS else "MISS"
                figure = f"+{row['added_ms']:.2f} ms"
            else:
                row["error"] = errors.get(dialect, "not measured")
                status, figure = "MISS", "not measured"
            rows.append(row)
            targets_out.append(
                {
                    "what": f"added per small query, {dialect}, {qname}",
                    "limit": f"≤ {TARGET_ADDED_MS:g} ms",
                    "status": status,
                    "figure": figure,
                }
            )
    return {
        "meta": {
            "runs": runs,
            "calls": calls,
            "warmup": WARMUP,
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "cpus": os.cpu_count(),
            "queries": QUERIES,
        },
        "latency": rows,
        "targets": targets_out,
        "errors": errors,
    }


def print_report(res: dict) -> None:
    meta = res["meta"]
    print(
        f"portcullis sql benchmark: {meta['runs']} run(s) x {meta['calls']} calls "
        f"(+{meta['warmup']} warm-up) per way, interleaved; Python {meta['python']}, "
        f"SQLite {meta['sqlite']}, {meta['cpus']} CPUs; load average "
        f"{meta['load_before'][0]:.2f} before, {meta['load_after'][0]:.2f} after"
    )
    print("direct = the driver in the benchmark's process; server = tools/call query over stdio")
    print(
        "Figures are medians over runs of each run's median; added = server - direct, same run.\n"
    )
    head = (
        f"{'database':<10}{'query':<7}{'direct ms':>10}{'server ms':>10}{'added ms':>10}"
        f"{'direct q/s':>12}{'server q/s':>12}  per-run added ms"
    )
    print(head)
    print("-" * len(head))
    for row in res["latency"]:
        if "error" in row:
            print(f"{row['dialect']:<10}{row['query']:<7}FAILED: {row['error'].splitlines()[0]}")
            continue
        spread = ", ".join(f"{v:.2f}" for v in row["per_run_added_ms"])
        print(
            f"{row['dialect']:<10}{row['query']:<7}{row['direct_ms']:>10.3f}"
            f"{row['server_ms']:>10.3f}{row['added_ms']:>+10.3f}{row['direct_qps']:>12,.0f}"
            f"{row['server_qps']:>12,.0f}  {spread}"
        )
    print("\nTargets (issue 8):")
    for t in res["targets"]:
        print(f"  {t['status']}  {t['what']} {t['limit']}: {t['figure']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="timed calls per way and run")
    parser.add_argument("--runs", type=int, default=5, help="repetitions (medians over these)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 run of 50 calls")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--sqlite-only", action="store_true", help="leave PostgreSQL out")
    args = parser.parse_args()
    runs, calls = (1, 50) if args.quick else (args.runs, args.calls)
    dialects = ("sqlite",) if args.sqlite_only else DIALECTS

    def progress(text: str) -> None:
        print(f"  {text}", file=sys.stderr, flush=True)

    load_before = os.getloadavg()
    t0 = time.monotonic()
    res = benchmark(runs, calls, dialects, progress)
    res["meta"]["wall_s"] = round(time.monotonic() - t0, 1)
    res["meta"]["load_before"], res["meta"]["load_after"] = load_before, os.getloadavg()
    if args.json:
        print(json.dumps(res, indent=2, ensure_ascii=False))
    else:
        print_report(res)
        print(f"\n(wall time {res['meta']['wall_s']} s)")
    return 1 if any("error" in r for r in res["latency"]) else 0


if __name__ == "__main__":
    sys.exit(main())
