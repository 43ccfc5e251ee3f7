"""Turn a validated :class:`~portcullis.policy.model.PolicyFile` into a ``CompiledPolicy``.

Merging is per key and whole-block: a server that sets ``tools`` (or ``server_requests``, or
``redact``…) replaces the default's value entirely, it does not extend it, so reading one server
entry plus ``defaults`` tells exactly what applies. A server that ends up without ``tools`` is
refused (fail closed), as is a key whose guard this version does not have yet, by listing it in
``unimplemented`` for ``portcullis run`` to refuse.

Imported only on the slow path: it imports the pydantic models.
"""

from __future__ import annotations

import os
from typing import Any

from portcullis._exceptions import PolicyError
from portcullis.policy.compiled import (
    ApprovalSettings,
    ArgConstraint,
    AuditSettings,
    CompiledPolicy,
    Identity,
    Launch,
    Limits,
    OAuthSettings,
    ObserveSettings,
    OtlpSettings,
    PathSettings,
    Rules,
    SandboxSettings,
    ServerPolicy,
    ServerRequests,
    ServeSettings,
    SqlSettings,
    SyslogSettings,
    UrlSettings,
)
from portcullis.policy.load import DEFAULTS_NAME
from portcullis.policy.model import (
    ConstraintBlock,
    GuardSettings,
    LimitsBlock,
    ObserveBlock,
    PathsBlock,
    PolicyFile,
    RuleBlock,
    SandboxBlock,
    ServeBlock,
    ServerEntry,
    ServerRequestsBlock,
    SqlBlock,
    UrlsBlock,
)
from portcullis.policy.source import SourceMap

__all__ = ["GUARD_KEYS", "compile_policy"]

GUARD_KEYS = (
    "mode",
    "observe",
    "redact",
    "injection",
    "pin",
    "max_message_bytes",
    "tools",
    "resources",
    "prompts",
    "server_requests",
    "paths",
    "sql",
    "urls",
    "sandbox",
    "constraints",
)
# Blocks whose guard arrives in a later release: writing one at all means "enforce this".
_LATER_BLOCKS: tuple[str, ...] = ()


def compile_policy(
    model: PolicyFile, *, digest: str, source: str | None, lines: SourceMap | None = None
) -> CompiledPolicy:
    """Compile ``model``; ``lines`` lets fail-closed refusals name the offending line."""
    _check_identities(model, source, lines)
    servers = {
        name: _server(name, entry, model.defaults, source, lines)
        for name, entry in model.servers.items()
    }
    return CompiledPolicy(
        digest=digest,
        source=source,
        defaults=_server(DEFAULTS_NAME, None, model.defaults, source, lines),
        servers=servers,
        audit=AuditSettings(
            path=model.audit.path,
            arguments=model.audit.arguments,
            rotate_bytes=model.audit.rotate_bytes,
            otlp=OtlpSettings(model.audit.otlp.endpoint, dict(model.audit.otlp.headers))
            if model.audit.otlp
            else None,
            syslog=SyslogSettings(model.audit.syslog.address, model.audit.syslog.facility)
            if model.audit.syslog
            else None,
        ),
        approvals=ApprovalSettings(
            channels=tuple(model.approvals.channels),
            timeout_s=float(model.approvals.timeout_s),
        ),
        serve=_serve(model.serve) if model.serve is not None else None,
    )


def _effective(
    key: str, entry: ServerEntry | None, defaults: GuardSettings, name: str
) -> tuple[Any, str | None]:
    """The value of ``key`` for a server and the key path it was written at (None: built in)."""
    if entry is not None and key in entry.model_fields_set:
        return getattr(entry, key), f"servers.{name}.{key}"
    if key in defaults.model_fields_set:
        return getattr(defaults, key), f"defaults.{key}"
    source = entry if entry is not None else defaults
    return getattr(source, key), None


