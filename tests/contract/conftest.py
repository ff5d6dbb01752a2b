"""The contract suite: every test in this directory runs against every implementation.

``make compare`` runs this directory as it is, so a test added here is part of
the contract without a list to keep; this hook makes sure it is also
parametrised over the implementations (through the ``impl`` fixture).
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.parent == HERE and "impl" not in getattr(item, "fixturenames", ()):
            raise pytest.UsageError(
                f"{item.nodeid} does not run against every implementation: "
                "give it the impl fixture (directly or through start_server, chat_server ...)"
            )
