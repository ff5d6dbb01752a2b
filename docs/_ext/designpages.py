"""Directives and a role for the design pages (docs/design/), computed from the repository at
build time, so what they show cannot drift from the code, the tests or the measurements.

``version-matrix PATH``
    The asyncio version matrix (docs/design/version_matrix.json) as a table, then what
    echochat does about each row and its sources. tests/tools/test_version_matrix.py runs the
    probe of every row under every installed Python and checks it against the same file.
``client-states``
    A chat client's states and transitions, found by driving the real core
    (``clientstates.explore``), drawn as SVG, then the same as a table of events.
``adapter-sizes``
    Line counts of the core, the hub and each adapter, and how many lines differ
    between adapters.
``experiment-table NAME``
    docs/figures/NAME.json, as written by ``echochat experiment NAME``, as a table.
Role ``figure``
    One number from such a file: ``{figure}`memory | asyncio-nodrain | peak RSS growth MiB```.
"""

from __future__ import annotations

import ast
import difflib
import io
import json
import tokenize
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import clientstates
from claims import Claim, note_claim, resolve_test
from docutils import nodes
from repofiles import make_repo_link, repo_root
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective, SphinxRole
from sphinx.util.typing import ExtensionMetadata

from echochat.registry import ADAPTERS

PROBES = PurePosixPath("tests/tools/version_probes")
MATRIX_TEST = "tests/tools/test_version_matrix.py::test_probe_matches_its_cell"
CORE = PurePosixPath("shared/echochat/core")
IMPLS = PurePosixPath("impls/echochat")
# The adapter-independent glue between the core and every adapter.
SHARED_GLUE = ("hub.py", "options.py", "registry.py")


def inline(text: str) -> list[nodes.Node]:
    """Text with `code` spans, as the JSON data writes them."""
    parts = text.split("`")
    if len(parts) % 2 == 0:
        raise ValueError(f"unbalanced backquotes in {text!r}")
    return [
        nodes.literal(part, part) if i % 2 else nodes.Text(part)
        for i, part in enumerate(parts)
        if part
    ]


def paragraph(*children: nodes.Node | str) -> nodes.paragraph:
    node = nodes.paragraph()
    for child in children:
        node += nodes.Text(child) if isinstance(child, str) else child
    return node


Cell = nodes.Node | str | list[nodes.Node]


def table(
    headers: list[str], rows: list[list[Cell]], classes: list[str] | None = None
) -> nodes.table:
    """A docutils table; a cell is text, a node, or a list of body nodes."""

    def entry(cell: Cell) -> nodes.entry:
        node = nodes.entry()
        if isinstance(cell, list):
            node.extend(cell)
        elif isinstance(cell, str):
            node += paragraph(cell)
        else:
            node += cell
        return node

    group = nodes.tgroup(cols=len(headers))
    for _ in headers:
        group += nodes.colspec(colwidth=1)
    head = nodes.thead()
    head += nodes.row("", *(entry(header) for header in headers))
    body = nodes.tbody()
    for row in rows:
        body += nodes.row("", *(entry(cell) for cell in row))
    group += head
    group += body
    return nodes.table("", group, classes=classes or [])


def bullet_list(items: list[list[nodes.Node]]) -> nodes.bullet_list:
    listing = nodes.bullet_list()
    for children in items:
        listing += nodes.list_item("", paragraph(*children))
    return listing


def link(text: str, url: str) -> nodes.reference:
    return nodes.reference(text, text, refuri=url)


# -- The version matrix ------------------------------------------------------------------------


def previous_release(version: str) -> str:
    major, minor, patch = version.split(".")
    return f"{major}.{minor}.{int(patch) - 1}"


def matrix_cell(ranges: list[list[str]]) -> list[nodes.Node]:
    """One column of a row: an outcome per range of patch releases."""
    if len(ranges) == 1:
        return [paragraph(ranges[0][1])]
    lines = []
    for (first, outcome), following in zip(ranges, [*ranges[1:], None], strict=True):
        span = f"{first}\N{EN DASH}{previous_release(following[0])}" if following else f"{first}+"
        lines.append([nodes.strong(span, span), nodes.Text(f": {outcome}")])
    return [paragraph(*line) for line in lines]


