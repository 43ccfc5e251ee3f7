"""``portcullis console``: a local web console for approvals, pins, the audit trail and scans.

Server-rendered pages (Starlette + Jinja2) behind a one-time-token login, with htmx shipped
in ``static/vendor`` for live updates. See docs/console.md. Nothing here is imported by
``portcullis run``.
"""

from __future__ import annotations

__all__: list[str] = []
