"""``portcullis wrap`` / ``unwrap``: route a client's MCP servers through the gateway, and back.

:func:`plan_wrap` and :func:`plan_unwrap` are pure (text in, text out);
:func:`apply_plan` stores secrets and writes files; :func:`load_targets` finds the files.
See docs/wrap.md.
"""

from __future__ import annotations

from portcullis.wrap.apply import (
    ChangedOnDisk,
    apply_plan,
    default_policy_path,
    keyring_lookup,
    keyring_usable,
    load_targets,
    policy_refs,
    portcullis_command,
    read_policy,
    sandbox_available,
)
from portcullis.wrap.plan import (
    FileChange,
    Note,
    Plan,
    PolicyChange,
    SecretMove,
    WrapOptions,
    Wrapped,
    parse_wrapped,
    plan_unwrap,
    plan_wrap,
)

__all__ = [
    "ChangedOnDisk",
    "FileChange",
    "Note",
    "Plan",
    "PolicyChange",
    "SecretMove",
    "WrapOptions",
    "Wrapped",
    "apply_plan",
    "default_policy_path",
    "keyring_lookup",
    "keyring_usable",
    "load_targets",
    "parse_wrapped",
    "plan_unwrap",
    "plan_wrap",
    "policy_refs",
    "portcullis_command",
    "read_policy",
    "sandbox_available",
]
