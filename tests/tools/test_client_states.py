"""The client-state diagram on the core design page covers every way the core ends a connection.

``docs/_ext/clientstates.py`` finds the diagram by driving the real core with
a fixed alphabet of events. An ending that no event reaches would be missing
from the page without anyone noticing, so this test reads every farewell the
core can write (each literal ``_error_line`` text in ``chat.py``) and requires
the explored diagram to reach each of them.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from types import ModuleType

import echochat.core.chat

DOCS_EXT = Path(__file__).resolve().parents[2] / "docs" / "_ext"


def clientstates() -> ModuleType:
    """The docs extension's explorer; docs/_ext is on Sphinx's path, not on pytest's."""
    if str(DOCS_EXT) not in sys.path:
        sys.path.append(str(DOCS_EXT))
    return importlib.import_module("clientstates")


def farewells_in_the_core() -> set[str]:
    """The reasons of every literal farewell: "Closing link (X)" gives X, any other text itself."""
    core = Path(echochat.core.chat.__file__).parent
    source = "".join(path.read_text() for path in sorted(core.rglob("*.py")))
    texts = re.findall(r'_error_line\("([^"{}]*)"\)', source)
    return {re.sub(r"^Closing link \((.*)\)$", r"\1", text) for text in texts}


def test_the_diagram_reaches_every_farewell_the_core_can_send() -> None:
    states = clientstates()
    life = states.explore()
    reached = {edge.target for edge in life.edges}
    reached |= set(life.everywhere.values())
    reached |= {target for _, target in states.connect_outcomes()}
    endings = {target.removeprefix("closed: ") for target in reached}
    expected = farewells_in_the_core()
    assert expected, "no farewell found in the core: the pattern no longer matches it"
    assert expected <= endings, f"not reached by any event: {sorted(expected - endings)}"
