r"""URL egress guard: which URLs a guarded tool may be asked to fetch.

:class:`UrlGuard` answers one question per argument value: may the server be told to reach this
URL? It is pure except for one injected dependency, the resolver (``socket.getaddrinfo`` by
default), so that tests never touch the network.

Parsing
-------
The guard parses strictly and refuses what parsers disagree on, because a guard that reads a URL
differently from the server's HTTP client can be bypassed. Refused as ``urls.malformed``:

* backslashes, whitespace, control characters and other characters no URL may hold raw;
* a scheme not followed by ``//`` (``http:evil.com``, ``http:/evil.com``: browsers read a host
  there, other parsers a path), an empty host, ``http:///evil.com``; only URLs with an authority
  are supported, so an allowed scheme without one (``mailto:``) is malformed too;
* more than one ``@`` before the path, and ``@`` in a fragment or in a query that directly
  follows the host (``http://allowed.com#@evil.com``, ``http://allowed.com?@evil.com``): a
  parser that splits on the last ``@`` reads another host (an ``@`` after a path, as in
  ``https://medium.com/@user``, is fine);
* a percent sign in the host, an IPv6 zone id, a port that is not 1-65535 digits;
* a trailing dot (``example.com.``) and empty labels;
* the full-width and ideographic dots (U+3002, U+FF0E, U+FF61) that IDNA maps to ``.``, and the
  IDNA 2003/2008 deviation characters (``ß``, ``ς``, ZWJ, ZWNJ), which the two standards map to
  different hosts;
* a ``xn--`` label that is not valid punycode;
* an IPv4 address written in any form other than canonical dotted decimal (``0177.0.0.1``,
  ``0x7f.1``, ``127.1``, ``2130706433``, ``010.8.8.8``), when no reading of it is private.
  Such a form *is* decoded first, under both the browser/``inet_aton`` reading (octal, hex,
  short forms) and the plain decimal reading, and a private result is reported as
  ``urls.private-address`` with the decoded address.

Other non-ASCII hosts are normalised as browsers and HTTP clients do (IDNA with nameprep, so
full-width letters fold to ASCII) and every later check sees the ASCII (punycode) form.

Credentials
-----------
Any userinfo (``user:pass@`` and also ``user@``) is ``urls.credentials``: a URL is the wrong
channel for secrets, and userinfo is the classic way to make a URL look like another host
(``http://allowed.com@evil.com``).

Hosts
-----
``allow_hosts`` patterns: ``docs.example.com`` matches that host exactly; ``*.python.org``
matches every subdomain at any depth (``docs.python.org``, ``a.b.python.org``) but **not** the
apex ``python.org`` — list it too if it is wanted (the TLS wildcard convention, so that allowing
the subdomains of a zone never silently allows its apex). ``*`` alone matches any host. A pattern
without a port allows every port; ``example.com:8443`` allows only that port (the scheme's
default port counts: ``example.com:443`` matches ``https://example.com/``). Patterns are
IDNA-normalised like URLs. An empty ``allow_hosts`` allows any host, subject to
``deny_private``. ``deny_private`` applies to allowed hosts too: to reach an internal service,
turn ``deny_private`` off for that server.

Private addresses (``deny_private``)
------------------------------------
Denied, whether written literally, encoded, or among the addresses the host resolves to:
``0.0.0.0/8``, loopback, RFC 1918, CGNAT ``100.64/10``, link-local ``169.254/16``, IETF
``192.0.0/24``, documentation and benchmarking ranges, the 6to4 relay anycast, multicast,
``240/4`` and broadcast; in IPv6 ``::``, ``::1``, ULA ``fc00::/7``, link-local ``fe80::/10``,
site-local ``fec0::/10``, multicast, discard-only ``100::/64``, NAT64 local-use
``64:ff9b:1::/48``, documentation, benchmarking, ORCHID, and everything outside the global
unicast ``2000::/3``. Embedded IPv4 addresses are judged by the IPv4 rules: IPv4-mapped
``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16`` and
Teredo ``2001::/32`` (both the server and the de-obfuscated client address). A 6to4 or Teredo
address that embeds only public IPv4 addresses is allowed. Cloud metadata endpoints are named as
such in the reason: 169.254.169.254, 169.254.170.2, 169.254.169.253, 168.63.129.16, 100.100.100.200,
192.0.0.192, ``fd00:ec2::254`` and the names ``metadata.google.internal``, ``metadata.goog``,
``metadata``, ``instance-data``, ``instance-data.ec2.internal``. Names that can only be local are
denied without asking DNS: ``localhost`` and ``*.localhost``, ``*.local`` (mDNS),
``*.internal``, ``*.home.arpa``, and single-label names (resolved through the search domain).

Then the host is resolved (all A and AAAA records) and **every** address must be public; a host
that does not resolve is denied (``urls.unresolvable``): fail closed. With ``deny_private`` off,
no resolution happens.

Limits
------
The check sees the URL, not the connection. Redirects the server follows, and DNS answers that
change between this check and the server's own lookup (DNS rebinding), are closed only by the
sandbox's egress proxy, which checks the address actually connected to (the sandbox issue).
The default resolver is the host's ``getaddrinfo``; with no DNS (as on the build machine) every
name is unresolvable and so denied. Tests inject a fake resolver.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from typing import Final

from portcullis.detect.verdicts import Allow, Deny

__all__ = ["UrlGuard", "classify", "default_resolve", "looks_like_url", "redact_url"]

Resolver = Callable[[str], list[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_MAX_URL: Final = 8192
_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}
_SCHEME_RE: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
# Raw characters no URL may hold: C0 controls, space, DEL, backslash, C1 controls, and every
# Unicode space or separator (checked separately with str.isspace for the rest).
_BAD_CHARS_RE: Final = re.compile(r"[\x00-\x20\x7f-\x9f\\\u2028\u2029\ufeff\u200b]")
_ODD_DOTS: Final = ("\u3002", "\uff0e", "\uff61")
_DEVIATIONS: Final = ("\u00df", "\u03c2", "\u200c", "\u200d")
_LABEL_RE: Final = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_IPV4_PART_RE: Final = re.compile(r"(?:0[xX][0-9a-fA-F]*|[0-9]+)")

_METADATA_ADDRESSES: Final = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, ...
        "169.254.169.253",  # AWS VPC DNS
        "169.254.170.2",  # AWS ECS task metadata
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
        "168.63.129.16",  # Azure WireServer (also answers metadata and health probes)
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::253",  # AWS VPC DNS over IPv6
    )
)
_METADATA_NAMES: Final = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
_LOCAL_SUFFIXES: Final = (".localhost", ".local", ".internal", ".home.arpa")


def _nets(
    *pairs: tuple[str, str],
) -> tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...]:
    return tuple((ipaddress.ip_network(net), what) for net, what in pairs)


_V4_BLOCKED: Final = _nets(
    ("0.0.0.0/8", "an unspecified (this-network) address"),
    ("10.0.0.0/8", "a private (RFC 1918) address"),
    ("100.64.0.0/10", "a carrier-grade NAT (100.64/10) address"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address"),
    ("172.16.0.0/12", "a private (RFC 1918) address"),
    ("192.0.0.0/24", "an IETF protocol-assignment address"),
    ("192.0.2.0/24", "a documentation address"),
    ("192.88.99.0/24", "a 6to4 relay anycast address"),
    ("192.168.0.0/16", "a private (RFC 1918) address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("224.0.0.0/4", "a multicast address"),
    ("255.255.255.255/32", "the broadcast address"),
    ("240.0.0.0/4", "a reserved address"),
)
_V6_BLOCKED: Final = _nets(
    ("::/128", "the unspecified address"),
    ("::1/128", "a loopback address"),
    ("100::/64", "a discard-only address"),
    ("64:ff9b:1::/48", "a local-use NAT64 address"),
    ("2001:2::/48", "a benchmarking address"),
    ("2001:10::/28", "an ORCHID address"),
    ("2001:20::/28", "an ORCHID address"),
    ("2001:db8::/32", "a documentation address"),
    ("3fff::/20", "a documentation address"),
    ("fc00::/7", "a unique local (ULA) address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
)
_V6_GLOBAL: Final = ipaddress.ip_network("2000::/3")
_V6_MAPPED: Final = ipaddress.ip_network("::ffff:0:0/96")
_V6_COMPAT: Final = ipaddress.ip_network("::/96")
_V6_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")


def _blocked_v4(addr: ipaddress.IPv4Address) -> str | None:
    if addr in _METADATA_ADDRESSES:
        return "a cloud metadata address"
    for net, what in _V4_BLOCKED:
        if addr in net:
            return what
    return None


def classify(addr: IPAddress) -> str | None:
    """Why ``addr`` is not a public destination (a noun phrase), or ``None`` if it is public."""
    if isinstance(addr, ipaddress.IPv4Address):
        return _blocked_v4(addr)
    if addr in _METADATA_ADDRESSES:
        return "a cloud metadata address"
    embedded: list[ipaddress.IPv4Address] = []
    if addr in _V6_MAPPED or addr in _V6_NAT64 or (addr in _V6_COMPAT and int(addr) > 1):
        embedded.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    elif addr.sixtofour is not None:
        embedded.append(addr.sixtofour)
    elif addr.teredo is not None:
        embedded.extend(addr.teredo)
    for v4 in embedded:
        why = _blocked_v4(v4)
        if why is not None:
            return f"an IPv6 address embedding {v4}, {why}"
    if embedded and (addr in _V6_MAPPED or addr in _V6_NAT64 or addr in _V6_COMPAT):
        return None  # judged by the IPv4 address it reaches
    for net, what in _V6_BLOCKED:
        if addr in net:
            return what
    if addr not in _V6_GLOBAL:
        return "a reserved (not global unicast) IPv6 address"
    return None


def _ipv4_inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """The browser (WHATWG) / ``inet_aton`` reading: 1-4 parts, octal, hex, short forms."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_IPV4_PART_RE.fullmatch(p) for p in parts):
        return None
    numbers: list[int] = []
    for part in parts:
        if part[:2].lower() == "0x":
            numbers.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part[0] == "0":
            if any(c in "89" for c in part):
                return None
            numbers.append(int(part, 8))
        else:
            numbers.append(int(part))
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _ipv4_decimal(host: str) -> ipaddress.IPv4Address | None:
    """The plain decimal reading of a dotted quad with leading zeros (``010.0.0.1`` = 10.0.0.1)."""
    parts = host.split(".")
    if len(parts) != 4 or not all(p.isascii() and p.isdigit() and len(p) <= 3 for p in parts):
        return None
    if any(int(p) > 255 for p in parts):
        return None
    return ipaddress.IPv4Address(".".join(str(int(p)) for p in parts))


