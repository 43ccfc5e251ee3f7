"""Issue 11's check: observe a real server, learn a policy from the log, enforce it, replay it.

The filesystem server serves a wider directory than the project, so only the gateway's roots
keep a traversal out. A scripted ordinary session runs in observe mode with one traversal mixed
in; ``portcullis policy suggest`` learns a policy from the audit log; enforced, that policy lets
the same session through unchanged, refuses the traversal and an unused destructive tool; and
``portcullis policy test`` reports exactly the calls a tightened policy would block.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import Gateway, filesystem, text_of

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

OBSERVE = """\
version: 1
defaults:
  pin: false
servers:
  files:
    mode: observe
    tools: {{default: allow}}
    paths: {{roots: [{root}]}}
"""


@pytest.fixture
def tree(gw: Gateway) -> dict[str, Path]:
    """A project with subdirectories, inside a wider directory the server itself may read."""
    base = gw.tmp / "base"
    project = base / "project"
    outside = base / "outside"
    for d in (project / "src", project / "docs", project / "tests", outside):
        d.mkdir(parents=True)
    (project / "README.md").write_text("# Project\n")
    (project / "src" / "main.py").write_text("print('hello')\n")
    (project / "src" / "util.py").write_text("def helper():\n    return 1\n")
    (project / "docs" / "guide.md").write_text("How to use it.\n")
    (project / "tests" / "test_main.py").write_text("def test_it():\n    pass\n")
    (outside / "secret.txt").write_text("outside the project\n")
    return {"base": base, "project": project, "outside": outside}


def ordinary(project: Path) -> list[tuple[str, dict[str, Any]]]:
    """The ordinary session: listing, reading, searching, file info, inside the project."""
    return [
        ("list_directory", {"path": str(project)}),
        ("list_directory", {"path": str(project / "src")}),
        ("read_text_file", {"path": str(project / "src" / "main.py")}),
        ("read_text_file", {"path": str(project / "docs" / "guide.md")}),
        ("search_files", {"path": str(project), "pattern": "*.py"}),
        ("get_file_info", {"path": str(project / "README.md")}),
        ("read_text_file", {"path": str(project / "tests" / "test_main.py")}),
    ]


async def run_session(
    gw: Gateway, tree: dict[str, Path], policy: Path, calls: list[tuple[str, dict[str, Any]]]
) -> list[tuple[bool, str]]:
    """Run ``calls`` through ``portcullis run --server files``; (is_error, text) of each."""
    out: list[tuple[bool, str]] = []
    async with gw.client(filesystem(tree["base"]), policy, options=["--server", "files"]) as c:
        await c.list_tools()
        for name, args in calls:
            result = await c.call_tool(name, args)
            out.append((bool(result.is_error), text_of(result)))
    return out


def policy_test(gw: Gateway, candidate: Path, log: Path) -> tuple[int, dict[str, Any]]:
    """``portcullis policy test CANDIDATE --against LOG --json``: exit status and report."""
    done = gw.cli("policy", "test", str(candidate), "--against", str(log), "--json")
    assert done.returncode in (0, 1), done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, report


async def test_observe_suggest_enforce_and_replay(gw: Gateway, tree: dict[str, Path]) -> None:
    """Observe, suggest, test and enforce, end to end, on a real filesystem server."""
    project = tree["project"]
    observe = gw.policy(OBSERVE.format(root=project), "observe.yaml")
    traversal = ("read_text_file", {"path": f"{project}/../outside/secret.txt"})
    session = ordinary(project)
    observed = await run_session(gw, tree, observe, [*session[:4], traversal, *session[4:]])
    # Observe mode forwards everything, the traversal included (that is what it is for).
    assert all(not failed for failed, _ in observed), observed
    assert "outside the project" in observed[4][1]
    assert "observe mode" in gw.stderr()

    log = gw.home / "audit.jsonl"
    records = gw.audit_records()
    calls = [r for r in records if r.get("method") == "tools/call" and r["direction"] == "c2s"]
    assert all("observed" in r for r in calls), "the gateway wrote no observed field"
    denied = [r for r in calls if r["decision"] == "deny"]
    assert [(r["tool"], r.get("enforced")) for r in denied] == [("read_text_file", False)]

    suggested = gw.tmp / "suggested.yaml"
    done = gw.cli(
        "policy", "suggest", "--from-audit", str(log), "--server", "files",
        "--policy", str(observe), "--output", str(suggested),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = suggested.read_text()
    # Every line says why; the file validates; roots are the project, not its parent.
    assert all("#" in line for line in text.splitlines()), text
    valid = gw.cli("policy", "validate", str(suggested))
    assert valid.returncode == 0, valid.stderr
    entry = yaml.safe_load(text)["servers"]["files"]
    assert entry["mode"] == "enforce"
    assert entry["paths"]["roots"] == [str(project)]
    tools = entry["tools"]
    assert tools["default"] == "deny"
    used = {"list_directory", "read_text_file", "search_files", "get_file_info"}
    assert set(tools["allow"]) == used
    assert {"write_file", "move_file", "edit_file"} <= set(tools["deny"])
    assert "mode: observe -> enforce" in done.stderr  # the diff against the current policy

    # Replayed through the suggestion, nothing that went through is blocked.
    code, report = policy_test(gw, suggested, log)
    assert (code, report["newly_denied"], report["newly_confirm"]) == (0, 0, 0), report
    assert report["not_replayable"] == 0
    # Without read_text_file, exactly the three ordinary reads are newly denied (the traversal
    # was a would-be denial already).
    tightened = gw.tmp / "tightened.yaml"
    tightened.write_text(
        "\n".join(line for line in text.splitlines() if "- read_text_file" not in line) + "\n"
    )
    code, report = policy_test(gw, tightened, log)
    assert code == 1
    assert report["newly_denied"] == 3
    assert [(c["subject"], c["count"], c["rule"]) for c in report["changes"]] == [
        ("read_text_file", 3, "tools.default")
    ]
    # Narrowing the root to src/ blocks exactly the calls that reached outside it.
    narrowed = gw.tmp / "narrowed.yaml"
    narrowed.write_text(text.replace(f"- {project}  #", f"- {project / 'src'}  #"))
    code, report = policy_test(gw, narrowed, log)
    assert code == 1
    blocked = sorted((c["subject"], c["count"]) for c in report["changes"])
    assert blocked == [
        ("get_file_info", 1),
        ("list_directory", 1),
        ("read_text_file", 2),
        ("search_files", 1),
    ], report
    assert {c["rule"] for c in report["changes"]} == {"paths.outside-roots"}

    # Enforced, the suggestion lets the ordinary session through unchanged...
    enforced = await run_session(gw, tree, suggested, session)
    assert enforced == [observed[i] for i in (0, 1, 2, 3, 5, 6, 7)]
    # ...and refuses the traversal and the unused destructive tools.
    refused = await run_session(
        gw,
        tree,
        suggested,
        [
            traversal,
            ("write_file", {"path": str(project / "new.txt"), "content": "x"}),
            (
                "move_file",
                {"source": str(project / "README.md"), "destination": str(project / "R.md")},
            ),
        ],
    )
    assert all(failed and "Portcullis refused" in text for failed, text in refused), refused
    assert "outside the project" not in refused[0][1]
    assert not (project / "new.txt").exists()
    assert (project / "README.md").exists()