class VersionMatrix(SphinxDirective):
    """The version matrix from its JSON file (an argument relative to the page)."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        _, path = self.env.relfn2path(self.arguments[0], self.env.docname)
        self.env.note_dependency(path)
        matrix = json.loads(Path(path).read_text())
        columns: list[str] = matrix["columns"]
        rows: list[list[Cell]] = []
        notes = nodes.definition_list()
        for row in matrix["rows"]:
            probe = PROBES / f"{row['probe']}.py"
            if not (repo_root(self.env) / probe).exists():
                raise self.error(f"version-matrix: {probe} does not exist")
            anchor = f"matrix-{row['probe'].replace('_', '-')}"
            described = paragraph(*inline(row["behaviour"]))
            described["ids"].append(anchor)
            behaviour: list[nodes.Node] = [
                described,
                paragraph(
                    nodes.Text("probe: "),
                    make_repo_link(
                        self.env, probe, children=[nodes.literal(probe.name, probe.name)]
                    ),
                ),
            ]
            rows.append([behaviour, *(matrix_cell(row["cells"][column]) for column in columns)])
            self.note_row_claim(row, columns, anchor)
            item = nodes.definition_list_item()
            item += nodes.term("", "", *inline(row["behaviour"]))
            sources: list[nodes.Node] = [nodes.Text("Sources: ")]
            for i, (title, url) in enumerate(row["sources"]):
                if i:
                    sources.append(nodes.Text("; "))
                sources.append(link(title, url))
            item += nodes.definition("", paragraph(*inline(row["echochat"])), paragraph(*sources))
            notes += item
        headers = ["Behaviour", *(f"Python {column}" for column in columns)]
        return [table(headers, rows, ["version-matrix"]), notes]

    def note_row_claim(self, row: dict[str, Any], columns: list[str], anchor: str) -> None:
        """Each row is a claim, proved by test_version_matrix.py running its probe."""
        node_id = f"{MATRIX_TEST}[{row['probe']}]"
        test = resolve_test(repo_root(self.env), node_id)
        if isinstance(test, str):
            raise self.error(f"version-matrix: {test}")
        outcomes = "; ".join(
            f"{first}+: {outcome}" for column in columns for first, outcome in row["cells"][column]
        )
        text = f"{row['behaviour'].replace('`', '')}: {outcomes}"
        sources = [f"{title} <{url}>" for title, url in row["sources"]]
        # Its section is filled in once the page is read (claims.collect_claims).
        claim = Claim(self.env.docname, anchor, "", text, [test], sources)
        note_claim(self.env, claim)


# -- The client's states -----------------------------------------------------------------------


class ClientStates(SphinxDirective):
    """The states a chat client goes through, found on the real core at build time."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        for path in sorted((repo_root(self.env) / CORE).glob("*.py")):
            self.env.note_dependency(str(path))
        life = clientstates.explore()
        outcomes = clientstates.connect_outcomes()
        figure = nodes.raw(
            "",
            '<div class="client-states-figure" style="overflow-x:auto">'
            f"{clientstates.svg(life, outcomes)}</div>",
            format="html",
        )
        headers = ["Event", *life.live]
        rows: list[list[Cell]] = []
        for event, results in life.table.items():
            cells: list[Cell] = []
            for state in life.live:
                result = results[state]
                if not result:
                    cells.append("does not apply")
                elif result == state:
                    cells.append("stays")
                else:
                    cells.append(result)
            rows.append([event, *cells])
        commands = paragraph(
            nodes.Text("Before registration a client may send only "),
            *joined([nodes.literal(c, c) for c in life.before_registration]),
            nodes.Text("; anything else gets 451. Registered clients may send "),
            *joined([nodes.literal(c, c) for c in life.commands]),
            nodes.Text("."),
        )
        return [figure, table(headers, rows, ["client-states-table"]), commands]


def joined(items: list[nodes.Node], separator: str = ", ") -> list[nodes.Node]:
    result: list[nodes.Node] = []
    for i, item in enumerate(items):
        if i:
            result.append(nodes.Text(separator))
        result.append(item)
    return result


# -- Adapter sizes -----------------------------------------------------------------------------


def line_counts(path: Path) -> tuple[int, int]:
    """(all lines, code lines): code lines have a token that is not a comment or a docstring."""
    text = path.read_text()
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                docstrings.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    code: set[int] = set()
    skipped = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type not in skipped and token.type != tokenize.ENDMARKER:
            code.update(range(token.start[0], token.end[0] + 1))
    return len(text.splitlines()), len(code - docstrings)


