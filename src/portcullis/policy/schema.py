"""The JSON Schema of the policy file, for editors (``portcullis policy schema``).

Generated from the pydantic models, so it cannot drift from what the loader accepts. Two things
the schema cannot say are checked only by the loader: duplicate YAML keys, and cross-references
(a server without ``tools`` when ``defaults`` has none; identities naming unknown servers).
"""

from __future__ import annotations

from typing import Any

__all__ = ["SCHEMA_DIALECT", "policy_schema"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def policy_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of a version 1 policy file."""
    from portcullis.policy.model import PolicyFile

    schema = PolicyFile.model_json_schema()
    _drop_null(schema)
    _close_pattern_maps(schema)
    return {"$schema": SCHEMA_DIALECT, **schema}


def _close_pattern_maps(node: Any) -> None:
    """Make ``patternProperties`` exclusive, as the loader is.

    Pydantic renders a constrained dict key (a server name) as ``patternProperties``, which on
    its own still lets any other key through.
    """
    if isinstance(node, dict):
        if "patternProperties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _close_pattern_maps(value)
    elif isinstance(node, list):
        for value in node:
            _close_pattern_maps(value)


def _drop_null(node: Any) -> None:
    """Remove ``null`` from ``X | None`` unions: the loader refuses empty values anyway.

    Optional blocks are optional because they may be left out, not because ``tools: null``
    means something; an editor should flag it as the loader will.
    """
    if isinstance(node, dict):
        arms = node.get("anyOf")
        if isinstance(arms, list):
            kept = [a for a in arms if a != {"type": "null"}]
            if len(kept) != len(arms):
                if len(kept) == 1:
                    del node["anyOf"]
                    node.update(kept[0])
                else:
                    node["anyOf"] = kept
                if node.get("default", 0) is None:
                    del node["default"]
        for value in node.values():
            _drop_null(value)
    elif isinstance(node, list):
        for value in node:
            _drop_null(value)
