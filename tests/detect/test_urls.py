"""URL egress guard: legitimate URLs pass, SSRF write-up payloads are denied.

No test touches the network: every guard gets a fake resolver (a dict of host -> addresses).
"""

from __future__ import annotations

import pytest

from portcullis.detect.urls import UrlGuard, looks_like_url, redact_url
from portcullis.gateway.pipeline import Allow, Deny

DNS: dict[str, list[str]] = {
    "example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    "www.example.com": ["93.184.215.14"],
    "docs.python.org": ["151.101.0.223"],
    "peps.python.org": ["151.101.0.223"],
    "a.b.python.org": ["151.101.0.223"],
    "python.org": ["151.101.0.223"],
    "docs.example.com": ["93.184.215.20"],
    "api.github.com": ["140.82.112.6"],
    "xn--bcher-kva.de": ["81.169.145.78"],
    "xn--wgv71a119e.jp": ["203.216.1.1"],
    "medium.com": ["162.159.153.4"],
    "evil.com": ["6.6.6.6"],
    "allowed.com": ["5.5.5.5"],
    "allowed.com.evil.com": ["6.6.6.6"],
    "127.0.0.1.nip.io": ["127.0.0.1"],
    "10.0.0.5.sslip.io": ["10.0.0.5"],
    "rebind.example.net": ["93.184.215.14", "10.1.2.3"],
    "v6only.example.net": ["fe80::1%eth0"],
    "metadata-alias.example.net": ["169.254.169.254"],
    "ula.example.net": ["fd12:3456::1"],
    "mapped.example.net": ["::ffff:192.168.0.1"],
    "cgnat.example.net": ["100.64.1.1"],
    "empty.example.net": [],
    "garbage.example.net": ["not-an-ip"],
}


PUBLIC_SITES = [
    "docs.python.org",
    "www.python.org",
    "nodejs.org",
    "en.wikipedia.org",
    "de.wikipedia.org",
    "raw.githubusercontent.com",
    "objects.githubusercontent.com",
    "news.ycombinator.com",
    "www.rfc-editor.org",
    "datatracker.ietf.org",
    "developer.mozilla.org",
    "stackoverflow.com",
    "www.googleapis.com",
    "storage.googleapis.com",
    "s3.amazonaws.com",
    "bucket.s3.eu-west-1.amazonaws.com",
    "login.microsoftonline.com",
    "hooks.slack.com",
    "discord.com",
    "api.openai.com",
    "api.anthropic.com",
    "arxiv.org",
    "doi.org",
    "www.gov.uk",
    "xn--mnchen-3ya.de",
]
DNS.update({site: [f"151.101.{i}.{i + 10}"] for i, site in enumerate(PUBLIC_SITES)})


def fake_resolve(host: str) -> list[str]:
    try:
        return DNS[host]
    except KeyError:
        raise OSError(-2, "Name or service not known") from None


def guard(**kwargs: object) -> UrlGuard:
    kwargs.setdefault("schemes", ("https", "http"))
    kwargs.setdefault("resolve", fake_resolve)
    return UrlGuard(**kwargs)  # type: ignore[arg-type]


OPEN = guard()
ALLOWLIST = guard(allow_hosts=["*.python.org", "docs.example.com", "api.github.com:443"])


# -- legitimate ------------------------------------------------------------------------------

LEGIT = [
    "https://example.com/",
    "https://example.com",
    "https://example.com/path/to/page.html",
    "https://example.com/search?q=portcullis&lang=en#results",
    "https://example.com:8443/api/v1",
    "http://example.com:8080/",
    "HTTPS://EXAMPLE.COM/Upper",
    "https://www.example.com/a%20b",
    "https://docs.python.org/3/library/ipaddress.html",
    "https://bücher.de/katalog",
    "https://xn--bcher-kva.de/katalog",
    "https://日本語.jp/",
    "https://\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com/",
    "https://medium.com/@someone/post",
    "https://example.com/path?email=a%40b.c",
    "http://8.8.8.8/",
    "https://1.1.1.1/dns-query",
    "http://[2606:4700:4700::1111]/",
    "https://[2606:4700:4700::1111]:8443/x",
    "http://[2002:0808:0808::1]/",
]


@pytest.mark.parametrize("url", LEGIT)
def test_legitimate_urls_allowed(url: str) -> None:
    """Ordinary public URLs (ports, IDN, queries, public IPs) are allowed."""
    assert OPEN.check(url, argument="url") == Allow("urls.allowed")


