"""Audit copies shipped to OTLP/HTTP and syslog receivers running on 127.0.0.1."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from portcullis._exceptions import ConfigError
from portcullis.audit.sinks import (
    UDP_MAX,
    OtlpSink,
    Shipper,
    SyslogSink,
    sinks_for,
)
from portcullis.policy.compiled import AuditSettings, OtlpSettings, SyslogSettings

# A bound on every wait, never asserted on.
BOUND = 20.0

RFC5424 = re.compile(
    rb"^<(\d{1,3})>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (\S+) portcullis (\d+) audit - (.*)$",
    re.DOTALL,
)


def _record(i: int, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "ts": "2026-11-25T01:02:03.456789Z",
        "seq": i,
        "principal": "alice",
        "server": "files",
        "method": "tools/call",
        "decision": "allow",
        "rule": "tools.allow",
        "latency_ms": 1.5,
    }
    base.update(fields)
    return base


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + BOUND
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """A minimal OTLP/HTTP logs receiver: keeps every POST; answers ``status``."""

    def __init__(self, port: int = 0, status: int = 200) -> None:
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        self.status = status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.posts.append(
                    (self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1/logs"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def records(self) -> list[dict[str, Any]]:
        out = []
        for _, _, body in self.posts:
            doc = json.loads(body)
            for rl in doc["resourceLogs"]:
                for sl in rl["scopeLogs"]:
                    out.extend(sl["logRecords"])
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_otlp_json_shape_and_batching(receiver: Receiver) -> None:
    """Records arrive as OTLP/HTTP JSON log records, several per POST, with their headers."""
    shipper = Shipper(OtlpSink(receiver.url, {"Authorization": "Bearer tok"}), batch=5, linger_s=5)
    for i in range(5):
        shipper.write(_record(i, decision="deny" if i == 3 else "allow"))
    _until(lambda: len(receiver.posts) == 1, "the first batch")
    for i in range(5, 7):
        shipper.write(_record(i))
    shipper.close(BOUND)
    assert shipper.stats() == {"sent": 7, "dropped": 0, "failed": 0, "queued": 0}
    assert [
        len(json.loads(b)["resourceLogs"][0]["scopeLogs"][0]["logRecords"])
        for _, _, b in receiver.posts
    ] == [5, 2]

    path, headers, body = receiver.posts[0]
    assert path == "/v1/logs"
    assert headers["content-type"] == "application/json"
    assert headers["authorization"] == "Bearer tok"
    doc = json.loads(body)
    resource = {
        a["key"]: a["value"]["stringValue"]
        for a in doc["resourceLogs"][0]["resource"]["attributes"]
    }
    assert resource["service.name"] == "portcullis"
    assert resource["host.name"] == socket.gethostname()
    scope = doc["resourceLogs"][0]["scopeLogs"][0]
    assert scope["scope"] == {"name": "portcullis.audit"}
    logs = receiver.records()
    assert [json.loads(r["body"]["stringValue"]) for r in logs] == [
        _record(i, decision="deny" if i == 3 else "allow") for i in range(7)
    ]
    first = logs[0]
    # 2026-11-25T01:02:03.456789Z in nanoseconds.
    assert first["timeUnixNano"] == "1795568523456789000"
    assert first["observedTimeUnixNano"].isdigit()
    assert (first["severityNumber"], first["severityText"]) == (9, "INFO")
    assert (logs[3]["severityNumber"], logs[3]["severityText"]) == (13, "WARN")
    attrs = {a["key"]: a["value"] for a in first["attributes"]}
    assert attrs == {
        "portcullis.decision": {"stringValue": "allow"},
        "portcullis.server": {"stringValue": "files"},
        "portcullis.method": {"stringValue": "tools/call"},
        "portcullis.rule": {"stringValue": "tools.allow"},
        "portcullis.principal": {"stringValue": "alice"},
        "portcullis.seq": {"intValue": "0"},
    }


def test_otlp_receiver_down_then_up() -> None:
    """Records written while the receiver is down arrive after a retry once it is up."""
    port = _free_port()
    shipper = Shipper(
        OtlpSink(f"http://127.0.0.1:{port}/v1/logs", timeout_s=2), backoff_s=0.05, max_backoff_s=0.2
    )
    for i in range(3):
        shipper.write(_record(i))
    _until(lambda: shipper.stats()["failed"] >= 2, "failed attempts")
    receiver = Receiver(port)
    try:
        _until(lambda: shipper.stats()["sent"] == 3, "the retried batch")
        shipper.close(BOUND)
        assert [r["attributes"][-1]["value"]["intValue"] for r in receiver.records()] == [
            "0",
            "1",
            "2",
        ]
        assert shipper.stats()["dropped"] == 0
    finally:
        receiver.close()


def test_otlp_server_errors_are_retried_and_rejections_dropped() -> None:
    """A 503 is retried; a 400 drops the batch for good (counted), without retrying it."""
    receiver = Receiver(status=503)
    try:
        shipper = Shipper(OtlpSink(receiver.url), backoff_s=0.05, max_backoff_s=0.1, linger_s=0)
        shipper.write(_record(1))
        _until(lambda: len(receiver.posts) >= 2, "a retry after 503")
        receiver.status = 400
        _until(lambda: shipper.stats()["dropped"] == 1, "the rejection")
        posts = len(receiver.posts)
        receiver.status = 200
        shipper.write(_record(2))
        _until(lambda: shipper.stats()["sent"] == 1, "the next record")
        shipper.close(BOUND)
        assert len(receiver.posts) == posts + 1  # the rejected batch was not sent again
    finally:
        receiver.close()


def test_close_with_receiver_down_counts_the_loss() -> None:
    """Closing while the receiver stays down gives up at the timeout and counts the records."""
    shipper = Shipper(
        OtlpSink(f"http://127.0.0.1:{_free_port()}/v1/logs", timeout_s=1), backoff_s=0.05
    )
    for i in range(4):
        shipper.write(_record(i))
    shipper.close(0.5)
    stats = shipper.stats()
    assert stats["sent"] == 0
    assert stats["dropped"] == 4
    assert stats["failed"] >= 1
    shipper.write(_record(9))  # after close: dropped, not raised
    assert shipper.stats()["dropped"] == 5


class _Gate:
    """A sink that holds its first send until released (to fill the queue deterministically)."""

    name = "gate"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.got: list[Mapping[str, Any]] = []

    def send(self, records: Sequence[Mapping[str, Any]]) -> None:
        self.entered.set()
        assert self.release.wait(BOUND)
        self.got.extend(records)

    def close(self) -> None:
        pass


def test_queue_overflow_drops_and_counts_without_blocking() -> None:
    """With the sink stuck and the queue full, writes return at once and drops are counted."""
    gate = _Gate()
    shipper = Shipper(gate, capacity=3, batch=1, linger_s=0)
    shipper.write(_record(0))
    assert gate.entered.wait(BOUND)
    done = threading.Event()

    def flood() -> None:
        for i in range(1, 11):
            shipper.write(_record(i))
        shipper.write(None)  # type: ignore[arg-type]  # not a record: dropped, never raised
        shipper.write({"odd": object()})  # queue full: dropped
        done.set()

    threading.Thread(target=flood, daemon=True).start()
    assert done.wait(BOUND)  # the writes did not wait for the stuck sink
    assert shipper.stats() == {"sent": 0, "dropped": 9, "failed": 0, "queued": 3}
    gate.release.set()
    shipper.close(BOUND)
    assert shipper.stats() == {"sent": 4, "dropped": 9, "failed": 0, "queued": 0}
    assert [r["seq"] for r in gate.got] == [0, 1, 2, 3]


def _parse(message: bytes) -> tuple[int, str, int, dict[str, Any]]:
    m = RFC5424.match(message)
    assert m, message[:200]
    assert m.group(3) == socket.gethostname().encode()
    return int(m.group(1)), m.group(2).decode(), int(m.group(4)), json.loads(m.group(5))


def test_syslog_udp_rfc5424_and_facility() -> None:
    """UDP syslog: one RFC 5424 datagram per record, PRI from the facility, cut at 8 KiB."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(BOUND)
    try:
        port = listener.getsockname()[1]
        shipper = Shipper(SyslogSink(f"udp://127.0.0.1:{port}", "local3"), linger_s=0)
        shipper.write(_record(1))
        shipper.write(_record(2, decision="deny"))
        shipper.write(_record(3, reason="é" * 10_000))
        shipper.close(BOUND)
        first, second, big = (listener.recv(65535) for _ in range(3))
    finally:
        listener.close()
    pri, ts, pid, body = _parse(first)
    assert pri == 19 * 8 + 6  # local3, informational
    assert ts == "2026-11-25T01:02:03.456789Z"
    assert pid > 0
    assert body == _record(1)
    assert _parse(second)[0] == 19 * 8 + 4  # local3, warning
    assert len(big) <= UDP_MAX
    assert len(big) > UDP_MAX - 4
    big.decode("utf-8")  # cut on a character boundary


