"""The audit log: HMAC-chained JSON Lines records, an anchor against truncation, rotation.

Writing::

    log = AuditLog(default_log_path(), install_key())
    log.append({"server": "files", "tool": "read_text_file", "decision": "allow",
                "args": log.digest_args(arguments)})

Checking and reading: ``verify(path, key)`` names the first bad record; ``tail``, ``follow``,
``query`` and ``read_records`` read without checking. The format is in docs/audit.md.
"""

from __future__ import annotations

from portcullis.audit._files import (
    DEFAULT_LOG_NAME,
    anchor_path,
    default_log_path,
    log_files,
    rotated_files,
)
from portcullis.audit._log import DEFAULT_ROTATE_BYTES, AuditLog
from portcullis.audit._read import follow, parse_time, query, read_records, tail
from portcullis.audit._record import digest_args
from portcullis.audit._verify import VerifyReport, verify

__all__ = [
    "DEFAULT_LOG_NAME",
    "DEFAULT_ROTATE_BYTES",
    "AuditLog",
    "VerifyReport",
    "anchor_path",
    "default_log_path",
    "digest_args",
    "follow",
    "log_files",
    "parse_time",
    "query",
    "read_records",
    "rotated_files",
    "tail",
    "verify",
]