def _server(
    name: str,
    entry: ServerEntry | None,
    defaults: GuardSettings,
    source: str | None,
    lines: SourceMap | None,
) -> ServerPolicy:
    values: dict[str, Any] = {}
    unimplemented: list[str] = []
    for key in GUARD_KEYS:
        value, written_at = _effective(key, entry, defaults, name)
        values[key] = value
        if written_at is not None and _needs_later_guard(key, value):
            unimplemented.append(written_at)

    tools: RuleBlock | None = values["tools"]
    if tools is None:
        if entry is not None:
            raise PolicyError(
                "has no `tools` block (and defaults has none): add one, e.g. "
                "`tools: {default: deny, allow: [read_*]}`; a server without tool rules is "
                "refused rather than allowed everything",
                path=source,
                line=lines.line_of(("servers", name)) if lines else None,
                key=f"servers.{name}",
            )
        # `run -- CMD` with no server entry: the same allow-by-default as the built-in policy.
        tools_rules = Rules()
    else:
        tools_rules = _rules(tools)

    paths: PathsBlock | None = values["paths"]
    requests: ServerRequestsBlock | None = values["server_requests"]
    return ServerPolicy(
        name=name,
        mode=values["mode"],
        observe=_observe(values["observe"]),
        tools=tools_rules,
        resources=_rules(values["resources"]),
        prompts=_rules(values["prompts"]),
        server_requests=ServerRequests(**requests.model_dump()) if requests else ServerRequests(),
        roots=tuple(_root(r) for r in paths.roots) if paths else (),
        max_message_bytes=values["max_message_bytes"],
        launch=_launch(entry) if entry is not None else Launch(),
        redact=tuple(dict.fromkeys(values["redact"])),
        injection=values["injection"],
        pin=values["pin"],
        paths=PathSettings(tuple(paths.arguments), paths.read_only) if paths else PathSettings(),
        sql=_sql(values["sql"]),
        urls=_urls(values["urls"]),
        constraints=_constraints(values["constraints"]),
        sandbox=_sandbox(values["sandbox"]),
        unimplemented=tuple(unimplemented),
    )


def _observe(block: ObserveBlock | None) -> ObserveSettings:
    if block is None:
        return ObserveSettings()
    return ObserveSettings(redaction=block.redaction, pins=block.pins, approvals=block.approvals)


def _sandbox(block: SandboxBlock | None) -> SandboxSettings | None:
    if block is None:
        return None
    return SandboxSettings(
        required=block.required,
        profile=block.profile,
        network=block.network,
        read_only=tuple(os.path.expanduser(p) for p in block.filesystem.read_only),
        read_write=tuple(os.path.expanduser(p) for p in block.filesystem.read_write),
        env=tuple(block.env),
    )


def _sql(block: SqlBlock | None) -> SqlSettings | None:
    if block is None:
        return None
    functions = block.allow_functions
    return SqlSettings(
        arguments=tuple(block.arguments),
        dialect=block.dialect,
        read_only=block.read_only,
        deny_tables=tuple(block.deny_tables),
        allow_tables=tuple(block.allow_tables),
        allow_functions=functions if isinstance(functions, str) else tuple(functions),
        max_rows=block.max_rows,
        max_bytes=block.max_bytes,
        timeout_s=float(block.timeout_s),
        mask_columns=tuple(block.mask_columns),
        schema=block.schema_,
    )


def _urls(block: UrlsBlock | None) -> UrlSettings | None:
    if block is None:
        return None
    return UrlSettings(
        arguments=tuple(block.arguments),
        schemes=tuple(block.schemes),
        allow_hosts=tuple(block.allow_hosts),
        deny_private=block.deny_private,
    )


def _constraints(
    block: dict[str, dict[str, ConstraintBlock]] | None,
) -> dict[str, dict[str, ArgConstraint]]:
    if not block:
        return {}
    return {
        tool: {
            arg: ArgConstraint(
                pattern=c.pattern,
                enum=tuple(c.enum) if c.enum is not None else None,
                min=c.min,
                max=c.max,
                max_length=c.max_length,
                forbid=tuple(c.forbid),
            )
            for arg, c in args.items()
        }
        for tool, args in block.items()
    }


