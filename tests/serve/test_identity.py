"""Who may use what: ``access_for`` and ``may_approve`` (pure)."""

from __future__ import annotations

from portcullis.policy.compiled import Identity, Limits, Rules, ServeSettings
from portcullis.serve.identity import access_for, labels, may_approve
from portcullis.serve.types import Principal

SERVERS = ["time", "fs", "echo"]


def _p(name: str, **kw: object) -> Principal:
    return Principal(name=name, kind="oauth", **kw)  # type: ignore[arg-type]


def test_without_identities_everyone_reaches_every_server() -> None:
    """No identities: any principal reaches all servers, cut to its key's scope."""
    settings = ServeSettings()
    assert access_for(settings, _p("x"), SERVERS).servers == tuple(SERVERS)
    scoped = Principal(name="k", kind="key", servers=("ti*",))
    assert access_for(settings, scoped, SERVERS).servers == ("time",)


def test_identities_by_name_group_scope_and_star() -> None:
    """Entries apply by name, group:, scope: and *; servers are their union; others get none."""
    settings = ServeSettings(
        identities=(
            Identity("alice", servers=("time",)),
            Identity("group:ops", servers=("fs",)),
            Identity("scope:echoer", servers=("ec*",)),
        )
    )
    assert access_for(settings, _p("alice"), SERVERS).servers == ("time",)
    both = access_for(settings, _p("alice", groups=("ops",), scopes=("echoer",)), SERVERS)
    assert both.servers == ("time", "fs", "echo")
    assert both.matched == ("alice", "group:ops", "scope:echoer")
    assert access_for(settings, _p("mallory"), SERVERS).servers == ()
    star = ServeSettings(identities=(Identity("*", servers=("*",)),))
    assert access_for(star, _p("anyone"), SERVERS).servers == tuple(SERVERS)


def test_key_scope_cuts_identity_servers() -> None:
    """An API key's own server scope narrows what its identity allows, never widens it."""
    settings = ServeSettings(identities=(Identity("k", servers=("time", "fs")),))
    key = Principal(name="k", kind="key", servers=("fs", "echo"))
    access = access_for(settings, key, SERVERS)
    assert access.servers == ("fs",)
    assert access.may_use("fs") and not access.may_use("echo")


def test_tool_rules_and_confirm_are_layered() -> None:
    """Each matching entry's tools rules and confirm globs are carried, under its name."""
    rules = Rules("allow", deny=("*delete*",))
    settings = ServeSettings(
        identities=(
            Identity("bob", servers=("*",), tools=rules),
            Identity("group:new", servers=("*",), confirm=("*write*",)),
        )
    )
    access = access_for(settings, _p("bob", groups=("new",)), SERVERS)
    assert access.tools == (("bob", rules), ("group:new", Rules("allow", confirm=("*write*",))))


def test_strictest_limits_win() -> None:
    """The smallest rate and body limits of the matching entries apply, else serve.limits."""
    settings = ServeSettings(
        limits=Limits(1000, 10_000),
        identities=(
            Identity("a", servers=("*",), limits=Limits(5, 9_000_000)),
            Identity("group:g", servers=("*",), limits=Limits(50, 100)),
        ),
    )
    assert access_for(settings, _p("a", groups=("g",)), SERVERS).limits == Limits(5, 100)
    assert access_for(settings, _p("b"), SERVERS).limits == Limits(1000, 10_000)


def test_may_approve() -> None:
    """Approvers need an applying entry whose approve glob matches one of the requester's labels."""
    settings = ServeSettings(
        identities=(
            Identity("lead", approve=("group:devs", "intern-*")),
            Identity("everyone", approve=("*",)),
        )
    )
    lead = _p("lead")
    assert may_approve(settings, lead, "\n".join(labels(_p("bob", groups=("devs",)))))
    assert may_approve(settings, lead, "\n".join(labels(_p("intern-7"))))
    assert not may_approve(settings, lead, "\n".join(labels(_p("carol"))))
    assert not may_approve(settings, _p("bob"), "\n".join(labels(_p("intern-7"))))
    # The catch-all label "*" every requester carries never counts as a match.
    assert may_approve(settings, _p("everyone"), "carol\n*")
    assert not may_approve(settings, _p("everyone"), "*")
