"""A pytest plugin that reports each contract test as it finishes, for ``make compare``'s bars.

``contract.py`` runs pytest with ``-p echochat.bench.contract_plugin`` and the
write end of a pipe in ``ECHOCHAT_CONTRACT_EVENTS_FD``; this writes one JSON
line there once the tests are collected (the id and implementation of each)
and one per finished test (its id, implementation, outcome and seconds). Without the variable it
does nothing. The implementation is the ``impl`` fixture's parameter (every
contract test has one, tests/conftest.py), not parsed from the test's id,
where it may stand first or last (``[asyncio-SIGINT]``, ``[SIGINT-asyncio]``).
"""

from __future__ import annotations

import json
import os
from typing import IO

import pytest

EVENTS_FD = "ECHOCHAT_CONTRACT_EVENTS_FD"

_events: IO[str] | None = None
_impl: dict[str, str | None] = {}  # test id -> implementation
_seconds: dict[str, float] = {}  # test id -> setup, call and teardown so far
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
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        _impl[item.nodeid] = None if callspec is None else callspec.params.get("impl")
    _emit({"collected": list(_impl.items())})


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Setup, call and teardown each report; the test's outcome is known after teardown."""
    _seconds[report.nodeid] = _seconds.get(report.nodeid, 0.0) + report.duration
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
        _emit(
            {
                "test": report.nodeid,
                "impl": _impl.get(report.nodeid),
                "outcome": outcome,
                "seconds": _seconds[report.nodeid],
            }
        )


def _emit(event: dict[str, object]) -> None:
    if _events is not None:
        _events.write(json.dumps(event) + "\n")
