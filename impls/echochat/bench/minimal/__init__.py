"""Minimal reference echo servers, one per framework, a dozen lines each.

Not part of echochat: the benchmarks run each beside echochat's own echo
service so the table shows what echochat's architecture costs on top of the
framework itself. Each prints ``listening on HOST:PORT`` and exits on SIGTERM.
With ``--tls-cert`` and ``--tls-key`` each serves TLS instead, the way its
framework does it, except the one on asyncio's socket API, whose
``sock_*()`` methods take no TLS sockets.
"""

from __future__ import annotations

import argparse
import ssl


def parse_args(
    description: str | None, *, loop: bool = False, backend: bool = False, tls: bool = True
) -> argparse.Namespace:
    """The options every minimal server shares, so each module shows only its server."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1; 0 picks a free one")
    if loop:
        parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    if backend:
        parser.add_argument("--backend", choices=["asyncio", "trio"], required=True)
    if tls:
        parser.add_argument("--tls-cert", help="serve TLS with this PEM certificate")
        parser.add_argument("--tls-key", help="and this PEM private key")
    args = parser.parse_args()
    if tls and (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    return args


def server_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The stdlib's server-side defaults with the certificate, or None for plain TCP."""
    if args.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.tls_cert, args.tls_key)
    return context
