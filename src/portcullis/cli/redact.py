"""``portcullis redact``: stdin → stdout with secrets (and PII) replaced by markers."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``redact`` command."""
    p = sub.add_parser(
        "redact",
        help="replace secrets read from stdin with [REDACTED:<rule-id>]",
        description="Read stdin, write it to stdout with every secret (and with --pii, personal "
        "data) replaced by [REDACTED:<rule-id>]. With --json the input must be JSON: string and "
        "number values are redacted and the output is JSON. Exit 0; 2 for bad input with --json.",
    )
    p.add_argument("--json", action="store_true", help="input is JSON; redact its values")
    p.add_argument("--pii", action="store_true", help="also redact personal data")
    p.set_defaults(handler=_redact)


def _redact(args: argparse.Namespace) -> int:
    data = sys.stdin.buffer.read()
    # Bytes that are not UTF-8 pass through as surrogates and come back out unchanged.
    text = data.decode("utf-8", "surrogateescape")
    if args.json:
        import json

        from portcullis.detect.redact import redact_value

        try:
            value = json.loads(text)
        except ValueError as exc:
            print(f"portcullis redact: input is not valid JSON: {exc}", file=sys.stderr)
            return 2
        redacted, _ = redact_value(value, pii=args.pii)
        sys.stdout.write(json.dumps(redacted, ensure_ascii=False) + "\n")
        return 0
    from portcullis.detect.redact import redact_text
    from portcullis.detect.secrets import scan_secrets

    out = redact_text(text, scan_secrets(text, pii=args.pii))
    sys.stdout.buffer.write(out.encode("utf-8", "surrogateescape"))
    sys.stdout.flush()
    return 0
