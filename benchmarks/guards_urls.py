"""URL guard and constraint throughput: decisions per second, with a fake resolver (no DNS).

A mixed workload of legitimate URLs (IDN, ports, queries, public literals) and SSRF payloads
(encoded loopback, metadata, embedded IPv6, userinfo confusion, names resolving to private
addresses) is checked over and over; the resolver is a dict lookup, so the figure is the guard's
own cost, not DNS latency (a real lookup adds milliseconds unless cached by the system).

    .venv/bin/python benchmarks/guards_urls.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import time

from portcullis.detect.constraints import Constraint, check_constraint
from portcullis.detect.urls import UrlGuard

DNS = {
    "example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    "docs.python.org": ["151.101.0.223"],
    "xn--bcher-kva.de": ["81.169.145.78"],
    "127.0.0.1.nip.io": ["127.0.0.1"],
    "rebind.example.net": ["93.184.215.14", "10.1.2.3"],
}


def resolve(host: str) -> list[str]:
    try:
        return DNS[host]
    except KeyError:
        raise OSError(-2, "Name or service not known") from None


LEGIT = [
    "https://example.com/search?q=portcullis&lang=en#top",
    "https://docs.python.org/3/library/ipaddress.html",
    "https://example.com:8443/api/v1/items?page=2",
    "https://bücher.de/katalog",
    "https://8.8.8.8/dns-query",
    "https://[2606:4700:4700::1111]/",
]
ATTACKS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://[::ffff:127.0.0.1]/",
    "http://allowed.com@evil.com/",
    "http://evil.com#@allowed.com",
    "http://127.0.0.1.nip.io/",
    "http://rebind.example.net/",
    "http://metadata.google.internal/",
    "gopher://127.0.0.1:6379/_INFO",
]


def rate(fn, items, seconds: float) -> float:
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for item in items:
            fn(item)
        n += len(items)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()

    open_guard = UrlGuard(schemes=["https", "http"], resolve=resolve)
    listed = UrlGuard(
        schemes=["https", "http"],
        allow_hosts=[
            "*.python.org",
            "example.com",
            "bücher.de",
            "8.8.8.8",
            "[2606:4700:4700::1111]",
        ],
        resolve=resolve,
    )
    mixed = LEGIT + ATTACKS
    for name, guard in (("no allow_hosts", open_guard), ("allow_hosts (5 patterns)", listed)):
        legit = rate(lambda u, g=guard: g.check(u, argument="url"), LEGIT, args.seconds)
        attack = rate(lambda u, g=guard: g.check(u, argument="url"), ATTACKS, args.seconds)
        both = rate(lambda u, g=guard: g.check(u, argument="url"), mixed, args.seconds)
        print(f"urls, {name}: legit {legit:,.0f}/s  attacks {attack:,.0f}/s  mixed {both:,.0f}/s")

    constraints = [
        (Constraint(pattern=r"[a-z0-9][a-z0-9._/-]{0,99}"), "feature/x-1.2"),
        (Constraint(enum=["red", "green", "blue"]), "green"),
        (Constraint(min=1, max=100), 42),
        (Constraint(max_length=64), "short string"),
        (Constraint(forbid=["rm -rf", r"re:;\s*(curl|wget)\b", "$("]), "ls -la; echo ok"),
    ]
    per = rate(lambda cv: check_constraint(cv[0], cv[1], argument="a"), constraints, args.seconds)
    print(f"constraints (mixed keys): {per:,.0f} decisions/s")


if __name__ == "__main__":
    main()
