"""Who may use what: a principal's servers, tool rules, approvers and limits (pure).

An identity entry of ``serve.identities`` applies to a principal when its name is the
principal's name, ``group:G`` for one of the token's groups, ``scope:S`` for one of its scopes,
or ``*``. Every entry that applies counts:

- servers: the union of their ``servers`` globs, cut down to an API key's own scope;
- tools: each entry's ``tools`` rules and ``confirm`` globs are layered on the server's own
  rules, and the strictest verdict wins (deny > confirm > allow);
- approvals: a principal may approve another's call when an entry that applies to it lists
  that principal (or a group: / scope: it holds) under ``approve``;
- limits: the strictest of the entries' ``limits``, else ``serve.limits``.

With no ``identities`` at all, every authenticated principal reaches every server its key
allows (a single-team setup); once any is written, a principal that matches none reaches
nothing.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

import msgspec

from portcullis.policy.compiled import Identity, Limits, Rules, ServeSettings
from portcullis.serve.types import Principal

__all__ = ["Access", "access_for", "labels", "may_approve"]


class Access(msgspec.Struct, frozen=True):
    """What one principal may use, resolved once per request from the policy in force."""

    principal: Principal
    servers: tuple[str, ...]  # server names it may reach, in policy order
    tools: tuple[tuple[str, Rules], ...] = ()  # (identity name, rules) layered on each server
    limits: Limits = Limits()
    matched: tuple[str, ...] = ()  # the identity entries that apply

    def may_use(self, server: str) -> bool:
        """Whether the principal may reach ``server``."""
        return server in self.servers


def _plain(value: str) -> bool:
    # Labels are stored one a line with approval questions: no line breaks or controls.
    return bool(value) and all(c >= " " and c != "\x7f" for c in value)


def labels(principal: Principal) -> tuple[str, ...]:
    """The names an identity entry may be written under for ``principal``.

    The namespaces stay apart: a principal *named* ``group:admins``, ``scope:x`` or ``*`` (a
    token subject or claim the user may choose) is not matched by its name at all, so it
    cannot take the rights of a group, a scope or everyone; nor is any label that holds a
    line break (labels are joined one a line for approvals).
    """
    name = principal.name
    own = (
        (name,)
        if _plain(name) and name != "*" and not name.startswith(("group:", "scope:"))
        else ()
    )
    return (
        *own,
        *(f"group:{g}" for g in principal.groups if _plain(g)),
        *(f"scope:{s}" for s in principal.scopes if _plain(s)),
        "*",
    )


def _applies(identity: Identity, names: tuple[str, ...]) -> bool:
    return identity.name in names


def access_for(settings: ServeSettings, principal: Principal, servers: list[str]) -> Access:
    """Resolve what ``principal`` may use among ``servers`` (the policy's server names)."""
    names = labels(principal)
    matched = [i for i in settings.identities if _applies(i, names)]
    if not settings.identities:
        allowed = list(servers)
    else:
        allowed = [s for s in servers if any(fnmatchcase(s, g) for i in matched for g in i.servers)]
    if principal.servers:
        allowed = [s for s in allowed if any(fnmatchcase(s, g) for g in principal.servers)]
    tools: list[tuple[str, Rules]] = []
    for identity in matched:
        if identity.tools is not None:
            tools.append((identity.name, identity.tools))
        if identity.confirm:
            tools.append((identity.name, Rules("allow", confirm=identity.confirm)))
    limits = [i.limits for i in matched if i.limits is not None]
    return Access(
        principal=principal,
        servers=tuple(allowed),
        tools=tuple(tools),
        limits=Limits(
            min(x.requests_per_minute for x in limits),
            min(x.max_body_bytes for x in limits),
        )
        if limits
        else settings.limits,
        matched=tuple(i.name for i in matched),
    )


def may_approve(settings: ServeSettings, approver: Principal, requester: str) -> bool:
    """Whether ``approver`` may answer a question about a call made by ``requester``.

    ``requester`` is the labels of the calling principal joined as stored with the question
    (see :func:`labels`); any ``approve`` glob of an entry that applies to the approver must
    match one of them.
    """
    names = labels(approver)
    globs = [g for i in settings.identities if _applies(i, names) for g in i.approve]
    wanted = [r for r in requester.split("\n") if r and r != "*"]
    return any(fnmatchcase(r, g) for g in globs for r in wanted)