def test_syslog_tcp_octet_counting() -> None:
    """TCP syslog frames each RFC 5424 message as ``LEN SP MSG`` (RFC 6587 octet counting)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(BOUND)
    received = bytearray()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(BOUND)
            while chunk := conn.recv(65536):
                received.extend(chunk)

    reader = threading.Thread(target=serve, daemon=True)
    reader.start()
    try:
        shipper = Shipper(SyslogSink(f"tcp://127.0.0.1:{listener.getsockname()[1]}", "auth"))
        shipper.write(_record(1))
        shipper.write(_record(2, decision="deny", reason="x" * 20_000))
        shipper.close(BOUND)  # closes the connection, ending the reader
        reader.join(BOUND)
    finally:
        listener.close()
    frames = []
    data = bytes(received)
    while data:
        length, _, rest = data.partition(b" ")
        frames.append(rest[: int(length)])
        data = rest[int(length) :]
    assert len(frames) == 2
    assert _parse(frames[0])[0] == 4 * 8 + 6
    pri, _, _, body = _parse(frames[1])
    assert pri == 4 * 8 + 4
    assert body["reason"] == "x" * 20_000  # TCP messages are never cut


def test_syslog_unix_datagram_socket(tmp_path: Path) -> None:
    """A local socket path (like /dev/log) receives the messages."""
    path = tmp_path / "log.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(BOUND)
    try:
        shipper = Shipper(SyslogSink(str(path), "user"))
        shipper.write(_record(5))
        shipper.close(BOUND)
        pri, _, _, body = _parse(listener.recv(65535))
    finally:
        listener.close()
    assert pri == 1 * 8 + 6
    assert body["seq"] == 5


def test_sinks_for_resolves_header_references(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sinks_for builds the configured sinks and resolves ${env:…} header references."""
    monkeypatch.setenv("PC_TEST_OTLP_TOKEN", "s3cret-token")
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(BOUND)
    settings = AuditSettings(
        otlp=OtlpSettings(
            endpoint=receiver.url, headers={"Authorization": "Bearer ${env:PC_TEST_OTLP_TOKEN}"}
        ),
        syslog=SyslogSettings(address=f"udp://127.0.0.1:{udp.getsockname()[1]}", facility="local0"),
    )
    try:
        shippers = sinks_for(settings)
        assert len(shippers) == 2
        for s in shippers:
            s.write(_record(1))
            s.close(BOUND)
        assert _parse(udp.recv(65535))[0] == 16 * 8 + 6
    finally:
        udp.close()
    assert receiver.posts[0][1]["authorization"] == "Bearer s3cret-token"
    assert sinks_for(AuditSettings()) == []


