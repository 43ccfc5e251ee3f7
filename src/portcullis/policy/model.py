"""The policy file as pydantic models: every key of DESIGN §4, validated, typos refused.

Each model forbids unknown keys and is strict (YAML ``8080`` is not silently the string
``"8080"``), so a misspelt or mistyped key is an error naming its line rather than a rule that
quietly does nothing. Keys whose guard a later release brings (``paths``, ``sql``, ``urls``,
``sandbox``, ``redact``, ``injection``, ``pin``, ``serve``) are validated all the same, so a
policy written today keeps meaning the same thing when they are enforced.

The built-in defaults live on the fields; :mod:`portcullis.policy.compile` uses
``model_fields_set`` to tell what the file wrote from what it left out. Imported only on the slow
path (no cached compiled policy): it imports pydantic.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from portcullis.policy import refs

__all__ = [
    "ApprovalsBlock",
    "AuditBlock",
    "AuthBlock",
    "DefaultsBlock",
    "GuardSettings",
    "IdentityBlock",
    "LimitsBlock",
    "OAuthBlock",
    "ObserveBlock",
    "OtlpBlock",
    "PathsBlock",
    "PolicyFile",
    "RuleBlock",
    "SandboxBlock",
    "SandboxFilesystem",
    "ServeBlock",
    "ServerEntry",
    "ServerRequestsBlock",
    "SessionsBlock",
    "SqlBlock",
    "SyslogBlock",
    "TlsBlock",
    "UrlsBlock",
]

SUPPORTED_VERSION = 1
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
LAUNCH_KEYS = ("command", "args", "cwd", "env", "url", "headers")

_SERVER_NAME = re.compile(r"[A-Za-z0-9_-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_DIALECT = re.compile(r"[a-z][a-z0-9_]*")
# The same rule as _check_server_name, without look-ahead, for editors' JSON Schema validators.
_SERVER_NAME_SCHEMA = r"^(?:_?[A-Za-z0-9-])*_?$"


def _check_server_name(name: str) -> str:
    if not _SERVER_NAME.fullmatch(name):
        raise ValueError(f"server name {name!r} may hold only letters, digits, '_' and '-'")
    if "__" in name:
        raise ValueError(
            f"server name {name!r} must not contain '__' (reserved for namespacing server__tool)"
        )
    return name


def _check_nonempty(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    return value


def _check_env_name(name: str) -> str:
    if not _ENV_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not an environment variable name")
    return name


def _check_header_name(name: str) -> str:
    if not _HEADER_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not an HTTP header name")
    return name


def _check_ref_value(value: str) -> str:
    refs.check_syntax(value)
    if "\x00" in value:
        raise ValueError("contains a NUL character")
    return value


def _check_header_value(value: str) -> str:
    _check_ref_value(value)
    if "\r" in value or "\n" in value:
        raise ValueError("a header value must be on one line")
    return value


def _check_abs_path(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    if not os.path.isabs(os.path.expanduser(value)):
        raise ValueError(f"{value!r} must be an absolute path (or start with ~/)")
    return value


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("put credentials in headers (with a ${env:…} reference), not in the URL")
    return value


def _check_origin(value: str) -> str:
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ValueError(f"{value!r} is not an origin like https://app.example.com")
    return value


NonEmpty = Annotated[str, AfterValidator(_check_nonempty), Field(min_length=1)]
Glob = Annotated[str, AfterValidator(_check_nonempty), Field(min_length=1)]
ServerName = Annotated[
    str,
    AfterValidator(_check_server_name),
    WithJsonSchema({"type": "string", "minLength": 1, "pattern": _SERVER_NAME_SCHEMA}),
]
EnvName = Annotated[str, AfterValidator(_check_env_name)]
HeaderName = Annotated[str, AfterValidator(_check_header_name)]
RefValue = Annotated[str, AfterValidator(_check_ref_value)]
HeaderValue = Annotated[str, AfterValidator(_check_header_value)]
AbsPath = Annotated[str, AfterValidator(_check_abs_path)]
HttpUrl = Annotated[str, AfterValidator(_check_http_url)]
Origin = Annotated[str, AfterValidator(_check_origin)]
PositiveInt = Annotated[int, Field(gt=0)]
RuleAction = Literal["allow", "deny", "confirm"]
Scheme = Literal["https", "http"]
Redaction = Literal["secrets", "pii"]
Channel = Literal["console", "tty", "elicitation"]


# Typed factories: a lambda's list[str] does not satisfy mypy for a list of literals.
def _https_only() -> list[Scheme]:
    return ["https"]


def _redact_secrets() -> list[Redaction]:
    return ["secrets"]


def _console_only() -> list[Channel]:
    return ["console"]


class _Block(BaseModel):
    """Base of every policy model: unknown keys are errors, YAML types are taken as written."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RuleBlock(_Block):
    """Allow/confirm/deny lists of fnmatch globs; precedence deny > confirm > allow > default."""

    default: RuleAction = Field(
        description="what happens to a name no list matches; required so an allow list is "
        "never silently combined with an allow-everything default"
    )
    allow: list[Glob] = Field(default_factory=list, description="globs that are allowed")
    confirm: list[Glob] = Field(
        default_factory=list, description="globs that need a human's approval"
    )
    deny: list[Glob] = Field(default_factory=list, description="globs that are always refused")
    remember: list[Glob] = Field(
        default_factory=list,
        description="confirm globs whose approval the person may extend to the rest of the "
        "session (otherwise each call is approved on its own)",
    )


