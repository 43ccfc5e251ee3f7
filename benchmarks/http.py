"""HTTP front benchmark: what ``portcullis serve`` adds over a direct Streamable HTTP connection.

    .venv/bin/python benchmarks/http.py [--rate 200] [--seconds 10] [--concurrency 16]
                                        [--runs 3] [--quick] [--json]

One run starts, on 127.0.0.1:

* ``upstream``: a minimal Streamable HTTP MCP server (pure ASGI on uvicorn with uvloop and
  httptools, JSON responses, 2026-07-28 stateless requests: no SDK, whose own cost would hide
  the gateway's), answering ``tools/call echo``;
* ``gateway``: ``python -m portcullis serve`` with a policy whose one server is that upstream
  (``url:``), the default guards (tool rules, redaction, injection flags, pinning) and the
  audit log, an API key, and the in-memory shared state.

and measures, against each of the two in turn, interleaved:

1. **latency at a fixed rate**: ``--rate`` requests a second for ``--seconds`` (open loop: a
   request is sent on schedule whether or not the previous one has come back), p50 and p99 of
   each request's round trip;
2. **maximum throughput**: ``--concurrency`` keep-alive connections sending back to back for
   ``--seconds``, completed requests a second.

The client is a raw HTTP/1.1 client on asyncio streams (keep-alive, Content-Length bodies) so
that its own cost stays small and equal for both targets. Everything ends by itself; the
processes are stopped at the end. Targets (DESIGN §6 and issue 9): added p50 at 200 requests a
second ≤ 1 ms; throughput through the gateway ≥ 50% of direct.
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYTHON = sys.executable
TARGET_ADDED_P50_MS = 1.0
TARGET_THROUGHPUT = 0.5
VERSION = "2026-07-28"

UPSTREAM = r"""
import sys, msgspec, uvicorn
enc = msgspec.json.encode
dec = msgspec.json.decode
TOOLS = {"tools": [{"name": "echo", "description": "Echo the text back.",
          "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}}],
         "resultType": "complete", "ttlMs": 0, "cacheScope": "private"}

async def app(scope, receive, send):
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            while True:
                m = await receive()
                if m["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"}); return
        return
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    msg = dec(body)
    method = msg.get("method")
    if "id" not in msg:
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    if method == "tools/call":
        text = msg["params"]["arguments"].get("text", "")
        result = {"content": [{"type": "text", "text": text}], "isError": False,
                  "resultType": "complete"}
    elif method == "tools/list":
        result = TOOLS
    elif method in ("server/discover", "initialize"):
        result = {"protocolVersion": "2026-07-28", "supportedVersions": ["2026-07-28"],
                  "capabilities": {"tools": {}}, "serverInfo": {"name": "bench", "version": "1"},
                  "resultType": "complete"}
    else:
        result = {"resultType": "complete"}
    out = enc({"jsonrpc": "2.0", "id": msg["id"], "result": result})
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
            log_level="warning", access_log=False, lifespan="on")
"""

SDK_UPSTREAM = r'''
import sys, uvicorn
from mcp.server.mcpserver import MCPServer
server = MCPServer("bench")

@server.tool(structured_output=False)
def echo(text: str) -> str:
    """Echo the text back."""
    return text

app = server.streamable_http_app(streamable_http_path="/mcp", json_response=True,
                                 stateless_http=True, host="127.0.0.1")
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
            log_level="warning", access_log=False)
'''
UPSTREAMS = {"trivial": UPSTREAM, "sdk": SDK_UPSTREAM}

POLICY = """\
version: 1
servers:
  bench:
    url: http://127.0.0.1:{port}/mcp
    tools: {{default: allow}}
serve:
  auth: {{api_keys: true}}
  limits: {{requests_per_minute: 100000000}}
