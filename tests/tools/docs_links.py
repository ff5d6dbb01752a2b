"""Checks that every internal link and ``#anchor`` of a built HTML site resolves.

Sphinx's own ``linkcheck`` builder fetches external links, which this machine cannot
reach, and trusts its own internal links; this reads the HTML the reader gets instead.
External http(s) links are collected, never fetched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

# Attributes that load or link to another resource, per tag.
LINK_ATTRIBUTES = {
    "a": "href",
    "area": "href",
    "link": "href",
    "img": "src",
    "script": "src",
    "iframe": "src",
    "source": "src",
}
EXTERNAL_SCHEMES = {"http", "https"}
# Links that are not to a file: nothing to check.
IGNORED_SCHEMES = {"mailto", "data"}


@dataclass
class Page:
    ids: set[str] = field(default_factory=set)
    links: list[str] = field(default_factory=list)


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name == "id" or (tag == "a" and name == "name"):
                self.page.ids.add(value)
            elif LINK_ATTRIBUTES.get(tag) == name:
                self.page.links.append(value)


def parse_page(path: Path) -> Page:
    parser = _PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser.page


@dataclass
class LinkReport:
    pages: int = 0
    checked: int = 0
    broken: list[str] = field(default_factory=list)
    external: set[str] = field(default_factory=set)


def check_site(root: Path) -> LinkReport:
    """Every link of every ``*.html`` under ``root``: its file is in the site, and its anchor."""
    root = root.resolve()
    pages = {path.resolve(): parse_page(path) for path in sorted(root.rglob("*.html"))}
    report = LinkReport(pages=len(pages))
    for path, page in pages.items():
        where = path.relative_to(root)
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme in EXTERNAL_SCHEMES:
                report.external.add(link)
                continue
            if parts.scheme in IGNORED_SCHEMES:
                continue
            report.checked += 1
            if parts.scheme or parts.netloc:
                report.broken.append(f"{where}: {link}: not a link within the site")
                continue
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            if not target.is_relative_to(root):
                report.broken.append(f"{where}: {link}: outside the site")
            elif not target.is_file():
                report.broken.append(f"{where}: {link}: no such file")
            elif (
                parts.fragment
                and target in pages
                and unquote(parts.fragment) not in pages[target].ids
            ):
                report.broken.append(f"{where}: {link}: no such anchor")
    return report