class ServerRequestsBlock(_Block):
    """What to do with server→client requests."""

    sampling: Literal["allow", "deny"] = Field(
        default="deny", description="sampling/createMessage: let the server use the client's model"
    )
    elicitation: Literal["allow", "deny"] = Field(
        default="allow", description="elicitation/create: let the server ask the user a question"
    )
    roots: Literal["allow", "deny", "policy"] = Field(
        default="policy", description="roots/list: pass through, refuse, or answer with paths.roots"
    )


class PathsBlock(_Block):
    """File-path arguments must stay inside ``roots`` (enforced in a later release)."""

    roots: list[AbsPath] = Field(
        default_factory=list, description="directories the server may touch"
    )
    arguments: list[NonEmpty] = Field(
        default_factory=list,
        description="argument names or JSON pointers that hold paths, beside schema properties "
        "that look like paths",
    )
    read_only: bool = Field(default=False, description="bind the roots read-only in the sandbox")


class SqlBlock(_Block):
    """SQL arguments are parsed and checked; ``portcullis sql`` reads its settings here too."""

    arguments: list[NonEmpty] = Field(
        default_factory=list, description="argument names that hold SQL"
    )
    dialect: str = Field(default="postgres", description="postgres | sqlite | any sqlglot dialect")
    read_only: bool = Field(default=True, description="refuse statements that write")
    deny_tables: list[NonEmpty] = Field(
        default_factory=list, description="tables no statement may touch"
    )
    allow_tables: list[Glob] = Field(
        default_factory=list,
        description="the only tables a statement may touch (names or globs, case-insensitive); "
        "empty: any table deny_tables does not name",
    )
    allow_functions: Literal["default"] | list[NonEmpty] = Field(
        default="default", description="'default' (the built-in allowlist) or the allowed functions"
    )
    # The keys below are read by `portcullis sql` (the read-only SQL server); the gateway's
    # argument guard ignores them.
    max_rows: PositiveInt = Field(
        default=1000, description="portcullis sql: rows returned per result; the rest is cut"
    )
    max_bytes: PositiveInt = Field(
        default=1024 * 1024,
        description="portcullis sql: bytes of row data returned per result; the rest is cut",
    )
    timeout_s: float = Field(
        default=10.0, gt=0, description="portcullis sql: a query running longer is stopped"
    )
    mask_columns: list[Glob] = Field(
        default_factory=list,
        description="portcullis sql: column-name globs (case-insensitive) whose values are "
        "masked, in addition to the built-in list (*password*, *token*, ssn, …)",
    )
    schema_: NonEmpty | None = Field(
        default=None,
        alias="schema",
        description="portcullis sql, PostgreSQL: the schema unqualified names resolve to "
        "(search_path); default: the role's own search_path",
    )

    @field_validator("dialect")
    @classmethod
    def _dialect(cls, value: str) -> str:
        if not _DIALECT.fullmatch(value):
            raise ValueError(f"{value!r} is not a dialect name (postgres, sqlite, mysql, …)")
        return value

    @field_validator("allow_functions", mode="before")
    @classmethod
    def _allow_functions(cls, value: object) -> object:
        # One clear message instead of one error per arm of the union.
        if isinstance(value, str) and value != "default":
            raise ValueError("should be 'default' or a list of function names")
        if not isinstance(value, str | list):
            raise ValueError("should be 'default' or a list of function names")
        return value