def test_sinks_for_refuses_bad_configuration() -> None:
    """Header values with line breaks, odd addresses and odd facilities are ConfigErrors."""
    bad_header = AuditSettings(
        otlp=OtlpSettings(endpoint="https://otel.example:4318/v1/logs", headers={"X": "a"})
    )
    with pytest.raises(ConfigError, match="line break"):
        sinks_for(bad_header, resolve=lambda v: "a\r\nInjected: 1")
    with pytest.raises(ConfigError, match="not an http"):
        sinks_for(AuditSettings(otlp=OtlpSettings(endpoint="ftp://user:pw@host/x")))
    with pytest.raises(ConfigError) as err:
        sinks_for(AuditSettings(otlp=OtlpSettings(endpoint="ftp://user:pw-hidden@host/x")))
    assert "pw-hidden" not in str(err.value)
    with pytest.raises(ConfigError, match="host and a port"):
        sinks_for(AuditSettings(syslog=SyslogSettings(address="udp://127.0.0.1")))
    with pytest.raises(ConfigError, match="socket path"):
        sinks_for(AuditSettings(syslog=SyslogSettings(address="relative/path")))
    with pytest.raises(ConfigError, match="facility"):
        sinks_for(AuditSettings(syslog=SyslogSettings(address="/dev/log", facility="nope")))
