"""Directives that put the implementations' real code next to each other.

``sidebyside`` shows the same step in the four implementations, each listing read from
the adapter's source with Sphinx's ``literalinclude`` reader and its ``pyobject`` filter,
so a renamed or deleted function fails the build instead of leaving a stale listing::

    ```{sidebyside}
    :all: chat.py:read_loop
    :asyncio-protocol: chat.py:ChatConnection.data_received; chat.py:ChatConnection.eof_received
    ```

``adapterdiff`` shows ``diff -u`` between two adapter packages, computed with difflib from
the files as they are at build time.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from repofiles import make_repo_link, repo_root
from sphinx.application import Sphinx
from sphinx.directives.code import LiteralIncludeReader
from sphinx.util.docutils import SphinxDirective
from sphinx.util.typing import ExtensionMetadata, OptionSpec

ADAPTERS = PurePosixPath("impls/echochat")


@dataclass(frozen=True)
class Implementation:
    key: str  # The directive option and the CSS class impl-<key>.
    label: str
    package: str


# The order on a phone, where the listings are stacked; the CSS places them in a grid
# on wider screens (asyncio's two on the left, trio and anyio on the right).
IMPLEMENTATIONS = (
    Implementation("asyncio", "asyncio Streams", "asyncio_impl"),
    Implementation("trio", "trio", "trio_impl"),
    Implementation("anyio", "anyio (asyncio and trio backends)", "anyio_impl"),
    Implementation(
        "asyncio-protocol", "asyncio Protocol (teaching variant)", "asyncio_protocol_impl"
    ),
)


class SideBySide(SphinxDirective):
    """One step in every implementation: ``:<key>: FILE:OBJECT[; FILE:OBJECT...]``."""

    has_content = False
    option_spec: ClassVar[OptionSpec] = {
        key: directives.unchanged for key in ("all", *(impl.key for impl in IMPLEMENTATIONS))
    }

    def run(self) -> list[nodes.Node]:
        unknown_default = self.options.get("all")
        grid = nodes.container(classes=["sidebyside"])
        for implementation in IMPLEMENTATIONS:
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

    def listing(self, implementation: Implementation, spec: str) -> list[nodes.Node]:
        filename, colon, pyobject = spec.partition(":")
        if not colon or not pyobject:
            raise self.error(f"sidebyside: {spec!r} is not FILE:OBJECT")
        path = ADAPTERS / implementation.package / filename
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
            children=[
                nodes.literal(
                    f"{implementation.package}/{filename}", f"{implementation.package}/{filename}"
                )
            ],
        )
        caption += nodes.Text(" ")
        caption += nodes.literal(pyobject, pyobject)
        caption += nodes.Text(f", lines {start}\N{EN DASH}{end}")
        block = nodes.literal_block(text, text, language="python", linenos=True)
        block["highlight_args"] = {"linenostart": start}
        self.set_source_info(block)
        return [caption, block]


class AdapterDiff(SphinxDirective):
    """``diff -u`` of the ``*.py`` files of two adapter packages.

    Usage: ``{adapterdiff} asyncio_impl trio_impl``.
    """

    required_arguments = 2
    has_content = False

    def run(self) -> list[nodes.Node]:
        root = repo_root(self.env)
        old, new = (ADAPTERS / argument for argument in self.arguments)
        names = sorted(
            {path.name for package in (old, new) for path in (root / package).glob("*.py")}
        )
        if not names:
            raise self.error(f"adapterdiff: no *.py files in {old} or {new}")
        result: list[nodes.Node] = []
        for name in names:
            old_lines = self.read(root / old / name)
            new_lines = self.read(root / new / name)
            diff = "".join(
                difflib.unified_diff(old_lines, new_lines, str(old / name), str(new / name))
            )
            title = nodes.paragraph(classes=["adapterdiff-file"])
            title += nodes.literal(name, name)
            if not diff:
                title += nodes.Text(": identical")
                result.append(title)
                continue
            block = nodes.literal_block(diff, diff, language="diff")
            self.set_source_info(block)
            result.extend([title, block])
        return result

    def read(self, path: Path) -> list[str]:
        self.env.note_dependency(str(path))
        # A file only one side has is diffed against nothing, as `diff -uN` does.
        return path.read_text().splitlines(keepends=True) if path.exists() else []


def setup(app: Sphinx) -> ExtensionMetadata:
    app.add_directive("sidebyside", SideBySide)
    app.add_directive("adapterdiff", AdapterDiff)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