ALLOWED_BY_LIST = [
    "https://docs.python.org/3/",
    "https://peps.python.org/pep-0008/",
    "https://a.b.python.org/deep",
    "https://docs.python.org:8443/alt-port",
    "https://docs.example.com/guide",
    "https://DOCS.EXAMPLE.COM/guide",
    "https://api.github.com/repos",
    "https://api.github.com:443/repos",
]


@pytest.mark.parametrize("url", ALLOWED_BY_LIST)
def test_allow_hosts_matches(url: str) -> None:
    """Wildcards match subdomains at any depth, exact names match, ports as documented."""
    assert ALLOWLIST.check(url, argument="url") == Allow("urls.allowed")


NOT_IN_LIST = [
    "https://python.org/",  # the apex is not matched by *.python.org
    "https://evil.com/",
    "https://docs.python.org.evil.com/",
    "https://evilpython.org/",
    "https://www.docs.example.com/",
    "https://api.github.com:8443/repos",  # pattern pins port 443
    "https://allowed.com.evil.com/",
]


@pytest.mark.parametrize("url", NOT_IN_LIST)
def test_allow_hosts_rejects_others(url: str) -> None:
    """Hosts outside allow_hosts, look-alike suffixes and other ports are denied."""
    verdict = ALLOWLIST.check(url, argument="url")
    assert isinstance(verdict, Deny)
    assert verdict.rule == "urls.host"


def test_allowed_com_evil_com_not_allowed_com() -> None:
    """A host that merely starts with the allowed name is a different host."""
    g = guard(allow_hosts=["allowed.com"])
    assert g.check("https://allowed.com/", argument="url") == Allow("urls.allowed")
    verdict = g.check("https://allowed.com.evil.com/", argument="url")
    assert verdict.rule == "urls.host"
    assert "allowed.com.evil.com" in verdict.reason


def test_wildcard_star_matches_any_host() -> None:
    """A lone ``*`` pattern allows every host (still subject to deny_private)."""
    g = guard(allow_hosts=["*"])
    assert g.check("https://example.com/", argument="url").decision == "allow"
    assert g.check("http://127.0.0.1/", argument="url").rule == "urls.private-address"


def test_idn_pattern_matches_unicode_and_punycode() -> None:
    """An IDN pattern matches the host whether written in Unicode or punycode."""
    g = guard(allow_hosts=["bücher.de"])
    assert g.check("https://bücher.de/", argument="url").decision == "allow"
    assert g.check("https://xn--bcher-kva.de/", argument="url").decision == "allow"


def test_ipv6_pattern() -> None:
    """A bracketed IPv6 pattern matches the same address in any spelling."""
    g = guard(allow_hosts=["[2606:4700:4700::1111]"])
    assert g.check("https://[2606:4700:4700:0::1111]/", argument="url").decision == "allow"


def test_deny_private_off_allows_internal_and_skips_dns() -> None:
    """With deny_private off, internal hosts pass and nothing is resolved."""

    def boom(host: str) -> list[str]:
        raise AssertionError("resolver called")

    g = UrlGuard(schemes=["http"], deny_private=False, resolve=boom)
    assert g.check("http://10.0.0.5:8080/", argument="url").decision == "allow"
    assert g.check("http://intranet.corp.example/", argument="url").decision == "allow"


def test_resolver_is_not_called_for_hosts_outside_allowlist() -> None:
    """Allowlist denials happen before any DNS lookup."""
    calls: list[str] = []

    def spy(host: str) -> list[str]:
        calls.append(host)
        return ["93.184.215.14"]

    g = UrlGuard(allow_hosts=["docs.example.com"], resolve=spy)
    assert g.check("https://evil.com/", argument="url").rule == "urls.host"
    assert calls == []
    assert g.check("https://docs.example.com/", argument="url").decision == "allow"
    assert calls == ["docs.example.com"]


def test_scheme_case_insensitive() -> None:
    """Schemes compare case-insensitively, in the URL and in the policy."""
    g = UrlGuard(schemes=["HTTPS"], resolve=fake_resolve)
    assert g.check("HtTpS://example.com/", argument="url").decision == "allow"


def test_default_schemes_https_only() -> None:
    """The default allows https and nothing else."""
    g = UrlGuard(resolve=fake_resolve)
    assert g.check("https://example.com/", argument="url").decision == "allow"
    assert g.check("http://example.com/", argument="url").rule == "urls.scheme"