def _looks_numeric(host: str) -> bool:
    """WHATWG: a host whose last label is a number is an IPv4 address (or invalid)."""
    last = host.rsplit(".", 1)[-1]
    return bool(last) and _IPV4_PART_RE.fullmatch(last) is not None


def _to_ascii(host: str) -> str | None:
    """IDNA-normalise a host to lower-case ASCII, or ``None`` if it cannot be."""
    if host.isascii():
        ascii_host = host.lower()
    else:
        try:
            ascii_host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            return None
    labels = ascii_host.split(".")
    for label in labels:
        if not _LABEL_RE.fullmatch(label):
            return None
        if label.startswith("xn--"):
            try:
                label.encode("ascii").decode("idna")
            except UnicodeError:
                return None
    return ascii_host if len(ascii_host) <= 253 else None


def redact_url(url: str) -> str:
    """``url`` with credentials, query and fragment replaced, for reasons and logs."""
    m = _SCHEME_RE.match(url)
    if m is None or url[m.end() : m.end() + 2] != "//":
        return "[REDACTED]"
    rest = url[m.end() + 2 :]
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    if "@" in authority:
        authority = "[REDACTED]@" + authority.rsplit("@", 1)[1]
    for sep in "?#":
        if sep in tail:
            tail = tail.split(sep, 1)[0] + sep + "[REDACTED]"
            break
    return f"{m.group(1).lower()}://{authority}{tail}"


