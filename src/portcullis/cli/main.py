"""The ``portcullis`` command: parse arguments and hand over to the library.

Every command module registers its own sub-parser and imports its heavy dependencies inside the
handler, so ``portcullis run`` starts without loading pydantic, the audit reader or the demo.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence

from portcullis._exceptions import ConfigError, PortcullisError
from portcullis._version import __version__

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


def _parser() -> argparse.ArgumentParser:
    from portcullis.cli import (
        approvals,
        audit,
        check,
        console,
        demo,
        detect,
        keys,
        pin,
        policy,
        redact,
        run,
        sandbox,
        scan,
        serve,
        sql,
        wrap,
    )

    parser = argparse.ArgumentParser(
        prog="portcullis",
        description="A security gateway and scanner for the Model Context Protocol.",
    )
    parser.add_argument("--version", action="version", version=f"portcullis {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in (
        run,
        scan,
        wrap,
        check,
        redact,
        detect,
        pin,
        policy,
        audit,
        demo,
        approvals,
        console,
        sandbox,
        sql,
        keys,
        serve,
    ):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the exit status (2 for configuration errors)."""
    args = _parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"portcullis: {exc}", file=sys.stderr)
        return 2
    except PortcullisError as exc:
        print(f"portcullis: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`portcullis policy schema | head`): not an error of ours.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silences the exit-time flush
        return 0


if __name__ == "__main__":
    sys.exit(main())
