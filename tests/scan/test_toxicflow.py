"""Toxic flows: capability labels and minimal cross-server combinations."""

from __future__ import annotations

from typing import Any

import pytest

from portcullis.scan.toxicflow import Leg, capabilities, find_flows


def tool(name: str, description: str = "", **annotations: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "description": description}
    if annotations:
        out["annotations"] = annotations
    return out


FETCH = tool("fetch", "Fetches a URL from the internet and returns the page as markdown.")
READ_FILE = tool("read_text_file", "Read the complete contents of a file from the file system.")
SEND_EMAIL = tool("send_email", "Send an email to a recipient.")
ADD = tool("add", "Add two numbers.")


@pytest.mark.parametrize(
    ("definition", "expected"),
    [
        (FETCH, {"untrusted-content"}),
        (READ_FILE, {"private-data"}),
        (SEND_EMAIL, {"exfil"}),
        (ADD, set()),
        (tool("write_file", "Create a new file or overwrite an existing file."), set()),
        (tool("query", "Run a read-only SQL query against the database."), {"private-data"}),
        (
            tool("get_issue", "Get the details of a GitHub issue, with its comments."),
            {"untrusted-content"},
        ),
        (tool("slack_post_message", "Post a new message to a Slack channel."), {"exfil"}),
        (tool("getSecret", "Returns a secret from the vault."), {"private-data"}),
        (
            tool("read_inbox", "List the latest emails in the user's inbox."),
            {"private-data", "untrusted-content"},
        ),
        (tool("lookup", "", openWorldHint=True, readOnlyHint=True), {"untrusted-content"}),
        (tool("notify_hook", "", openWorldHint=True, readOnlyHint=False), {"exfil"}),
        (tool("add", "Add two numbers.", openWorldHint=False, readOnlyHint=True), set()),
    ],
)
def test_capabilities(definition: dict[str, Any], expected: set[str]) -> None:
    """Each tool gets the labels its name, description and annotations say."""
    assert set(capabilities(definition)) == expected


def test_annotations_never_remove_a_label() -> None:
    """A server claiming readOnly/closed-world keeps the labels its text earns."""
    lying = dict(SEND_EMAIL, annotations={"readOnlyHint": True, "openWorldHint": False})
    assert "exfil" in capabilities(lying)


def test_cross_server_flow() -> None:
    """Untrusted content, private data and a send-out tool on three servers make one flow."""
    flows = find_flows(
        [("web", FETCH), ("web", ADD), ("files", READ_FILE), ("mail", SEND_EMAIL), ("calc", ADD)]
    )
    (flow,) = flows
    assert flow.cross_server
    assert flow.legs == (
        Leg("web", "fetch"),
        Leg("files", "read_text_file"),
        Leg("mail", "send_email"),
    )
    assert flow.servers == ("files", "mail", "web")
    assert "untrusted-content web:fetch -> private-data files:read_text_file" in flow.describe()


def test_two_servers_make_a_flow() -> None:
    """Two servers that together cover the three capabilities are a flow."""
    (flow,) = find_flows([("web", FETCH), ("web", SEND_EMAIL), ("files", READ_FILE)])
    assert flow.cross_server
    assert flow.servers == ("files", "web")


def test_no_flow_without_all_three() -> None:
    """Two of three capabilities are not a flow."""
    assert find_flows([("web", FETCH), ("files", READ_FILE), ("calc", ADD)]) == []
    assert find_flows([("files", READ_FILE), ("mail", SEND_EMAIL)]) == []
    assert find_flows([]) == []


def test_single_server_flow_is_minimal() -> None:
    """One server with all three is one (single-server) flow; supersets are not reported."""
    flows = find_flows(
        [("all", FETCH), ("all", READ_FILE), ("all", SEND_EMAIL), ("mail", SEND_EMAIL)]
    )
    (flow,) = flows
    assert not flow.cross_server
    assert flow.servers == ("all",)


def test_each_combination_once() -> None:
    """Many tools per leg give one flow per server set, with the alternatives counted."""
    tools = [
        ("web", FETCH),
        ("web", tool("browse", "Open a web page in a browser and return its text.")),
        ("files", READ_FILE),
        ("files", tool("read_multiple_files", "Read the contents of multiple files.")),
        ("mail", SEND_EMAIL),
    ]
    (flow,) = find_flows(tools)
    assert flow.alternatives == (2, 2, 1)
    assert flow.legs[0] == Leg("web", "browse")


def test_flows_are_sorted_cross_server_first() -> None:
    """Cross-server flows come before single-server ones."""
    flows = find_flows(
        [
            ("all", FETCH),
            ("all", READ_FILE),
            ("all", SEND_EMAIL),
            ("web", tool("scrape", "Scrape a website.")),
            ("db", tool("query", "Run a SQL query against the database.")),
            ("chat", tool("send_message", "Send a message to a channel.")),
        ]
    )
    assert [f.cross_server for f in flows] == [True, False]
    assert flows[0].servers == ("chat", "db", "web")
