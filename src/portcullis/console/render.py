"""How hostile values are shown in the console: redacted, visible, folded, pretty.

Tool arguments, audit fields and definitions come from MCP servers and clients that may be
hostile. Jinja2 escapes HTML; this module makes sure what a person reads is what is there:
secrets are replaced by markers, invisible, bidi and control characters are written as
``⟨U+XXXX⟩`` (a right-to-left override cannot reorder the line it sits in), and long values
are folded to a prefix with their length and digest (where an attacker would hide the part that
matters). Pure functions, no I/O.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

__all__ = ["FOLD_AT", "fold", "pretty", "show_marked", "visible"]

FOLD_AT: Final = 200  # characters; a longer string value is folded (as in approvals)
_MARK: Final = "⟨U+{:04X}⟩"
# The approval queue already writes hidden characters as <U+XXXX> (the terminal form).
_QUEUE_MARK: Final = re.compile(r"<U\+([0-9A-F]{4,6})>")


def visible(text: str, *, multiline: bool = False) -> str:
    """``text`` with every invisible, bidi or control character written as ``⟨U+XXXX⟩``."""
    from portcullis.approval.request import visible as shown

    return shown(text, multiline=multiline, mark=_MARK)


def show_marked(text: str) -> str:
    """A queue's ``shown`` text (hidden characters as ``<U+XXXX>``) in the console's form."""
    return visible(_QUEUE_MARK.sub(lambda m: f"⟨U+{m.group(1)}⟩", text), multiline=True)


def fold(value: Any) -> Any:
    """``value`` with every string longer than :data:`FOLD_AT` cut, its length and digest added."""
    from portcullis.approval.request import fold as folded

    return folded(value)


def pretty(value: Any, *, redact: bool = True, folded: bool = True) -> str:
    """Decoded JSON as a person should read it: redacted, folded, indented, visible."""
    from portcullis.detect.redact import redact_value

    if redact:
        value, _ = redact_value(value)
    if folded:
        value = fold(value)
    text = json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, default=str)
    return visible(text, multiline=True)
