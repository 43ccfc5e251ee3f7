"""Poisoning set: confusion matrix and misses of scan_injection (finding >= medium), plus speed.

Usage: python benchmarks/poisoning.py [--speed-mb N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from portcullis.detect.findings import SEVERITIES
from portcullis.detect.injection import scan_injection

DATA = Path(__file__).resolve().parent.parent / "tests" / "detect" / "data" / "poisoning.jsonl"
MEDIUM = SEVERITIES.index("medium")


def load():
    rows = []
    for line in DATA.read_text("utf-8").splitlines():
        row = json.loads(line)
        if "label" in row:
            rows.append(row)
    return rows


def flagged(row):
    fs = scan_injection(row["text"], where=row["where"])
    return [f for f in fs if SEVERITIES.index(f.severity) >= MEDIUM]


def evaluate(rows):
    tp = fp = tn = fn = 0
    misses, false_alarms = [], []
    for row in rows:
        hit = flagged(row)
        if row["label"] == "malicious":
            if hit:
                tp += 1
            else:
                fn += 1
                misses.append(row)
        elif hit:
            fp += 1
            false_alarms.append((row, hit))
        else:
            tn += 1
    return tp, fp, tn, fn, misses, false_alarms


def mixed_text(mb: int) -> str:
    """JSON tool output, source code and docs from site-packages, logs, and ~2% poisoning set."""
    import glob
    import site

    size = mb * 1024 * 1024
    sp = site.getsitepackages()[0]
    files = sorted(glob.glob(f"{sp}/**/*.py", recursive=True))[::7]
    files += sorted(glob.glob(f"{sp}/**/*.md", recursive=True))
    corpus: list[str] = []
    n = 0
    for i, f in enumerate(files):
        try:
            corpus.append(Path(f).read_text("utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
        if i % 5 == 0:
            rec = {"id": i, "path": f, "status": "ok", "lines": [f"line {j}" for j in range(20)]}
            corpus.append(json.dumps({"content": [{"type": "text", "text": json.dumps(rec)}]}))
            corpus.append(
                "".join(
                    f"2024-05-01T12:00:{j:02d}Z INFO worker-{j} "
                    f"handled GET /api/v1/items/{i} in 12ms\n"
                    for j in range(30)
                )
            )
        n += len(corpus[-1])
        if n > size:
            break
    poison = [r["text"] for r in load()]
    step = max(1, len(corpus) // (len(poison) * 2))
    for k, text in enumerate(poison * 2):
        corpus.insert(min(len(corpus), (k + 1) * step), text)
    block = "\n".join(corpus)
    return (block * (size // max(len(block), 1) + 1))[:size]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--speed-mb", type=int, default=10)
    args = ap.parse_args()
    rows = load()
    tp, fp, tn, fn, misses, false_alarms = evaluate(rows)
    print(f"entries: {len(rows)}  (malicious {tp + fn}, clean {tn + fp})")
    print("confusion matrix (finding severity >= medium):")
    print("                 flagged  not flagged")
    print(f"  malicious      {tp:7d}  {fn:11d}")
    print(f"  clean          {fp:7d}  {tn:11d}")
    print(f"precision {tp / max(tp + fp, 1):.3f}  recall {tp / max(tp + fn, 1):.3f}")
    for row in misses:
        print(f"MISS [{row['where']}] {row['source']}: {row['text'][:100]!r}")
    for row, hit in false_alarms:
        shown = [(f.rule, f.severity, f.evidence) for f in hit]
        print(f"FALSE ALARM [{row['where']}] {row['source']}: {shown}")
    if args.speed_mb:
        text = mixed_text(args.speed_mb)
        size = len(text.encode("utf-8")) / 1e6
        for where in ("result", "description"):
            t0 = time.perf_counter()
            n = len(scan_injection(text, where=where))
            dt = time.perf_counter() - t0
            print(
                f"scan_injection(where={where!r}) on {size:.1f} MB mixed text: "
                f"{dt:.2f} s, {size / dt:.1f} MB/s, {n} findings"
            )


if __name__ == "__main__":
    main()