def changed_lines(old: Path, new: Path) -> int:
    """Lines that ``diff`` marks + or - between two files."""
    diff = difflib.unified_diff(old.read_text().splitlines(), new.read_text().splitlines())
    return sum(1 for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---")))


class AdapterSizes(SphinxDirective):
    """How big the core, the shared glue and each adapter are, counted now."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        root = repo_root(self.env)
        packages = {adapter.key: IMPLS / adapter.package for adapter in ADAPTERS}
        names = sorted(
            {path.name for package in packages.values() for path in (root / package).glob("*.py")}
            - {"__init__.py"}
        )

        def count(paths: list[PurePosixPath]) -> str:
            """ "all (code)" lines of ``paths`` together."""
            total = code = 0
            for path in paths:
                self.env.note_dependency(str(root / path))
                lines, code_lines = line_counts(root / path)
                total += lines
                code += code_lines
            return f"{total} ({code})"

        rows: list[list[Cell]] = []
        for label, package in packages.items():
            present = [package / name for name in names if (root / package / name).exists()]
            cells: list[Cell] = [
                count([package / name]) if package / name in present else "\N{EM DASH}"
                for name in names
            ]
            title = paragraph(nodes.Text(f"{label}: "), make_repo_link(self.env, package))
            rows.append([title, *cells, count(present)])
        core = sorted(
            PurePosixPath(path.relative_to(root).as_posix()) for path in (root / CORE).glob("*.py")
        )
        glue = [IMPLS / name for name in SHARED_GLUE]
        blank: list[Cell] = ["" for _ in names]
        core_title = paragraph(nodes.Text("the core: "), make_repo_link(self.env, CORE))
        glue_links = joined([make_repo_link(self.env, path) for path in glue])
        glue_title = paragraph(nodes.Text("shared by every adapter: "), *glue_links)
        rows.append([core_title, *blank, count(core)])
        rows.append([glue_title, *blank, count(glue)])
        sizes = table(["", *names, "total"], rows, ["adapter-sizes"])

        pairs = [
            ("asyncio", "trio"),
            ("trio", "anyio"),
            ("asyncio", "asyncio-protocol"),
            ("trio", "asyncio-sockets"),
            ("asyncio", "asyncio-sockets"),
        ]
        diff_rows: list[list[Cell]] = []
        for old, new in pairs:
            cells = [f"{old} \N{RIGHTWARDS ARROW} {new}"]
            for name in names:
                a, b = root / packages[old] / name, root / packages[new] / name
                both = a.exists() and b.exists()
                cells.append(str(changed_lines(a, b)) if both else "\N{EM DASH}")
            diff_rows.append(cells)
        diffs = table(["lines changed", *names], diff_rows, ["adapter-diffs"])
        return [sizes, diffs]


# -- Experiment figures ------------------------------------------------------------------------


def figure_file(env: Any, name: str) -> Path:
    path = Path(env.srcdir) / "figures" / f"{name}.json"
    env.note_dependency(str(path))
    return path


def shown_value(value: object) -> str:
    """Numbers as the experiment commands print them: three significant digits, or whole."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


class ExperimentTable(SphinxDirective):
    """The table of one experiment's JSON file under docs/figures/."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        path = figure_file(self.env, self.arguments[0])
        if not path.exists():
            raise self.error(f"experiment-table: {path} does not exist")
        data = json.loads(path.read_text())
        machine = data["machine"]
        versions = ", ".join(
            f"{name} {machine[name]}" for name in ("trio", "anyio", "uvloop") if name in machine
        )
        caption = (
            f"{data['title']}. From docs/figures/{path.name}: {machine['cores']} cores, "
            f"CPython {machine['python']}, {versions}."
        )
        rows: list[list[Cell]] = [[shown_value(value) for value in row] for row in data["rows"]]
        result = table(list(data["columns"]), rows, ["experiment-table"])
        title = nodes.title(caption, caption)
        result.insert(0, title)
        return [result]


class FigureValue(SphinxRole):
    """``{figure}`NAME | ROW | COLUMN``: the value in column COLUMN of the row whose first
    cell is ROW, in docs/figures/NAME.json."""

    separator: ClassVar[str] = "|"

    def run(self) -> tuple[list[nodes.Node], list[nodes.system_message]]:
        parts = [part.strip() for part in self.text.split(self.separator)]
        if len(parts) != 3:
            message = self.inliner.reporter.error(
                f"figure: {self.text!r} is not NAME | ROW | COLUMN", line=self.lineno
            )
            return [], [message]
        name, row_name, column = parts
        data = json.loads(figure_file(self.env, name).read_text())
        try:
            index = data["columns"].index(column)
            row = next(row for row in data["rows"] if str(row[0]) == row_name)
        except (ValueError, StopIteration):
            message = self.inliner.reporter.error(
                f"figure: no row {row_name!r} with column {column!r} in {name}.json",
                line=self.lineno,
            )
            return [], [message]
        value = shown_value(row[index])
        return [nodes.Text(value)], []


def setup(app: Sphinx) -> ExtensionMetadata:
    app.add_directive("version-matrix", VersionMatrix)
    app.add_directive("client-states", ClientStates)
    app.add_directive("adapter-sizes", AdapterSizes)
    app.add_directive("experiment-table", ExperimentTable)
    app.add_role("figure", FigureValue())
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
