"""Toxic flows: tools that together let an injection steal data (pure, no I/O).

The "lethal trifecta": a tool that reads **untrusted content** (a web page, an issue, an email
from someone else) can carry an injection; a tool that reads **private data** (files, a
database, the user's mail, secrets) gives it something to steal; a tool that **sends data out**
(an email, a message, an HTTP request, a public comment) gets it away. Each tool alone may be
harmless; the model connected to all three is not. Across servers no single server's review
sees the combination, which is why the scan reports it.

Labels come from a tool's name, description and annotations. Annotations only ever *add* a
label: they are hints the server chooses, so a server cannot talk its way out of one.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = ["CAPABILITIES", "Capability", "Flow", "Leg", "capabilities", "find_flows"]

Capability = Literal["untrusted-content", "private-data", "exfil"]
#: The three legs of a flow, in the order an attack uses them.
CAPABILITIES: Final[tuple[Capability, ...]] = ("untrusted-content", "private-data", "exfil")
_MAX_FLOWS: Final = 100
_MAX_SERVERS_IN_FLOW: Final = 3

_PRIVATE_OBJECTS: Final = (
    r"files?|dir|directory|directories|folders?|documents?|docs?|drive|notes?|db|database|"
    r"sql|tables?|records?|rows?|schema|emails?|mails?|inbox|mailbox|secrets?|credentials?|"
    r"passwords?|keys?|tokens?|vault|keychain|env|environment|calendar|events?|contacts?|"
    r"customers?|accounts?|payments?|transactions?|clipboard|history|memory|memories|repo|"
    r"repository|code"
)
_READ_VERBS: Final = (
    r"read|get|list|search|query|find|view|open|cat|show|describe|fetch|load|export|dump|"
    r"select|execute|run|tree|lookup|retrieve|grep|head|tail|print"
)
_WRITE_ONLY_VERBS: Final = (
    r"write|create|delete|remove|move|rename|edit|update|insert|set|put|patch|send|post|"
    r"upload|publish|mkdir|make"
)
_UNTRUSTED_NAME: Final = re.compile(
    r"\b(fetch|browse|browser|scrape|crawl|web|url|urls|http|https|html|webpage|page|pages|"
    r"website|rss|feed|news|issues?|pull|prs?|comments?|discussions?|reviews?|tickets?|"
    r"inbox|chats?|channels?|slack|discord|tweets?|reddit|posts?|threads?|wiki|youtube|"
    r"transcript|messages)\b"
)
_UNTRUSTED_DESC: Final = re.compile(
    r"\b(fetch\w*|retriev\w*|download\w*|scrap\w*|crawl\w*|brows\w*|reads?|reading|gets?|"
    r"lists?|search\w*|returns?|loads?|opens?)\b[^.]{0,60}?\b(urls?|web ?pages?|websites?|"
    r"the (?:web|internet)|internet|online|html|issues?|pull requests?|comments?|"
    r"e-?mails?|inbox|messages?|chats?|channels?|tweets?|posts?|feeds?|search results|"
    r"tickets?|discussions?)\b"
)
_EXFIL_NAME: Final = re.compile(
    r"\b(send|post|publish|upload|share|tweet|notify|forward|reply|submit|webhook|"
    r"create_(?:issue|comment|gist|pull_request|pr|post|message)|add_comment|comment|"
    r"request|http_(?:post|request)|email|mail|sms|message)\b"
)
_EXFIL_VERB_FIRST: Final = re.compile(
    r"^(send|post|publish|upload|share|tweet|notify|forward|reply|submit)\b"
)
_EXFIL_DESC: Final = re.compile(
    r"\b(sends?|sending|posts?|posting|publish\w*|uploads?|uploading|shares?|sharing|"
    r"forwards?|submits?|notif(?:y|ies)|emails?|messages?|tweets?|make an? http|"
    r"performs? an? http|http (?:post|request))\b[^.]{0,60}?\b(e-?mails?|messages?|requests?|"
    r"webhooks?|urls?|servers?|endpoints?|channels?|chats?|slack|comments?|issues?|tweets?|"
    r"internet|recipients?|http|public|gists?|anyone|contacts?|numbers?|addresses)\b"
)
_PRIVATE_DESC: Final = re.compile(
    r"\b(reads?|reading|retriev\w*|gets?|lists?|search\w*|quer(?:y|ies)|returns?|shows?|"
    r"executes?|runs?|dumps?|exports?|prints?|accesses)\b[^.]{0,60}?\b(files?|directory|"
    r"directories|folders?|documents?|database|sql|tables?|e-?mails?|inbox|secrets?|"
    r"credentials?|passwords?|api keys?|tokens?|vault|environment variables|calendar|"
    r"contacts?|notes|customer|private|personal|repositor(?:y|ies)|source code|"
    r"file system|filesystem)\b"
)
_PRIVATE_NAME: Final = re.compile(rf"\b({_PRIVATE_OBJECTS})\b")
_READ_NAME: Final = re.compile(rf"\b({_READ_VERBS})\b")
_WRITE_NAME: Final = re.compile(rf"\b({_WRITE_ONLY_VERBS})\b")


@dataclass(frozen=True, order=True)
class Leg:
    """One tool of one server."""

    server: str
    tool: str

    def __str__(self) -> str:
        return f"{self.server}:{self.tool}"


@dataclass(frozen=True)
class Flow:
    """A minimal set of servers whose tools together make untrusted → private → out.

    ``legs`` follows :data:`CAPABILITIES`; ``alternatives`` counts, per leg, how many tools of
    these servers could play it (the evidence shows one of each).
    """

    legs: tuple[Leg, Leg, Leg]
    servers: tuple[str, ...]
    alternatives: tuple[int, int, int]

    @property
    def cross_server(self) -> bool:
        """True when the legs span at least two servers."""
        return len(self.servers) > 1

    def describe(self) -> str:
        """``untrusted-content a:fetch -> private-data b:read_file -> exfil c:send`` style."""
        return " -> ".join(f"{c} {leg}" for c, leg in zip(CAPABILITIES, self.legs, strict=True))


def _words(name: str) -> str:
    """``readTextFile`` / ``read-text-file`` → ``read_text_file`` and ``read text file``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
    spaced = re.sub(r"[^a-z0-9]+", "_", spaced).strip("_")
    return f"{spaced} {spaced.replace('_', ' ')}"


