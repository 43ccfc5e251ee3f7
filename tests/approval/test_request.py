"""What a person is shown and what an approval is bound to."""

from __future__ import annotations

from portcullis.approval.request import (
    Outcome,
    binding_digest,
    new_request,
    show_arguments,
    visible,
)

# A GitHub token shape the secret rules know (not a real token).
TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


def test_digest_binds_every_part_and_ignores_key_order() -> None:
    """Server, method, subject and each argument change the digest; key order does not."""
    base = binding_digest("files", "tools/call", "write_file", {"path": "/a", "mode": 1})
    assert base == binding_digest("files", "tools/call", "write_file", {"mode": 1, "path": "/a"})
    for other in (
        binding_digest("other", "tools/call", "write_file", {"path": "/a", "mode": 1}),
        binding_digest("files", "prompts/get", "write_file", {"path": "/a", "mode": 1}),
        binding_digest("files", "tools/call", "edit_file", {"path": "/a", "mode": 1}),
        binding_digest("files", "tools/call", "write_file", {"path": "/b", "mode": 1}),
        binding_digest("files", "tools/call", "write_file", {"path": "/a", "mode": 1.5}),
    ):
        assert other != base


def test_shown_arguments_redact_secrets() -> None:
    """A secret in an argument is never shown to the person (nor to a client dialog)."""
    shown = show_arguments({"token": TOKEN})
    assert TOKEN not in shown
    assert "[REDACTED:" in shown


def test_hidden_characters_are_made_visible() -> None:
    """Zero-width, bidi, tag characters and odd spaces are spelled out, in keys too."""
    shown = show_arguments({"pa\u200bth": "/tmp/\u202eevil\U000e0041\u00a0x"})
    for code in ("<U+200B>", "<U+202E>", "<U+E0041>", "<U+00A0>"):
        assert code in shown
    assert visible("plain text") == "plain text"


def test_long_values_are_folded_with_their_digest() -> None:
    """A long value shows its start, its length and a digest that tells two values apart."""
    a = show_arguments({"content": "x" * 500})
    b = show_arguments({"content": "x" * 499 + "y"})
    assert "(500 characters, sha256:" in a
    assert a != b
    assert len(a) < 400


def test_huge_arguments_are_cut_but_say_so() -> None:
    """Many arguments are cut at a bound, saying the digest still covers everything."""
    shown = show_arguments({f"k{i}": "v" * 150 for i in range(100)})
    assert "more characters not shown; the digest covers all" in shown


def test_new_requests_are_unguessable_and_carry_a_short_code() -> None:
    """Each request gets a fresh 128-bit id and a readable six-character code."""
    one = new_request("s", "tools/call", "t", {}, timeout_s=5, clock=lambda: 100.0)
    two = new_request("s", "tools/call", "t", {}, timeout_s=5, clock=lambda: 100.0)
    assert one.id != two.id and len(one.id) >= 22
    assert len(one.code) == 7 and one.code[3] == "-"
    assert not set(one.code) & set("01OIL")
    assert one.expires == 105.0
    assert one.shown == ""


def test_outcome_audit_field() -> None:
    """The audit field names channel, outcome and approver, and a session scope when given."""
    approved = Outcome("approved", "console", "alice", for_session=True)
    assert approved.audit() == {
        "channel": "console",
        "outcome": "approved",
        "approver": "alice",
        "scope": "session",
    }
    assert Outcome("timeout", "tty").audit() == {"channel": "tty", "outcome": "timeout"}
    assert approved.approved and not Outcome("denied", "tty").approved
