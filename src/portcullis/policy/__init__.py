"""The policy file: find it, load it (cached), compile it, and resolve its secret references.

Only light modules are imported here, so ``import portcullis.policy`` stays on the fast path:
pydantic and PyYAML load only when a policy has to be parsed (no cache entry) or its JSON Schema
is asked for.
"""

from __future__ import annotations

from portcullis.policy.compiled import (
    ApprovalSettings,
    AuditSettings,
    CompiledPolicy,
    Launch,
    Rules,
    ServerPolicy,
    ServerRequests,
)
from portcullis.policy.load import (
    BUILTIN_DIGEST,
    builtin_policy,
    find_policy,
    load_policy,
    select_server,
    unimplemented_keys,
)
from portcullis.policy.refs import resolve_env

__all__ = [
    "BUILTIN_DIGEST",
    "ApprovalSettings",
    "AuditSettings",
    "CompiledPolicy",
    "Launch",
    "Rules",
    "ServerPolicy",
    "ServerRequests",
    "builtin_policy",
    "find_policy",
    "load_policy",
    "resolve_env",
    "select_server",
    "unimplemented_keys",
]