def capabilities(tool: Mapping[str, Any]) -> frozenset[Capability]:
    """The flow capabilities of one tool definition (``name``, ``description``, annotations)."""
    name = tool.get("name")
    words = _words(name) if isinstance(name, str) else ""
    description = tool.get("description")
    desc = description.lower() if isinstance(description, str) else ""
    desc = " ".join(desc.split())[:2000]
    raw_hints = tool.get("annotations")
    hints: Mapping[str, Any] = raw_hints if isinstance(raw_hints, Mapping) else {}
    found: set[Capability] = set()

    reads = bool(_READ_NAME.search(words))
    writes_only = bool(_WRITE_NAME.search(words)) and not reads
    if (_PRIVATE_NAME.search(words) and not writes_only) or _PRIVATE_DESC.search(desc):
        found.add("private-data")
    if (_UNTRUSTED_NAME.search(words) and not writes_only) or _UNTRUSTED_DESC.search(desc):
        found.add("untrusted-content")
    sends = _EXFIL_VERB_FIRST.search(words) or _EXFIL_DESC.search(desc)
    if sends or (_EXFIL_NAME.search(words) and not reads):
        found.add("exfil")
    if hints.get("openWorldHint") is True:
        if hints.get("readOnlyHint") is True:
            found.add("untrusted-content")
        elif hints.get("readOnlyHint") is False:
            found.add("exfil")
    return frozenset(found)


def find_flows(tools: Iterable[tuple[str, Mapping[str, Any]]]) -> list[Flow]:
    """Every minimal combination of servers that covers all three capabilities.

    ``tools`` are (server name, tool definition) pairs. A combination is minimal when no
    smaller subset of its servers covers all three, so each is reported once, not once per
    tool triple; one server covering all three on its own is a (single-server) flow too.
    Sorted: cross-server flows first, then by servers.
    """
    labelled: dict[str, dict[Capability, list[str]]] = {}
    for server, tool in tools:
        name = tool.get("name")
        if not isinstance(name, str):
            continue
        for cap in capabilities(tool):
            names_of = labelled.setdefault(server, {}).setdefault(cap, [])
            if name not in names_of:
                names_of.append(name)
    names = sorted(labelled)
    covering: list[tuple[str, ...]] = []
    for size in range(1, _MAX_SERVERS_IN_FLOW + 1):
        for combo in itertools.combinations(names, size):
            caps = set().union(*(labelled[s].keys() for s in combo))
            if len(caps) < len(CAPABILITIES):
                continue
            if any(set(c) < set(combo) for c in covering):
                continue
            covering.append(combo)
    flows = [f for f in (_flow(c, labelled) for c in covering) if f is not None]
    flows.sort(key=lambda f: (not f.cross_server, f.servers))
    return flows[:_MAX_FLOWS]


def _flow(
    combo: tuple[str, ...], labelled: Mapping[str, Mapping[Capability, list[str]]]
) -> Flow | None:
    """Pick one tool per leg, using every server of ``combo`` (it is minimal, so one exists)."""
    options = [[s for s in combo if cap in labelled[s]] for cap in CAPABILITIES]
    for choice in itertools.product(*options):
        if set(choice) != set(combo):
            continue
        used: set[tuple[str, str]] = set()
        legs: list[Leg] = []
        for cap, server in zip(CAPABILITIES, choice, strict=True):
            candidates = sorted(labelled[server][cap])
            pick = next((t for t in candidates if (server, t) not in used), candidates[0])
            used.add((server, pick))
            legs.append(Leg(server, pick))
        counts = tuple(sum(len(labelled[s].get(cap, [])) for s in combo) for cap in CAPABILITIES)
        return Flow(
            legs=(legs[0], legs[1], legs[2]),
            servers=combo,
            alternatives=(counts[0], counts[1], counts[2]),
        )
    return None
