"""The docs site: it builds with warnings as errors, its links resolve, its listings are the
real code, and its side-by-side pages show all four implementations in a browser.

The site is built once per run into a temporary directory, as `make docs` builds it into
docs/_build/html; the browser test saves its screenshots under docs/_build/screenshots/.
"""

from __future__ import annotations

import difflib
import re
import subprocess
import sys
from pathlib import Path

import pytest
from bs4 import BeautifulSoup, Tag
from docs_browser import (
    Column,
    chromium,
    full_page_png,
    missing_browser,
    serve_directory,
    set_viewport,
    side_by_side_layout,
)
from docs_links import check_site

from echochat.registry import ADAPTERS as ADAPTER_PACKAGES

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
ADAPTERS = REPO / "impls" / "echochat"
SCREENSHOTS = DOCS / "_build" / "screenshots"
# The page whose screenshots are kept: the one where the frameworks differ most.
SCREENSHOT_PAGE = "sending"

# One page per step of a connection's life; "timeouts" joins them with the keepalive code.
STEPS = (
    "accepting",
    "reading",
    "sending",
    "broadcasting",
    "sendq",
    "errors",
    "shutdown",
    "running-out",
)
# In the order of the page (the order on a phone).
IMPLEMENTATIONS = tuple(adapter.key for adapter in ADAPTER_PACKAGES)
DESKTOP = (1440, 900)
PHONE = (390, 844)


