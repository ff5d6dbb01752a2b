"""Minimal reference echo servers, one per framework, a dozen lines each.

Not part of echochat: the benchmarks run each beside echochat's own echo
service so the table shows what echochat's architecture costs on top of the
framework itself. Each prints ``listening on HOST:PORT`` and exits on SIGTERM.
"""

from __future__ import annotations

import argparse


def parse_args(
    description: str | None, *, loop: bool = False, backend: bool = False
) -> argparse.Namespace:
    """The options every minimal server shares, so each module shows only its server."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1; 0 picks a free one")
    if loop:
        parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    if backend:
        parser.add_argument("--backend", choices=["asyncio", "trio"], required=True)
    return parser.parse_args()
