"""LayeredRules: a principal's rules on top of a server's; the strictest verdict wins."""

from __future__ import annotations

from portcullis.gateway.guards.tools import LayeredRules, RuleSet
from portcullis.gateway.pipeline import Allow, Confirm, Deny
from portcullis.policy.compiled import Rules


def _layered(server: Rules, *layers: Rules) -> LayeredRules:
    base = RuleSet(server, "tool", "files")
    return LayeredRules(
        base, [RuleSet(r, "tool", f"files (identity {i})") for i, r in enumerate(layers)]
    )


def test_deny_in_any_layer_wins_over_an_allowing_server() -> None:
    """A tool the server allows is refused when a principal's layer denies it."""
    rules = _layered(Rules("allow"), Rules("allow", deny=("write_*",)))
    assert isinstance(rules.decide("write_file"), Deny)
    assert isinstance(rules.decide("read_file"), Allow)


def test_server_deny_is_not_lifted_by_a_layer_allow() -> None:
    """A layer's allow never overrides the server's own deny."""
    rules = _layered(Rules("allow", deny=("rm",)), Rules("allow", allow=("rm",)))
    assert isinstance(rules.decide("rm"), Deny)


def test_confirm_beats_allow_and_deny_beats_confirm() -> None:
    """A confirm from one layer and a deny from another give deny; a confirm alone, confirm."""
    rules = _layered(
        Rules("allow"), Rules("allow", confirm=("move_*",)), Rules("allow", deny=("move_dir",))
    )
    assert isinstance(rules.decide("move_file"), Confirm)
    assert isinstance(rules.decide("move_dir"), Deny)


def test_layer_globs_match_the_namespaced_name() -> None:
    """A layer may name tools as server__tool."""
    rules = _layered(Rules("allow"), Rules("allow", deny=("files__delete",)))
    assert isinstance(rules.decide("delete"), Deny)
    assert isinstance(rules.decide("list"), Allow)


def test_layer_default_deny_hides_unlisted_tools() -> None:
    """A layer with default deny and an allow list keeps only those tools, and lists are read."""
    rules = _layered(Rules("allow"), Rules("deny", allow=("read_*",)))
    assert isinstance(rules.decide("read_file"), Allow)
    assert isinstance(rules.decide("write_file"), Deny)
    assert rules.rules.default == "deny"  # so the session filters list results


def test_remember_comes_from_the_server_only() -> None:
    """Session-wide approvals follow the server's remember list, not a layer's."""
    rules = _layered(Rules("confirm", remember=("a",)), Rules("allow", remember=("b",)))
    assert rules.remembers("a")
    assert not rules.remembers("b")