def _quote(name: str) -> str:
    clean = "".join(c if c.isprintable() else "?" for c in name[:80])
    return '"' + clean.replace('"', "'") + '"'


class _Parsed:
    __slots__ = ("host", "ip", "port", "scheme")

    def __init__(self, scheme: str, host: str, ip: IPAddress | None, port: int | None) -> None:
        self.scheme = scheme
        self.host = host
        self.ip = ip
        self.port = port


def default_resolve(host: str) -> list[str]:
    """Every address ``host`` resolves to (A and AAAA), as strings: the guard's default resolver.

    Public so that the sandbox's egress proxy resolves exactly as the guard does.
    """
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class _Pattern:
    __slots__ = ("host", "port", "wildcard")

    def __init__(self, text: str) -> None:
        raw = text.strip()
        port: int | None = None
        if raw.startswith("["):
            end = raw.find("]")
            host, rest = raw[: end + 1], raw[end + 1 :]
            if rest:
                port = _port_of(rest[1:]) if rest[0] == ":" else None
                if port is None:
                    raise ValueError(f"allow_hosts pattern {text!r} has a bad port")
        elif raw.count(":") == 1:
            host, port_text = raw.split(":")
            port = _port_of(port_text)
            if port is None:
                raise ValueError(f"allow_hosts pattern {text!r} has a bad port")
        else:
            host = raw
        self.wildcard = host == "*" or host.startswith("*.")
        if host == "*":
            self.host = ""
        else:
            bare = host[2:] if self.wildcard else host
            if bare.startswith("[") and bare.endswith("]"):
                try:
                    normal: str | None = f"[{ipaddress.IPv6Address(bare[1:-1])}]"
                except ValueError:
                    normal = None
            else:
                normal = _to_ascii(bare)
            if normal is None or "*" in bare:
                raise ValueError(f"allow_hosts pattern {text!r} is not a host name")
            self.host = normal
        self.port = port

    def matches(self, host: str, port: int | None) -> bool:
        if self.port is not None and port != self.port:
            return False
        if not self.host:
            return True
        if self.wildcard:
            return host.endswith("." + self.host)
        return host == self.host


