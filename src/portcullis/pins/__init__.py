"""Definition pinning (rug-pull protection): pin files, comparison and diffs.

See docs/pinning.md. The gateway records what each server shows with :class:`PinStore` and
withholds anything new or changed until a person runs ``portcullis pin approve``.
"""

from __future__ import annotations

from portcullis.pins.compare import KINDS, PinReport, compare, keyed, pinned_identity
from portcullis.pins.diff import diff_definitions, diff_launch, diff_tool_lists
from portcullis.pins.store import (
    LaunchId,
    NotPendingError,
    PinSet,
    PinStore,
    PinStoreError,
    launch_id,
    version_changes,
)

__all__ = [
    "KINDS",
    "LaunchId",
    "NotPendingError",
    "PinReport",
    "PinSet",
    "PinStore",
    "PinStoreError",
    "compare",
    "diff_definitions",
    "diff_launch",
    "diff_tool_lists",
    "keyed",
    "launch_id",
    "pinned_identity",
    "version_changes",
]
