"""The compiled policy: what the gateway and ``portcullis check`` consume at run time.

These are msgspec structs, not pydantic models, so a cached compiled policy loads in well under a
millisecond and the hot path never imports pydantic. ``portcullis.policy.compile`` builds them
from the validated file; defaults are already merged into every server.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = [
    "ApprovalSettings",
    "ArgConstraint",
    "AuditSettings",
    "CompiledPolicy",
    "Identity",
    "Launch",
    "Limits",
    "OAuthSettings",
    "ObserveSettings",
    "OtlpSettings",
    "PathSettings",
    "Rules",
    "SandboxSettings",
    "ServeSettings",
    "ServerPolicy",
    "ServerRequests",
    "SqlSettings",
    "SyslogSettings",
    "UrlSettings",
]

RuleAction = Literal["allow", "deny", "confirm"]
Mode = Literal["enforce", "observe"]


class Rules(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Allow/confirm/deny globs with a default (precedence deny > confirm > allow > default)."""

    default: RuleAction = "allow"
    allow: tuple[str, ...] = ()
    confirm: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    remember: tuple[str, ...] = ()  # confirm names an approval may cover for the session


class ServerRequests(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What to do with server→client requests."""

    sampling: Literal["allow", "deny"] = "deny"
    elicitation: Literal["allow", "deny"] = "allow"
    roots: Literal["allow", "deny", "policy"] = "policy"


class Launch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How to start or reach the upstream server; env and header values may be references."""

    command: str | None = None
    args: tuple[str, ...] = ()
    cwd: str | None = None
    env: dict[str, str] = msgspec.field(default_factory=dict)
    url: str | None = None
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    shared: bool = False  # serve: one process for every principal (a stateless server)


class PathSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``paths:``: where file arguments may point (the roots are ``ServerPolicy.roots``)."""

    arguments: tuple[str, ...] = ()
    read_only: bool = False


class SqlSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``sql:``: which arguments hold SQL and what they may do."""

    arguments: tuple[str, ...] = ()
    dialect: str = "postgres"
    read_only: bool = True
    deny_tables: tuple[str, ...] = ()
    allow_tables: tuple[str, ...] = ()  # empty: any table deny_tables does not name
    allow_functions: str | tuple[str, ...] = "default"
    # Read by `portcullis sql` only (result caps, query timeout, masking, search_path).
    max_rows: int = 1000
    max_bytes: int = 1024 * 1024
    timeout_s: float = 10.0
    mask_columns: tuple[str, ...] = ()
    schema: str | None = None


class UrlSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``urls:``: which arguments hold URLs and where they may point."""

    arguments: tuple[str, ...] = ()
    schemes: tuple[str, ...] = ("https",)
    allow_hosts: tuple[str, ...] = ()
    deny_private: bool = True


class ArgConstraint(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One argument's generic constraint (``constraints:``)."""

    pattern: str | None = None
    enum: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    max_length: int | None = None
    forbid: tuple[str, ...] = ()


class SandboxSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``sandbox:``: how the server's process is confined (Linux, bubblewrap)."""

    required: bool = True
    profile: Literal["node", "python", "binary"] = "binary"
    network: Literal["none", "allow_hosts", "host"] = "none"
    read_only: tuple[str, ...] = ()
    read_write: tuple[str, ...] = ()
    env: tuple[str, ...] = ()


KeepRelax = Literal["keep", "relax"]


class ObserveSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``observe:``: what observe mode relaxes; ``keep`` items stay enforced."""

    redaction: KeepRelax = "keep"
    pins: KeepRelax = "keep"
    approvals: KeepRelax = "keep"

    def relaxed(self) -> tuple[str, ...]:
        """The names of the relaxed items, in a fixed order."""
        return tuple(
            item for item in ("redaction", "pins", "approvals") if getattr(self, item) == "relax"
        )


class ServerPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One server's effective policy, with the defaults merged in."""

    name: str
    mode: Mode = "enforce"
    observe: ObserveSettings = ObserveSettings()
    tools: Rules = Rules()
    resources: Rules = Rules()
    prompts: Rules = Rules()
    server_requests: ServerRequests = ServerRequests()
    roots: tuple[str, ...] = ()
    max_message_bytes: int = 64 * 1024 * 1024
    launch: Launch = Launch()
    redact: tuple[str, ...] = ("secrets",)
    injection: Literal["flag", "sanitize", "block", "off"] = "flag"
    pin: bool = True
    paths: PathSettings = PathSettings()
    sql: SqlSettings | None = None
    urls: UrlSettings | None = None
    # tool glob -> argument name or JSON pointer -> constraint
    constraints: dict[str, dict[str, ArgConstraint]] = msgspec.field(default_factory=dict)
    sandbox: SandboxSettings | None = None
    # Key paths set in the file whose guard this version does not have: `run` refuses to start.
    unimplemented: tuple[str, ...] = ()


class OtlpSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An OTLP/HTTP logs endpoint; header values may be references."""

    endpoint: str
    headers: dict[str, str] = msgspec.field(default_factory=dict)


class SyslogSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A syslog receiver: udp://HOST:PORT, tcp://HOST:PORT or a socket path."""

    address: str
    facility: str = "local0"


class AuditSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where and how the audit log is written."""

    path: str | None = None  # None: <state dir>/audit.jsonl
    arguments: Literal["digest", "redacted", "full"] = "digest"
    rotate_bytes: int = 100 * 1024 * 1024
    otlp: OtlpSettings | None = None
    syslog: SyslogSettings | None = None


class ApprovalSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The channels that may approve a `confirm` call, in order."""

    channels: tuple[str, ...] = ("console",)
    timeout_s: float = 120.0


class OAuthSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``serve.auth.oauth``: how JWT access tokens are validated."""

    issuer: str
    audience: str
    jwks_url: str
    algorithms: tuple[str, ...] = ("RS256", "ES256", "PS256", "EdDSA")
    principal_claim: str = "sub"
    groups_claim: str = "groups"
    required_scopes: tuple[str, ...] = ()
    leeway_s: float = 30.0
    authorization_servers: tuple[str, ...] = ()


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Per-principal request limits."""

    requests_per_minute: int = 600
    max_body_bytes: int = 8 * 1024 * 1024


class Identity(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``serve.identities.NAME``: what one principal (or group:/scope: of them) may use."""

    name: str
    servers: tuple[str, ...] = ()
    confirm: tuple[str, ...] = ()
    tools: Rules | None = None
    approve: tuple[str, ...] = ()
    limits: Limits | None = None


class ServeSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``serve:``: the HTTP front."""

    api_keys: bool = True
    oauth: OAuthSettings | None = None
    identities: tuple[Identity, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    public_url: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    limits: Limits = Limits()
    session_ttl_s: int = 8 * 3600
    session_idle_s: int = 1800
    session_key: str | None = None  # a reference, resolved at start
    metrics_public: bool = False
    redis: str | None = None  # a reference, resolved at start
    upstream_timeout_s: float = 300.0
    max_sessions: int = 1000


class CompiledPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A whole policy file, compiled."""

    digest: str  # sha256 of the file's bytes ("builtin" for the built-in default)
    source: str | None  # the file it came from
    defaults: ServerPolicy  # used for `run -- CMD` when the file names no server
    servers: dict[str, ServerPolicy] = msgspec.field(default_factory=dict)
    audit: AuditSettings = AuditSettings()
    approvals: ApprovalSettings = ApprovalSettings()
    serve: ServeSettings | None = None
    unimplemented: tuple[str, ...] = ()  # top-level keys not yet enforced