def _port_of(text: str) -> int | None:
    if not text.isascii() or not text.isdigit() or len(text) > 5:
        return None
    port = int(text)
    return port if 1 <= port <= 65535 else None


class UrlGuard:
    """Decide whether a URL argument may be passed to a server (see the module docstring)."""

    def __init__(
        self,
        *,
        schemes: Sequence[str] = ("https",),
        allow_hosts: Sequence[str] = (),
        deny_private: bool = True,
        resolve: Resolver | None = None,
    ) -> None:
        self.schemes = frozenset(s.lower().rstrip(":") for s in schemes)
        self._allowed_text = ", ".join(schemes) or "none"
        self.allow_hosts = tuple(_Pattern(p) for p in allow_hosts)
        self._hosts_text = ", ".join(allow_hosts)
        self.deny_private = deny_private
        self._resolve = resolve if resolve is not None else default_resolve

    def check(self, value: str, *, argument: str) -> Allow | Deny:
        """Allow ``value`` or deny it with a rule and a one-sentence reason."""
        arg = _quote(argument)
        parsed = self._parse(value, arg)
        if isinstance(parsed, Deny):
            return parsed
        if self.allow_hosts and not any(
            p.matches(parsed.host, parsed.port) for p in self.allow_hosts
        ):
            return Deny(
                "urls.host",
                f"URL guard: argument {arg}: host {parsed.host} is not in allow_hosts "
                f"({self._hosts_text}).",
            )
        if not self.deny_private:
            return Allow("urls.allowed")
        return self._check_private(parsed, arg)

    # -- parsing --------------------------------------------------------------------------

    def _malformed(self, arg: str, why: str) -> Deny:
        return Deny("urls.malformed", f"URL guard: argument {arg}: {why}.")

    def _parse(self, value: object, arg: str) -> _Parsed | Deny:
        if not isinstance(value, str):
            return self._malformed(arg, "expected a URL string")
        if len(value) > _MAX_URL:
            return self._malformed(arg, f"the URL is longer than {_MAX_URL} characters")
        if _BAD_CHARS_RE.search(value) or any(c.isspace() for c in value):
            return self._malformed(
                arg, "the URL contains whitespace, a control character or a backslash"
            )
        m = _SCHEME_RE.match(value)
        if m is None:
            return self._malformed(arg, "the value is not an absolute URL with a scheme")
        scheme = m.group(1).lower()
        if scheme not in self.schemes:
            return Deny(
                "urls.scheme",
                f"URL guard: argument {arg}: scheme {scheme[:20]!r} is not allowed "
                f"(allowed: {self._allowed_text}).",
            )
        rest = value[m.end() :]
        if not rest.startswith("//") or rest.startswith("///"):
            return self._malformed(arg, f"a {scheme} URL must be written {scheme}://host/…")
        rest = rest[2:]
        cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
        authority, tail = rest[:cut], rest[cut:]
        if "#" in tail and "@" in tail.split("#", 1)[1]:
            return self._malformed(arg, "an '@' in the fragment makes the host ambiguous")
        if tail.startswith("?") and "@" in tail.split("#", 1)[0]:
            return self._malformed(
                arg, "an '@' in a query right after the host makes the host ambiguous"
            )
        if authority.count("@") > 1:
            return self._malformed(arg, "more than one '@' makes the host ambiguous")
        if "@" in authority:
            return Deny(
                "urls.credentials",
                f"URL guard: argument {arg}: the URL carries credentials before '@' "
                "(user or password); remove them.",
            )
        if "%" in authority:
            return self._malformed(arg, "a percent-encoded host is not allowed")
        if any(d in authority for d in _ODD_DOTS):
            return self._malformed(arg, "the host contains a full-width or ideographic dot")
        if any(d in authority.lower() for d in _DEVIATIONS):
            return self._malformed(
                arg, "the host contains a character IDNA 2003 and 2008 map differently"
            )
        port: int | None = None
        if authority.startswith("["):
            end = authority.find("]")
            if end < 0:
                return self._malformed(arg, "an IPv6 host is missing its ']'")
            host_text, after = authority[1:end], authority[end + 1 :]
            if after and (not after.startswith(":") or (port := _port_of(after[1:])) is None):
                return self._malformed(arg, "the port is not a number from 1 to 65535")
            try:
                ip6 = ipaddress.IPv6Address(host_text)
            except ValueError:
                return self._malformed(arg, "the bracketed host is not an IPv6 address")
            effective = port if port is not None else _DEFAULT_PORTS.get(scheme)
            return _Parsed(scheme, f"[{ip6}]", ip6, effective)
        if authority.count(":") > 1:
            return self._malformed(arg, "the host has more than one ':'")
        host_text = authority
        if ":" in authority:
            host_text, port_text = authority.split(":")
            if (port := _port_of(port_text)) is None:
                return self._malformed(arg, "the port is not a number from 1 to 65535")
        if not host_text:
            return self._malformed(arg, "the URL has no host")
        if host_text.endswith("."):
            return self._malformed(arg, "the host ends with a dot")
        effective = port if port is not None else _DEFAULT_PORTS.get(scheme)
        if _looks_numeric(host_text):
            return self._parse_ipv4(host_text, scheme, effective, arg)
        ascii_host = _to_ascii(host_text)
        if ascii_host is None:
            return self._malformed(arg, "the host is not a valid host name")
        if _looks_numeric(ascii_host):  # full-width digits fold to an address
            return self._parse_ipv4(ascii_host, scheme, effective, arg)
        return _Parsed(scheme, ascii_host, None, effective)

    def _parse_ipv4(self, host: str, scheme: str, port: int | None, arg: str) -> _Parsed | Deny:
        readings = {r for r in (_ipv4_inet_aton(host), _ipv4_decimal(host)) if r is not None}
        if not readings:
            return self._malformed(arg, "the host is neither a host name nor an IPv4 address")
        canonical = len(readings) == 1 and str(next(iter(readings))) == host
        if self.deny_private:
            for addr in sorted(readings):
                why = classify(addr)
                if why is not None:
                    shown = host if canonical else f"{host[:40]} (read as {addr})"
                    return Deny(
                        "urls.private-address",
                        f"URL guard: argument {arg}: host {shown} is {why}.",
                    )
        if not canonical:
            return self._malformed(
                arg,
                f"the IPv4 address {host[:40]} is not in canonical dotted-decimal form, "
                "which parsers read differently",
            )
        return _Parsed(scheme, host, next(iter(readings)), port)

    # -- private addresses ------------------------------------------------------------------

    def _check_private(self, parsed: _Parsed, arg: str) -> Allow | Deny:
        host = parsed.host
        if parsed.ip is not None:
            why = classify(parsed.ip)
            if why is not None:
                return Deny(
                    "urls.private-address", f"URL guard: argument {arg}: host {host} is {why}."
                )
            return Allow("urls.allowed")
        if host in _METADATA_NAMES:
            return Deny(
                "urls.private-address",
                f"URL guard: argument {arg}: host {host} is a cloud metadata name.",
            )
        if host == "localhost" or host.endswith(_LOCAL_SUFFIXES):
            return Deny(
                "urls.private-address",
                f"URL guard: argument {arg}: host {host} is a local-only name.",
            )
        if "." not in host:
            return Deny(
                "urls.private-address",
                f"URL guard: argument {arg}: host {host} is a single-label name, "
                "resolved only on the local network.",
            )
        try:
            answers = list(self._resolve(host))
        except (OSError, UnicodeError, ValueError) as exc:
            detail = getattr(exc, "strerror", None) or type(exc).__name__
            return Deny(
                "urls.unresolvable",
                f"URL guard: argument {arg}: host {host} does not resolve ({detail}), "
                "so its addresses cannot be checked.",
            )
        if not answers:
            return Deny(
                "urls.unresolvable",
                f"URL guard: argument {arg}: host {host} resolves to no address, "
                "so its addresses cannot be checked.",
            )
        for answer in answers:
            try:
                addr = ipaddress.ip_address(str(answer).split("%", 1)[0])
            except ValueError:
                return Deny(
                    "urls.unresolvable",
                    f"URL guard: argument {arg}: host {host} resolved to something that is "
                    "not an IP address.",
                )
            why = classify(addr)
            if why is not None:
                return Deny(
                    "urls.private-address",
                    f"URL guard: argument {arg}: host {host} resolves to {addr}, {why}.",
                )
        return Allow("urls.allowed")


