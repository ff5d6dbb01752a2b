"""Headless Chromium (Debian's package) driven by Selenium, and an HTTP server for a built site."""

from __future__ import annotations

import base64
import functools
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

# Debian's chromium and chromium-driver (.ci/debian-packages), never a downloaded browser.
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# The flags that work on a machine with no screen and no network beyond 127.0.0.1:
# without the background-networking ones Chromium keeps trying to reach Google's hosts.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def missing_browser() -> str | None:
    """Why the browser cannot start, or None when both binaries are there."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(path) is None:
            return (
                f"{path} not found: the docs browser test needs Debian's chromium and "
                "chromium-driver; `make test` installs them from .ci/debian-packages "
                "(.ci/install-debian-packages, as root or with sudo)"
            )
    return None


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not worth a line each in the test output."""


@contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1, an ephemeral port, for the block; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            host, port = server.server_address[:2]
            yield f"http://{host!s}:{port}"
        finally:
            server.shutdown()
            thread.join()


@contextmanager
def chromium(user_data_dir: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={user_data_dir}")
    # Both paths given, so Selenium never runs its manager to download a driver.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


# Resolves once the document has loaded: at once if it has, else on its load event.
_LOADED_SCRIPT = """
const done = arguments[arguments.length - 1];
if (document.readyState === "complete") {
  done();
} else {
  window.addEventListener("load", () => done(), {once: true});
}
"""


def open_page(driver: webdriver.Chrome, url: str) -> None:
    """``driver.get(url)``, then wait for the page's load event.

    On a busy machine chromedriver's get() has returned with the document still
    loading (readyState "loading", half of a grid's columns parsed), which the
    layout checks then report as missing columns and listings.
    """
    driver.get(url)
    driver.execute_async_script(_LOADED_SCRIPT)


def set_viewport(driver: webdriver.Chrome, width: int, height: int, mobile: bool) -> None:
    """Emulate a screen: ``mobile`` applies the page's viewport meta tag, as a phone does."""
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)


def full_page_png(driver: webdriver.Chrome, width: int, path: Path) -> None:
    """Save the whole page, not only what fits in the viewport."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


# One round trip for the whole page: Selenium's per-element calls cost a request each.
_LAYOUT_SCRIPT = """
const box = (element) => {
  const r = element.getBoundingClientRect();
  return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height];
};
const shown = (element) =>
  element.checkVisibility({opacityProperty: true, visibilityProperty: true});
