"""Directives that put the implementations' real code next to each other.

``sidebyside`` shows the same step in the four implementations, each listing read from
the adapter's source with Sphinx's ``literalinclude`` reader and its ``pyobject`` filter,
so a renamed or deleted function fails the build instead of leaving a stale listing::

    ```{sidebyside}
    :all: chat.py:read_loop
    :asyncio-protocol: chat.py:ChatConnection.data_received; chat.py:ChatConnection.eof_received
    :asyncio-sockets: chat.py:read_loop
    ```

The columns of ``OPTIONAL`` (asyncio's socket API) are not covered by ``:all:``: a page
shows one only where it names it, on the steps where it teaches something. A FILE is
relative to the adapter's package; ``../loops.py`` names what the asyncio adapters share.

``adapterdiff`` shows ``diff -u`` between two adapter packages, computed by ``linediff``
from the files as they are at build time with indentation ignored: a line that only moved
in or out of a ``with`` block is context, not a change. ``mirrortable`` and ``mirrorchanges`` show
the renames that turn the trio adapter into the anyio one and the changes left after
them, each with its reason (``mirror``; ``tests/tools/test_adapter_mirror.py`` checks it).
"""

from __future__ import annotations

import itertools
import posixpath
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, ClassVar

import pygments
from docutils import nodes
from docutils.parsers.rst import directives
from linediff import hunks, unified_diff
from mirror import NEW, OLD, RENAMES, Allowed, Mirror, check
from pygments.formatters import HtmlFormatter
from repofiles import make_repo_link, repo_root
from sphinx.application import Sphinx
from sphinx.directives.code import LiteralIncludeReader
from sphinx.util.docutils import SphinxDirective
from sphinx.util.typing import ExtensionMetadata, OptionSpec
from sphinx.writers.html5 import HTML5Translator

from echochat.registry import ADAPTERS, ASYNCIO_SOCKETS, Adapter

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

IMPLS = PurePosixPath("impls/echochat")
# Adapters whose column a page shows only when it names them.
OPTIONAL = (ASYNCIO_SOCKETS,)


class SideBySide(SphinxDirective):
    """One step in every implementation: ``:<key>: FILE:OBJECT[; FILE:OBJECT...]``."""

    has_content = False
    option_spec: ClassVar[OptionSpec] = {
        key: directives.unchanged for key in ("all", *(impl.key for impl in ADAPTERS))
    }

    def run(self) -> list[nodes.Node]:
        unknown_default = self.options.get("all")
        shown = [
            adapter
            for adapter in ADAPTERS
            if adapter not in OPTIONAL or adapter.key in self.options
        ]
        # The class tells sidebyside.css how many columns to lay out.
        grid = nodes.container(classes=["sidebyside", f"sidebyside-{len(shown)}"])
        for implementation in shown:
            specs = self.options.get(implementation.key, unknown_default)
            if not specs:
                raise self.error(f"sidebyside: no code given for {implementation.key} (nor :all:)")
            column = nodes.container(classes=["sidebyside-impl", f"impl-{implementation.key}"])
            label = nodes.paragraph(classes=["sidebyside-label"])
            label += nodes.strong(implementation.label, implementation.label)
            column += label
            for spec in specs.split(";"):
                column.extend(self.listing(implementation, spec.strip()))
            grid += column
        return [grid]

    def listing(self, implementation: Adapter, spec: str) -> list[nodes.Node]:
        filename, colon, pyobject = spec.partition(":")
        if not colon or not pyobject:
            raise self.error(f"sidebyside: {spec!r} is not FILE:OBJECT")
        # normpath: ../loops.py, shared by the asyncio adapters, is beside the packages.
        path = PurePosixPath(posixpath.normpath(IMPLS / implementation.package / filename))
        if not path.is_relative_to(IMPLS):
            raise self.error(f"sidebyside: {filename!r} is outside {IMPLS}")
        shown = str(path.relative_to(IMPLS))
        source = repo_root(self.env) / path
        self.env.note_dependency(str(source))
        reader = LiteralIncludeReader(
            source, {"pyobject": pyobject, "lineno-match": True}, self.config
        )
        try:
            text, _ = reader.read(location=self.get_source_info())
        except (OSError, ValueError) as error:
            raise self.error(f"sidebyside: {path}: {error}") from error
        start = reader.lineno_start
        end = start + text.count("\n") - 1
        caption = nodes.paragraph(classes=["sidebyside-source"])
        caption += make_repo_link(
            self.env,
            path,
            anchor=f"L-{start}",
            children=[nodes.literal(shown, shown)],
        )
        caption += nodes.Text(" ")
        caption += nodes.literal(pyobject, pyobject)
        caption += nodes.Text(f", lines {start}\N{EN DASH}{end}")
        block = wrapped_listing(text, text, language="python", linenostart=start)
        self.set_source_info(block)
        return [caption, block]