class UrlsBlock(_Block):
    """URL arguments are checked against schemes and hosts (enforced in a later release)."""

    arguments: list[NonEmpty] = Field(
        default_factory=list, description="argument names that hold URLs"
    )
    schemes: list[Scheme] = Field(default_factory=_https_only, description="allowed URL schemes")
    allow_hosts: list[Glob] = Field(
        default_factory=list, description="host globs; empty means any host deny_private allows"
    )
    deny_private: bool = Field(
        default=True,
        description="refuse loopback, private and link-local addresses, literal or resolved",
    )


class ConstraintBlock(_Block):
    """Generic checks of one argument's value; every key given must hold."""

    pattern: str | None = Field(
        default=None, description="a regular expression the whole value must match"
    )
    enum: list[str | int | float | bool | None] | None = Field(
        default=None, description="the only values allowed"
    )
    min: int | float | None = Field(default=None, description="smallest number allowed")
    max: int | float | None = Field(default=None, description="largest number allowed")
    max_length: PositiveInt | None = Field(
        default=None, description="longest string or array allowed"
    )
    forbid: list[NonEmpty] = Field(
        default_factory=list, description="substrings the value must not contain"
    )

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"is not a valid regular expression: {exc}") from None
        return value


class SandboxFilesystem(_Block):
    """Extra paths bound into the sandbox."""

    read_only: list[AbsPath] = Field(default_factory=list)
    read_write: list[AbsPath] = Field(default_factory=list)


class SandboxBlock(_Block):
    """Run the server in a sandbox (Linux: bubblewrap, with Landlock and seccomp layers)."""

    required: bool = Field(
        default=True,
        description="refuse to start when no sandbox is available (false: run unsandboxed, "
        "with a warning)",
    )
    profile: Literal["node", "python", "binary"] = Field(
        default="binary", description="which runtime files are bound read-only"
    )
    network: Literal["none", "allow_hosts", "host"] = Field(
        default="none",
        description="no network, an egress proxy limited to urls.allow_hosts, or the host's",
    )
    filesystem: SandboxFilesystem = SandboxFilesystem()
    env: list[EnvName] = Field(
        default_factory=list, description="environment variables passed through"
    )


KeepRelax = Literal["keep", "relax"]


class ObserveBlock(_Block):
    """What ``mode: observe`` relaxes, item by item; ``keep`` means it is still enforced."""

    redaction: KeepRelax = Field(
        default="keep",
        description="keep: results are redacted as in enforce mode; relax: forwarded unredacted "
        "(the audit still counts what would have been redacted)",
    )
    pins: KeepRelax = Field(
        default="keep",
        description="keep: new or changed definitions stay withheld and calls to them refused; "
        "relax: shown and forwarded, audited as would-be denials",
    )
    approvals: KeepRelax = Field(
        default="keep",
        description="keep: confirm calls still ask a person; relax: forwarded, audited as "
        "would-confirm",
    )


