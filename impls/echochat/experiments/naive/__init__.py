"""Deliberately naive chat servers for the slow-member experiment: teaching variants.

They are not part of echochat and not to be used. Each broadcasts by awaiting
every recipient in turn, the design echochat's per-client queues replace, so
that the experiment can show what one member that never reads does to it.
Run one with ``python -m echochat.experiments.naive.trio_broadcast`` (or
``asyncio_broadcast``); like ``echochat serve`` it prints ``listening on
HOST:PORT`` and exits on SIGTERM.
"""