class wrapped_listing(nodes.literal_block):  # noqa: N801 (docutils names node classes so)
    """A numbered listing whose long lines wrap under their own code instead of scrolling."""


class WrappedLinesFormatter(HtmlFormatter[str]):
    """Pygments' HTML with each line in its own ``span.line``, which carries the line's
    indentation in characters (``--indent``); sidebyside.css turns it into a hanging
    indent, so a wrapped line continues under its own code, right of the line numbers."""

    def format_unencoded(self, tokensource: Any, outfile: SupportsWrite[str]) -> None:
        tokens = list(tokensource)
        lines = "".join(value for _, value in tokens).split("\n")
        self.indents = [len(line) - len(line.lstrip(" ")) for line in lines]
        super().format_unencoded(tokens, outfile)

    def wrap(self, source: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str]]:
        # types-Pygments leaves HtmlFormatter.wrap, the documented hook, untyped.
        wrapped: Iterator[tuple[int, str]] = super().wrap(self.wrap_lines(source))  # type: ignore[no-untyped-call]
        return wrapped

    def wrap_lines(self, source: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str]]:
        indents = iter(self.indents)
        for kind, html in source:
            # The newline stays inside the span: a block's last newline adds no row.
            yield (
                kind,
                (
                    f'<span class="line" style="--indent: {next(indents)}">{html}</span>'
                    if kind == 1
                    else html
                ),
            )


def visit_wrapped_listing(translator: HTML5Translator, node: wrapped_listing) -> None:
    """As Sphinx's ``visit_literal_block``, with ``WrappedLinesFormatter``; the block
    carries the width of its line numbers (``--digits``) for the hanging indent."""
    language, first = node["language"], node["linenostart"]
    lexer = translator.highlighter.get_lexer(node.rawsource, language, location=node)
    formatter = WrappedLinesFormatter(
        **translator.highlighter.formatter_args, linenos="inline", linenostart=first
    )
    html = pygments.highlight(node.rawsource, lexer, formatter)
    last = first + node.rawsource.rstrip("\n").count("\n")
    start = translator.starttag(
        node,
        "div",
        suffix="",
        CLASS=f"highlight-{language} wrapped-listing notranslate",
        style=f"--digits: {len(str(last))}",
    )
    translator.body.append(f"{start}{html}</div>\n")
    raise nodes.SkipNode


class AdapterDiff(SphinxDirective):
    """``diff -u`` of the ``*.py`` files of two adapter packages, indentation ignored.

    Usage: ``{adapterdiff} asyncio_impl trio_impl``.
    """

    required_arguments = 2
    has_content = False

    def run(self) -> list[nodes.Node]:
        root = repo_root(self.env)
        old, new = (IMPLS / argument for argument in self.arguments)
        names = sorted(
            {path.name for package in (old, new) for path in (root / package).glob("*.py")}
        )
        if not names:
            raise self.error(f"adapterdiff: no *.py files in {old} or {new}")
        result = nodes.container(classes=["adapterdiff"])
        for name in names:
            old_lines = self.read(root / old / name)
            new_lines = self.read(root / new / name)
            diff = "".join(unified_diff(old_lines, new_lines, str(old / name), str(new / name)))
            title = nodes.paragraph(classes=["adapterdiff-file"])
            title += nodes.literal(name, name)
            if not diff:
                title += nodes.Text(": identical")
                result += title
                continue
            block = nodes.literal_block(diff, diff, language="diff")
            self.set_source_info(block)
            result.extend([title, block])
        return [result]

    def read(self, path: Path) -> list[str]:
        self.env.note_dependency(str(path))
        # A file only one side has is diffed against nothing, as `diff -uN` does.
        return path.read_text().splitlines(keepends=True) if path.exists() else []