"""


class BenchError(Exception):
    pass


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call_body(i, extra_meta=True):
    meta = {
        "io.modelcontextprotocol/protocolVersion": VERSION,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    return msgspec.json.encode(
        {
            "jsonrpc": "2.0",
            "id": i,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": f"hi {i}"}, "_meta": meta},
        }
    )


class Conn:
    """One keep-alive HTTP/1.1 connection sending POST /path with JSON bodies."""

    def __init__(self, port, path, headers):
        self.port = port
        self.path = path
        self.head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def post(self, body):
        req = (
            f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n{self.head}"
            f"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
            f"MCP-Protocol-Version: {VERSION}\r\nMcp-Method: tools/call\r\nMcp-Name: echo\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.writer.write(req)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = None
        chunked = False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
        if length is not None:
            data = await self.reader.readexactly(length)
        elif chunked:
            parts = []
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                if size == 0:
                    await self.reader.readline()
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readline()
            data = b"".join(parts)
        else:
            data = b""
        if status != 200:
            raise BenchError(f"HTTP {status}: {data[:300]!r}")
        return data

    def close(self):
        with contextlib.suppress(Exception):
            self.writer.close()


async def fixed_rate(target, rate, seconds):
    conns = []
    for _ in range(8):
        c = Conn(*target)
        await c.open()
        conns.append(c)
    free = asyncio.Queue()
    for c in conns:
        free.put_nowait(c)
    latencies = []
    errors = 0

    async def one(i):
        nonlocal errors
        conn = await free.get()
        t0 = time.perf_counter_ns()
        try:
            data = await conn.post(call_body(i))
            if b'"isError":false' not in data and b'"isError": false' not in data:
                errors += 1
        except Exception:
            errors += 1
            conn = Conn(*target)
            await conn.open()
        latencies.append((time.perf_counter_ns() - t0) / 1e6)
        free.put_nowait(conn)

    n = int(rate * seconds)
    start = time.perf_counter()
    tasks = []
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    for c in conns:
        c.close()
    latencies.sort()
    return {
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "requests": n,
        "errors": errors,
    }


async def throughput(target, concurrency, seconds):
    done = 0
    errors = 0
    stop = time.perf_counter() + seconds

    async def worker(k):
        nonlocal done, errors
        conn = Conn(*target)
        await conn.open()
        i = k * 10_000_000
        while time.perf_counter() < stop:
            i += 1
            try:
                await conn.post(call_body(i))
                done += 1
            except Exception:
                errors += 1
                conn = Conn(*target)
                await conn.open()
        conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return {"rps": done / (time.perf_counter() - t0), "errors": errors}


def wait_port(port, proc, what, timeout=30):
    import socket

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise BenchError(f"{what} did not start within {timeout} s")


def start(args_list, env, what, port):
    proc = subprocess.Popen(args_list, env=env, stdout=subprocess.DEVNULL, start_new_session=True)
    wait_port(port, proc, what)
    return proc


def stop(proc):
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def measure(kind, opts, work, env, key):
    """Latency and throughput, direct and through the gateway, for one upstream."""
    up_port, gw_port = free_port(), free_port()
    script = work / f"upstream_{kind}.py"
    script.write_text(UPSTREAMS[kind])
    policy = work / f"policy_{kind}.yaml"
    policy.write_text(POLICY.format(port=up_port))
    upstream = start([PYTHON, str(script), str(up_port)], env, f"{kind} upstream", up_port)
    gateway = None
    try:
        gateway = start(
            [PYTHON, "-m", "portcullis", "serve", "--policy", str(policy), "--port", str(gw_port)],
            env,
            "portcullis serve",
            gw_port,
        )
        targets = {
            "direct": (up_port, "/mcp", {}),
            "gateway": (gw_port, "/servers/bench/mcp", {"Authorization": f"Bearer {key}"}),
        }
        results = {name: {"latency": [], "throughput": []} for name in targets}
        # Warm-up: connections, the gateway's pooled link, its pins (first tools/list).
        for target in targets.values():
            asyncio.run(fixed_rate(target, 100, 1.0))
        for run in range(opts.runs):
            for name, target in targets.items():
                print(f"{kind} run {run + 1}/{opts.runs}: {name} latency", file=sys.stderr)
                results[name]["latency"].append(
                    asyncio.run(fixed_rate(target, opts.rate, opts.seconds))
                )
            for name, target in targets.items():
                print(f"{kind} run {run + 1}/{opts.runs}: {name} throughput", file=sys.stderr)
                results[name]["throughput"].append(
                    asyncio.run(throughput(target, opts.concurrency, opts.seconds))
                )
    finally:
        if gateway is not None:
            stop(gateway)
        stop(upstream)

    def med(name, kind_, field):
        return statistics.median(r[field] for r in results[name][kind_])

    report = {
        name: {
            "p50_ms": med(name, "latency", "p50_ms"),
            "p99_ms": med(name, "latency", "p99_ms"),
            "rps": med(name, "throughput", "rps"),
        }
        for name in targets
    }
    report["errors"] = sum(r["errors"] for n in results for k in results[n].values() for r in k)
    report["added_p50_ms"] = report["gateway"]["p50_ms"] - report["direct"]["p50_ms"]
    report["added_p99_ms"] = report["gateway"]["p99_ms"] - report["direct"]["p99_ms"]
    report["throughput_ratio"] = report["gateway"]["rps"] / report["direct"]["rps"]
    report["meets"] = {
        "added_p50": report["added_p50_ms"] <= TARGET_ADDED_P50_MS,
        "throughput": report["throughput_ratio"] >= TARGET_THROUGHPUT,
    }
    return report


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--upstream", choices=[*UPSTREAMS, "all"], default="all")
    ap.add_argument("--quick", action="store_true", help="1 run of 2 s each")
    ap.add_argument("--json", action="store_true")
    opts = ap.parse_args()
    if opts.quick:
        opts.runs, opts.seconds = 1, 2.0
    work = Path(tempfile.mkdtemp(prefix="pc-bench-", dir="/tmp"))
    home = work / "home"
    home.mkdir(mode=0o700)
    env = {**os.environ, "PORTCULLIS_HOME": str(home)}
    out = subprocess.run(
        [PYTHON, "-m", "portcullis", "keys", "create", "bench"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    key = out.stdout.split()[-1]
    kinds = list(UPSTREAMS) if opts.upstream == "all" else [opts.upstream]
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rate": opts.rate,
        "seconds": opts.seconds,
        "concurrency": opts.concurrency,
        "runs": opts.runs,
        "upstreams": {kind: measure(kind, opts, work, env, key) for kind in kinds},
    }
    errors = sum(r["errors"] for r in report["upstreams"].values())
    if opts.json:
        print(json.dumps(report, indent=2))
        return 1 if errors else 0
    print(
        f"HTTP front, {opts.runs} runs (medians), {os.cpu_count()} CPUs, loopback; latency at "
        f"{opts.rate:g} req/s, throughput with {opts.concurrency} connections"
    )
    print(f"{'upstream':9} {'via':8} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>9}")
    for kind, r in report["upstreams"].items():
        for via in ("direct", "gateway"):
            v = r[via]
            print(f"{kind:9} {via:8} {v['p50_ms']:8.3f} {v['p99_ms']:8.3f} {v['rps']:9.0f}")
        print(
            f"{kind:9} added p50 {r['added_p50_ms']:.3f} ms (target ≤ {TARGET_ADDED_P50_MS} ms: "
            f"{'met' if r['meets']['added_p50'] else 'MISSED'}), p99 {r['added_p99_ms']:.3f} ms; "
            f"throughput {r['throughput_ratio']:.0%} of direct (target ≥ {TARGET_THROUGHPUT:.0%}: "
            f"{'met' if r['meets']['throughput'] else 'MISSED'}); errors {r['errors']}"
        )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