return Array.from(document.querySelectorAll(".sidebyside")).map((grid) =>
  Array.from(grid.children)
    .filter((column) => column.classList.contains("sidebyside-impl"))
    .map((column) => {
      const label = column.querySelector(".sidebyside-label");
      return {
        classes: Array.from(column.classList),
        box: box(column),
        label: label !== null && shown(label) ? label.innerText.trim() : "",
        listings: Array.from(column.querySelectorAll("pre")).map((pre) => ({
          shown: shown(pre),
          box: box(pre),
          text: pre.innerText.trim(),
          hidden_width: pre.scrollWidth - pre.clientWidth,
        })),
      };
    })
);
"""


@dataclass(frozen=True)
class Listing:
    shown: bool
    box: tuple[float, float, float, float]  # left, top, width, height in CSS pixels
    text: str
    hidden_width: int  # How much of its widest line a scrollbar hides: 0 when all shows.


@dataclass(frozen=True)
class Column:
    classes: tuple[str, ...]
    box: tuple[float, float, float, float]
    label: str  # Empty if missing or hidden.
    listings: tuple[Listing, ...]


def side_by_side_layout(driver: webdriver.Chrome) -> list[list[Column]]:
    """Every ``.sidebyside`` grid of the page, each as its columns, as the browser lays them out."""
    grids = driver.execute_script(_LAYOUT_SCRIPT)
    return [
        [
            Column(
                classes=tuple(column["classes"]),
                box=tuple(column["box"]),
                label=column["label"],
                listings=tuple(
                    Listing(
                        listing["shown"],
                        tuple(listing["box"]),
                        listing["text"],
                        listing["hidden_width"],
                    )
                    for listing in column["listings"]
                ),
            )
            for column in grid
        ]
        for grid in grids
    ]


# Each numbered line of a wrapped listing, as rows of text on the screen.
_ROWS_SCRIPT = """
const charWidth = (pre) => {
  const probe = document.createElement("span");
  probe.style.whiteSpace = "pre";
  probe.textContent = "0".repeat(20);
  pre.append(probe);
  const width = probe.getBoundingClientRect().width / 20;
  probe.remove();
  return width;
};
return Array.from(document.querySelectorAll(".wrapped-listing span.line"))
  .filter((line) => line.checkVisibility())
  .map((line) => {
    const number = line.querySelector(".linenos");
    const code = document.createRange();
    code.setStartAfter(number);
    code.setEndAfter(line.lastChild);
    const lineBox = line.getBoundingClientRect();
    const numberBox = number.getBoundingClientRect();
    // One rectangle per piece of text per row; a row is a distinct top.
    const rows = new Map();
    for (const rect of code.getClientRects()) {
      if (rect.width === 0) continue;
      const top = Math.round(rect.top);
      rows.set(top, Math.min(rows.get(top) ?? Infinity, rect.left - lineBox.left));
    }
    const indent = Number(getComputedStyle(line).getPropertyValue("--indent"));
    const text = line.textContent.slice(number.textContent.length);
    const leading = text.length - text.replace(/^ +/, "").length;
    return {
      number: number.textContent.trim(),
      blank: text.trim() === "",
      number_left: numberBox.left - lineBox.left,
      number_right: numberBox.right - lineBox.left,
      indent: indent,
      leading_spaces: leading,
      char_width: charWidth(line.closest("pre")),
      row_lefts: Array.from(rows.entries()).sort((a, b) => a[0] - b[0]).map((row) => row[1]),
    };
  });
"""


@dataclass(frozen=True)
class ListingLine:
    """A numbered line of a wrapped listing; positions in CSS pixels from the line's left."""

    number: str
    blank: bool
    number_left: float
    number_right: float
    indent: int  # The --indent the line carries.
    leading_spaces: int  # The indentation its text really has.
    char_width: float
    row_lefts: tuple[float, ...]  # Where the code starts on each row, top to bottom.


def listing_lines(driver: webdriver.Chrome) -> list[ListingLine]:
    """Every visible line of every wrapped listing of the page."""
    return [
        ListingLine(
            number=line["number"],
            blank=line["blank"],
            number_left=line["number_left"],
            number_right=line["number_right"],
            indent=line["indent"],
            leading_spaces=line["leading_spaces"],
            char_width=line["char_width"],
            row_lefts=tuple(line["row_lefts"]),
        )
        for line in driver.execute_script(_ROWS_SCRIPT)
    ]


# Code blocks and tables wider than the window, each unless a box that scrolls sideways
# holds it within the window; furo's html { overflow-x: hidden } would cut it off unseen.
_CLIPPED_SCRIPT = """
const scrolls = (element) => ["auto", "scroll"].includes(getComputedStyle(element).overflowX);
const clipped = [];
for (const block of document.querySelectorAll("article pre, article table")) {
  const wide = block.getBoundingClientRect().right > window.innerWidth + 0.5
    || block.scrollWidth > block.clientWidth;
  if (!wide) continue;
  let box = block;
  while (box !== document.documentElement && !scrolls(box)) box = box.parentElement;
  const right = box.getBoundingClientRect().right;
  if (box === document.documentElement || right > window.innerWidth + 0.5) {
    clipped.push(block.tagName.toLowerCase() + ": " + block.innerText.slice(0, 60));
  }
}
return clipped;
"""


def clipped_blocks(driver: webdriver.Chrome) -> list[str]:
    """The code blocks and tables of the page a reader cannot see all of, by their start."""
    clipped: list[str] = driver.execute_script(_CLIPPED_SCRIPT)
    return clipped