def mirror_of_adapters(directive: SphinxDirective) -> Mirror:
    """``mirror.check`` of the adapters, rebuilt when a file of either package changes."""
    adapters = repo_root(directive.env) / IMPLS
    for package in (OLD, NEW):
        for path in sorted((adapters / package).glob("*.py")):
            directive.env.note_dependency(str(path))
    return check(adapters)


def text_cell(*children: nodes.Node) -> nodes.entry:
    cell = nodes.entry()
    cell += nodes.paragraph("", "", *children)
    return cell


def reason_nodes(reason: str) -> list[nodes.Node]:
    """A reason of ``mirror``: text, with code between backticks."""
    parts = reason.split("`")
    if len(parts) % 2 == 0:
        raise ValueError(f"unbalanced backticks in {reason!r}")
    return [
        nodes.literal(part, part) if odd else nodes.Text(part)
        for odd, part in zip(itertools.cycle((False, True)), parts, strict=False)
        if part
    ]


class MirrorTable(SphinxDirective):
    """The renames that turn ``trio_impl`` into ``anyio_impl``, in the order they apply."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        uses = mirror_of_adapters(self).uses
        header = ("trio", "anyio", "why", "uses")
        table = nodes.table(classes=["mirror-renames"])
        group = nodes.tgroup(cols=len(header))
        table += group
        group.extend(nodes.colspec(colwidth=width) for width in (30, 30, 36, 4))
        head = nodes.thead()
        row = nodes.row()
        row.extend(text_cell(nodes.Text(label)) for label in header)
        head += row
        body = nodes.tbody()
        for rule in RENAMES:
            row = nodes.row()
            row += text_cell(nodes.literal(rule.old, rule.old))
            row += text_cell(nodes.literal(rule.new, rule.new))
            row += text_cell(*reason_nodes(rule.reason))
            row += text_cell(nodes.Text(str(uses[rule])))
            body += row
        group.extend([head, body])
        return [table]


class MirrorChanges(SphinxDirective):
    """What differs between the renamed ``trio_impl`` and ``anyio_impl``: each hunk of the
    diff, its line numbers those of the two packages, under the reasons of its changes."""

    has_content = False
    # Lines of context around each change: enough to place it, few enough to stay short.
    context = 1

    def run(self) -> list[nodes.Node]:
        mirror = mirror_of_adapters(self)
        result = nodes.container(classes=["mirror-changes"])
        for file in mirror.files:
            if not file.reasons:
                continue
            title = nodes.paragraph(classes=["mirror-file"])
            title += nodes.literal(file.name, file.name)
            result += title
            for hunk in hunks(file.renamed, file.anyio, self.context):
                reasons = nodes.bullet_list(classes=["mirror-reasons"])
                for reason in dict.fromkeys(self.reason(file.reasons[c]) for c in hunk.changes):
                    item = nodes.list_item(classes=[] if reason else ["mirror-unexplained"])
                    item += nodes.paragraph("", "", *reason_nodes(reason or self.unexplained))
                    reasons += item
                text = "".join(hunk.lines)
                block = nodes.literal_block(text, text, language="diff")
                self.set_source_info(block)
                result.extend([reasons, block])
        for entry in mirror.unused_allowed:
            gone = nodes.paragraph(classes=["mirror-unexplained"])
            gone += nodes.Text(f"Listed for {entry.file} but no longer found: ")
            gone.extend(reason_nodes(entry.reason))
            gone += nodes.Text(" (test_adapter_mirror.py fails until the list drops it).")
            result += gone
        return [result]

    unexplained = "no reason listed: a needless difference (test_adapter_mirror.py fails on it)"

    @staticmethod
    def reason(entry: Allowed | None) -> str:
        return "" if entry is None else entry.reason


def setup(app: Sphinx) -> ExtensionMetadata:
    app.add_node(wrapped_listing, html=(visit_wrapped_listing, None))
    app.add_directive("sidebyside", SideBySide)
    app.add_directive("adapterdiff", AdapterDiff)
    app.add_directive("mirrortable", MirrorTable)
    app.add_directive("mirrorchanges", MirrorChanges)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