def test_looks_like_url_names() -> None:
    """URL-ish argument names are discovered; path-ish and other names are not."""
    for name in (
        "url",
        "uri",
        "href",
        "image_url",
        "callbackUrl",
        "webhook",
        "webhook_target",
        "endpoint",
        "download_link",
        "urls",
        "source_uri",
        "imageurl",
        "imageURIs",
        "URL",
        "homepage",
    ):
        assert looks_like_url(name, None), name
    for name in ("path", "curl", "symlink", "link_target", "query", "name", "security", "", "uid"):
        assert not looks_like_url(name, None), name


def test_looks_like_url_schema_format() -> None:
    """Schema format uri/url (also on array items) marks an argument as a URL."""
    assert looks_like_url("target", {"type": "string", "format": "uri"})
    assert looks_like_url(
        "targets", {"type": "array", "items": {"type": "string", "format": "url"}}
    )
    assert looks_like_url("ref", {"format": "uri-reference"})
    assert not looks_like_url("target", {"type": "string", "format": "email"})


def test_redact_url() -> None:
    """redact_url hides credentials, query and fragment but keeps host and path."""
    assert redact_url("https://u:p@example.com/a?token=s3cret#x") == (
        "https://[REDACTED]@example.com/a?[REDACTED]"
    )
    assert redact_url("not a url") == "[REDACTED]"


# -- attacks -------------------------------------------------------------------------------

