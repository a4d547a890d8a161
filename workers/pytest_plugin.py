"""A pytest plugin the worker loads with ``-p workers.pytest_plugin``: one JSON line per finished test.

It runs inside the test process, so it imports nothing from Anvil (standard library and pytest only)
and does nothing unless ``--anvil-report=PATH`` is given. Each line is written and flushed the moment
its event happens, so the worker can tail the file while pytest is still running:

- ``{"event": "session", ...}`` once, when the session starts (proves the plugin was active);
- ``{"event": "start", "nodeid": ...}`` when a test item starts (tells which test a timeout hit);
- ``{"event": "item", "nodeid": ..., "status": ...}`` when an item has run setup, call and teardown;
- ``{"event": "collect", "nodeid": ..., "status": "error" | "skipped"}`` for a collector that failed
  (syntax error, import error) or skipped (module-level ``pytest.skip``);
- ``{"event": "finish", "exitstatus": ...}`` when the session ends.

An item's ``status`` is ``error`` when its setup or teardown failed (even if the call failed too),
else the category pytest itself gave the item (passed, failed, skipped, xfailed, xpassed).
``categories`` lists pytest's category of every phase report, so the worker can add up the same
counts pytest's own summary line shows (where a test failing in call and in teardown is "1 failed,
1 error").
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections import deque
from typing import IO, Any

import pytest

KNOWN = ("passed", "failed", "skipped", "xfailed", "xpassed", "error")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("anvil", "Anvil step recording")
    group.addoption(
        "--anvil-report",
        metavar="PATH",
        default=None,
        help="append one JSON line per finished test item to PATH",
    )
    group.addoption(
        "--anvil-text-cap",
        metavar="CHARS",
        type=int,
        default=64 * 1024,
        help="keep at most CHARS characters of each test's failure text and captured output",
    )
    group.addoption(
        "--anvil-select",
        metavar="PATH",
        default=None,
        help="run only the tests whose node ids (or files) PATH lists, one per line; deselect the rest",
    )
    group.addoption(
        "--anvil-handout",
        metavar="SOCKET",
        default=None,
        help="run the collected tests the worker hands out on the Unix socket SOCKET, in its order",
    )
    group.addoption(
        "--anvil-collected",
        metavar="PATH",
        default=None,
        help="write the node id of every collected (and selected) test to PATH, one per line",
    )


def pytest_configure(config: pytest.Config) -> None:
    listed = config.getoption("anvil_select")
    if listed:  # in every process that collects (pytest-xdist's workers too)
        with open(listed, encoding="utf-8") as lines:
            config.pluginmanager.register(Selector({line.rstrip("\n") for line in lines if line.strip()}))
    handout = config.getoption("anvil_handout")
    if handout and not hasattr(config, "workerinput"):
        config.pluginmanager.register(Handout(handout), "anvil-handout")
    collected = config.getoption("anvil_collected")
    if collected and not hasattr(config, "workerinput"):
        config.pluginmanager.register(Lister(collected), "anvil-lister")
    path = config.getoption("anvil_report")
    # Under pytest-xdist only the controller records: worker reports reach it through the same hooks.
    if path and not hasattr(config, "workerinput"):
        recorder = Recorder(config, path, max(int(config.getoption("anvil_text_cap")), 256))
        config.pluginmanager.register(recorder, "anvil-recorder")


class Selector:
    """Keeps the selected tests: a test whose node id (or whose file) is listed; deselects the rest."""

    def __init__(self, wanted: set[str]) -> None:
        self.wanted = wanted

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        keep: list[pytest.Item] = []
        drop: list[pytest.Item] = []
        for item in items:
            chosen = item.nodeid in self.wanted or item.nodeid.split("::", 1)[0] in self.wanted
            (keep if chosen else drop).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep


class Handout:
    """Runs the tests the worker hands out (a shard taking its tests as it goes), not all collected.

    pytest's own run loop, with the next test asked of the worker before each one is run: the
    next item is what tells pytest which fixtures to tear down after a test.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.lines: IO[str] | None = None
        self.queue: deque[str] = deque()  # handed out, not run yet (the worker hands a few at once)

    def ask(self) -> list[str]:
        if self.lines is None:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.connect(self.path)
            self.lines = conn.makefile("rw", encoding="utf-8", newline="\n")
        try:
            self.lines.write("next\n")
            self.lines.flush()
            answer = self.lines.readline().rstrip("\n")
        except OSError:
            return []  # the worker is gone: stop here
        return answer.split("\t") if answer else []

    def next_item(self, items: dict[str, pytest.Item]) -> pytest.Item | None:
        while True:
            if not self.queue:
                self.queue.extend(self.ask())
                if not self.queue:
                    return None
            key = self.queue.popleft()
            if key in items:
                return items[key]
            # A test of the plan this process did not collect (its file changed since): not run.

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        if session.testsfailed and not session.config.option.continue_on_collection_errors:
            raise session.Interrupted(f"{session.testsfailed} errors during collection")
        if session.config.option.collectonly:
            return True
        items = {item.nodeid: item for item in session.items}
        current = self.next_item(items)
        while current is not None:
            following = self.next_item(items)
            current.config.hook.pytest_runtest_protocol(item=current, nextitem=following)
            if session.shouldfail:
                raise session.Failed(session.shouldfail)
            if session.shouldstop:
                raise session.Interrupted(session.shouldstop)
            current = following
        return True


