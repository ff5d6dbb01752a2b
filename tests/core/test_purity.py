"""The core stays sans-I/O: no event loop, socket or selector module anywhere in it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import echochat.core

FORBIDDEN = frozenset({"asyncio", "trio", "anyio", "socket", "selectors", "select", "ssl"})
CORE_DIR = Path(echochat.core.__file__).parent
REPO = CORE_DIR.parents[2]


def forbidden_imports(source: str) -> list[str]:
    """Forbidden modules imported by ``source``: ``import``, ``from`` or a literal import call."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Name) and node.func.id == "__import__")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
        ):
            names = [node.args[0].value]
        found += [name for name in names if name.split(".")[0] in FORBIDDEN]
    return found


def core_files() -> list[Path]:
    return sorted(CORE_DIR.rglob("*.py"))


def test_core_files_are_found() -> None:
    names = {path.name for path in core_files()}
    expected = {"chat.py", "framing.py", "message.py", "effects.py", "limits.py", "echo.py"}
    assert expected <= names, names


@pytest.mark.parametrize("path", core_files(), ids=lambda path: path.name)
def test_core_module_imports_no_io_library(path: Path) -> None:
    assert forbidden_imports(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "snippet",
    [
        "import socket",
        "import os, ssl",
        "import asyncio.streams",
        "from trio import lowlevel",
        "from anyio.abc import SocketStream",
        "import selectors as sel",
        "def f():\n    import select\n",
        "if False:\n    from asyncio import sleep\n",
        "__import__('socket')",
        "importlib.import_module('trio')",
    ],
)
def test_scanner_flags_forbidden_imports(snippet: str) -> None:
    assert forbidden_imports(snippet) != []


@pytest.mark.parametrize(
    "snippet",
    ["import socketserver_free_name", "from . import socket", "import os", "x = 'import socket'"],
)
def test_scanner_ignores_lookalikes(snippet: str) -> None:
    assert forbidden_imports(snippet) == []


def test_importing_the_core_loads_no_io_library() -> None:
    code = (
        "import sys, echochat.core\n"
        f"print(sorted(m for m in {sorted(FORBIDDEN)!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert result.stdout.strip() == "[]"


def test_import_linter_contracts_are_kept() -> None:
    # lint-imports reads the contracts from pyproject.toml in the working directory.
    code = (
        "import sys; from importlinter.cli import lint_imports_command; "
        "sys.exit(lint_imports_command())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "--no-logo", "--no-cache"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "0 broken" in output, output
