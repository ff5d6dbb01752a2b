"""A pytest plugin that reports each contract test as it finishes, for ``make compare``'s bars.

``contract.py`` runs pytest with ``-p echochat.bench.contract_plugin`` and the
write end of a pipe in ``ECHOCHAT_CONTRACT_EVENTS_FD``; this writes one JSON
line there once the tests are collected (their ids) and one per finished test
(its id and outcome). Without the variable it does nothing.
"""

from __future__ import annotations

import json
import os
from typing import IO

import pytest

EVENTS_FD = "ECHOCHAT_CONTRACT_EVENTS_FD"

_events: IO[str] | None = None
_failed: set[str] = set()
_skipped: set[str] = set()


def pytest_configure(config: pytest.Config) -> None:
    global _events  # noqa: PLW0603  (one pipe per pytest process)
    fd = os.environ.get(EVENTS_FD)
    if fd is not None and _events is None:
        # Not for the servers the tests start: only pytest writes here, and
        # the parent sees end-of-file when pytest exits.
        os.set_inheritable(int(fd), False)
        _events = os.fdopen(int(fd), "w", buffering=1)


def pytest_collection_finish(session: pytest.Session) -> None:
    _emit({"collected": [item.nodeid for item in session.items]})


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Setup, call and teardown each report; the test's outcome is known after teardown."""
    if report.failed:
        _failed.add(report.nodeid)
    elif report.skipped:
        _skipped.add(report.nodeid)
    if report.when == "teardown":
        outcome = (
            "failed"
            if report.nodeid in _failed
            else "skipped"
            if report.nodeid in _skipped
            else "passed"
        )
        _emit({"test": report.nodeid, "outcome": outcome})


def _emit(event: dict[str, object]) -> None:
    if _events is not None:
        _events.write(json.dumps(event) + "\n")
