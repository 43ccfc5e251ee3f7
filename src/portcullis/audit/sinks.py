"""Copies of the audit trail shipped to a central sink: OTLP/HTTP logs or syslog (RFC 5424).

The local HMAC-chained JSON Lines log stays the source of truth: a record is shipped only after
it was appended there, shipping never blocks or fails a call, and a sink that is down loses
copies (counted in :meth:`Shipper.stats`), never local records. Each sink gets a
:class:`Shipper`: a daemon thread fed through a bounded queue, which batches records, retries
with exponential backoff, and drops (and counts) what does not fit.

OTLP is encoded by hand, as OTLP/HTTP **JSON** (``Content-Type: application/json``), the stable,
documented encoding of the OpenTelemetry protocol's logs service. The Python OpenTelemetry logs
SDK still lives in the private ``opentelemetry.sdk._logs`` package (its API may change in any
release) and its OTLP exporter pulls in protobuf and grpc; one small function producing the
``resourceLogs`` document is easier to audit and has no dependency beyond the HTTP client.

Syslog messages are RFC 5424 (``<PRI>1 TIMESTAMP HOSTNAME portcullis PROCID audit - MSG`` with
the record's JSON as MSG): over UDP one datagram each, cut at :data:`UDP_MAX` bytes on a
character boundary; over TCP with octet-counting framing (RFC 6587); or to a local socket such
as ``/dev/log``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

import msgspec

from portcullis._exceptions import ConfigError
from portcullis.policy.compiled import AuditSettings

__all__ = [
    "FACILITIES",
    "UDP_MAX",
    "OtlpSink",
    "Rejected",
    "Shipper",
    "Sink",
    "SyslogSink",
    "otlp_body",
    "sinks_for",
    "syslog_message",
]

#: Syslog facilities by name (RFC 5424 §6.2.1).
FACILITIES = {
    "kern": 0,
    "user": 1,
    "mail": 2,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "lpr": 6,
    "news": 7,
    "uucp": 8,
    "cron": 9,
    "authpriv": 10,
    "ftp": 11,
    **{f"local{i}": 16 + i for i in range(8)},
}
#: The largest UDP syslog datagram sent; longer messages are cut (the local log has them whole).
UDP_MAX = 8192
_SEVERITY_INFO, _SEVERITY_WARNING = 6, 4  # syslog severities
_OTLP_INFO, _OTLP_WARN = 9, 13  # OTLP SeverityNumber

_encode = msgspec.json.Encoder(enc_hook=str).encode


class Rejected(Exception):
    """The receiver refused a batch for good (e.g. HTTP 400): retrying would not help."""


class Sink(Protocol):
    """Where a :class:`Shipper` sends batches; ``send`` raises to ask for a retry."""

    name: str

    def send(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Deliver ``records``; raise :class:`Rejected` to drop them, anything else to retry."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


# --------------------------------------------------------------------------------------------
# Pure encoding
# --------------------------------------------------------------------------------------------


def _record_time(record: Mapping[str, Any]) -> dt.datetime | None:
    ts = record.get("ts")
    if not isinstance(ts, str):
        return None
    try:
        when = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _str_attr(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "value": {"stringValue": value}}


def otlp_body(
    records: Sequence[Mapping[str, Any]], *, host: str, now_ns: int | None = None
) -> bytes:
    """The OTLP/HTTP JSON ``ExportLogsServiceRequest`` carrying ``records`` as log records."""
    observed = str(now_ns if now_ns is not None else time.time_ns())
    logs = []
    for record in records:
        when = _record_time(record)
        deny = record.get("decision") == "deny"
        attributes = []
        for field in ("decision", "server", "method", "rule", "principal"):
            value = record.get(field)
            if isinstance(value, str) and value:
                attributes.append(_str_attr(f"portcullis.{field}", value))
        seq = record.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            # int64 values are decimal strings in the protobuf JSON mapping.
            attributes.append({"key": "portcullis.seq", "value": {"intValue": str(seq)}})
        logs.append(
            {
                "timeUnixNano": str(int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000)
                if when is not None
                else observed,
                "observedTimeUnixNano": observed,
                "severityNumber": _OTLP_WARN if deny else _OTLP_INFO,
                "severityText": "WARN" if deny else "INFO",
                "body": {"stringValue": _encode(record).decode("utf-8")},
                "attributes": attributes,
            }
        )
    document = {
        "resourceLogs": [
            {
                "resource": {
                    "attributes": [
                        _str_attr("service.name", "portcullis"),
                        _str_attr("host.name", host),
                    ]
                },
                "scopeLogs": [{"scope": {"name": "portcullis.audit"}, "logRecords": logs}],
            }
        ]
    }
    return _encode(document)


def _header_value(text: str, limit: int) -> str:
    """An RFC 5424 header field: printable US-ASCII without spaces, at most ``limit``, or ``-``."""
    clean = "".join(c for c in text if "!" <= c <= "~")[:limit]
    return clean or "-"


def syslog_message(
    record: Mapping[str, Any],
    *,
    facility: int,
    hostname: str,
    procid: int,
    now: dt.datetime | None = None,
) -> bytes:
    """One RFC 5424 message: ``<PRI>1 TIMESTAMP HOSTNAME portcullis PROCID audit - MSG``."""
    severity = _SEVERITY_WARNING if record.get("decision") == "deny" else _SEVERITY_INFO
    when = _record_time(record) or now or dt.datetime.now(dt.UTC)
    stamp = when.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    header = (
        f"<{facility * 8 + severity}>1 {stamp} {_header_value(hostname, 255)} portcullis "
        f"{procid} audit - "
    )
    return header.encode("ascii") + _encode(record)


def _cut_utf8(data: bytes, limit: int) -> bytes:
    """``data`` cut to at most ``limit`` bytes without splitting a UTF-8 character."""
    if len(data) <= limit:
        return data
    return data[:limit].decode("utf-8", "ignore").encode("utf-8")


# --------------------------------------------------------------------------------------------
# Sinks
# --------------------------------------------------------------------------------------------


class OtlpSink:
    """An OTLP/HTTP JSON logs endpoint (``…/v1/logs``); TLS is verified, redirects not followed."""

    def __init__(
        self,
        endpoint: str,
        headers: Mapping[str, str] | None = None,
        *,
        timeout_s: float = 10.0,
        host: str | None = None,
    ) -> None:
        import httpx2

        try:
            parts = urlsplit(endpoint)
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            parts, port = urlsplit(""), ""
        # Named without user info or query: those may carry credentials.
        self.name = f"otlp {parts.scheme}://{parts.hostname or ''}{port}{parts.path}"
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"audit.otlp.endpoint: {self.name[5:]!r} is not an http(s) URL")
        self._endpoint = endpoint
        self._host = host or socket.gethostname()
        self._client = httpx2.Client(
            headers={**(headers or {}), "Content-Type": "application/json"},
            timeout=httpx2.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            verify=True,
            follow_redirects=False,
            # The endpoint is reached as configured: no proxy or .netrc from the environment.
            trust_env=False,
        )

    def send(self, records: Sequence[Mapping[str, Any]]) -> None:
        """POST one batch; 2xx is delivered, other 4xx (bar 408 and 429) are rejected."""
        response = self._client.post(self._endpoint, content=otlp_body(records, host=self._host))
        status = response.status_code
        if 200 <= status < 300:
            return
        if 400 <= status < 500 and status not in (408, 429):
            raise Rejected(f"{self.name} refused the batch: HTTP {status}")
        raise OSError(f"{self.name} answered HTTP {status}")

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()


class SyslogSink:
    """A syslog receiver: ``udp://HOST:PORT``, ``tcp://HOST:PORT`` or a local socket path."""

    def __init__(
        self,
        address: str,
        facility: str = "local0",
        *,
        timeout_s: float = 10.0,
        hostname: str | None = None,
    ) -> None:
        if facility not in FACILITIES:
            raise ConfigError(f"audit.syslog.facility: unknown facility {facility!r}")
        self._facility = FACILITIES[facility]
        self._timeout = timeout_s
        self._hostname = hostname or socket.gethostname()
        self._sock: socket.socket | None = None
        self._target: Any
        if address.startswith(("udp://", "tcp://")):
            parts = urlsplit(address)
            try:
                port = parts.port
            except ValueError:
                port = None
            if not parts.hostname or port is None:
                raise ConfigError(f"audit.syslog.address: {address!r} needs a host and a port")
            self._kind = parts.scheme
            self._target = (parts.hostname, port)
        elif address.startswith("/"):
            self._kind = "unix"
            self._target = address
        else:
            raise ConfigError(
                f"audit.syslog.address: {address!r}: use udp://HOST:PORT, tcp://HOST:PORT "
                "or an absolute socket path such as /dev/log"
            )
        self.name = f"syslog {address}"
        self._stream = self._kind == "tcp"

    def _connect(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        if self._kind == "udp":
            host, port = self._target
            family = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0][0]
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.settimeout(self._timeout)
            sock.connect((host, port))
        elif self._kind == "tcp":
            sock = socket.create_connection(self._target, timeout=self._timeout)
        else:
            # /dev/log is a datagram socket on Linux; a stream socket is tried when it is not.
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.settimeout(self._timeout)
            try:
                sock.connect(self._target)
                self._stream = False
            except OSError:
                sock.close()
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self._timeout)
                sock.connect(self._target)
                self._stream = True
        self._sock = sock
        return sock

    def send(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Send each record as one message; on an error the connection is reopened next time."""
        procid = os.getpid()
        try:
            sock = self._connect()
            for record in records:
                message = syslog_message(
                    record, facility=self._facility, hostname=self._hostname, procid=procid
                )
                if self._stream:
                    sock.sendall(f"{len(message)} ".encode("ascii") + message)
                else:
                    sock.send(_cut_utf8(message, UDP_MAX))
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


# --------------------------------------------------------------------------------------------
# The shipping thread
# --------------------------------------------------------------------------------------------


class Shipper:
    """Ships copies of audit records to one sink from a daemon thread.

    :meth:`write` never blocks and never raises: a full queue drops the record (counted).
    Failed batches are retried with exponential backoff; a batch the receiver rejects for good
    is dropped (counted). :meth:`close` flushes what it can within its timeout.
    """

    def __init__(
        self,
        sink: Sink,
        *,
        capacity: int = 10_000,
        batch: int = 200,
        linger_s: float = 0.2,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.sink = sink
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=capacity)
        self._batch = max(1, batch)
        self._linger = linger_s
        self._backoff = backoff_s
        self._max_backoff = max_backoff_s
        self._lock = threading.Lock()
        self._counts = {"sent": 0, "dropped": 0, "failed": 0}
        self._closing = threading.Event()
        self._deadline = float("inf")
        self._wake = threading.Event()  # set by close() to cut a backoff short
        self._thread = threading.Thread(
            target=self._run, name=f"portcullis-audit-{sink.name}", daemon=True
        )
        self._thread.start()

    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self._counts[what] += n

    def write(self, record: Mapping[str, Any]) -> None:
        """Queue a copy of ``record``; drop it (counted) when the queue is full or closed."""
        try:
            if self._closing.is_set():
                raise queue.Full
            self._queue.put_nowait(dict(record))
        except queue.Full:
            self._count("dropped")
        except Exception:
            with contextlib.suppress(Exception):
                self._count("dropped")

    def stats(self) -> dict[str, int]:
        """``sent``, ``dropped`` and ``failed`` (failed attempts) counts, and ``queued``."""
        with self._lock:
            return {**self._counts, "queued": self._queue.qsize()}

    def _take(self) -> list[dict[str, Any]]:
        """The next batch: waits for one record, then lingers a little to gather more."""
        try:
            first = self._queue.get(timeout=0.05 if self._closing.is_set() else 0.5)
        except queue.Empty:
            return []
        batch = [first]
        until = time.monotonic() + self._linger
        while len(batch) < self._batch:
            left = until - time.monotonic()
            try:
                if left <= 0 or self._closing.is_set():
                    batch.append(self._queue.get_nowait())
                else:  # short waits, so that close() is not held up by a long linger
                    batch.append(self._queue.get(timeout=min(left, 0.05)))
            except queue.Empty:
                if left <= 0 or self._closing.is_set():
                    break
        return batch

    def _run(self) -> None:
        batch: list[dict[str, Any]] = []
        delay = self._backoff
        while True:
            if not batch:
                batch = self._take()
                if not batch:
                    if self._closing.is_set():
                        return
                    continue
            try:
                self.sink.send(batch)
            except Rejected:
                self._count("failed")
                self._count("dropped", len(batch))
                batch = []
                continue
            except Exception:
                self._count("failed")
                wait = delay
                if self._closing.is_set():
                    wait = min(wait, self._deadline - time.monotonic())
                    if wait <= 0:
                        self._give_up(batch)
                        return
                delay = min(delay * 2, self._max_backoff)
                if self._wake.wait(wait):
                    self._wake.clear()
                continue
            self._count("sent", len(batch))
            batch = []
            delay = self._backoff

    def _give_up(self, batch: list[dict[str, Any]]) -> None:
        lost = len(batch)
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            lost += 1
        self._count("dropped", lost)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop accepting records, flush what can be sent within ``timeout_s``, close the sink.

        Records still unsent when the timeout passes are counted as dropped.
        """
        self._deadline = time.monotonic() + timeout_s
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout_s + 1.0)
        if self._thread.is_alive():
            self._give_up([])  # the thread is stuck in a send: what is queued is lost
        with contextlib.suppress(Exception):
            self.sink.close()