class GuardSettings(_Block):
    """The keys a server entry and ``defaults`` share; a server's key replaces the default's."""

    mode: Literal["enforce", "observe"] = Field(
        default="enforce", description="observe: decide and audit, but forward anyway"
    )
    observe: ObserveBlock | None = Field(
        default=None,
        description="what observe mode relaxes (redaction, pins, approvals are kept unless "
        "relaxed here); ignored in enforce mode",
    )
    redact: list[Redaction] = Field(
        default_factory=_redact_secrets, description="what to mask in results"
    )
    injection: Literal["flag", "sanitize", "block", "off"] = Field(
        default="flag", description="what to do with prompt-injection findings in results"
    )
    pin: bool = Field(
        default=True, description="pin tool definitions, instructions, prompts, resources"
    )

    @field_validator("injection", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        # YAML 1.1 reads an unquoted `off` as false; `injection: off` is what people write.
        return "off" if value is False else value

    max_message_bytes: PositiveInt = Field(
        default=DEFAULT_MAX_MESSAGE_BYTES, description="larger messages are refused"
    )
    tools: RuleBlock | None = Field(
        default=None, description="tool rules; required (here or in defaults)"
    )
    resources: RuleBlock | None = Field(
        default=None, description="resource rules, matched on the URI"
    )
    prompts: RuleBlock | None = Field(default=None, description="prompt rules")
    server_requests: ServerRequestsBlock | None = None
    paths: PathsBlock | None = None
    sql: SqlBlock | None = None
    urls: UrlsBlock | None = None
    sandbox: SandboxBlock | None = None
    constraints: dict[Glob, dict[NonEmpty, ConstraintBlock]] | None = Field(
        default=None,
        description="tool glob -> argument name or JSON pointer -> checks of its value",
    )


class DefaultsBlock(GuardSettings):
    """Settings every server inherits unless it sets the same key."""


class ServerEntry(GuardSettings):
    """One upstream server: how to start or reach it, and its rules."""

    command: NonEmpty | None = Field(default=None, description="program to launch (stdio upstream)")
    args: list[str] = Field(default_factory=list, description="its arguments")
    cwd: str | None = Field(default=None, description="its working directory")
    env: dict[EnvName, RefValue] = Field(
        default_factory=dict,
        description="environment; values may be ${env:…}, ${file:…}, ${keyring:…} references",
    )
    url: HttpUrl | None = Field(default=None, description="streamable HTTP upstream")
    headers: dict[HeaderName, HeaderValue] = Field(
        default_factory=dict, description="HTTP headers; values may be references"
    )
    shared: bool = Field(
        default=False,
        description="serve: the server is stateless, so one process may serve every principal "
        "(default: one process per principal and session)",
    )

    @model_validator(mode="after")
    def _launch(self) -> ServerEntry:
        written = self.model_fields_set
        stdio = sorted(k for k in ("command", "args", "cwd", "env") if k in written)
        http = sorted(k for k in ("url", "headers") if k in written)
        if stdio and http:
            raise ValueError(
                f"a server is launched (command) or reached (url), not both: "
                f"remove {', '.join(stdio)} or {', '.join(http)}"
            )
        if self.command is None and ({"args", "cwd"} & written):
            raise ValueError("args and cwd need a command")
        if self.url is None and "headers" in written:
            raise ValueError("headers need a url")
        return self


class OtlpBlock(_Block):
    """An OTLP/HTTP logs endpoint that receives a copy of the audit trail."""

    endpoint: HttpUrl = Field(
        description="the collector's logs URL, e.g. https://otel:4318/v1/logs"
    )
    headers: dict[HeaderName, HeaderValue] = Field(
        default_factory=dict, description="HTTP headers; values may be references"
    )


class SyslogBlock(_Block):
    """A syslog receiver (RFC 5424) that receives a copy of the audit trail."""

    address: NonEmpty = Field(
        description="udp://HOST:PORT, tcp://HOST:PORT or a local socket path such as /dev/log"
    )
    facility: Literal[
        "user",
        "auth",
        "authpriv",
        "daemon",
        "local0",
        "local1",
        "local2",
        "local3",
        "local4",
        "local5",
        "local6",
        "local7",
    ] = "local0"


class AuditBlock(_Block):
    """Where and how the audit log is written."""

    path: NonEmpty | None = Field(default=None, description="default: <state dir>/audit.jsonl")
    arguments: Literal["digest", "redacted", "full"] = Field(
        default="digest", description="how call arguments are recorded"
    )
    rotate_bytes: PositiveInt = Field(
        default=100 * 1024 * 1024, description="start a new file past this size"
    )
    otlp: OtlpBlock | None = Field(
        default=None, description="also ship every record to an OpenTelemetry collector"
    )
    syslog: SyslogBlock | None = Field(default=None, description="also ship every record to syslog")


class ApprovalsBlock(_Block):
    """The channels that may approve a ``confirm`` call, in order."""

    channels: list[Channel] = Field(default_factory=_console_only, min_length=1)
    timeout_s: float = Field(default=120.0, gt=0, description="unanswered approvals are denied")

    @field_validator("channels")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a channel is listed twice")
        return value


Algorithm = Literal[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"
]


def _asymmetric_algorithms() -> list[Algorithm]:
    return ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]


