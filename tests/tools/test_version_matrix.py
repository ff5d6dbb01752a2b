"""The asyncio version matrix: each probe, under each installed Python, matches its cell.

``docs/design/version_matrix.json`` is the single source of the matrix: the
docs page renders it as its table, and this test runs every probe in
``tests/tools/version_probes/`` under the interpreter of every column (3.11 is the
one running pytest when it is 3.11; the others come from pyenv or PATH) and
compares the probe's outcome with the cell for that exact patch version. So
the page cannot claim what a probe does not show. A Python that is not
installed is skipped, with the places it was looked for.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import NamedTuple, TypedDict

import pytest

ROOT = Path(__file__).resolve().parents[2]
MATRIX_FILE = ROOT / "docs" / "design" / "version_matrix.json"
PROBES = Path(__file__).resolve().parent / "version_probes"


class Row(TypedDict):
    probe: str
    behaviour: str
    # Per column, [first version, outcome] pairs: each outcome holds until the next.
    cells: dict[str, list[list[str]]]
    echochat: str
    sources: list[list[str]]


class Matrix(TypedDict):
    about: str
    columns: list[str]
    rows: list[Row]


class Interpreter(NamedTuple):
    executable: str
    version: str  # e.g. "3.12.1"


def load_matrix() -> Matrix:
    matrix: Matrix = json.loads(MATRIX_FILE.read_text())
    return matrix


MATRIX = load_matrix()


def version_key(version: str) -> tuple[int, ...]:
    """(3, 12, 1) for "3.12.1"; a pre-release such as "3.13.0rc1" counts as its release."""
    return tuple(int(re.sub(r"\D.*", "", part) or 0) for part in version.split("."))


def expected_outcome(row: Row, version: str) -> str:
    """The outcome the matrix promises for ``version``, e.g. "3.12.1"."""
    minor = ".".join(version.split(".")[:2])
    outcome = None
    for first, cell in row["cells"][minor]:
        if version_key(first) <= version_key(version):
            outcome = cell
    assert outcome is not None, f"{row['probe']}: no cell covers Python {version}"
    return outcome


def pyenv_root() -> Path:
    pyenv = shutil.which("pyenv")
    if pyenv is not None:
        found = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)
        if found.returncode == 0 and found.stdout.strip():
            return Path(found.stdout.strip())
    return Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))


def candidates(minor: str) -> list[str]:
    """Executables that may be Python ``minor``, best first."""
    found: list[str] = []
    if f"{sys.version_info.major}.{sys.version_info.minor}" == minor:
        found.append(sys.executable)
    # Released patch versions only (skip e.g. 3.13-dev or 3.13.0t), newest first.
    pyenv_versions = [
        path
        for path in (pyenv_root() / "versions").glob(f"{minor}.*")
        if path.name.replace(".", "").isdigit() and (path / "bin" / "python").exists()
    ]
    pyenv_versions.sort(key=lambda path: version_key(path.name), reverse=True)
    found += [str(path / "bin" / "python") for path in pyenv_versions]
    on_path = shutil.which(f"python{minor}")
    if on_path is not None:
        found.append(on_path)
    return found


@cache
def find_interpreter(minor: str) -> Interpreter | str:
    """The interpreter for column ``minor``, or why there is none."""
    tried = candidates(minor)
    for executable in tried:
        # A pyenv shim exists for versions pyenv does not select, so run it to be sure.
        ran = subprocess.run(
            [executable, "-I", "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            check=False,
        )
        version = ran.stdout.strip()
        if ran.returncode == 0 and version.startswith(f"{minor}."):
            return Interpreter(executable, version)
    looked = f"{pyenv_root() / 'versions'}/{minor}.*, python{minor} on PATH"
    return f"Python {minor} not installed: looked for {looked}; tried {tried or 'nothing found'}"


def run_probe(interpreter: Interpreter, probe: str) -> dict[str, object]:
    # -I: the probes need only the standard library; keep site-packages and
    # PYTHON* variables from changing what they observe.
    ran = subprocess.run(
        [interpreter.executable, "-I", str(PROBES / f"{probe}.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, f"{probe} failed on {interpreter.version}:\n{ran.stderr}"
    # Anything on stderr (a logged "Exception in callback", a traceback) means
    # the probe itself left something behind.
    assert ran.stderr == "", f"{probe} wrote to stderr on {interpreter.version}:\n{ran.stderr}"
    result: dict[str, object] = json.loads(ran.stdout)
    return result


def column(minor: str) -> object:
    """One column of the matrix as a test parameter: skipped, saying why, when the
    interpreter is missing (decided when the tests are collected)."""
    interpreter = find_interpreter(minor)
    missing = isinstance(interpreter, str)
    reason = interpreter if isinstance(interpreter, str) else ""
    return pytest.param(minor, id=minor, marks=pytest.mark.skipif(missing, reason=reason))


@pytest.mark.parametrize("minor", [column(minor) for minor in MATRIX["columns"]])
@pytest.mark.parametrize("row", MATRIX["rows"], ids=[row["probe"] for row in MATRIX["rows"]])
def test_probe_matches_its_cell(row: Row, minor: str) -> None:
    interpreter = find_interpreter(minor)
    assert not isinstance(interpreter, str), interpreter  # Skipped at collection otherwise.
    result = run_probe(interpreter, row["probe"])
    expected = expected_outcome(row, interpreter.version)
    assert result["outcome"] == expected, (
        f"{row['probe']} on Python {interpreter.version} ({interpreter.executable}): "
        f"the matrix says {expected!r}, the probe saw {result}"
    )


def test_every_probe_has_a_row_and_every_row_covers_every_column() -> None:
    rows = {row["probe"]: row for row in MATRIX["rows"]}
    assert sorted(rows) == sorted(path.stem for path in PROBES.glob("*.py"))
    for row in MATRIX["rows"]:
        assert sorted(row["cells"]) == sorted(MATRIX["columns"]), row["probe"]
        assert row["sources"], f"{row['probe']} cites no source"
        for minor, cell in row["cells"].items():
            firsts = [first for first, _ in cell]
            # Ranges start at the column's first release and go up.
            assert firsts[0] == f"{minor}.0", (row["probe"], minor)
            assert firsts == sorted(firsts, key=version_key), (row["probe"], minor)
            assert all(first.startswith(f"{minor}.") for first in firsts), (row["probe"], minor)


def test_a_cell_holds_from_its_version_until_the_next() -> None:
    row: Row = {
        "probe": "example",
        "behaviour": "",
        "cells": {"3.12": [["3.12.0", "broken"], ["3.12.9", "fixed"]]},
        "echochat": "",
        "sources": [],
    }
    assert [expected_outcome(row, v) for v in ("3.12.0", "3.12.8", "3.12.9", "3.12.10")] == [
        "broken",
        "broken",
        "fixed",
        "fixed",
    ]