# --------------------------------------------------------------------------------------------
# From the policy
# --------------------------------------------------------------------------------------------


def _resolve_ref(value: str) -> str:
    from portcullis.policy.refs import resolve

    return resolve(value, key="audit.otlp.headers")


def sinks_for(
    settings: AuditSettings, resolve: Callable[[str], str] = _resolve_ref
) -> list[Shipper]:
    """The shippers ``audit.otlp`` and ``audit.syslog`` ask for (none when neither is set).

    Header values may hold secret references (``${env:…}``); ``resolve`` resolves one value.
    Raises :class:`ConfigError` for an unusable endpoint, address, facility or header.
    """
    shippers: list[Shipper] = []
    if settings.otlp is not None:
        headers: dict[str, str] = {}
        for name, raw in settings.otlp.headers.items():
            value = resolve(raw)
            if any(c in value for c in "\r\n\x00"):
                # A line break in a header value would let the secret store inject headers.
                raise ConfigError(
                    f"audit.otlp.headers.{name}: the resolved value contains a line break or NUL"
                )
            headers[name] = value
        shippers.append(Shipper(OtlpSink(settings.otlp.endpoint, headers)))
    if settings.syslog is not None:
        sink = SyslogSink(settings.syslog.address, settings.syslog.facility)
        shippers.append(Shipper(sink))
    return shippers
