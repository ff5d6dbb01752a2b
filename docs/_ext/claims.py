"""Claims about asyncio, trio, anyio, uvloop, glibc or the kernel, each tied to the test that
proves it and to its source; a claim whose test does not exist fails the build.

Role ``claim``, placed right after the claim it backs::

    drain() does not yield {claim}`tests/tools/test_framework_traps.py::test_x | cpython#75279`

Before the ``|``: one or more pytest node ids, separated by spaces. A node id is a path from
the repository root, ``::``, and a test function (``test_...``) or a method of a test class
(``Test...::test_...``); a parametrised id (``test_x[asyncio]``) names its function. The
file is parsed, not imported, and the function must be in it. After the ``|``: the sources,
separated by ``;``: a URL, ``title <URL>``, a tracker shorthand (``cpython#123``, ``trio#889``,
``python/asyncio#263``), or a place in a project's code or docs as text
(``CPython Lib/asyncio/streams.py, StreamWriter.drain``). Both parts are required.

In the page the role shows each test as a link to its source (``repofiles``). Directive
``claims-index`` lists every claim of the site: the text before its marker, where it is, its
tests and its sources. The version matrix (``designpages``) adds one claim per row through
``note_claim``.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from docutils import nodes
from repofiles import make_repo_link, repo_root
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util.docutils import SphinxDirective, SphinxRole
from sphinx.util.typing import ExtensionMetadata

# Tracker shorthands: cpython#123 and owner/name#123.
TRACKERS = {
    "cpython": "python/cpython",
    "trio": "python-trio/trio",
    "anyio": "agronholm/anyio",
    "uvloop": "MagicStack/uvloop",
}
SHORTHAND = re.compile(r"(?P<repo>[\w.-]+(?:/[\w.-]+)?)#(?P<number>\d+)")
NODE_ID = re.compile(r"(?P<path>[\w./-]+\.py)::(?P<names>[\w:]+?)(?:\[[^\]]*\])?")
# The text kept of a claim on the index: the end of what precedes its marker.
MAX_CLAIM_TEXT = 360


@dataclass(frozen=True, slots=True)
class TestRef:
    node_id: str
    path: str  # relative to the repository root
    line: int  # of its ``def``


@dataclass(slots=True)
class Claim:
    docname: str
    anchor: str  # the marker's id in its page
    section: str
    text: str
    tests: list[TestRef]
    sources: list[str]


def claims_of(env: BuildEnvironment) -> dict[str, list[Claim]]:
    if not hasattr(env, "echochat_claims"):
        env.echochat_claims = {}  # type: ignore[attr-defined]
    found: dict[str, list[Claim]] = env.echochat_claims  # type: ignore[attr-defined]
    return found


def note_claim(env: BuildEnvironment, claim: Claim) -> None:
    claims_of(env).setdefault(claim.docname, []).append(claim)


@cache
def test_lines(source: Path, modified: float) -> dict[str, int]:
    """``name`` or ``Class::name`` of every test in ``source``, and the line of its ``def``."""
    tree = ast.parse(source.read_text(), str(source))
    found: dict[str, int] = {}
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    for node in tree.body:
        if isinstance(node, functions) and node.name.startswith("test"):
            found[node.name] = node.lineno
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for method in node.body:
                if isinstance(method, functions) and method.name.startswith("test"):
                    found[f"{node.name}::{method.name}"] = method.lineno
    return found


def resolve_test(root: Path, node_id: str) -> TestRef | str:
    """The test ``node_id`` names, or why it names none."""
    match = NODE_ID.fullmatch(node_id)
    if match is None:
        return f"{node_id!r} is not a pytest node id (path/to/test_file.py::test_name)"
    path = PurePosixPath(match["path"])
    source = root / path
    if path.is_absolute() or ".." in path.parts or not source.is_file():
        return f"{node_id}: no file {path} in the repository"
    lines = test_lines(source, source.stat().st_mtime)
    if match["names"] not in lines:
        return f"{node_id}: {path} has no test {match['names']}"
    return TestRef(node_id, str(path), lines[match["names"]])


TITLED = re.compile(r"(?P<title>.*\S)\s*<(?P<url>https?://\S+)>")


def source_url(source: str) -> str | None:
    if source.startswith(("https://", "http://")):
        return source
    shorthand = SHORTHAND.fullmatch(source)
    if shorthand is None:
        return None
    repo = TRACKERS.get(shorthand["repo"], shorthand["repo"])
    if "/" not in repo:
        return None
    return f"https://github.com/{repo}/issues/{shorthand['number']}"


def source_node(source: str) -> nodes.Node:
    """A source as text, or as a link: a URL, ``title <URL>``, or a tracker shorthand."""
    titled = TITLED.fullmatch(source)
    if titled is not None:
        return nodes.reference(titled["title"], titled["title"], refuri=titled["url"])
    url = source_url(source)
    return nodes.reference(source, source, refuri=url) if url else nodes.Text(source)


def test_link(env: BuildEnvironment, test: TestRef) -> nodes.Node:
    shown = test.node_id.rsplit("/", 1)[-1]  # test_file.py::test_name
    return make_repo_link(
        env, PurePosixPath(test.path), f"L-{test.line}", [nodes.literal(shown, shown)]
    )


class claim_marker(nodes.Inline, nodes.TextElement):  # noqa: N801 (docutils names nodes in lower case)
    """Where a claim ends in its paragraph; carries what the index needs."""


class ClaimRole(SphinxRole):
    """``{claim}`NODE_ID [NODE_ID ...] | SOURCE [; SOURCE ...]``."""

    separator: ClassVar[str] = "|"

    def run(self) -> tuple[list[nodes.Node], list[nodes.system_message]]:
        tests_part, bar, sources_part = self.text.partition(self.separator)
        node_ids = tests_part.split()
        sources = [source.strip() for source in sources_part.split(";") if source.strip()]
        problems = []
        if not bar or not node_ids or not sources:
            problems.append(f"claim: {self.text!r} is not NODE_ID ... | SOURCE; ...")
        tests = []
        for node_id in node_ids:
            resolved = resolve_test(repo_root(self.env), node_id)
            if isinstance(resolved, str):
                problems.append(f"claim: {resolved}")
            else:
                tests.append(resolved)
        if problems:
            messages = [self.inliner.reporter.error(text, line=self.lineno) for text in problems]
            return [], messages
        anchor = f"claim-{self.env.new_serialno('claim')}"
        marker = claim_marker("", "", ids=[anchor], classes=["claim"])
        for i, test in enumerate(tests):
            if i:
                marker += nodes.Text(", ")
            marker += test_link(self.env, test)
        marker["tests"] = tests
        marker["sources"] = sources
        return [marker], []


def text_before(marker: claim_marker) -> str:
    """The paragraph's text from the previous marker (or its start) up to ``marker``."""
    paragraph = marker.parent
    while paragraph is not None and not isinstance(paragraph, nodes.paragraph | nodes.Structural):
        paragraph = paragraph.parent
    if not isinstance(paragraph, nodes.paragraph):
        return ""
    parts: list[str] = []
    for node in paragraph.findall(include_self=False):
        if node is marker:
            break
        if isinstance(node, claim_marker):
            parts = []
        elif isinstance(node, nodes.Text) and not any(
            isinstance(ancestor, claim_marker) for ancestor in ancestors(node)
        ):
            parts.append(node.astext())
    text = " ".join("".join(parts).split()).lstrip(" .,;:)").rstrip(" ,;:(")
    if len(text) > MAX_CLAIM_TEXT:
        cut = text[-MAX_CLAIM_TEXT:]
        text = "\N{HORIZONTAL ELLIPSIS}" + cut[cut.find(" ") + 1 :]
    return text


def ancestors(node: nodes.Node) -> list[nodes.Node]:
    found = []
    while node.parent is not None:
        node = node.parent
        found.append(node)
    return found


def section_title(node: nodes.Node) -> str:
    for ancestor in ancestors(node):
        if isinstance(ancestor, nodes.section):
            return ancestor[0].astext()
    return ""


def collect_claims(app: Sphinx, doctree: nodes.document) -> None:
    """After a page is read: note each of its markers with the claim text before it."""
    env = app.env
    previous = ""
    for marker in doctree.findall(claim_marker):
        text = text_before(marker)
        # Several markers in a row (one claim, tests of different kinds) share its text.
        text = text if len(text) > 1 else previous
        previous = text
        claim = Claim(
            env.docname,
            marker["ids"][0],
            section_title(marker),
            text,
            marker["tests"],
            marker["sources"],
        )
        note_claim(env, claim)
    # Claims noted by a directive (the version matrix) learn their section here.
    anchored = {anchor: node for node in doctree.findall(nodes.Element) for anchor in node["ids"]}
    for claim in claims_of(env).get(env.docname, []):
        if not claim.section and claim.anchor in anchored:
            claim.section = section_title(anchored[claim.anchor])


class claims_index(nodes.General, nodes.Element):  # noqa: N801
    """Replaced by the table of every claim once every page has been read."""


class ClaimsIndex(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        indexes: set[str] = getattr(self.env, "echochat_claims_indexes", set())
        indexes.add(self.env.docname)
        self.env.echochat_claims_indexes = indexes  # type: ignore[attr-defined]
        return [claims_index("")]


def claims_table(app: Sphinx, fromdoc: str) -> list[nodes.Node]:
    env = app.env
    builder = app.builder
    every = claims_of(env)
    ordered = [claim for docname in sorted(every) for claim in every[docname]]
    body = nodes.tbody()
    for claim in ordered:
        title = env.titles[claim.docname].astext() if claim.docname in env.titles else ""
        where = " \N{RIGHTWARDS ARROW} ".join(part for part in (title, claim.section) if part)
        uri = builder.get_relative_uri(fromdoc, claim.docname) + "#" + claim.anchor
        claim_cell = nodes.entry(
            "",
            nodes.paragraph("", claim.text),
            nodes.paragraph("", "", nodes.reference(where, where, refuri=uri, internal=True)),
        )
        tests = nodes.paragraph()
        for i, test in enumerate(claim.tests):
            if i:
                tests += nodes.Text(", ")
            shown = test.node_id.rsplit("/", 1)[-1]
            target = builder.get_relative_uri(fromdoc, f"_repo/{test.path}") + f"#L-{test.line}"
            tests += nodes.reference("", "", nodes.literal(shown, shown), refuri=target)
        sources = nodes.paragraph()
        for i, source in enumerate(claim.sources):
            if i:
                sources += nodes.Text("; ")
            sources += source_node(source)
        body += nodes.row("", claim_cell, nodes.entry("", tests), nodes.entry("", sources))
    group = nodes.tgroup(cols=3)
    for width in (3, 2, 2):
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    head += nodes.row(
        "", *(nodes.entry("", nodes.paragraph(h, h)) for h in ("Claim", "Test", "Source"))
    )
    group += head
    group += body
    pages = len({claim.docname for claim in ordered})
    count = f"{len(ordered)} claims on {pages} pages."
    return [nodes.paragraph(count, count), nodes.table("", group, classes=["claims-index"])]


def resolve_indexes(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    for index in list(doctree.findall(claims_index)):
        index.replace_self(claims_table(app, docname))


def note_test_files(app: Sphinx, env: BuildEnvironment) -> None:
    """The index links to the test files' pages: have repofiles render them."""
    indexes: set[str] = getattr(env, "echochat_claims_indexes", set())
    linked: dict[str, set[str]] = env.echochat_repo_paths  # type: ignore[attr-defined]
    for docname in indexes:
        for claims in claims_of(env).values():
            for claim in claims:
                linked.setdefault(docname, set()).update(test.path for test in claim.tests)


def purge(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    claims_of(env).pop(docname, None)
    getattr(env, "echochat_claims_indexes", set()).discard(docname)


def merge(app: Sphinx, env: BuildEnvironment, docnames: set[str], other: BuildEnvironment) -> None:
    for docname in docnames:
        if docname in claims_of(other):
            claims_of(env)[docname] = claims_of(other)[docname]
    indexes: set[str] = getattr(env, "echochat_claims_indexes", set())
    indexes |= getattr(other, "echochat_claims_indexes", set()) & docnames
    env.echochat_claims_indexes = indexes  # type: ignore[attr-defined]


def outdated(
    app: Sphinx, env: BuildEnvironment, added: set[str], changed: set[str], removed: set[str]
) -> list[str]:
    """Any page read again may change its claims: so rebuild the index too."""
    if not (added or changed or removed):
        return []
    return sorted(getattr(env, "echochat_claims_indexes", set()))


def setup(app: Sphinx) -> ExtensionMetadata:
    app.setup_extension("repofiles")
    app.add_node(claim_marker, html=(visit_marker, depart_marker))
    app.add_node(claims_index)
    app.add_role("claim", ClaimRole())
    app.add_directive("claims-index", ClaimsIndex)
    app.connect("doctree-read", collect_claims)
    app.connect("env-updated", note_test_files)
    app.connect("doctree-resolved", resolve_indexes)
    app.connect("env-purge-doc", purge)
    app.connect("env-merge-info", merge)
    app.connect("env-get-outdated", outdated)
    return {
        "version": "1",
        "parallel_read_safe": True,
        "parallel_write_safe": True,
        "env_version": 1,
    }


def visit_marker(translator: Any, node: claim_marker) -> None:
    translator.body.append(translator.starttag(node, "span", ""))


def depart_marker(translator: Any, node: claim_marker) -> None:
    translator.body.append("</span>")
