"""Shared pieces of the browser tests: the real console, a real gateway, Chromium, screenshots.

The console is ``python -m portcullis console --no-browser --port 0`` started as a process with
a private state directory; the tests read the URL it prints and drive Debian's Chromium
(``/usr/bin/chromium``, never a downloaded browser) through Playwright's sync API. Calls that
wait for approval are made by a real SDK client (:class:`SdkClient`, in a session of its own)
through a real ``portcullis run`` gateway, so the console answers the same queue a person would.

Screenshots go to ``build/screenshots`` (``$PORTCULLIS_SCREENSHOTS`` overrides), named
``<test>-<view>-<light|dark>[-phone].png``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError

from tests.e2e.conftest import FIXTURES, TIMEOUT, Gateway

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE = {"width": 375, "height": 740}
# How long Playwright's own waits (expect, click) may take; a bound, never asserted on.
UI_TIMEOUT_MS = 30_000
# How long the console may take to print its URL.
START_TIMEOUT = 60.0
# How long a call's result may take: past the policies' approval timeout (60 s), a held call
# comes back denied, so waiting longer only hides a hung gateway.
RESULT_TIMEOUT = 90.0

_URL_LINE = re.compile(r"^Console: (?P<url>(?P<origin>https?://127\.0\.0\.1:\d+)/\?token=\S+)$")

__all__ = [
    "CHROMIUM",
    "FIXTURES",
    "PHONE",
    "TIMEOUT",
    "UI_TIMEOUT_MS",
    "Console",
    "SdkClient",
    "Workspace",
    "close_tab",
    "login",
    "posting",
    "rug_server",
    "watch_errors",
]


def rug_server(tools: Path) -> list[str]:
    """The rug-pull fixture server, whose tools come from the JSON file ``tools``."""
    return [sys.executable, str(FIXTURES / "rugpull_server.py"), "--tools", str(tools)]


class Workspace:
    """A short private directory (under /tmp: AF_UNIX paths are short) with a gateway helper.

    ``home`` is the ``$PORTCULLIS_HOME`` shared by the gateways, the CLI and the console.
    """

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(dir="/tmp", prefix="pcb-"))
        self.gw = Gateway(self.tmp)
        self.home = self.gw.home

    def policy(self, text: str, name: str = "policy.yaml") -> Path:
        """Write a policy file; return its path."""
        return self.gw.policy(text, name)

    def close(self) -> None:
        """Stop the gateways still running and remove the directory."""
        self.gw.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Console:
    """A running ``portcullis console``: its URL (with the one-time token) and origin."""

    def __init__(self, ws: Workspace, policy: Path, *, log: Path | None = None) -> None:
        self.stderr_path = ws.tmp / f"console-{os.getpid()}-{id(self)}.stderr"
        self._stderr: IO[str] = open(self.stderr_path, "w")  # noqa: SIM115 - closed in stop()
        argv = [sys.executable, "-m", "portcullis", "console", "--no-browser", "--port", "0"]
        argv += ["--policy", str(policy)]
        if log is not None:
            argv += ["--log", str(log)]
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=ws.gw.env(),
            cwd=ws.tmp,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        # Drains stdout for the console's whole life, so that a chatty console never blocks.
        self._reader = threading.Thread(target=self._read, args=(lines,), daemon=True)
        self._reader.start()
        try:
            first = lines.get(timeout=START_TIMEOUT)
        except queue.Empty:
            self.stop(check=False)
            pytest.fail(f"the console printed no URL within {START_TIMEOUT} s:\n{self.stderr()}")
        match = _URL_LINE.match(first.strip())
        if match is None:
            self.stop(check=False)
            pytest.fail(
                f"the console's first line is not `Console: URL`: {first!r}\n{self.stderr()}"
            )
        self.url = match["url"]
        self.origin = match["origin"]
        self.token = self.url.split("token=", 1)[1]

    def _read(self, lines: queue.Queue[str]) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            lines.put(line)
        lines.put("")  # end of output: the console exited

    def stderr(self) -> str:
        """What the console wrote on stderr so far."""
        return self.stderr_path.read_text(errors="replace")

    def stop(self, *, check: bool = True) -> None:
        """SIGTERM; the console must exit 0 (``check``); killed if it does not exit in time."""
        code: int | None = self.proc.poll()
        if code is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                code = None
        self._reader.join(timeout=TIMEOUT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()
        if check:
            assert code == 0, f"the console exited with {code} after SIGTERM:\n{self.stderr()}"


class SdkClient:
    """A real MCP SDK client (tests/browser/sdk_client.py) in front of a real gateway.

    It runs in a session of its own, so the console (pytest's child) may answer its calls.
    """

    def __init__(self, ws: Workspace, gateway_argv: list[str]) -> None:
        self.stderr_path = ws.tmp / f"sdk-{id(self)}.stderr"
        env = ws.gw.env(SDK_CLIENT_ERRLOG=str(self.stderr_path))
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("sdk_client.py")), *gateway_argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ws.tmp,
            text=True,
            start_new_session=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._results: dict[str, dict[str, Any]] = {}
        self._other: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._tags = itertools.count(1)
        self.broken: str | None = None
        ready = self._next()
        if not ready.get("ready"):
            self.close()
            pytest.fail(f"the SDK client did not start: {ready}\n{self.stderr()}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put("")

    def stderr(self) -> str:
        """What the gateway and its server wrote on stderr, and anything else the client said."""
        text = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return text + "".join(self._other)

    def _next(self) -> dict[str, Any]:
        if self.broken is not None:  # later tests of the module fail at once, not one by one
            pytest.fail(f"the SDK client stopped answering earlier: {self.broken}")
        while True:
            try:
                line = self._lines.get(timeout=RESULT_TIMEOUT)
            except queue.Empty:
                self.broken = f"it said nothing for {RESULT_TIMEOUT} s"
                pytest.fail(f"the SDK client {self.broken}\n{self.stderr()}")
            if not line:
                self.broken = "it exited"
                pytest.fail(f"the SDK client exited\n{self.stderr()}")
            try:
                msg: dict[str, Any] = json.loads(line)
            except ValueError:
                self._other.append(line)  # a traceback or a warning: kept for the failure
                continue
            return msg

    def call(self, tool: str, arguments: dict[str, Any] | None = None) -> str:
        """Start a tools/call (it may wait for approval); return the tag of its result."""
        tag = str(next(self._tags))
        assert self.proc.stdin is not None
        command = {"tag": tag, "tool": tool, "arguments": arguments or {}}
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return tag

    def result(self, tag: str) -> dict[str, Any]:
        """Wait (bounded) for the result of the call ``tag``: ``{"is_error", "text"}``."""
        while tag not in self._results:
            msg = self._next()
            self._results[str(msg.get("tag"))] = msg
        result = self._results.pop(tag)
        assert "exception" not in result, f"{result['exception']}\n{self.stderr()}"
        return result

    def has_result(self, tag: str) -> bool:
        """Whether the call ``tag`` has been answered already (without waiting)."""
        with contextlib.suppress(queue.Empty):
            while True:
                line = self._lines.get_nowait()
                if not line:
                    self._lines.put(line)
                    break
                with contextlib.suppress(ValueError):
                    msg = json.loads(line)
                    self._results[str(msg.get("tag"))] = msg
        return tag in self._results

    def close(self) -> None:
        """Hang up (calls still held are abandoned); the client and its gateway exit."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=TIMEOUT)
        self._reader.join(timeout=TIMEOUT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def login(browser: Browser, console: Console, **options: Any) -> BrowserContext:
    """A browser context logged in by opening the console's printed URL (uses the token)."""
    context = browser.new_context(**options)
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    response = page.goto(console.url)
    assert response is not None and response.ok, (
        f"login failed: {response and response.status}\n{console.stderr()}"
    )
    close_tab(page)
    return context


def close_tab(page: Page) -> None:
    """Close a tab without waiting for the browser to confirm it.

    Leaving for about:blank first ends the page's live (SSE) streams; then the tab is closed
    without waiting: Debian's Chromium, newer than the one this Playwright was built against,
    now and then never reports closing a tab that was just navigated by a form POST (303 to a
    page with a live stream), and a plain ``close()`` would wait forever. For the same reason
    the tests check the result of such a POST in a fresh tab rather than reloading (a reload
    there sometimes fails with "Not attached to an active page").
    """
    with contextlib.suppress(PlaywrightError):
        page.goto("about:blank", timeout=5_000)
    with contextlib.suppress(PlaywrightError):
        page.close(run_before_unload=True)


def posting(page: Page, act: Callable[[], None]) -> None:
    """Run ``act`` (a click, a key press) and check the POST it makes is accepted.

    A refused answer (403 …) fails at once with the console's reason, instead of leaving the
    call held until the approval times out.
    """
    with page.expect_response(lambda r: r.request.method == "POST") as info:
        act()
    response = info.value
    if response.status >= 400:
        said = " ".join(re.sub(r"<[^>]*>", " ", response.text()).split())[:300]
        sent = {
            k: v
            for k, v in response.request.all_headers().items()
            if k in ("host", "origin", "referer", "sec-fetch-site", "sec-fetch-mode", "hx-request")
        }
        pytest.fail(
            f"the console refused POST {response.url}: {response.status} {said!r}; sent {sent}",
            pytrace=False,
        )


def watch_errors(page: Page) -> list[str]:
    """Collect the page's console errors and uncaught exceptions (CSP violations among them)."""
    errors: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        # The browser asks for /favicon.ico on its own; a page never links it.
        if msg.type == "error" and not msg.location.get("url", "").endswith("/favicon.ico"):
            errors.append(f"{msg.text} ({msg.location.get('url')})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    return errors


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, one for this directory; skipped (with the reason) when missing.

    Package-scoped, not session-scoped: Playwright's sync API keeps an asyncio loop running in
    the main thread until it stops, and the async tests of the directories after this one
    cannot start their own loop while it runs.
    """
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def context(browser: Browser, console: Console) -> Iterator[BrowserContext]:
    """A browser context logged in to the module's ``console`` (each module defines it)."""
    ctx = login(browser, console)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A fresh tab in the module's logged-in ``context``."""
    tab = context.new_page()
    yield tab
    close_tab(tab)


def _screenshot_dir() -> Path:
    where = os.environ.get("PORTCULLIS_SCREENSHOTS")
    path = Path(where) if where else REPO / "build" / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


Shoot = Callable[..., list[Path]]


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Shoot:
    """``screenshot(page, view, phone=False)``: full-page PNGs of ``page`` in light and dark.

    With ``phone``, also at 375 x 740, after checking that the page does not scroll sideways
    there. Returns the paths written.
    """
    test = re.sub(r"[^\w.-]+", "_", request.node.name).strip("_")

    def shoot(page: Page, view: str, *, phone: bool = False) -> list[Path]:
        directory = _screenshot_dir()
        written: list[Path] = []
        sizes: list[tuple[str, dict[str, int] | None]] = [("", None)]
        if phone:
            sizes.append(("-phone", PHONE))
        original = page.viewport_size
        for suffix, size in sizes:
            if size is not None:
                page.set_viewport_size(size)
                # Usable on a phone: wide content scrolls inside its own box, never the page.
                wide = page.evaluate("() => document.documentElement.scrollWidth")
                assert wide <= size["width"], f"{view}: the page is {wide} px wide on a phone"
            for scheme in ("light", "dark"):
                page.emulate_media(color_scheme=scheme)
                path = directory / f"{test}-{view}-{scheme}{suffix}.png"
                page.screenshot(path=str(path), full_page=True)
                written.append(path)
        page.emulate_media(color_scheme="light")
        if original is not None:
            page.set_viewport_size(original)
        return written

    return shoot
