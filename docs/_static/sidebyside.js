// The implementation picker of the side-by-side pages on narrow screens (sidebyside.css
// shows it below 67em and hides it above). Progressive: without this script every
// column stays on the page, stacked. With it, each grid gets a tab strip; a tap shows
// that implementation in every grid of the page, keeps the tapped grid where it was on
// the screen (the reader stays at the same step), and is remembered for the next page.
"use strict";

(() => {
  const STORAGE_KEY = "echochat-sidebyside-implementation";
  const PREFIX = "impl-";

  const keyOf = (column) =>
    Array.from(column.classList)
      .find((name) => name.startsWith(PREFIX))
      .slice(PREFIX.length);

  // "anyio (asyncio and trio backends)" -> "anyio": four or five tabs fit a phone's width.
  const shortLabel = (column) =>
    column.querySelector(".sidebyside-label").textContent.split(" (")[0].trim();

  const remembered = () => {
    try {
      return window.localStorage.getItem(STORAGE_KEY);
    } catch {
      return null; // Storage disabled: every page starts at the first implementation.
    }
  };

  const remember = (key) => {
    try {
      window.localStorage.setItem(STORAGE_KEY, key);
    } catch {
      // Storage disabled: the choice holds for this page only.
    }
  };

  const setUp = () => {
    const grids = Array.from(document.querySelectorAll(".sidebyside"));
    if (grids.length === 0) return;
    const columnsOf = (grid) =>
      Array.from(grid.children).filter((child) => child.classList.contains("sidebyside-impl"));

    const show = (key) => {
      for (const grid of grids) {
        // A grid without the chosen column (asyncio's socket API is on some pages only)
        // shows its first, asyncio Streams.
        const keys = columnsOf(grid).map(keyOf);
        const shown = keys.includes(key) ? key : keys[0];
        for (const column of columnsOf(grid)) {
          column.classList.toggle("sidebyside-chosen", keyOf(column) === shown);
        }
        for (const tab of grid.querySelectorAll(".sidebyside-tabs button")) {
          tab.setAttribute("aria-selected", String(tab.dataset.implementation === shown));
        }
      }
    };

    const choose = (key, tappedGrid) => {
      const before = tappedGrid.getBoundingClientRect().top;
      show(key);
      // Instant: furo scrolls smoothly, and a glide would show the page jump.
      const moved = tappedGrid.getBoundingClientRect().top - before;
      window.scrollBy({ top: moved, behavior: "instant" });
      remember(key);
    };

    for (const grid of grids) {
      const tabs = document.createElement("div");
      tabs.className = "sidebyside-tabs";
      tabs.setAttribute("role", "tablist");
      tabs.setAttribute("aria-label", "Implementation");
      for (const column of columnsOf(grid)) {
        const key = keyOf(column);
        const tab = document.createElement("button");
        tab.type = "button";
        tab.className = PREFIX + key;
        tab.dataset.implementation = key;
        tab.setAttribute("role", "tab");
        tab.textContent = shortLabel(column);
        tab.addEventListener("click", () => choose(key, grid));
        tabs.append(tab);
      }
      grid.prepend(tabs);
      grid.classList.add("sidebyside-tabbed");
    }

    const keys = grids.flatMap((grid) => columnsOf(grid).map(keyOf));
    const stored = remembered();
    show(keys.includes(stored) ? stored : keys[0]);
  };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setUp);
  } else {
    setUp();
  }
})();
