"""Shared pieces of the SQL guard: the problem record and fragment capping."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["MAX_FRAGMENT", "Problem", "fragment"]

MAX_FRAGMENT = 80


class Problem(NamedTuple):
    """Why a statement is refused: the rule id and the end of the denial sentence."""

    rule: str
    why: str


def fragment(text: str) -> str:
    """Quote a piece of the statement for a message, capped so the statement is never echoed."""
    flat = " ".join(str(text).split())
    if len(flat) > MAX_FRAGMENT:
        flat = flat[: MAX_FRAGMENT - 1] + "…"
    return flat
