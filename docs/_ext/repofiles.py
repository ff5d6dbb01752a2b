"""Links from the docs to repository files outside ``docs/`` become pages of this site.

The Markdown pages link to code as GitHub shows it, e.g.
``[tests](../tests/contract/test_echo.py)``.
MyST would turn a link to a file into a download of the raw file and report a link to a
directory as a missing reference. Instead, every such file is rendered as a highlighted
page under ``_repo/`` (as ``sphinx.ext.viewcode`` does under ``_modules/``) and every such
directory as a listing of its files, so the same links work on GitHub and in the built
site, offline. A link to a path that does not exist is still a build error.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from docutils import nodes
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import TextLexer, get_lexer_for_filename
from pygments.util import ClassNotFound
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.transforms import SphinxTransform
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util.typing import ExtensionMetadata

PAGE_PREFIX = "_repo"
# Never listed in a directory page: tool caches, build output, the virtualenv.
SKIPPED_NAMES = {"__pycache__", "_build", "build", "dist"}
# Larger files (benchmark JSON) are listed but not rendered.
MAX_RENDERED_BYTES = 200_000


class repo_link(nodes.Inline, nodes.TextElement):  # noqa: N801 (docutils names nodes in lower case)
    """A link to ``_repo/<path>``; resolved to a relative URI once the builder is known."""


def repo_root(env: BuildEnvironment) -> Path:
    return Path(env.config.repo_root).resolve()


def page_name(path: PurePosixPath, is_dir: bool) -> str:
    return f"{PAGE_PREFIX}/{path}/index" if is_dir else f"{PAGE_PREFIX}/{path}"


def note_repo_path(env: BuildEnvironment, docname: str, path: PurePosixPath) -> None:
    """Remember that ``docname`` links to ``path`` (relative to the repository root)."""
    linked: dict[str, set[str]] = env.echochat_repo_paths  # type: ignore[attr-defined]
    linked.setdefault(docname, set()).add(str(path))


def make_repo_link(
    env: BuildEnvironment,
    path: PurePosixPath,
    anchor: str = "",
    children: list[nodes.Node] | None = None,
) -> repo_link:
    """A link node to the page of repository file or directory ``path``."""
    is_dir = (repo_root(env) / path).is_dir()
    note_repo_path(env, env.docname, path)
    node = repo_link("", "", *(children or [nodes.literal(str(path), str(path))]))
    node["page"] = page_name(path, is_dir)
    node["anchor"] = anchor
    return node


def repo_relative(env: BuildEnvironment, target: str) -> tuple[PurePosixPath, Path] | None:
    """The repository path a link from the current document points to, if outside docs/."""
    _, absolute = env.relfn2path(target, env.docname)
    resolved = Path(absolute).resolve()
    root = repo_root(env)
    if not resolved.is_relative_to(root) or resolved.is_relative_to(Path(env.srcdir).resolve()):
        return None
    return PurePosixPath(resolved.relative_to(root).as_posix()), resolved


class RepoLinks(SphinxTransform):
    """Turn MyST's download links and unresolved links to repository paths into repo links."""

    # After MyST has made its nodes, before references are resolved.
    default_priority = 500

    def apply(self, **kwargs: Any) -> None:
        for download in list(self.document.findall(addnodes.download_reference)):
            self.replace(download, str(download["reftarget"]), "")
        for xref in list(self.document.findall(addnodes.pending_xref)):
            if xref.get("reftype") == "myst" and xref.get("refdomain") is None:
                target, _, anchor = str(xref["reftarget"]).partition("#")
                self.replace(xref, target, anchor)

    def replace(self, node: nodes.Element, target: str, anchor: str) -> None:
        found = repo_relative(self.env, target)
        if found is None or not found[1].exists():
            return  # Inside docs/, or missing: Sphinx and MyST handle (and report) those.
        # MyST wraps the link text in an inline or literal node: keep it as the text.
        link = make_repo_link(self.env, found[0], anchor, list(node.children))
        node.replace_self(link)


