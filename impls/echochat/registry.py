"""Every implementation echochat can run, in the one list that everything else reads.

The CLI's ``--impl`` choices, the contract suite's configurations, the benchmarks,
the experiments and the docs' side-by-side pages all come from here, so an
implementation is added in one place. This module imports nothing of echochat:
it is the layer every other one may build on (``lint-imports`` checks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# The event loops an implementation on asyncio can run on (``--loop``).
EventLoop = Literal["asyncio", "uvloop"]
# Which framework's event loop an implementation runs on.
Backend = Literal["asyncio", "trio"]


@dataclass(frozen=True, slots=True)
class Adapter:
    """One package of adapter code: ``impls/echochat/<package>/{server,chat,echo}.py``."""

    key: str  # How the docs' directives and CSS name it.
    package: str
    label: str

    @property
    def server_module(self) -> str:
        """The module whose ``run(options)`` serves, the same function in every adapter."""
        return f"echochat.{self.package}.server"


ASYNCIO_STREAMS = Adapter("asyncio", "asyncio_impl", "asyncio Streams")
TRIO = Adapter("trio", "trio_impl", "trio")
ANYIO = Adapter("anyio", "anyio_impl", "anyio (asyncio and trio backends)")
ASYNCIO_PROTOCOL = Adapter(
    "asyncio-protocol", "asyncio_protocol_impl", "asyncio Protocol (teaching variant)"
)
ASYNCIO_SOCKETS = Adapter(
    "asyncio-sockets", "asyncio_sockets_impl", "asyncio sockets (teaching variant)"
)
# In the order the docs show them.
ADAPTERS = (ASYNCIO_STREAMS, TRIO, ANYIO, ASYNCIO_PROTOCOL, ASYNCIO_SOCKETS)


@dataclass(frozen=True, slots=True)
class Implementation:
    """What ``--impl NAME`` runs: an adapter, on one backend, with its switches."""

    name: str
    adapter: Adapter
    backend: Backend
    # A teaching variant is there to be measured against the four, not used.
    teaching: bool = False
    # False only for asyncio-nodrain: the Streams adapter with drain() left out.
    drain: bool = True
    # The contract suite runs the four on uvloop too; a teaching variant only
    # where uvloop's implementation of its layer differs from asyncio's (each
    # configuration costs about 40 s of `make test`): asyncio-sockets, whose
    # sock_* methods uvloop writes afresh (uvloop/loop.pyx).
    contract_on_uvloop: bool = False
    # False only for asyncio-sockets: the loop's sock_*() methods refuse ssl
    # sockets (Lib/asyncio/base_events.py, _check_ssl_socket), so TLS there
    # would have to be home-made over ssl.MemoryBIO; it serves plain TCP only.
    tls: bool = True

    @property
    def loops(self) -> tuple[EventLoop, ...]:
        """The event loops it runs on: uvloop can stand in for asyncio's, not for trio's."""
        return ("asyncio", "uvloop") if self.backend == "asyncio" else ("asyncio",)


IMPLEMENTATIONS = (
    Implementation("asyncio", ASYNCIO_STREAMS, "asyncio"),
    Implementation("trio", TRIO, "trio"),
    Implementation("anyio-asyncio", ANYIO, "asyncio"),
    Implementation("anyio-trio", ANYIO, "trio"),
    Implementation("asyncio-nodrain", ASYNCIO_STREAMS, "asyncio", teaching=True, drain=False),
    Implementation("asyncio-protocol", ASYNCIO_PROTOCOL, "asyncio", teaching=True),
    Implementation(
        "asyncio-sockets",
        ASYNCIO_SOCKETS,
        "asyncio",
        teaching=True,
        contract_on_uvloop=True,
        tls=False,
    ),
)
BY_NAME = {implementation.name: implementation for implementation in IMPLEMENTATIONS}
# The four the project compares; the rest are teaching variants.
MAIN = tuple(implementation for implementation in IMPLEMENTATIONS if not implementation.teaching)
VARIANTS = tuple(implementation for implementation in IMPLEMENTATIONS if implementation.teaching)


def configuration_id(implementation: Implementation, loop: EventLoop = "asyncio") -> str:
    """How tests and tables name a run: ``trio``, or ``anyio-asyncio+uvloop`` on uvloop."""
    return implementation.name if loop == "asyncio" else f"{implementation.name}+{loop}"


def parse_configuration(configuration: str) -> tuple[Implementation, EventLoop]:
    """The inverse of ``configuration_id``."""
    name, _, loop = configuration.partition("+")
    if loop not in ("", "asyncio", "uvloop"):
        raise ValueError(f"unknown event loop {loop!r} in {configuration!r}")
    return BY_NAME[name], "uvloop" if loop == "uvloop" else "asyncio"


# What the contract suite (tests/contract/) runs against: every implementation
# that claims to honour the contract, which asyncio-nodrain by design does not
# (its buffer grows without bound), and the four on uvloop where they run on it,
# with the teaching variants that ask for it.
CONTRACT_CONFIGURATIONS = (
    *(
        configuration_id(implementation)
        for implementation in IMPLEMENTATIONS
        if implementation.drain
    ),
    *(
        configuration_id(implementation, "uvloop")
        for implementation in IMPLEMENTATIONS
        if "uvloop" in implementation.loops
        and (not implementation.teaching or implementation.contract_on_uvloop)
    ),
)
