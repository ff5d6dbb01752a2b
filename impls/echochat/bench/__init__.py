"""Benchmarks: ``echochat bench echo|chat|idle``, and the matrix behind ``make compare``.

The load generator runs in its own process, never in a server's event loop,
and only against 127.0.0.1; every run is bounded in time and count.
"""
