"""Secret scanning + redaction throughput on ~50 MB of mixed text with planted secrets.

Paths measured, one run each:
  * hyperscan: ``scan_secrets`` + ``redact_text`` on the raw text (target ≥ 500 MB/s);
  * re2 fallback: the same with ``engine="re2"``;
  * JSON walk: each JSON-RPC result decoded with msgspec, then ``redact_value`` (DESIGN §2);
  * detect-secrets (if installed; ``pip install detect-secrets`` into the venv, not a
    requirement) on a slice, because at ~0.2 MB/s the whole corpus would take minutes.
Recall is the share of planted secrets no longer present in the redacted output.

    .venv/bin/python benchmarks/detect.py [--mb 50] [--ds-mb 2]
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402
from tests.detect.test_secrets_samples import SAMPLES  # noqa: E402

from portcullis.detect.redact import redact_text, redact_value  # noqa: E402
from portcullis.detect.secrets import scan_secrets  # noqa: E402

R = random.Random(42)
HEX = "0123456789abcdef"
AN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _uuid() -> str:
    h = "".join(R.choice(HEX) for _ in range(32))
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _json_block() -> str:
    rows = [
        {
            "id": _uuid(),
            "sha256": "".join(R.choice(HEX) for _ in range(64)),
            "name": R.choice(["alpha", "beta", "gamma"]) + str(R.randint(1, 999)),
            "blob": base64.b64encode(R.randbytes(48)).decode(),
            "updated": f"2026-11-{R.randint(1, 28):02d}T12:00:00Z",
        }
        for _ in range(R.randint(3, 8))
    ]
    inner = json.dumps({"rows": len(rows), "note": "token rotation scheduled"})
    return json.dumps({"rows": rows, "text": inner})


_CODE = [
    "def load(path):\n    # the secret manager returns a token; never log it\n"
    "    return read(path)\n",
    "const password = process.env.DB_PASSWORD; // from the vault\n",
    "for (let i = 0; i < items.length; i++) {\n  total += items[i].price * items[i].qty;\n}\n",
    "class Client:\n    def __init__(self, api_key: str) -> None:\n"
    "        self.api_key = api_key\n",
]


def _log_line() -> str:
    return (
        f"2026-11-24T20:{R.randint(0, 59):02d}:{R.randint(0, 59):02d}Z INFO req={_uuid()} "
        f"trace={''.join(R.choice(HEX) for _ in range(32))} "
        f"path=/api/v1/items?page={R.randint(1, 99)} "
        f"status=200 dur_ms={R.randint(1, 900)}\n"
    )


def build(mb: float) -> tuple[list[str], list[str]]:
    """Return (blocks of text, planted secrets)."""
    target = int(mb * 1_000_000)
    samples = sorted(SAMPLES.items())
    blocks: list[str] = []
    planted: list[str] = []
    size = 0
    i = 0
    while size < target:
        kind = i % 3
        block = _json_block() if kind == 0 else (R.choice(_CODE) if kind == 1 else _log_line() * 5)
        if i % 400 == 0:
            _, (text, secret) = samples[(i // 400) % len(samples)]
            # Half raw, half inside a JSON string value (quotes escaped on the wire).
            block += text if (i // 400) % 2 else json.dumps({"leaked": text})
            planted.append(secret)
        blocks.append(block)
        size += len(block)
        i += 1
    return blocks, planted


def recall(out: str, planted: list[str]) -> str:
    """How many planted secrets no longer appear in the output."""
    gone = sum(1 for s in planted if s not in out)
    return f"{gone}/{len(planted)}"


def bench_raw(text: str, planted: list[str], engine: str) -> None:
    """Scan + redact the raw text in one call."""
    scan_secrets("warm-up", engine=engine)
    t0 = time.perf_counter()
    findings = scan_secrets(text, engine=engine)
    out = redact_text(text, findings)
    dt = time.perf_counter() - t0
    mb = len(text.encode()) / 1e6
    print(
        f"{engine + ' raw text':28} {mb / dt:9.1f} MB/s  {dt:6.2f} s  "
        f"findings={len(findings):6}  recall={recall(out, planted)}"
    )


def bench_json(blocks: list[str], planted: list[str]) -> None:
    """Decode each JSON-RPC result and redact its values."""
    frames = [
        msgspec.json.encode(
            {"jsonrpc": "2.0", "id": i, "result": {"content": [{"type": "text", "text": b}]}}
        )
        for i, b in enumerate(blocks)
    ]
    total = sum(len(f) for f in frames)
    dec = msgspec.json.Decoder()
    enc = msgspec.json.Encoder()
    outs: list[bytes] = []
    t0 = time.perf_counter()
    for f in frames:
        value, counts = redact_value(dec.decode(f))
        outs.append(enc.encode(value) if counts else f)
    dt = time.perf_counter() - t0
    out = b"\n".join(outs).decode()
    # Compare against the JSON-encoded form of each secret, as it would appear on the wire.
    wire = [json.dumps(s)[1:-1] for s in planted]
    print(
        f"{'JSON walk (decode+redact)':28} {total / 1e6 / dt:9.1f} MB/s  {dt:6.2f} s  "
        f"frames={len(frames):7}  recall={recall(out, wire)}"
    )


def bench_detect_secrets(text: str, ds_mb: float) -> None:
    """detect-secrets' default plugins on a slice of the same text."""
    try:
        from detect_secrets import SecretsCollection
        from detect_secrets.settings import default_settings
    except ImportError:
        print(f"{'detect-secrets':28} skipped: not installed (pip install detect-secrets)")
        return
    part = text[: int(ds_mb * 1_000_000)]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        fh.write(part)
    coll = SecretsCollection()
    t0 = time.perf_counter()
    with default_settings():
        coll.scan_file(fh.name)
    dt = time.perf_counter() - t0
    n = sum(len(v) for _, v in coll.data.items())
    Path(fh.name).unlink()
    print(
        f"{'detect-secrets (slice)':28} {len(part) / 1e6 / dt:9.2f} MB/s  {dt:6.2f} s  "
        f"on {len(part) / 1e6:.1f} MB, findings={n}"
    )


def main() -> int:
    """Build the corpus and run each path once."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=50.0)
    ap.add_argument("--ds-mb", type=float, default=2.0, help="detect-secrets slice size")
    args = ap.parse_args()
    t0 = time.perf_counter()
    blocks, planted = build(args.mb)
    text = "\n".join(blocks)
    print(
        f"corpus: {len(text.encode()) / 1e6:.1f} MB, {len(planted)} planted secrets "
        f"({len(set(SAMPLES))} rule types), built in {time.perf_counter() - t0:.1f} s"
    )
    bench_raw(text, planted, "hyperscan")
    bench_raw(text, planted, "re2")
    bench_json(blocks, planted)
    bench_detect_secrets(text, args.ds_mb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
