"""Secret references in ``env`` and ``headers``: ``${env:X}``, ``${file:P}``, ``${keyring:S/N}``.

The policy file names where a secret lives, never the secret itself. :func:`check_syntax` runs
when the policy is loaded, so a typo'd reference fails at ``portcullis policy validate`` time;
:func:`resolve_env` runs only when a server is launched, so secrets stay out of the compiled
policy, its cache and the audit log.

A value may be a whole reference (``${env:TOKEN}``) or contain references inside text
(``Bearer ${env:TOKEN}``). ``$${`` is an escaped, literal ``${``; a ``$`` anywhere else is
literal. Error messages name the key and the reference, never a resolved value.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from portcullis._exceptions import ConfigError

__all__ = ["Reference", "check_syntax", "parse", "resolve", "resolve_env"]

RefKind = Literal["env", "file", "keyring"]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Reference:
    """One ``${kind:target}`` reference; ``keyring`` targets are split into service and name."""

    kind: RefKind
    target: str

    def __str__(self) -> str:
        return f"${{{self.kind}:{self.target}}}"


def parse(value: str) -> list[str | Reference]:
    """Split ``value`` into literal text and references; raise ``ValueError`` on bad syntax."""
    parts: list[str | Reference] = []
    text: list[str] = []
    i = 0
    while True:
        j = value.find("$", i)
        if j < 0:
            text.append(value[i:])
            break
        if value.startswith("$${", j):
            text.append(value[i:j] + "${")
            i = j + 3
            continue
        if not value.startswith("${", j):
            text.append(value[i : j + 1])
            i = j + 1
            continue
        text.append(value[i:j])
        end = value.find("}", j + 2)
        if end < 0:
            raise ValueError(
                f"unterminated reference: '${{' at character {j + 1} has no '}}' "
                "(write $${ for a literal ${)"
            )
        parts_text = "".join(text)
        if parts_text:
            parts.append(parts_text)
        text = []
        parts.append(_reference(value[j + 2 : end]))
        i = end + 1
    rest = "".join(text)
    if rest:
        parts.append(rest)
    return parts


def _reference(body: str) -> Reference:
    kind, sep, target = body.partition(":")
    if not sep:
        raise ValueError(
            f"reference ${{{body}}} needs a kind: ${{env:NAME}}, ${{file:PATH}} "
            "or ${keyring:service/name} (write $${ for a literal ${)"
        )
    if kind == "env":
        if not _ENV_NAME.fullmatch(target):
            raise ValueError(f"${{env:{target}}}: {target!r} is not an environment variable name")
        return Reference("env", target)
    if kind == "file":
        if not target:
            raise ValueError("${file:}: the path is empty")
        # Relative paths would depend on the directory `run` happens to start in.
        if not os.path.isabs(os.path.expanduser(target)):
            raise ValueError(f"${{file:{target}}}: the path must be absolute or start with ~/")
        return Reference("file", target)
    if kind == "keyring":
        service, _, name = target.rpartition("/")
        if not service or not name:
            raise ValueError(f"${{keyring:{target}}}: write ${{keyring:service/name}}")
        return Reference("keyring", target)
    raise ValueError(f"unknown reference kind {kind!r} in ${{{body}}}: use env, file or keyring")


def check_syntax(value: str) -> None:
    """Raise ``ValueError`` if ``value`` holds a malformed reference; nothing is resolved."""
    parse(value)


def resolve(value: str, *, key: str) -> str:
    """Return ``value`` with every reference replaced; ``key`` names the value in errors."""
    try:
        parts = parse(value)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    out: list[str] = []
    for part in parts:
        out.append(part if isinstance(part, str) else _lookup(part, key))
    return "".join(out)


def resolve_env(env: dict[str, str], *, label: str = "env") -> dict[str, str]:
    """Resolve the references in every value of ``env`` (or of ``headers``, with ``label``).

    Always call this before launching, even when no value looks like a reference: it also turns
    ``$${`` escapes into ``${``. Raises :class:`ConfigError` naming the key and the reference.
    """
    resolved: dict[str, str] = {}
    for name, value in env.items():
        key = f"{label}.{name}"
        text = resolve(value, key=key)
        if "\x00" in text:
            raise ConfigError(f"{key}: the resolved value contains a NUL character")
        if label != "env" and ("\r" in text or "\n" in text):
            # A newline in a header value would let the secret store inject headers.
            raise ConfigError(f"{key}: the resolved value contains a line break")
        resolved[name] = text
    return resolved


def _lookup(ref: Reference, key: str) -> str:
    if ref.kind == "env":
        value = os.environ.get(ref.target)
        if value is None:
            raise ConfigError(f"{key}: {ref} is not set in the environment")
        return value
    if ref.kind == "file":
        return _read_file(ref, key)
    return _keyring(ref, key)


def _read_file(ref: Reference, key: str) -> str:
    path = Path(ref.target).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{key}: {ref}: cannot read {path}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{key}: {ref}: {path} is not UTF-8 text") from None
    # Editors add a final newline; a token with a newline in it is never what was meant.
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith("\n"):
        return text[:-1]
    return text


def _keyring(ref: Reference, key: str) -> str:
    service, _, name = ref.target.rpartition("/")
    try:
        import keyring  # lazy: it loads platform backends, and only launches need it
        import keyring.errors
    except ImportError:
        raise ConfigError(f"{key}: {ref}: the keyring package is not installed") from None
    try:
        value = keyring.get_password(service, name)
    except keyring.errors.KeyringError as exc:
        # The backend's message could echo data it was handed; name only the error's type.
        raise ConfigError(
            f"{key}: {ref}: the keyring is unavailable ({type(exc).__name__})"
        ) from None
    if value is None:
        raise ConfigError(
            f"{key}: {ref}: no such entry in the keyring (service {service!r}, name {name!r})"
        )
    if not isinstance(value, str):
        raise ConfigError(f"{key}: {ref}: the keyring returned a {type(value).__name__}")
    return value