PRIVATE = [
    # (url, expected text in the reason)
    ("http://127.0.0.1/", "loopback"),
    ("http://127.0.0.1:6379/", "loopback"),
    ("http://localhost/", "local-only"),
    ("http://app.localhost/", "local-only"),
    ("http://2130706433/", "127.0.0.1"),
    ("http://0177.0.0.1/", "127.0.0.1"),
    ("http://0x7f.1/", "127.0.0.1"),
    ("http://0x7f000001/", "127.0.0.1"),
    ("http://127.1/", "127.0.0.1"),
    ("http://0/", "unspecified"),
    ("http://0.0.0.0:8000/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://[::1]/", "loopback"),
    ("http://[0:0:0:0:0:0:0:1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "127.0.0.1"),
    ("http://[::ffff:7f00:1]/", "127.0.0.1"),
    ("http://[::ffff:169.254.169.254]/", "metadata"),
    ("http://[64:ff9b::7f00:1]/", "127.0.0.1"),
    ("http://[64:ff9b::10.0.0.1]/", "RFC 1918"),
    ("http://[::127.0.0.1]/", "127.0.0.1"),
    ("http://[2002:7f00:1::1]/", "127.0.0.1"),  # 6to4 embedding loopback
    ("http://[2002:a9fe:a9fe::1]/", "metadata"),
    ("http://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/", "10.0.0.1"),  # Teredo client 10.0.0.1
    ("http://10.0.0.1/", "RFC 1918"),
    ("http://172.16.5.4/", "RFC 1918"),
    ("http://172.31.255.255/", "RFC 1918"),
    ("http://192.168.1.1/", "RFC 1918"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://100.127.255.254/", "carrier-grade NAT"),
    ("http://169.254.1.1/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fc00::1]/", "unique local"),
    ("http://[fd12:3456::1]/", "unique local"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://255.255.255.255/", "broadcast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://[4000::1]/", "reserved"),
    ("http://169.254.169.254/latest/meta-data/iam/security-credentials/", "cloud metadata"),
    ("http://169.254.170.2/v2/credentials", "cloud metadata"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "cloud metadata"),
    ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata"),
    ("http://METADATA.google.internal/computeMetadata/v1/", "cloud metadata"),
    ("http://metadata/computeMetadata/v1/", "cloud metadata"),
    ("http://instance-data/latest/", "cloud metadata"),
    ("http://100.100.100.200/latest/meta-data/", "cloud metadata"),
    ("http://192.0.0.192/opc/v2/instance/", "cloud metadata"),
    ("http://0251.0376.0251.0376/", "169.254.169.254"),  # octal metadata
    ("http://0xa9fea9fe/", "169.254.169.254"),  # hex metadata
    ("http://2852039166/", "169.254.169.254"),  # decimal metadata
    ("http://010.8.8.8/", "10.8.8.8"),  # ambiguous: decimal reading is RFC 1918
    (
        "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/",
        "loopback",
    ),  # full-width digits fold to 127.0.0.1
    ("http://intranet/", "single-label"),
    ("http://printer.local/", "local-only"),
    ("http://db.internal/", "local-only"),
    ("http://router.home.arpa/", "local-only"),
]


@pytest.mark.parametrize(("url", "why"), PRIVATE)
def test_private_and_encoded_addresses_denied(url: str, why: str) -> None:
    """Literal, encoded and embedded private addresses and metadata names are denied."""
    verdict = OPEN.check(url, argument="url")
    assert isinstance(verdict, Deny), url
    assert verdict.rule == "urls.private-address", verdict
    assert why in verdict.reason


RESOLVED = [
    ("http://127.0.0.1.nip.io/", "127.0.0.1"),
    ("http://10.0.0.5.sslip.io/", "10.0.0.5"),
    ("http://rebind.example.net/", "10.1.2.3"),  # one public, one private answer
    ("http://v6only.example.net/", "fe80::1"),
    ("http://metadata-alias.example.net/", "cloud metadata"),
    ("http://ula.example.net/", "fd12:3456::1"),
    ("http://mapped.example.net/", "192.168.0.1"),
    ("http://cgnat.example.net/", "100.64.1.1"),
]


@pytest.mark.parametrize(("url", "why"), RESOLVED)
def test_resolved_private_addresses_denied(url: str, why: str) -> None:
    """A public-looking name that resolves to any private address is denied."""
    verdict = OPEN.check(url, argument="url")
    assert verdict.rule == "urls.private-address", verdict
    assert why in verdict.reason
    assert "resolves to" in verdict.reason


def test_resolved_private_denied_even_when_allowlisted() -> None:
    """deny_private also applies to hosts the allowlist accepts."""
    g = guard(allow_hosts=["*.nip.io"])
    assert g.check("http://127.0.0.1.nip.io/", argument="url").rule == "urls.private-address"


@pytest.mark.parametrize(
    "url",
    ["http://does-not-exist.example/", "http://empty.example.net/", "http://garbage.example.net/"],
)
def test_unresolvable_fails_closed(url: str) -> None:
    """A host that does not resolve (or resolves to nothing usable) is denied."""
    verdict = OPEN.check(url, argument="url")
    assert verdict.rule == "urls.unresolvable"
    assert "resolve" in verdict.reason


CREDENTIALS = [
    "http://user:pass@example.com/",
    "http://user@example.com/",
    "http://allowed.com@evil.com/",
    "https://allowed.com:443@evil.com/",
    "http://:@example.com/",
    "http://evil.com@127.0.0.1/",
]


@pytest.mark.parametrize("url", CREDENTIALS)
def test_credentials_denied(url: str) -> None:
    """Any userinfo is denied, including the allowed.com@evil.com confusion."""
    verdict = OPEN.check(url, argument="url")
    assert verdict.rule == "urls.credentials"
    assert "user:pass" not in verdict.reason
    assert "evil" not in verdict.reason


MALFORMED = [
    "http://evil.com#@allowed.com",
    "http://allowed.com#@evil.com",
    "http://allowed.com?@evil.com",
    "http://a@b@evil.com/",
    "http://evil.com\\@allowed.com/",
    "http:\\\\evil.com/",
    "http:/evil.com/",
    "http:evil.com/",
    "http:///evil.com/",
    "http://",
    "http:// example.com/",
    "http://exa mple.com/",
    "http://example.com\t/",
    "http://example.com\n.evil.com/",
    "http://exam\x00ple.com/",
    "http://example.com\u3000/",
    "http://%31%32%37.0.0.1/",
    "http://ex%61mple.com/",
    "http://example.com./",
    "http://example..com/",
    "http://127\u30020\u30020\u30021/",
    "http://example\uff0ecom/",
    "http://example\uff61com/",
    "http://faß.de/",
    "http://xn--zz.com/",
    "http://[::1%25eth0]/",
    "http://[::1/",
    "http://[not-v6]/",
    "http://example.com:0/",
    "http://example.com:65536/",
    "http://example.com:80x/",
    "http://a:1:2/",
    "http://1.2.3.4.5/",
    "http://example.123/",
    "http://0x08.0x08.0x08.0x08/",  # public, but non-canonical
    "http://ex_ample$.com/",
    "example.com/path",
    "//example.com/path",
]


@pytest.mark.parametrize("url", MALFORMED)
def test_ambiguous_or_malformed_denied(url: str) -> None:
    """URLs that parsers read differently are denied as malformed."""
    verdict = OPEN.check(url, argument="url")
    assert isinstance(verdict, Deny), url
    assert verdict.rule == "urls.malformed", (url, verdict)


def test_non_string_and_overlong_malformed() -> None:
    """Non-strings and absurdly long values are malformed."""
    assert OPEN.check(42, argument="url").rule == "urls.malformed"  # type: ignore[arg-type]
    assert OPEN.check("https://example.com/" + "a" * 9000, argument="url").rule == "urls.malformed"


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        "dict://127.0.0.1:11211/",
        "ftp://example.com/",
        "javascript:alert(1)",
        "data:text/html,hi",
        "jar:http://example.com!/",
        "ldap://example.com/",
    ],
)
def test_scheme_allowlist(url: str) -> None:
    """Schemes outside the allowlist are denied (file, gopher, dict, …)."""
    assert OPEN.check(url, argument="url").rule == "urls.scheme"


def test_reason_format_names_guard_argument_and_redacts() -> None:
    """Reasons are one sentence naming the guard, the argument and why; no query or secrets."""
    verdict = OPEN.check("http://169.254.169.254/latest?token=SECRET123", argument="url")
    assert verdict.reason == (
        'URL guard: argument "url": host 169.254.169.254 is a cloud metadata address.'
    )
    host = ALLOWLIST.check("https://evil.com/x?key=SECRET123", argument="/params/url")
    assert host.reason.startswith('URL guard: argument "/params/url": host evil.com')
    assert "SECRET123" not in host.reason
    creds = OPEN.check("https://admin:hunter2@example.com/", argument="url")
    assert "hunter2" not in creds.reason and "admin" not in creds.reason
    weird = OPEN.check("http://10.0.0.1/", argument='a"\x1bname')
    assert "\x1b" not in weird.reason


def test_bad_allow_hosts_pattern_rejected() -> None:
    """Patterns that are not host names fail at construction, not at check time."""
    for bad in ("exa mple.com", "*.*.com", "a.com:99999", "foo*.com", "[nope]"):
        with pytest.raises(ValueError, match="allow_hosts"):
            UrlGuard(allow_hosts=[bad])


# -- more legitimate cases: public neighbours of every blocked range, real-world URL shapes ------

PUBLIC_BOUNDARIES = [
    "9.255.255.255",
    "11.0.0.0",
    "100.63.255.255",
    "100.128.0.0",
    "126.255.255.255",
    "128.0.0.0",
    "169.253.255.255",
    "169.255.0.0",
    "172.15.255.255",
    "172.32.0.0",
    "192.0.1.1",
    "192.0.3.1",
    "192.88.98.1",
    "192.88.100.1",
    "192.167.255.255",
    "192.169.0.0",
    "198.17.255.255",
    "198.20.0.0",
    "198.51.99.1",
    "198.51.101.1",
    "203.0.112.1",
    "203.0.114.1",
    "223.255.255.255",
    "1.0.0.1",
    "101.0.0.1",
    "[2001:4860:4860::8888]",
    "[2a00:1450:4001:82b::200e]",
    "[2600::]",
    "[::ffff:8.8.8.8]",
    "[64:ff9b::8.8.8.8]",
    "[2002:0101:0101::]",
    "[2620:fe::fe]",
    "[2a03:2880::1]",
]


@pytest.mark.parametrize("host", PUBLIC_BOUNDARIES)
def test_public_addresses_next_to_blocked_ranges_allowed(host: str) -> None:
    """Public addresses just outside each blocked range (and public embeddings) are allowed."""
    assert OPEN.check(f"https://{host}/", argument="url") == Allow("urls.allowed")


SHAPES = [
    "https://api.github.com/repos/python/cpython/issues?state=open&per_page=100",
    "https://api.github.com/search/code?q=addClass+in:file+language:js",
    "https://example.com/path;params?x=1",
    "https://example.com/a/b/../c/./d",
    "https://example.com/%E2%82%AC/price",
    "https://example.com/€/price",
    "https://example.com/?",
    "https://example.com/#",
    "https://example.com/#section-2",
    "https://example.com/page?redirect=https%3A%2F%2Fother.example%2F",
    "https://example.com/page?next=/login",
    "https://example.com/a?b=c&d=e&f=g&h=i",
    "https://example.com/~user/",
    "https://example.com/users/@me",
    "https://example.com:443/",
    "https://example.com:1/",
    "https://example.com:65535/",
    "http://example.com:80/",
    "https://www.example.com/index.php?id=10",
    "https://docs.python.org/3/search.html?q=ssrf&check_keywords=yes",
    "https://docs.example.com/v2/reference#/operations/list",
    "https://medium.com/@a/b-c-d-123abc",
    "https://peps.python.org/pep-0008/#naming-conventions",
    "https://python.org/downloads/",
    "https://bücher.de/suche?titel=über",
    "https://BÜCHER.de/",
    "https://xn--bcher-kva.de:8443/",
    "https://example.com/a%2Fb",
    "https://example.com/a%40b",
    "https://example.com/search?q=a%20b%23c",
    "https://example.com/path/with-dashes_and_underscores.json",
    "https://example.com/q?list=1,2,3&json=%7B%22a%22%3A1%7D",
    "https://8.8.8.8:853/",
    "https://[2001:4860:4860::8844]:443/resolve?name=example.com",
    "https://1.1.1.1/?ct=application/dns-json",
    "https://example.com/callback?code=abc&state=xyz",
    "https://example.com/image.png?w=200&h=100",
    "https://www.example.com/a?email=a@b.c",
    "https://example.com/feed.xml?since=2026-01-01T00:00:00Z",
    "https://example.com/a+b/c=d",
    "https://example.com/search?q=127.0.0.1",
    "https://example.com/docs/169.254.169.254-explained",
    "https://example.com/?url=http://localhost/",
    "https://docs.python.org:443/3/",
    "https://en.wikipedia.org/wiki/Server-side_request_forgery",
    "https://www.rfc-editor.org/rfc/rfc6890#section-2.2.2",
]


@pytest.mark.parametrize("url", SHAPES)
def test_real_world_url_shapes_allowed(url: str) -> None:
    """Ordinary paths, queries, fragments, encodings, ports and IDN hosts are allowed."""
    assert OPEN.check(url, argument="url") == Allow("urls.allowed")


@pytest.mark.parametrize("site", PUBLIC_SITES)
def test_public_sites_allowed(site: str) -> None:
    """Hosts of everyday public services, resolving to public addresses, are allowed."""
    assert OPEN.check(f"https://{site}/some/path?x=1", argument="url") == Allow("urls.allowed")


def test_query_with_at_after_path_allowed() -> None:
    """An '@' in a query after a path is not host confusion and is allowed."""
    assert OPEN.check("https://example.com/login?user=a@b.c", argument="url").decision == "allow"


def test_public_answers_only_allowed() -> None:
    """A host whose every A/AAAA answer is public is allowed."""
    assert OPEN.check("https://example.com/", argument="url").decision == "allow"


def test_scope_id_in_answer_is_ignored_for_classification() -> None:
    """Resolver answers with a scope id are classified by the address."""
    g = guard(resolve=lambda host: ["2606:4700:4700::1111%1"])
    assert g.check("https://example.com/", argument="url").decision == "allow"


def test_default_resolver_is_getaddrinfo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``resolve``, every getaddrinfo answer is checked (patched: no network here)."""
    import socket

    def fake_getaddrinfo(host: str, port: object, **kwargs: object) -> list[tuple[object, ...]]:
        assert host == "xn--bcher-kva.de"
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("81.169.145.78", 0)),
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fd00::1", 0, 0, 0)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    verdict = UrlGuard().check("https://bücher.de/", argument="url")
    assert verdict.rule == "urls.private-address"
    assert "fd00::1" in verdict.reason


def test_default_resolver_failure_is_unresolvable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A getaddrinfo error (as on a machine without DNS) denies with urls.unresolvable."""
    import socket

    def no_dns(host: str, port: object, **kwargs: object) -> list[tuple[object, ...]]:
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    verdict = UrlGuard().check("https://example.com/", argument="url")
    assert verdict.rule == "urls.unresolvable"
    assert "Temporary failure in name resolution" in verdict.reason


@pytest.mark.parametrize(
    "url",
    [
        "http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/",  # full-width localhost
        "http://127\u20240\u20240\u20241/",  # ONE DOT LEADER folds to '.'
        "http://\u24db\u24de\u24d2\u24d0\u24db\u24d7\u24de\u24e2\u24e3/",  # circled localhost
    ],
)
def test_unicode_folding_to_local_hosts_denied(url: str) -> None:
    """Hosts that IDNA folds to a local name or address are judged after folding."""
    assert OPEN.check(url, argument="url").rule == "urls.private-address"


def test_folding_to_url_delimiters_malformed() -> None:
    """A host character that folds to '/' or '@' is malformed, not a new delimiter."""
    assert OPEN.check("http://evil.com\uff0fallowed.com/", argument="url").rule == "urls.malformed"
    assert OPEN.check("http://allowed.com\ufe6bevil.com/", argument="url").rule == "urls.malformed"