class OAuthBlock(_Block):
    """OAuth 2.1 resource-server settings for ``portcullis serve`` (JWT access tokens)."""

    issuer: HttpUrl
    audience: NonEmpty = Field(
        description="this gateway's resource URI (RFC 8707): aud must hold it"
    )
    jwks_url: HttpUrl
    algorithms: list[Algorithm] = Field(
        default_factory=_asymmetric_algorithms,
        min_length=1,
        description="accepted signature algorithms; a token's own alg header never widens this",
    )
    principal_claim: NonEmpty = Field(
        default="sub", description="the claim that names the principal"
    )
    groups_claim: NonEmpty = Field(
        default="groups", description="the claim listing groups (identities named group:NAME)"
    )
    required_scopes: list[NonEmpty] = Field(
        default_factory=list, description="scopes every token must carry (else 403)"
    )
    leeway_s: float = Field(default=30.0, ge=0, le=300, description="clock skew allowed on exp/nbf")
    authorization_servers: list[HttpUrl] = Field(
        default_factory=list, description="for the protected-resource metadata (default: issuer)"
    )


class AuthBlock(_Block):
    """How clients of ``portcullis serve`` authenticate."""

    api_keys: bool = Field(
        default=True, description="accept keys made with `portcullis keys create`"
    )
    oauth: OAuthBlock | None = None


class LimitsBlock(_Block):
    """Per-principal request limits of ``portcullis serve``."""

    requests_per_minute: PositiveInt = Field(
        default=600, description="HTTP requests one principal may make per minute (429 past it)"
    )
    max_body_bytes: PositiveInt = Field(
        default=8 * 1024 * 1024, description="largest request body one principal may send (413)"
    )


class IdentityBlock(_Block):
    """What one authenticated principal may use."""

    servers: list[NonEmpty] = Field(
        default_factory=list, description="server names (or globs) it may reach"
    )
    confirm: list[Glob] = Field(
        default_factory=list, description="tool globs that need approval for it"
    )
    tools: RuleBlock | None = Field(
        default=None,
        description="tool rules for this principal, on top of the server's own (deny wins); "
        "globs match the tool name and server__tool",
    )
    approve: list[Glob] = Field(
        default_factory=list,
        description="principals (globs) whose confirm calls this principal may approve",
    )
    limits: LimitsBlock | None = Field(default=None, description="replaces serve.limits for it")


class TlsBlock(_Block):
    """The certificate ``portcullis serve`` presents (required off loopback)."""

    cert: AbsPath
    key: AbsPath


class SessionsBlock(_Block):
    """Session tokens handed to clients (sealed, bound to the principal)."""

    ttl_s: PositiveInt = Field(
        default=8 * 3600, description="a session ends this long after it began"
    )
    idle_s: PositiveInt = Field(
        default=1800, description="a session's upstream processes stop after this long unused"
    )
    key: RefValue | None = Field(
        default=None,
        description="secret shared by replicas to seal session tokens (a reference); "
        "default: kept in redis when set, else made per process",
    )


class ServeBlock(_Block):
    """The HTTP front, ``portcullis serve``."""

    auth: AuthBlock = AuthBlock()
    identities: dict[NonEmpty, IdentityBlock] = Field(default_factory=dict)
    allowed_origins: list[Origin] = Field(default_factory=list)
    allowed_hosts: list[NonEmpty] = Field(
        default_factory=list,
        description="Host header values accepted (DNS rebinding); default: the bind address, "
        "localhost and public_url's host",
    )
    public_url: HttpUrl | None = Field(
        default=None, description="the gateway's external base URL (resource metadata, audience)"
    )
    tls: TlsBlock | None = None
    limits: LimitsBlock = LimitsBlock()
    sessions: SessionsBlock = SessionsBlock()
    metrics_public: bool = Field(default=False, description="serve /metrics without authentication")
    redis: RefValue | None = Field(
        default=None,
        description="redis:// URL (may be a reference) for state shared by replicas: "
        "approvals, nonces, rate limits, the session key",
    )
    upstream_timeout_s: float = Field(
        default=300.0, gt=0, description="longest wait for an HTTP upstream's answer"
    )
    max_sessions: PositiveInt = Field(default=1000, description="open sessions per replica")


class PolicyFile(_Block):
    """A whole policy file (version 1)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        title="Portcullis policy",
    )

    version: Literal[1] = Field(description="the policy format; only 1 exists")
    defaults: DefaultsBlock = DefaultsBlock()
    servers: dict[ServerName, ServerEntry] = Field(default_factory=dict)
    audit: AuditBlock = AuditBlock()
    approvals: ApprovalsBlock = ApprovalsBlock()
    serve: ServeBlock | None = None