class ResolveRepoLinks(SphinxPostTransform):
    """Give each repo link the URI of its page, relative to the page it is on."""

    default_priority = 5

    def run(self, **kwargs: Any) -> None:
        for node in list(self.document.findall(repo_link)):
            if self.app.builder.format != "html":
                node.replace_self(node.children)
                continue
            uri = self.app.builder.get_relative_uri(self.env.docname, node["page"])
            if node["anchor"]:
                uri += "#" + node["anchor"]
            reference = nodes.reference("", "", *node.children, refuri=uri, internal=True)
            reference["classes"].append("repo-link")
            node.replace_self(reference)


def purge(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    env.echochat_repo_paths.pop(docname, None)  # type: ignore[attr-defined]


def merge(app: Sphinx, env: BuildEnvironment, docnames: set[str], other: BuildEnvironment) -> None:
    for docname in docnames:
        if docname in other.echochat_repo_paths:  # type: ignore[attr-defined]
            env.echochat_repo_paths[docname] = other.echochat_repo_paths[docname]  # type: ignore[attr-defined]


def init_env(app: Sphinx) -> None:
    if not hasattr(app.env, "echochat_repo_paths"):
        app.env.echochat_repo_paths = {}  # type: ignore[attr-defined]


def lexer_for(path: Path) -> Lexer:
    try:
        lexer: Lexer = get_lexer_for_filename(path.name)
    except ClassNotFound:
        lexer = TextLexer()
    return lexer


def file_body(root: Path, path: PurePosixPath) -> str:
    """The page of one file: its path and its text, highlighted, one ``L-<n>`` anchor a line."""
    source = root / path
    heading = f"<h1 class='repo-file-title'><code>{html.escape(str(path))}</code></h1>"
    data = source.read_bytes()
    if len(data) > MAX_RENDERED_BYTES:
        return heading + f"<p>{len(data):,} bytes: too large to show here.</p>"
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return heading + "<p>A binary file.</p>"
    formatter = HtmlFormatter(linenos="inline", linespans="L", cssclass="highlight")
    code = highlight(text, lexer_for(source), formatter)
    return f'{heading}<div class="highlight-default notranslate">{code}</div>'


def listed(directory: Path) -> list[Path]:
    return sorted(
        child
        for child in directory.iterdir()
        if not child.name.startswith(".")
        and child.name not in SKIPPED_NAMES
        and not child.name.endswith(".egg-info")
    )


def directory_body(root: Path, path: PurePosixPath) -> str:
    items = []
    for child in listed(root / path):
        name = child.name + ("/" if child.is_dir() else "")
        target = f"{child.name}/index.html" if child.is_dir() else f"{child.name}.html"
        items.append(
            f'<li><a href="{html.escape(target)}"><code>{html.escape(name)}</code></a></li>'
        )
    heading = f"<h1 class='repo-file-title'><code>{html.escape(str(path))}/</code></h1>"
    return f"{heading}<ul>{''.join(items)}</ul>"


def pages_of(root: Path, path: PurePosixPath) -> Iterator[tuple[PurePosixPath, bool]]:
    """``path`` and, for a directory, everything its listing links to."""
    source = root / path
    if not source.is_dir():
        yield path, False
        return
    yield path, True
    for child in listed(source):
        yield from pages_of(root, path / child.name)


def collect_pages(app: Sphinx) -> Iterator[tuple[str, dict[str, Any], str]]:
    root = repo_root(app.env)
    linked: dict[str, set[str]] = app.env.echochat_repo_paths  # type: ignore[attr-defined]
    wanted = {
        page
        for paths in linked.values()
        for path in paths
        for page in pages_of(root, PurePosixPath(path))
    }
    for path, is_dir in sorted(wanted):
        body = directory_body(root, path) if is_dir else file_body(root, path)
        yield (
            page_name(path, is_dir),
            {"title": str(path), "body": body, "parents": []},
            "page.html",
        )


def setup(app: Sphinx) -> ExtensionMetadata:
    app.add_config_value("repo_root", "..", "env", types=frozenset({str}))
    app.add_node(repo_link)
    app.add_transform(RepoLinks)
    app.add_post_transform(ResolveRepoLinks)
    app.connect("builder-inited", init_env)
    app.connect("env-purge-doc", purge)
    app.connect("env-merge-info", merge)
    app.connect("html-collect-pages", collect_pages)
    return {
        "version": "1",
        "parallel_read_safe": True,
        "parallel_write_safe": True,
        "env_version": 1,
    }