def _needs_later_guard(key: str, value: Any) -> bool:
    return key in _LATER_BLOCKS and value is not None


def _rules(block: RuleBlock | None) -> Rules:
    if block is None:
        return Rules()
    return Rules(
        default=block.default,
        allow=tuple(block.allow),
        confirm=tuple(block.confirm),
        deny=tuple(block.deny),
        remember=tuple(block.remember),
    )


def _root(path: str) -> str:
    # Expanded here because roots are sent to clients as file:// URIs, which cannot hold "~";
    # the cache key includes the home directory because of this (and of _home below).
    return os.path.normpath(os.path.expanduser(path))


def _home(path: str | None) -> str | None:
    return os.path.expanduser(path) if path is not None and path.startswith("~") else path


def _launch(entry: ServerEntry) -> Launch:
    # env and header values stay unresolved: secrets are read only at launch (policy.refs).
    # A leading "~" in command and cwd is expanded because no shell will see them; args are
    # passed to the program verbatim, as an argv list is.
    return Launch(
        command=_home(entry.command),
        args=tuple(entry.args),
        cwd=_home(entry.cwd),
        env=dict(entry.env),
        url=entry.url,
        headers=dict(entry.headers),
        shared=entry.shared,
    )


def _limits(block: LimitsBlock) -> Limits:
    return Limits(block.requests_per_minute, block.max_body_bytes)


def _serve(block: ServeBlock) -> ServeSettings:
    oauth = block.auth.oauth
    return ServeSettings(
        api_keys=block.auth.api_keys,
        oauth=OAuthSettings(
            issuer=oauth.issuer,
            audience=oauth.audience,
            jwks_url=oauth.jwks_url,
            algorithms=tuple(oauth.algorithms),
            principal_claim=oauth.principal_claim,
            groups_claim=oauth.groups_claim,
            required_scopes=tuple(oauth.required_scopes),
            leeway_s=float(oauth.leeway_s),
            authorization_servers=tuple(oauth.authorization_servers) or (oauth.issuer,),
        )
        if oauth is not None
        else None,
        identities=tuple(
            Identity(
                name=name,
                servers=tuple(ident.servers),
                confirm=tuple(ident.confirm),
                tools=_rules(ident.tools) if ident.tools is not None else None,
                approve=tuple(ident.approve),
                limits=_limits(ident.limits) if ident.limits is not None else None,
            )
            for name, ident in block.identities.items()
        ),
        allowed_origins=tuple(o.rstrip("/") for o in block.allowed_origins),
        allowed_hosts=tuple(block.allowed_hosts),
        public_url=block.public_url.rstrip("/") if block.public_url else None,
        tls_cert=_home(block.tls.cert) if block.tls else None,
        tls_key=_home(block.tls.key) if block.tls else None,
        limits=_limits(block.limits),
        session_ttl_s=block.sessions.ttl_s,
        session_idle_s=block.sessions.idle_s,
        session_key=block.sessions.key,
        metrics_public=block.metrics_public,
        redis=block.redis,
        upstream_timeout_s=float(block.upstream_timeout_s),
        max_sessions=block.max_sessions,
    )


def _check_identities(model: PolicyFile, source: str | None, lines: SourceMap | None) -> None:
    if model.serve is None:
        return
    for who, identity in model.serve.identities.items():
        for i, name in enumerate(identity.servers):
            if any(c in name for c in "*?[") or name in model.servers:
                continue
            at = ("serve", "identities", who, "servers", i)
            known = ", ".join(model.servers) or "none"
            raise PolicyError(
                f"{name!r} is not a server in this policy (servers: {known})",
                path=source,
                line=lines.line_of(at) if lines else None,
                key=f"serve.identities.{who}.servers[{i}]",
            )