class Lister:
    """Writes the node ids of the tests collected and kept (a sharded run's plan is made of them)."""

    def __init__(self, path: str) -> None:
        self.path = path

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        with open(self.path, "w", encoding="utf-8") as out:
            out.writelines(f"{item.nodeid}\n" for item in session.items)


def capped(text: str, cap: int) -> tuple[str, bool]:
    """``text`` cut to about ``cap`` characters, keeping its head and its tail (where the error is)."""
    if len(text) <= cap:
        return text, False
    half = cap // 2
    dropped = len(text) - 2 * half
    return f"{text[:half]}\n... [{dropped} characters truncated] ...\n{text[-half:]}", True


class Recorder:
    def __init__(self, config: pytest.Config, path: str, cap: int) -> None:
        self.config = config
        self.cap = cap
        self.out: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115  (closed at unconfigure)
        self.reports: dict[str, list[pytest.TestReport]] = {}
        self.started: dict[str, float] = {}
        self.markers: dict[str, list[str]] = {}

    def write(self, record: dict[str, Any]) -> None:
        self.out.write(json.dumps(_storable(record), default=str) + "\n")
        self.out.flush()

    def category(self, report: pytest.TestReport | pytest.CollectReport) -> str:
        # The same hook pytest's terminal summary counts with (the skipping plugin adds xfailed/xpassed).
        status = self.config.hook.pytest_report_teststatus(report=report, config=self.config)
        return str(status[0]) if status else ""

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.write({"event": "session", "pytest": pytest.__version__, "pid": os.getpid(), "at": time.time()})

    def pytest_itemcollected(self, item: pytest.Item) -> None:
        self.markers[item.nodeid] = sorted({mark.name for mark in item.iter_markers()})

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.passed:
            return
        if report.failed:
            status, text = "error", report.longreprtext
        else:
            status, text = "skipped", _skip_reason(report)
        error, truncated = capped(text, self.cap)
        self.write(
            {
                "event": "collect",
                "nodeid": report.nodeid,
                "status": status,
                "categories": [status],
                "at": time.time(),
                "error": error,
                "error_truncated": truncated,
            }
        )

    def pytest_runtest_logstart(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        self.started[nodeid] = time.time()
        self.reports[nodeid] = []
        self.write({"event": "start", "nodeid": nodeid, "at": self.started[nodeid]})

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.reports.setdefault(report.nodeid, []).append(report)

    def pytest_runtest_logfinish(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        reports = self.reports.pop(nodeid, [])
        finished = time.time()
        categories = [c for c in (self.category(r) for r in reports) if c]
        phases = {r.when: self.category(r) or r.outcome for r in reports}
        if "error" in categories:
            status = "error"
        else:
            known = [c for c in categories if c in KNOWN]
            status = known[0] if known else _fallback(reports)
        error, error_truncated = capped(_failure_text(reports), self.cap)
        output, output_truncated = capped(_captured(reports), self.cap)
        record: dict[str, Any] = {
            "event": "item",
            "nodeid": nodeid,
            "status": status,
            "categories": categories,
            "phases": phases,
            "started": self.started.pop(nodeid, finished),
            "finished": finished,
            "duration": sum(r.duration for r in reports),
            "error": error or None,
            "error_truncated": error_truncated,
            "output": output or None,
            "output_truncated": output_truncated,
            "location": list(location),
            "markers": self.markers.get(nodeid, []),
        }
        message = next((m for m in map(_crash_message, reports) if m), None)
        if message:
            record["message"] = message[:1000]
        xfail = next((r.wasxfail for r in reports if hasattr(r, "wasxfail")), None)
        if xfail is not None:
            record["xfail_reason"] = xfail
        self.write(record)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.write({"event": "finish", "exitstatus": int(exitstatus), "at": time.time()})

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.out.close()


def _storable(value: Any) -> Any:
    """``value`` with its text storable in PostgreSQL: no NUL characters, no lone surrogates."""
    if isinstance(value, str):
        return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {key: _storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(item) for item in value]
    return value


def _fallback(reports: list[pytest.TestReport]) -> str:
    # A third-party category we do not know (e.g. "rerun"): judge by the plain outcomes.
    outcomes = {r.outcome for r in reports}
    if "failed" in outcomes:
        return "failed"
    return "skipped" if "skipped" in outcomes else "passed"


def _failure_text(reports: list[pytest.TestReport]) -> str:
    failed = [r for r in reports if r.failed]
    if failed:
        if len(failed) == 1:
            return failed[0].longreprtext
        return "\n\n".join(f"----- {r.when} -----\n{r.longreprtext}" for r in failed)
    skipped = next((r for r in reports if r.skipped), None)
    if skipped is not None:
        reason = getattr(skipped, "wasxfail", None)
        return f"xfail: {reason}" if reason is not None else _skip_reason(skipped)
    return ""


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    # A skip's longrepr is (path, line, "Skipped: reason").
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        return str(report.longrepr[2])
    return report.longreprtext


def _captured(reports: list[pytest.TestReport]) -> str:
    # Each phase's report repeats the sections of the phases before it: the last one holds them all.
    if not reports:
        return ""
    return "\n".join(f"----- {title} -----\n{content}" for title, content in reports[-1].sections)


def _crash_message(report: pytest.TestReport) -> str | None:
    if not report.failed:
        return None
    crash = getattr(report.longrepr, "reprcrash", None)
    message = getattr(crash, "message", None)
    if message:
        return f"{report.when}: {message}" if report.when != "call" else str(message)
    text = report.longreprtext.strip()
    return text.splitlines()[-1] if text else None
