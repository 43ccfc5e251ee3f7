"""How hostile values are shown: redacted, hidden characters visible, long values folded."""

from __future__ import annotations

import hashlib

from portcullis.console.render import FOLD_AT, fold, pretty, show_marked, visible

SECRET = "sk-proj-Ab3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5bC7dE9f"


def test_visible_marks_hidden_characters() -> None:
    """Zero-width, bidi, control and tag characters become ⟨U+XXXX⟩; plain text is kept."""
    assert visible("plain text") == "plain text"
    assert visible("a\u200bb\u202ec\x1b[0m\U000e0041") == (
        "a⟨U+200B⟩b⟨U+202E⟩c⟨U+001B⟩[0m⟨U+E0041⟩"
    )
    assert visible("a\nb") == "a⟨U+000A⟩b"
    assert visible("a\nb", multiline=True) == "a\nb"
    assert visible("é漢") == "é漢"


def test_show_marked_converts_the_queue_form() -> None:
    """The queue's <U+XXXX> marks become ⟨U+XXXX⟩ and raw hidden characters are caught too."""
    assert show_marked('{\n  "a": "x<U+200B>y"\n}') == '{\n  "a": "x⟨U+200B⟩y"\n}'
    assert show_marked("\u2066") == "⟨U+2066⟩"


def test_fold_keeps_length_and_digest() -> None:
    """A long string is cut, with its length and the start of its sha256."""
    long = "A" * 1000 + "hidden tail"
    folded = fold({"x": [long], "short": "ok"})
    text = folded["x"][0]
    digest = hashlib.sha256(long.encode()).hexdigest()[:16]
    assert text.endswith(f"({len(long)} characters, sha256:{digest})")
    assert "hidden tail" not in text
    assert folded["short"] == "ok"
    assert fold("B" * FOLD_AT) == "B" * FOLD_AT


def test_pretty_redacts_folds_and_indents() -> None:
    """Pretty JSON, sorted keys, secrets replaced, hidden characters visible."""
    text = pretty({"z": 1, "token": SECRET, "note": "a\u200bb"})
    assert SECRET not in text and "[REDACTED:" in text
    assert "a⟨U+200B⟩b" in text
    assert text.index('"note"') < text.index('"token"') < text.index('"z"')
    assert text.startswith("{\n  ")


def test_pretty_without_folding_keeps_long_values() -> None:
    """The full record view does not fold."""
    assert "C" * 500 in pretty({"v": "C" * 500}, folded=False)
