"""Framing and envelope decoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portcullis.gateway import frames as fr
from portcullis.gateway.frames import LineReader, Oversize


def test_no_64k_line_limit() -> None:
    """A frame far larger than 64 KiB comes out whole when under the cap."""
    reader = LineReader(10 << 20)
    big = b'{"x":"' + b"a" * (3 << 20) + b'"}'
    out = []
    for i in range(0, len(big), 65536):
        out += reader.feed(big[i : i + 65536])
    out += reader.feed(b"\n")
    assert out == [big]


def test_oversize_frame_is_discarded_with_edges() -> None:
    """A frame over the cap is reported as Oversize with its size, and the next frame is intact."""
    reader = LineReader(1000)
    out = reader.feed(b'{"jsonrpc":"2.0","id":5,"result":"' + b"x" * 5000)
    out += reader.feed(b'"}\n{"a":1}\n')
    assert isinstance(out[0], Oversize)
    assert out[0].size == 5000 + 36
    assert fr.guess_id(out[0].head, out[0].tail) == 5
    assert out[1] == b'{"a":1}'


def test_blank_lines_and_crlf() -> None:
    """Blank lines are skipped and a CRLF line ending is tolerated."""
    reader = LineReader(100)
    assert reader.feed(b'\n\r\n{"a":1}\r\n') == [b'{"a":1}']


@given(
    st.lists(
        st.binary(min_size=1, max_size=50).filter(lambda b: b"\n" not in b and b.strip() == b),
        max_size=20,
    ),
    st.integers(min_value=1, max_value=64),
)
def test_split_anywhere(frames: list[bytes], step: int) -> None:
    """However the stream is chunked, the same frames come out."""
    stream = b"".join(f + b"\n" for f in frames)
    reader = LineReader(1 << 20)
    out = []
    for i in range(0, len(stream), step):
        out += reader.feed(stream[i : i + step])
    assert out == frames


@pytest.mark.parametrize(
    ("head", "tail", "expected"),
    [
        (b'{"jsonrpc":"2.0","id":"abc","result":', b"", "abc"),
        (b'{"id":-3,"jsonrpc":"2.0"', b"", -3),
        (b'{"result":{"a":', b'"}},"jsonrpc":"2.0","id":77}', 77),
        (b'{"result":{"id":5', b"]}}", None),
    ],
)
def test_guess_id(head: bytes, tail: bytes, expected: object) -> None:
    """The id of an oversize message is recovered from its edges only where it is unambiguous."""
    assert fr.guess_id(head, tail) == expected


def test_strict_loads_refuses_duplicates_and_nan() -> None:
    """Strict decoding refuses duplicate keys at any depth and NaN."""
    with pytest.raises(fr.StrictJSONError, match="duplicate key"):
        fr.loads_strict(b'{"a":{"b":1,"b":2}}')
    with pytest.raises(fr.StrictJSONError):
        fr.loads_strict(b'{"a":NaN}')


def test_encode_escapes_lone_surrogates() -> None:
    """A rewritten message with a lone surrogate is still valid UTF-8 JSON."""
    data = fr.encode({"a": "\ud800"})
    assert data == b'{"a":"\\ud800"}'
    data.decode("utf-8")


def test_bool_id_is_invalid() -> None:
    """A boolean id is not an integer id."""
    with pytest.raises(fr.FrameError):
        fr.decode_frame(b'{"jsonrpc":"2.0","id":true,"method":"x"}')


@pytest.mark.parametrize(
    "raw",
    [
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"ping"}',
        b'{"a":{"b":1,"b":1}}',
        b'[{"x":1},{"y":2,"y":2}]',
    ],
)
def test_compact_duplicates_are_refused_by_the_fast_path_too(raw: bytes) -> None:
    """A compact message with a repeated key never round-trips, so it is still refused."""
    with pytest.raises(fr.StrictJSONError, match="duplicate key"):
        fr.loads_strict(raw)


@pytest.mark.parametrize(
    "raw",
    [b'{"a":1}', b'{"a": 1}', b'{"n":1e5,"s":"\\u00e9"}', b'{"s":"\\ud800"}', b"[1,2.50]"],
)
def test_strict_decoding_agrees_with_the_standard_library(raw: bytes) -> None:
    """Fast path or not, the decoded value is what json.loads gives."""
    import json

    assert fr.loads_strict(raw) == json.loads(raw)
