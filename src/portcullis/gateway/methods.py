"""What the session knows about MCP methods: which it inspects, and how."""

from __future__ import annotations

from typing import Final

__all__ = [
    "HELLO",
    "INPUT_KINDS",
    "LIST_CHANGED",
    "LIST_FILTERS",
    "MODERN_KEY",
    "RESERVED_ID_PREFIX",
    "STRICT_DECODE_LIMIT",
    "SUBJECT_FIELD",
]

MODERN_KEY: Final = "io.modelcontextprotocol/protocolVersion"
# Ids the gateway chooses itself (remapped server requests, and its own requests) start with
# this, so they can never be confused with an id the client chose; clients may not use it.
RESERVED_ID_PREFIX: Final = "portcullis-"
LIST_FILTERS: Final = {
    "tools/list": ("tools", "name", "tool"),
    "prompts/list": ("prompts", "name", "prompt"),
    "resources/list": ("resources", "uri", "resource"),
    "resources/templates/list": ("resourceTemplates", "uriTemplate", "resource"),
}
# The audit field that names what a request is about (``tool`` is in the contract; the others
# extend beside it).
SUBJECT_FIELD: Final = {
    "tools/call": "tool",
    "prompts/get": "prompt",
    "tools": "tool",
    "prompts": "prompt",
}
HELLO: Final = ("initialize", "server/discover")
LIST_CHANGED: Final = {
    "notifications/tools/list_changed": ("tools",),
    "notifications/prompts/list_changed": ("prompts",),
    "notifications/resources/list_changed": ("resources", "resourceTemplates"),
}
# Messages up to this size are decoded strictly (duplicate keys refused); larger ones fast.
STRICT_DECODE_LIMIT: Final = 1 << 20
INPUT_KINDS: Final = {
    "sampling/createMessage": "sampling",
    "elicitation/create": "elicitation",
    "roots/list": "roots",
}
