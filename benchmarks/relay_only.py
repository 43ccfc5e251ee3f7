"""The relay alone: ``python benchmarks/relay_only.py -- CMD ARGS...``.

The real stdio transport and session, with a policy that allows every tool (the rules still run)
and no audit log, no policy file, no state directory. Measures what the relay itself costs.
"""

import os
import sys

from portcullis.gateway.session import Auditor, Session
from portcullis.gateway.transports.stdio import StdioGateway
from portcullis.policy.compiled import ServerPolicy


def main() -> int:
    command = sys.argv[1:]
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        print("usage: relay_only.py -- CMD ARGS...", file=sys.stderr)
        return 2
    session = Session(
        # The relay alone: no rules, no redaction, no injection handling, no pinning, no audit.
        ServerPolicy(name="bench", redact=(), injection="off", pin=False),
        Auditor(None, lambda value: "", arguments="digest", base={}),
    )
    return StdioGateway(session, command, env=dict(os.environ)).run()


if __name__ == "__main__":
    sys.exit(main())