# -- argument discovery -----------------------------------------------------------------------

_STRONG: Final = frozenset({"url", "urls", "uri", "uris", "href", "hrefs", "webhook", "webhooks"})
_WEAK_LAST: Final = frozenset(
    {"link", "links", "hyperlink", "endpoint", "endpoints", "homepage", "website"}
)
_NOT_URL: Final = frozenset({"curl", "curls", "hurl", "hurls", "churl", "purl", "purls"})
_URL_FORMATS: Final = frozenset({"uri", "url", "iri", "uri-reference", "iri-reference"})
_WORD_RE: Final = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def looks_like_url(name: str, schema: dict[str, object] | None) -> bool:
    """Whether an argument holds URLs, by its name or its JSON Schema ``format``.

    Names: a word ``url``/``uri``/``href``/``webhook`` anywhere (``image_url``, ``callbackUrl``,
    ``urlTemplate``, ``webhooks``), a lower-case run ending in ``url``/``uri`` (``imageurl``, but
    not ``curl``), or ``link``/``endpoint``/``homepage``/``website`` as the last word
    (``download_link``, but not ``link_target`` or ``symlink``). Schemas: ``format`` uri, url,
    iri, uri-reference or iri-reference, on the property or on its array ``items``.
    """
    if schema is not None:
        for node in (schema, schema.get("items")):
            if isinstance(node, dict) and node.get("format") in _URL_FORMATS:
                return True
    words = [w.lower() for w in _WORD_RE.findall(name)]
    if not words:
        return False
    if any(w in _STRONG for w in words) or words[-1] in _WEAK_LAST:
        return True
    joined = "".join(words)
    return any(
        w not in _NOT_URL and w.endswith(("url", "urls", "uri", "uris")) and len(w) > 4
        for w in (*words, joined)
    )
