"""The docs site: it builds with warnings as errors, its links resolve, its listings are the
real code, and its side-by-side pages show all four implementations in a browser.

The site is built once per run into a temporary directory, as `make docs` builds it into
docs/_build/html; the browser tests save screenshots of the "sending" page at each width
they check under docs/_build/screenshots/.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from bs4 import BeautifulSoup, Tag
from docs_browser import (
    Column,
    ListingLine,
    chromium,
    clipped_blocks,
    full_page_png,
    listing_lines,
    missing_browser,
    open_page,
    serve_directory,
    set_viewport,
    side_by_side_layout,
)
from docs_links import check_site
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from echochat.registry import ADAPTERS as ADAPTER_PACKAGES

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
# The diff page's code, on Sphinx's path (docs/conf.py) but not on pytest's.
if str(DOCS / "_ext") not in sys.path:
    sys.path.append(str(DOCS / "_ext"))

import linediff  # noqa: E402
import mirror  # noqa: E402

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
# The column a page shows only where it teaches something (sidebyside.py, OPTIONAL).
OPTIONAL = ("asyncio-sockets",)
PHONE = (390, 844)
# A laptop, the most common desktop, a large desktop.
DESKTOPS = ((1400, 900), (1920, 1080), (2560, 1440))
# Columns of a side-by-side grid at each width (sidebyside.css says why): on a phone one,
# stacked without JavaScript, picked by a tab strip with it.
# Where a grid has the optional fifth column, the widest screen shows five.
COLUMNS = {1400: 2, 1920: 2, 2560: 4}


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
    pages = ["index", "protocol", "design", "backpressure", "performance", "design/index", "claims"]
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


def claims_project(tmp_path: Path, page: str) -> Path:
    """A one-page site with the claims extension, its page ``page`` and a claims index."""
    source = tmp_path / "source"
    source.mkdir()
    (source / "conf.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(DOCS / '_ext')!r})\n"
        'extensions = ["myst_parser", "repofiles", "claims"]\n'
        f"repo_root = {str(REPO)!r}\n"
    )
    (source / "index.md").write_text(f"# Claims\n\n{page}\n\n```{{claims-index}}\n```\n")
    return source


TRAPS = "tests/tools/test_framework_traps.py"
REAL_TEST = f"{TRAPS}::test_asyncio_drain_does_not_yield_below_the_high_water_mark"


def test_a_claim_marker_links_its_test_and_lands_in_the_index(tmp_path: Path) -> None:
    page = (
        f"drain() does not yield.\n{{claim}}`{REAL_TEST} | cpython#75279; Lib/asyncio/streams.py`"
    )
    build = sphinx_build(claims_project(tmp_path, page), tmp_path / "out")
    assert build.returncode == 0, build.stderr
    html = soup_of(tmp_path / "out" / "html" / "index.html")
    marker = html.select_one("span.claim")
    assert marker is not None
    link = marker.find("a")
    assert isinstance(link, Tag)
    assert re.fullmatch(
        r"_repo/tests/tools/test_framework_traps\.py\.html#L-\d+", str(link["href"])
    )
    row = html.select_one("table.claims-index tbody tr")
    assert row is not None
    cells = [cell.get_text(" ", strip=True) for cell in row.select("td")]
    assert cells[0].startswith("drain() does not yield.")
    assert cells[1] == REAL_TEST.rsplit("/", 1)[1]
    assert cells[2] == "cpython#75279 ; Lib/asyncio/streams.py"


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        pytest.param(
            f"{TRAPS}::test_no_such_trap | cpython#1",
            "has no test test_no_such_trap",
            id="missing-function",
        ),
        pytest.param(
            "tests/tools/no_such_file.py::test_x | cpython#1", "no file", id="missing-file"
        ),
        pytest.param(f"{REAL_TEST}", "is not NODE_ID", id="no-source"),
        pytest.param(
            f"{TRAPS}::run_probe | cpython#1",
            "has no test run_probe",
            id="not-a-test",
        ),
    ],
)
def test_a_claim_marker_without_its_test_or_source_fails_the_build(
    tmp_path: Path, marker: str, message: str
) -> None:
    build = sphinx_build(
        claims_project(tmp_path, f"A claim. {{claim}}`{marker}`"), tmp_path / "out"
    )
    assert build.returncode != 0
    assert message in build.stderr


def test_the_claims_page_lists_every_marker_of_the_site(site: Path) -> None:
    markers = {
        f"{path.relative_to(site).as_posix()}#{marker['id']}"
        for path in site.rglob("*.html")
        for marker in soup_of(path).select("span.claim")
    }
    index = soup_of(site / "claims.html")
    listed = {
        str(link["href"]) for link in index.select("table.claims-index tbody tr td:first-child a")
    }
    assert markers, "no claim markers on the site"
    assert {href for href in listed if "#claim-" in href} == markers
    assert any("#matrix-" in href for href in listed)


def test_the_diff_page_shows_the_adapter_diffs_with_indentation_ignored(site: Path) -> None:
    page = soup_of(site / "sidebyside" / "diff.html")
    pairs = [
        ("asyncio_impl", "trio_impl"),
        ("trio_impl", "asyncio_sockets_impl"),
        ("trio_impl", "anyio_impl"),
    ]
    diffs = page.select("div.adapterdiff")
    assert len(diffs) == len(pairs)
    for diff, packages in zip(diffs, pairs, strict=True):
        shown = {}
        for title in diff.select(".adapterdiff-file"):
            block = title.find_next_sibling()
            name = title.get_text().split(":")[0]
            shown[name] = code_text(block) if isinstance(block, Tag) and block.name == "div" else ""
        old, new = (Path("impls/echochat", package) for package in packages)
        names = {path.name for package in (old, new) for path in (REPO / package).glob("*.py")}
        assert set(shown) == names
        for name in names:
            expected = linediff.unified_diff(
                (REPO / old / name).read_text().splitlines(keepends=True),
                (REPO / new / name).read_text().splitlines(keepends=True),
                str(old / name),
                str(new / name),
            )
            assert shown[name] == "".join(expected), f"{old / name} -> {new / name}"
    # The rename table: one row a rename, in the order the test applies them.
    renamed = page.select("table.mirror-renames tbody tr td:first-child code")
    assert [code.get_text() for code in renamed] == [rule.old for rule in mirror.RENAMES]


def grid_keys(grid: list[Column]) -> list[str]:
    """The implementations a grid shows, in its order."""
    return [key for column in grid for key in IMPLEMENTATIONS if f"impl-{key}" in column.classes]


def check_columns(page: str, grid: list[Column], columns: int, width: int) -> None:
    """The grid shows the four implementations (and the optional fifth where the page
    names it), labelled, each listing visible, laid out in ``columns`` columns (five on
    the widest screens when there is a fifth) within the ``width`` of the window."""
    keys = grid_keys(grid)
    assert [key for key in keys if key not in OPTIONAL] == [
        key for key in IMPLEMENTATIONS if key not in OPTIONAL
    ], page
    assert keys == [key for key in IMPLEMENTATIONS if key in keys], page
    if columns == 4 and len(keys) == 5:
        columns = 5
    for key, column in zip(keys, grid, strict=True):
        assert column.label, f"{page}: {key} has no visible label"
        assert column.listings, f"{page}: no listing for {key}"
        for listing in column.listings:
            _, _, listing_width, listing_height = listing.box
            assert listing.shown, f"{page}: {key}'s listing is hidden"
            assert listing_width > 100, f"{page}: {key}'s listing is {listing_width} px wide"
            assert listing_height > 10, f"{page}: {key}'s listing is {listing_height} px high"
            assert listing.text, f"{page}: {key}'s listing is empty"
        left, _, column_width, _ = column.box
        # On the screen: html's overflow-x: hidden (furo) would hide what is not.
        assert left >= 0, f"{page}: {key} starts left of the window"
        assert left + column_width <= width, f"{page}: {key} ends right of the window"
    asyncio, trio, anyio, protocol, *sockets = (column.box for column in grid)
    lefts = {round(column.box[0]) for column in grid}
    assert len(lefts) == columns, f"{page}: {len(lefts)} columns, not {columns}"
    if columns == 1:
        # Stacked, in the page's order.
        tops = [column.box[1] for column in grid]
        assert tops == sorted(tops), page
    elif columns == 2:
        # asyncio's pair on the left, trio over anyio on the right.
        assert abs(asyncio[1] - trio[1]) < 1, page
        assert trio[0] >= asyncio[0] + asyncio[2], page
        assert protocol[0] == asyncio[0], page
        assert protocol[1] >= asyncio[1] + asyncio[3], page
        assert anyio[0] == trio[0], page
        assert anyio[1] >= trio[1] + trio[3], page
        for fifth in sockets:
            # asyncio's socket API under asyncio's other two, on the left.
            assert fifth[0] == asyncio[0], page
            assert fifth[1] >= max(protocol[1] + protocol[3], anyio[1] + anyio[3]), page
    else:
        # One row, in the page's order.
        assert len({round(column.box[1]) for column in grid}) == 1, page
        assert [column.box[0] for column in grid] == sorted(column.box[0] for column in grid)


def check_hanging_indents(page: str, lines: list[ListingLine]) -> int:
    """Each line's number starts its first row; the rows it wraps onto start four
    characters right of where its code starts, right of the numbers. Returns how many
    lines wrapped."""
    assert lines, f"{page}: no wrapped listing"
    wrapped = 0
    for line in lines:
        where = f"{page}: line {line.number}"
        assert line.indent == line.leading_spaces, where
        assert abs(line.number_left) < 1, where
        if line.blank:
            continue
        first, *continued = line.row_lefts
        assert first >= line.number_right, where
        code_starts = first + line.leading_spaces * line.char_width
        for left in continued:
            assert abs(left - (code_starts + 4 * line.char_width)) < 1.5, (where, line)
        wrapped += bool(continued)
    return wrapped


def page_overflow(driver: Chrome) -> int:
    """How far the page reaches past the right edge of the window, in CSS pixels."""
    overflow: int = driver.execute_script(
        "return document.documentElement.scrollWidth - window.innerWidth"
    )
    return overflow


@pytest.fixture(scope="module")
def browser(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Chrome, str]]:
    """Chromium, and the base URL of the built site."""
    reason = missing_browser()
    if reason is not None:
        pytest.fail(reason)
    profile = tmp_path_factory.mktemp("chromium-profile")
    with serve_directory(site) as base, chromium(profile) as driver:
        yield driver, base


@pytest.fixture
def phone(browser: tuple[Chrome, str]) -> tuple[Chrome, str]:
    """The browser with a phone's screen, and the site's base URL."""
    driver, _ = browser
    width, height = PHONE
    set_viewport(driver, width, height, mobile=True)
    return browser


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("width", "height"), DESKTOPS)
def test_side_by_side_pages_show_every_listing_whole_on_wide_screens(
    site: Path, browser: tuple[Chrome, str], width: int, height: int
) -> None:
    driver, base = browser
    set_viewport(driver, width, height, mobile=False)
    wrapped = 0
    for page in side_by_side_pages(site):
        open_page(driver, f"{base}/sidebyside/{page}.html")
        for grid in side_by_side_layout(driver):
            check_columns(page, grid, COLUMNS[width], width)
            for column in grid:
                for listing in column.listings:
                    # Lines wrap: no part of a comment hides behind a scrollbar.
                    assert listing.hidden_width <= 0, f"{page} at {width} px: {listing.text[:60]}"
        wrapped += check_hanging_indents(page, listing_lines(driver))
        assert page_overflow(driver) <= 0, f"{page} at {width} px is too wide"
        if page == SCREENSHOT_PAGE:
            full_page_png(driver, width, SCREENSHOTS / f"{page}-{width}.png")
    if COLUMNS[width] > 1 and width < 2000:
        # The check of the wrapped rows saw some: at this width long comments wrap.
        assert wrapped > 0


@pytest.mark.timeout(120)
def test_side_by_side_pages_on_a_phone_show_one_implementation_picked_by_tabs(
    site: Path, phone: tuple[Chrome, str]
) -> None:
    driver, base = phone
    width, _ = PHONE
    for page in side_by_side_pages(site):
        open_page(driver, f"{base}/sidebyside/{page}.html")
        # The implementations the page shows somewhere, the last first: the page may
        # open on the one picked last time.
        on_page = [
            key
            for key in IMPLEMENTATIONS
            if driver.find_elements(By.CSS_SELECTOR, f".sidebyside > .impl-{key}")
        ]
        for key in reversed(on_page):
            # The last grid with that column, below any other whose height the tap
            # changes; the reader 150 px into it, the tab strip held under the header.
            grid = [
                grid
                for grid in driver.find_elements(By.CSS_SELECTOR, ".sidebyside")
                if grid.find_elements(By.CSS_SELECTOR, f":scope > .impl-{key}")
            ][-1]
            tab = grid.find_element(By.CSS_SELECTOR, f".sidebyside-tabs button.impl-{key}")
            driver.execute_script(
                "const top = arguments[0].getBoundingClientRect().top + scrollY + 150;"
                "window.scrollTo({top: top, behavior: 'instant'})",
                grid,
            )
            tab.click()
            top = driver.execute_script("return arguments[0].getBoundingClientRect().top", grid)
            # The same step stays in front of the reader, in the picked implementation.
            assert abs(top + 150) < 1, f"{page}: the grid moved to {top} px picking {key}"
            assert tab.get_attribute("aria-selected") == "true"
            for shown in side_by_side_layout(driver):
                visible = [column for column in shown if column.listings[0].shown]
                # A grid without the picked column shows its first, asyncio Streams.
                expected = key if key in grid_keys(shown) else IMPLEMENTATIONS[0]
                assert [column.classes for column in visible] == [
                    column.classes for column in shown if f"impl-{expected}" in column.classes
                ], f"{page}: picking {key}"
                (column,) = visible
                assert column.label, page
                left, _, column_width, _ = column.box
                assert left >= 0, f"{page}: {column.box}"
                assert left + column_width <= width, f"{page}: {column.box}"
                assert all(listing.shown and listing.text for listing in column.listings)
                assert all(listing.hidden_width <= 0 for listing in column.listings), page
            check_hanging_indents(page, listing_lines(driver))
            assert page_overflow(driver) <= 0, f"{page} at {width} px is too wide"
            if page == SCREENSHOT_PAGE and key in (IMPLEMENTATIONS[0], "trio"):
                full_page_png(driver, width, SCREENSHOTS / f"{page}-{width}-{key}.png")
        for strip in driver.find_elements(By.CSS_SELECTOR, ".sidebyside-tabs"):
            labels = [tab.text for tab in strip.find_elements(By.CSS_SELECTOR, "button")]
            assert labels[:4] == ["asyncio Streams", "trio", "anyio", "asyncio Protocol"], page
            assert labels[4:] in ([], ["asyncio sockets"]), page


@pytest.mark.timeout(120)
def test_side_by_side_pages_without_javascript_stack_all_four(
    site: Path, phone: tuple[Chrome, str]
) -> None:
    driver, base = phone
    width, _ = PHONE
    driver.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        for page in side_by_side_pages(site):
            open_page(driver, f"{base}/sidebyside/{page}.html")
            assert driver.find_elements(By.CSS_SELECTOR, ".sidebyside-tabs") == [], page
            for grid in side_by_side_layout(driver):
                check_columns(page, grid, 1, width)
            assert page_overflow(driver) <= 0, f"{page} at {width} px is too wide"
    finally:
        driver.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})


def test_every_code_block_names_its_language() -> None:
    """A bare fence is highlighted as Python: console tables came out coloured as code."""
    bare = []
    for page in sorted(DOCS.rglob("*.md")):
        if "_build" in page.parts:
            continue
        fence = None
        for number, line in enumerate(page.read_text().splitlines(), 1):
            if fence is None and (match := re.match(r"(`{3,})(.*)", line)):
                fence = match[1]
                if not match[2].strip():
                    bare.append(f"{page.relative_to(DOCS)}:{number}")
            elif fence is not None and line.startswith(fence):
                fence = None
    assert bare == []


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("width", "height"), [PHONE, DESKTOPS[0]])
def test_no_page_cuts_off_a_code_block_or_table(
    site: Path, browser: tuple[Chrome, str], width: int, height: int
) -> None:
    driver, base = browser
    set_viewport(driver, width, height, mobile=width < 1000)
    pages = [page for page in sorted(site.rglob("*.html")) if "_repo" not in page.parts]
    clipped = {}
    for page in pages:
        open_page(driver, f"{base}/{page.relative_to(site)}")
        if blocks := clipped_blocks(driver):
            clipped[str(page.relative_to(site))] = blocks
    assert clipped == {}
    assert len(pages) > 20