def sphinx_build(source: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """The build `make docs` runs: warnings are errors (-W), references nitpicky (-n)."""
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html"]
    command += ["-d", str(out / "doctrees"), str(source), str(out / "html")]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build = sphinx_build(DOCS, tmp_path_factory.mktemp("docs"))
    assert build.returncode == 0, f"the docs build failed:\n{build.stdout}\n{build.stderr}"
    return Path(build.args[-1])


def soup_of(path: Path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


def code_text(block: Tag) -> str:
    """The code of a highlighted block, without the line numbers Sphinx puts in the text."""
    for number in block.select("span.linenos"):
        number.decompose()
    pre = block.find("pre")
    assert isinstance(pre, Tag)
    return pre.get_text()


def side_by_side_pages(site: Path) -> dict[str, Path]:
    return {
        path.stem: path
        for path in sorted((site / "sidebyside").glob("*.html"))
        if soup_of(path).select(".sidebyside")
    }


def test_every_page_is_built(site: Path) -> None:
    pages = ["index", "protocol", "design", "backpressure", "performance", "design/index"]
    pages += [f"sidebyside/{page}" for page in ("index", "diff", *STEPS)]
    missing = [page for page in pages if not (site / f"{page}.html").is_file()]
    assert missing == []
    assert set(STEPS) <= side_by_side_pages(site).keys()


def test_every_internal_link_and_anchor_resolves(site: Path) -> None:
    report = check_site(site)
    assert report.broken == []
    # The check saw the site: the theme alone puts dozens of links on each page.
    assert report.pages > 20
    assert report.checked > 20 * report.pages


def test_the_link_checker_reports_missing_files_and_anchors(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "index.html").write_text(
        '<a href="sub/page.html#here">ok</a> <a href="#top">ok</a> <h1 id="top">x</h1>'
        '<a href="sub/page.html#nowhere">bad anchor</a> <a href="gone.html">bad file</a>'
        '<img src="../outside.png"> <a href="https://example.org/">external</a>'
    )
    (tmp_path / "sub" / "page.html").write_text('<p id="here"><a href="../index.html">up</a></p>')
    report = check_site(tmp_path)
    assert sorted(report.broken) == [
        "index.html: ../outside.png: outside the site",
        "index.html: gone.html: no such file",
        "index.html: sub/page.html#nowhere: no such anchor",
    ]
    assert report.external == {"https://example.org/"}


def test_every_listing_is_the_current_source_of_its_function(site: Path) -> None:
    listings = 0
    for page in side_by_side_pages(site).values():
        for caption in soup_of(page).select(".sidebyside-source"):
            link = caption.find("a")
            assert isinstance(link, Tag)
            match = re.fullmatch(r".*_repo/(.+)\.html#L-(\d+)", str(link["href"]))
            assert match, link
            words = re.fullmatch(r"\S+ (\S+), lines (\d+)\u2013(\d+)", caption.get_text().strip())
            assert words, caption.get_text()
            name, first, last = words[1], int(words[2]), int(words[3])
            assert int(match[2]) == first
            source = (REPO / match[1]).read_text().splitlines(keepends=True)
            block = caption.find_next_sibling("div")
            assert isinstance(block, Tag)
            code = code_text(block)
            assert code == "".join(source[first - 1 : last]), f"{page.name}: {match[1]} {name}"
            assert re.match(rf"\s*(async def|def|class) {name.split('.')[-1]}\b", code)
            listings += 1
    assert listings >= 4 * len(STEPS)


def test_a_listing_of_a_function_that_is_gone_fails_the_build(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "conf.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(DOCS / '_ext')!r})\n"
        'extensions = ["myst_parser", "repofiles", "sidebyside"]\n'
        f"repo_root = {str(REPO)!r}\n"
    )
    (source / "index.md").write_text("# Gone\n\n```{sidebyside}\n:all: chat.py:renamed_loop\n```\n")
    build = sphinx_build(source, tmp_path / "out")
    assert build.returncode != 0
    assert "renamed_loop" in build.stderr


def test_the_diff_page_is_the_diff_of_the_asyncio_and_trio_adapters(site: Path) -> None:
    page = soup_of(site / "sidebyside" / "diff.html")
    shown = {}
    for title in page.select(".adapterdiff-file"):
        block = title.find_next_sibling("div")
        assert isinstance(block, Tag)
        shown[title.get_text()] = code_text(block)
    for name in ("server.py", "chat.py", "echo.py"):
        old, new = (
            Path("impls/echochat", package, name) for package in ("asyncio_impl", "trio_impl")
        )
        expected = difflib.unified_diff(
            (REPO / old).read_text().splitlines(keepends=True),
            (REPO / new).read_text().splitlines(keepends=True),
            str(old),
            str(new),
        )
        assert shown[name] == "".join(expected)


def check_listings(page: str, grids: list[list[Column]], phone: bool) -> None:
    """Each grid shows the four implementations, labelled, each listing visible; the layout fits."""
    assert grids, f"{page}: no side-by-side listings"
    for grid in grids:
        keys = [
            key for column in grid for key in IMPLEMENTATIONS if f"impl-{key}" in column.classes
        ]
        assert keys == list(IMPLEMENTATIONS), page
        for key, column in zip(IMPLEMENTATIONS, grid, strict=True):
            assert column.label, f"{page}: {key} has no visible label"
            assert column.listings, f"{page}: no listing for {key}"
            for listing in column.listings:
                _, _, width, height = listing.box
                assert listing.shown, f"{page}: {key}'s listing is hidden"
                assert width > 100, f"{page}: {key}'s listing is {width} px wide"
                assert height > 10, f"{page}: {key}'s listing is {height} px high"
                assert listing.text, f"{page}: {key}'s listing is empty"
        asyncio, trio, anyio, protocol = (column.box for column in grid)
        if phone:
            # Stacked, in the page's order, all at the same left edge.
            tops = [column.box[1] for column in grid]
            assert tops == sorted(tops), page
            assert len({round(column.box[0]) for column in grid}) == 1, page
        else:
            # Two columns: asyncio's pair on the left, trio over anyio on the right.
            assert abs(asyncio[1] - trio[1]) < 1, page
            assert trio[0] >= asyncio[0] + asyncio[2], page
            assert protocol[0] == asyncio[0], page
            assert protocol[1] >= asyncio[1] + asyncio[3], page
            assert anyio[0] == trio[0], page
            assert anyio[1] >= trio[1] + trio[3], page


@pytest.mark.timeout(120)
def test_side_by_side_pages_show_all_four_implementations_in_chromium(
    site: Path, tmp_path: Path
) -> None:
    reason = missing_browser()
    if reason is not None:
        pytest.fail(reason)
    pages = side_by_side_pages(site)
    with serve_directory(site) as base, chromium(tmp_path / "chromium-profile") as driver:
        for (width, height), phone in ((DESKTOP, False), (PHONE, True)):
            set_viewport(driver, width, height, mobile=phone)
            for page in pages:
                driver.get(f"{base}/sidebyside/{page}.html")
                check_listings(page, side_by_side_layout(driver), phone)
                # Code scrolls inside its own box; the page itself never scrolls sideways.
                overflow = driver.execute_script(
                    "return document.documentElement.scrollWidth - window.innerWidth"
                )
                assert overflow <= 0, f"{page} at {width} px is {overflow} px too wide"
                if page == SCREENSHOT_PAGE:
                    label = "phone" if phone else "desktop"
                    full_page_png(driver, width, SCREENSHOTS / f"{page}-{label}.png")
