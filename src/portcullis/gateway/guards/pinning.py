"""Pinning at run time: what a server lists is checked against what a person approved.

A definition that is new or changed since it was pinned (a rug pull) is withheld from the list
and calls to it are refused until ``portcullis pin approve``. On the first sight of a server,
everything is pinned (trust on first use) except definitions held back because they carry a
high-severity injection finding.

The session asks :meth:`PinGuard.status` before forwarding a call; a tool it has not seen listed
in this session (a client that calls without listing, or a gateway restarted since) is
``"unknown"``, and the session lists the server itself before deciding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from portcullis.pins import LaunchId, PinStore, PinStoreError
from portcullis.pins.compare import KEY_FIELDS, SERVER_KEY

__all__ = ["PinGuard", "Status"]

Status = Literal["ok", "withheld", "unknown"]
_NOUN = {
    "tools": "tool",
    "prompts": "prompt",
    "resources": "resource",
    "resourceTemplates": "resource template",
    "server": "server instructions",
}


class PinGuard:
    """One session's view of one server's pins."""

    def __init__(
        self, store: PinStore, server: str, launch: LaunchId, log: Callable[[str], None]
    ) -> None:
        self._store = store
        self._server = server
        self._launch = launch
        self._log = log
        self._verified: dict[str, set[str]] = {}
        self._withheld: dict[str, dict[str, str]] = {}
        self._first_pages: dict[str, dict[str, Any]] = {}
        try:
            changes = store.load(server, launch).version_changes
        except PinStoreError:
            changes = []
        if changes:
            self._log(
                f'server "{server}" was launched with a new package version '
                f"({'; '.join(changes)}): changed definitions wait for "
                f"`portcullis pin approve --server {server}`"
            )

    def status(self, kind: str, key: str) -> tuple[Status, str]:
        """Whether ``key`` may be used: verified this session, withheld (with why), or unknown."""
        reason = self._withheld.get(kind, {}).get(key)
        if reason is not None:
            return "withheld", reason
        if key in self._verified.get(kind, set()):
            return "ok", ""
        return "unknown", ""

    def invalidate(self, kind: str) -> None:
        """Forget what was verified (the server said its list changed)."""
        self._verified.pop(kind, None)
        self._withheld.pop(kind, None)

    def check(
        self, kind: str, items: list[Any], *, hold: set[str], paged: bool, last: bool
    ) -> tuple[list[Any], dict[str, str]]:
        """Check one page of a list result; return the entries to show and the withheld ones."""
        field = KEY_FIELDS.get(kind, SERVER_KEY)
        withheld: dict[str, str] = {}
        definitions: dict[str, Any] = {}
        if kind == SERVER_KEY:
            # The server itself (its name and instructions), from the initialize result.
            definitions[SERVER_KEY] = items[0] if items else {}
            items = []
        for item in items:
            key = item.get(field) if isinstance(item, dict) else None
            if not isinstance(key, str) or key in definitions:
                # Listed twice: which copy a client uses is undefined, so neither is shown.
                withheld[str(key)] = f"the server lists {_NOUN[kind]} {key!r} more than once"
                continue
            definitions[key] = item
        try:
            first = kind not in self._store.load(self._server, self._launch).pins
        except PinStoreError as exc:
            return [], self._withhold(
                kind, {k: f"the pin file cannot be read: {exc}" for k in definitions} | withheld
            )
        if first and paged and not last:
            # Trust on first use covers the whole first listing: gather it, record at the end.
            self._first_pages.setdefault(kind, {}).update(definitions)
            withheld |= {k: self._reason(kind, k, "held") for k in definitions if k in hold}
            shown = [v for k, v in definitions.items() if k not in hold]
            return shown, self._withhold(kind, withheld)
        recorded = {**self._first_pages.pop(kind, {}), **definitions}
        try:
            report = self._store.record(
                self._server, self._launch, kind, recorded, hold=hold, complete=not paged
            )
        except (PinStoreError, ValueError) as exc:
            return [], self._withhold(
                kind, {k: f"the pins cannot be recorded: {exc}" for k in definitions} | withheld
            )
        changed, new = set(report.changed), set(report.new)
        verified = self._verified.setdefault(kind, set())
        for key in definitions:
            if key in changed or key in new:
                why = "held" if key in hold else "changed" if key in changed else "new"
                withheld[key] = self._reason(kind, key, why)
            else:
                verified.add(key)
                self._withheld.get(kind, {}).pop(key, None)
        shown = [definitions[k] for k in definitions if k not in withheld]
        return shown, self._withhold(kind, withheld)

    def _withhold(self, kind: str, withheld: dict[str, str]) -> dict[str, str]:
        self._withheld.setdefault(kind, {}).update(withheld)
        for key in withheld:
            self._verified.get(kind, set()).discard(key)
        return withheld

    def _reason(self, kind: str, key: str, why: str) -> str:
        noun = _NOUN[kind]
        approve = f"`portcullis pin approve --server {self._server} {key}`"
        if why == "held":
            return (
                f'{noun} "{key}" was not pinned automatically: its definition carries a '
                f"high-severity injection finding; review it with `portcullis pin show "
                f"--server {self._server}` and approve it with {approve} if it is safe"
            )
        if why == "changed":
            return (
                f'{noun} "{key}" changed since it was approved (a possible rug pull); '
                f"review the change with `portcullis pin show --server {self._server}` "
                f"and approve it with {approve}"
            )
        return f'{noun} "{key}" is new since the pins were approved; approve it with {approve}'
