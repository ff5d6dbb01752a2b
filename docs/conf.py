"""Sphinx configuration of the echochat docs site; `make docs` builds it into docs/_build/html."""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

from echochat.core.version import __version__  # noqa: E402 (needs nothing from _ext)

project = "echochat"
release = __version__
version = __version__

extensions = [
    "myst_parser",
    "repofiles",
    "sidebyside",
    "claims",
    "designpages",
    "sphinx.ext.autodoc",
]
# Pages link to code outside docs/ as GitHub shows it (../impls/...); repofiles serves those.
repo_root = str(DOCS.parent)

# figures/bench-summary.md is a fragment that `make bench` pastes into performance.md.
exclude_patterns = ["_build", "figures/*.md"]
nitpicky = True
# GitHub-style anchors for headings, so `page.md#a-heading` links work on GitHub and here.
myst_heading_anchors = 4

html_theme = "furo"
html_title = f"echochat {release}"
html_static_path = ["_static"]
html_css_files = ["sidebyside.css"]
# The implementation picker of the side-by-side pages on phones; without it they stack.
html_js_files = ["sidebyside.js"]
html_show_sourcelink = False
html_show_copyright = False
