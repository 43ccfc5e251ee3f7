"""What a definition's pinned identity is, and how two sets of definitions compare (pure).

Only the fields a model reads, or that decide what a call does, are pinned. ``_meta``, icons
and pagination cursors are left out: they change for reasons that are not rug pulls (a cache
hint, a new icon URL) and would make every upgrade ask for approval.

The server itself is pinned as kind ``"server"`` under the key ``"server"``: its
``instructions`` and ``serverInfo.name``. ``serverInfo.version`` is left out on purpose, as a
version change is expected on every upgrade; what the new version *says* is what is pinned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from portcullis.detect.canonical import definition_hash

__all__ = [
    "KEY_FIELDS",
    "KINDS",
    "PINNED_FIELDS",
    "SERVER_KEY",
    "PinReport",
    "compare",
    "keyed",
    "pinned_identity",
]

#: The fields pinned for each kind of definition.
PINNED_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "tools": ("name", "title", "description", "inputSchema", "outputSchema", "annotations"),
    "prompts": ("name", "title", "description", "arguments"),
    "resources": ("uri", "name", "title", "description", "mimeType"),
    "resourceTemplates": ("uriTemplate", "name", "title", "description", "mimeType"),
    "server": ("name", "instructions"),
}

#: The field that names a definition within its kind (a tool's name, a resource's URI).
KEY_FIELDS: Final[Mapping[str, str]] = {
    "tools": "name",
    "prompts": "name",
    "resources": "uri",
    "resourceTemplates": "uriTemplate",
}

#: Every kind, in the order they are shown.
KINDS: Final[tuple[str, ...]] = tuple(PINNED_FIELDS)

#: The single key under which kind ``"server"`` is pinned.
SERVER_KEY: Final = "server"


@dataclass(frozen=True)
class PinReport:
    """How current definitions compare with the pinned ones; every list is sorted."""

    same: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is new or changed (a removed definition cannot be misused)."""
        return not self.new and not self.changed


def pinned_identity(kind: str, definition: Mapping[str, Any]) -> dict[str, Any]:
    """Return the part of ``definition`` that is pinned for ``kind``.

    For kind ``"server"`` the definition may be an ``initialize`` result (``serverInfo`` and
    ``instructions``) or an identity already reduced to ``name`` and ``instructions``.
    Absent fields stay absent, so adding one (say, a title) is a change.
    """
    if kind not in PINNED_FIELDS:
        raise ValueError(f"unknown definition kind {kind!r}; expected one of {', '.join(KINDS)}")
    if kind == "server" and "serverInfo" in definition:
        info = definition.get("serverInfo")
        source: Mapping[str, Any] = {
            "name": info.get("name") if isinstance(info, Mapping) else None,
            "instructions": definition.get("instructions"),
        }
    else:
        source = definition
    return {f: source[f] for f in PINNED_FIELDS[kind] if f in source and source[f] is not None}


def keyed(kind: str, definitions: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Map each definition of a list result to its key, reduced to its pinned identity.

    A key listed twice raises ``ValueError``: which copy a client uses is not defined, so a
    server could show the pinned one to the gateway and the other to the model.
    """
    if kind == "server":
        items = list(definitions)
        if len(items) != 1:
            raise ValueError("kind 'server' takes exactly one definition")
        return {SERVER_KEY: pinned_identity(kind, items[0])}
    if kind not in KEY_FIELDS:
        raise ValueError(f"unknown definition kind {kind!r}; expected one of {', '.join(KINDS)}")
    key_field = KEY_FIELDS[kind]
    out: dict[str, dict[str, Any]] = {}
    for item in definitions:
        key = item.get(key_field)
        if not isinstance(key, str):
            raise ValueError(f"a {kind} entry has no string {key_field!r}")
        if key in out:
            raise ValueError(f"{kind} lists {key!r} more than once")
        out[key] = pinned_identity(kind, item)
    return out


def compare(
    pinned: Mapping[str, Any], current: Mapping[str, Any], kind: str | None = None
) -> PinReport:
    """Compare definitions by canonical hash; both map a key (tool name, URI…) to a definition.

    With ``kind``, both sides are first reduced to their pinned identity, so fields that are
    not pinned (``_meta``, icons) do not count; without it, whole definitions are compared.
    """

    def digest(definition: Any) -> str:
        if kind is not None and isinstance(definition, Mapping):
            return definition_hash(pinned_identity(kind, definition))
        return definition_hash(definition)

    same: list[str] = []
    new: list[str] = []
    changed: list[str] = []
    for key, definition in current.items():
        if key not in pinned:
            new.append(key)
        elif digest(pinned[key]) == digest(definition):
            same.append(key)
        else:
            changed.append(key)
    removed = [key for key in pinned if key not in current]
    return PinReport(sorted(same), sorted(new), sorted(changed), sorted(removed))
