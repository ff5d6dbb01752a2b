"""Probes of each framework's own send primitive: ``python -m echochat.experiments.probes``.

The ``errors`` and ``cancel`` experiments are about ``write()``/``drain()``,
``send_all()`` and ``send()`` themselves, not about echochat, so each probe is
a few lines of framework code on real TCP sockets on 127.0.0.1: the framework
listens and accepts, a plain blocking socket in the same process is the peer,
and the probe drives both in turn, so every step happens in a known order.
Each probe runs in a process of its own (``run_probe``), so one framework's
event loop, logging and half-dead transports cannot leak into the next, and
prints one JSON line. The models whose name ends in ``-tls`` do the same over
TLS, each with its framework's own TLS (asyncio's TLS transport, trio's
SSLStream, anyio's TLSStream); the peer is then a blocking ``ssl`` socket and
counts what it could decrypt.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import logging
import select
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import anyio
import anyio.lowlevel
import trio
from anyio.abc import ByteStream, SocketAttribute, SocketListener
from anyio.streams.tls import TLSStream

from echochat.loops import asyncio_loop_factory
from echochat.tls import server_context

KiB = 1024
MiB = 1024 * KiB
MESSAGE = b"x" * (KiB - 1) + b"\n"  # errors: one 1 KiB line per write
MARKER = b"MARKER\n"  # cancel: the line sent after the cut-off message
# Bounds every blocking peer call and every wait on a framework: the probes
# never wait for time to pass, only for something that should happen at once.
PATIENCE = 5.0
# After a non-blocking read found nothing, how long to wait for bytes that the
# sender's kernel may still be moving over loopback as the window reopens.
SETTLE_MS = 100


@dataclass(frozen=True, slots=True)
class TLSPair:
    """The framework's server side and the peer's client side of TLS, for one certificate."""

    server: ssl.SSLContext
    client: ssl.SSLContext

    @classmethod
    def load(cls, cert: str, key: str) -> TLSPair:
        return cls(server_context(cert, key), ssl.create_default_context(cafile=cert))


class Peer:
    """The far end: a blocking socket (over TLS, an ssl socket) the probe drives between
    framework calls."""

    def __init__(self, port: int, tls: TLSPair | None = None) -> None:
        # The kernel completes the handshake from the listen backlog, so this
        # returns at once although the framework has not accepted yet.
        sock = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
        self.handshake: threading.Thread | None = None
        if tls is None:
            self.sock = sock
            return
        # suppress_ragged_eofs=False: a connection that ends without close_notify
        # raises SSLEOFError instead of passing for a clean end.
        self.sock = tls.client.wrap_socket(
            sock,
            server_hostname="localhost",
            do_handshake_on_connect=False,
            suppress_ragged_eofs=False,
        )
        # In a thread, while the framework does its side in its event loop.
        self.handshake = threading.Thread(target=self.sock.do_handshake, daemon=True)
        self.handshake.start()

    def handshook(self) -> None:
        """Wait for the TLS handshake (done once the framework's side is)."""
        if self.handshake is not None:
            self.handshake.join(PATIENCE)
            if self.handshake.is_alive():
                raise TimeoutError("the peer's TLS handshake did not finish")

    def read_exactly(self, size: int) -> None:
        received = 0
        while received < size:
            chunk = self.sock.recv(size - received)
            if not chunk:
                raise ConnectionError("the framework closed the connection early")
            received += len(chunk)

    def reset(self) -> None:
        # SO_LINGER {l_onoff=1, l_linger=0}: close() sends RST instead of FIN.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def read_available(self, limit: int) -> bytes:
        """What the kernels hold for us now, read without letting the framework run.

        Over TLS: what of it the peer can decrypt, whole records only.
        """
        data = bytearray()
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        deadline = time.monotonic() + PATIENCE
        self.sock.setblocking(False)
        try:
            while len(data) < limit and time.monotonic() < deadline:
                try:
                    chunk = self.sock.recv(min(MiB, limit - len(data)))
                except (BlockingIOError, ssl.SSLWantReadError):
                    if not poller.poll(SETTLE_MS):
                        break
                    continue
                if not chunk:
                    break
                data += chunk
        finally:
            self.sock.settimeout(PATIENCE)
        return bytes(data)

    def close(self) -> None:
        self.sock.close()


class ReadToEof(threading.Thread):
    """The peer reading in a thread while the framework runs, until EOF (bounded)."""

    def __init__(self, sock: socket.socket, limit: int) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.limit = limit
        self.data = bytearray()
        self.error: str | None = None

    def run(self) -> None:
        deadline = time.monotonic() + 2 * PATIENCE
        try:
            # Up to EOF: past the limit only if the framework sent more than it was given.
            while len(self.data) <= self.limit and time.monotonic() < deadline:
                chunk = self.sock.recv(MiB)
                if not chunk:
                    if isinstance(self.sock, ssl.SSLSocket):
                        # The framework's close_notify: answer it, as a TLS client
                        # does, or asyncio waits for it (ssl_shutdown_timeout).
                        self.sock.unwrap()
                    return
                self.data += chunk
        except OSError as exc:  # A timeout included: the result then says so.
            self.error = describe(exc)

    def result(self) -> bytes:
        self.join(3 * PATIENCE)
        return bytes(self.data)


def wait_for_reset(fileno: int) -> None:
    """Block until the framework's socket holds the peer's RST, so the next send meets it.

    poll() only looks: the pending error stays for the framework to find.
    """
    poller = select.poll()
    poller.register(fileno, select.POLLERR | select.POLLHUP)
    if not poller.poll(int(PATIENCE * 1000)):
        raise TimeoutError("the RST did not reach the framework's socket")


def notsent_lowat(fileno: int) -> int:
    # fromfd() duplicates the descriptor, so closing the copy leaves the framework's alone.
    with socket.fromfd(fileno, socket.AF_INET, socket.SOCK_STREAM) as copy:
        return copy.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Sender(ABC):
    """The framework's end of the connection, as the scenarios drive it."""

    # The call in progress, set before each framework call: says which one raised.
    calling = ""

    def __init__(self, fileno: int) -> None:
        self.fileno = fileno

    @abstractmethod
    async def send(self, data: bytes) -> None:
        """The model's send: returns once the model considers ``data`` sent."""

    @abstractmethod
    async def send_within(self, data: bytes, seconds: float) -> bool:
        """``send()`` under the framework's own timeout; False if the timeout cut it off."""

    @abstractmethod
    async def checkpoint(self) -> None:
        """Yield to the event loop once, as a server does between outgoing messages."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close the framework's end; closing twice is harmless."""

    def buffered(self) -> int | None:
        """Bytes queued in user space (the transport's buffer), where the model has one."""
        return None


class AsyncioSender(Sender):
    transport: asyncio.WriteTransport

    async def send_within(self, data: bytes, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await self.send(data)
        except TimeoutError:
            return False
        return True

    async def checkpoint(self) -> None:
        await asyncio.sleep(0)

    def buffered(self) -> int | None:
        return self.transport.get_write_buffer_size()


class StreamsSender(AsyncioSender):
    def __init__(self, writer: asyncio.StreamWriter, drain: bool) -> None:
        super().__init__(writer.get_extra_info("socket").fileno())
        self.writer = writer
        self.transport = writer.transport
        self.drain = drain

    async def send(self, data: bytes) -> None:
        self.calling = "write()"
        self.writer.write(data)
        if self.drain:
            self.calling = "drain()"
            await self.writer.drain()

    async def aclose(self) -> None:
        self.writer.close()
        # wait_closed() re-raises the error the connection was lost with.
        with contextlib.suppress(ConnectionError):
            async with asyncio.timeout(PATIENCE):
                await self.writer.wait_closed()


class FlowProtocol(asyncio.Protocol):
    """A bare Protocol: the transport calls back to pause, resume and report the loss."""

    def __init__(self, connected: asyncio.Future[FlowProtocol]) -> None:
        self.connected = connected
        self.writable = asyncio.Event()
        self.writable.set()
        self.lost = False
        self.lost_with: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.connected.set_result(self)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.lost_with = exc
        self.writable.set()


class ProtocolSender(AsyncioSender):
    def __init__(self, protocol: FlowProtocol) -> None:
        super().__init__(protocol.transport.get_extra_info("socket").fileno())
        self.protocol = protocol
        self.transport = protocol.transport

    async def send(self, data: bytes) -> None:
        if self.protocol.lost:
            # Nothing raises in this model: the callback is how the error
            # arrives, and the probe raises it to end the loop like the others.
            self.calling = "connection_lost(exc)"
            raise self.protocol.lost_with or EOFError("connection_lost(None)")
        self.calling = "wait for resume_writing()"
        await self.protocol.writable.wait()
        self.calling = "transport.write()"
        self.transport.write(data)

    async def aclose(self) -> None:
        self.transport.close()


class SocketsSender(AsyncioSender):
    """The loop's socket API: sock_sendall() on a bare non-blocking socket, no transport."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock.fileno())
        self.sock = sock

    async def send(self, data: bytes) -> None:
        self.calling = "sock_sendall()"
        await asyncio.get_running_loop().sock_sendall(self.sock, data)

    def buffered(self) -> None:
        return None  # No user-space buffer: what the kernel did not take stays unsent.

    async def aclose(self) -> None:
        self.sock.close()


class TrioSender(Sender):
    def __init__(self, stream: trio.abc.Stream, fileno: int) -> None:
        super().__init__(fileno)
        self.stream = stream

    async def send(self, data: bytes) -> None:
        self.calling = "send_all()"
        await self.stream.send_all(data)

    async def send_within(self, data: bytes, seconds: float) -> bool:
        with trio.move_on_after(seconds) as scope:
            await self.send(data)
        return not scope.cancelled_caught

    async def checkpoint(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await self.stream.aclose()


class AnyioSender(Sender):
    def __init__(self, stream: ByteStream) -> None:
        super().__init__(stream.extra(SocketAttribute.raw_socket).fileno())
        self.stream = stream

    async def send(self, data: bytes) -> None:
        self.calling = "send()"
        await self.stream.send(data)

    async def send_within(self, data: bytes, seconds: float) -> bool:
        with anyio.move_on_after(seconds) as scope:
            await self.send(data)
        return not scope.cancelled_caught

    async def checkpoint(self) -> None:
        await anyio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await self.stream.aclose()


Connected = AbstractAsyncContextManager[tuple[Sender, Peer]]


@asynccontextmanager
async def asyncio_streams(
    tls: TLSPair | None, *, drain: bool
) -> AsyncIterator[tuple[Sender, Peer]]:
    accepted: asyncio.Future[asyncio.StreamWriter] = asyncio.get_running_loop().create_future()

    def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result(writer)  # The writer's protocol keeps the reader.

    context = None if tls is None else tls.server
    server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=context)
    peer = Peer(server.sockets[0].getsockname()[1], tls)
    try:
        async with asyncio.timeout(PATIENCE):
            writer = await accepted  # Over TLS, once the handshake is done.
        peer.handshook()
        sender = StreamsSender(writer, drain)
        try:
            yield sender, peer
        finally:
            await sender.aclose()
    finally:
        peer.close()
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def asyncio_protocol(_: TLSPair | None) -> AsyncIterator[tuple[Sender, Peer]]:
    loop = asyncio.get_running_loop()
    connected: asyncio.Future[FlowProtocol] = loop.create_future()
    server = await loop.create_server(lambda: FlowProtocol(connected), "127.0.0.1", 0)
    peer = Peer(server.sockets[0].getsockname()[1])
    try:
        async with asyncio.timeout(PATIENCE):
            sender = ProtocolSender(await connected)
        try:
            yield sender, peer
        finally:
            await sender.aclose()
    finally:
        peer.close()
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def asyncio_sockets(_: TLSPair | None) -> AsyncIterator[tuple[Sender, Peer]]:
    loop = asyncio.get_running_loop()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        peer = Peer(listener.getsockname()[1])
        try:
            async with asyncio.timeout(PATIENCE):
                sock, _ = await loop.sock_accept(listener)
            sender = SocketsSender(sock)
            try:
                yield sender, peer
            finally:
                await sender.aclose()
        finally:
            peer.close()


@asynccontextmanager
async def trio_stream(tls: TLSPair | None) -> AsyncIterator[tuple[Sender, Peer]]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    listener = listeners[0]
    peer = Peer(listener.socket.getsockname()[1], tls)
    try:
        with trio.fail_after(PATIENCE):
            accepted = await listener.accept()
            stream: trio.abc.Stream = accepted
            if tls is not None:
                stream = trio.SSLStream(accepted, tls.server, server_side=True)
                await stream.do_handshake()  # Else done by the first send_all().
        peer.handshook()
        sender = TrioSender(stream, accepted.socket.fileno())
        try:
            yield sender, peer
        finally:
            await sender.aclose()
    finally:
        peer.close()
        await listener.aclose()


@asynccontextmanager
async def anyio_stream(tls: TLSPair | None) -> AsyncIterator[tuple[Sender, Peer]]:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listeners:
        listener = listeners.listeners[0]
        assert isinstance(listener, SocketListener)
        peer = Peer(listener.extra(SocketAttribute.local_port), tls)
        try:
            with anyio.fail_after(PATIENCE):
                stream: ByteStream = await listener.accept()
                if tls is not None:
                    # wrap() returns once the handshake is done.
                    stream = await TLSStream.wrap(stream, server_side=True, ssl_context=tls.server)
            peer.handshook()
            sender = AnyioSender(stream)
            try:
                yield sender, peer
            finally:
                await sender.aclose()
        finally:
            peer.close()


class LogCapture(logging.Handler):
    """Whatever the framework logs at WARNING or above, kept instead of printed."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")


@dataclass(slots=True)
class ErrorOutcome:
    """What one model did while writing to a connection the peer had reset."""

    model: str
    attempts: int = 0  # messages the probe tried to send after the reset
    accepted: int = 0  # of those, how many the model's send returned from normally
    exception: str | None = None
    exception_type: str | None = None
    exception_kinds: list[str] = field(default_factory=list)  # its classes, for the tests
    cause: str | None = None
    surfaced_in: str | None = None
    logged: int = 0
    log_messages: list[str] = field(default_factory=list)  # distinct, in order
    seconds: float = 0.0


async def probe_errors(model: str, connect: Connected, count: int, seconds: float) -> ErrorOutcome:
    outcome = ErrorOutcome(model)
    capture = LogCapture()
    logging.getLogger().addHandler(capture)
    async with connect as (sender, peer):
        # One message the peer sees arrive, then the reset, then the writes.
        await sender.send(MESSAGE)
        peer.read_exactly(len(MESSAGE))
        peer.reset()
        wait_for_reset(sender.fileno)
        started = time.monotonic()
        while outcome.attempts < count and time.monotonic() - started < seconds:
            outcome.attempts += 1
            try:
                await sender.send(MESSAGE)
            except Exception as exc:  # Whatever surfaces is the measurement.
                outcome.exception = describe(exc)
                outcome.exception_type = type(exc).__name__
                outcome.exception_kinds = [kind.__name__ for kind in type(exc).__mro__]
                outcome.cause = None if exc.__cause__ is None else describe(exc.__cause__)
                outcome.surfaced_in = sender.calling
                break
            outcome.accepted += 1
            await sender.checkpoint()
        outcome.seconds = time.monotonic() - started
    outcome.logged = len(capture.messages)
    outcome.log_messages = list(dict.fromkeys(capture.messages))[:5]
    return outcome


@dataclass(slots=True)
class CancelOutcome:
    """What one model did when a timeout cut off a large send to a peer that did not read."""

    model: str
    size: int
    finished: bool = False  # the send completed before the timeout
    taken_at_cancel: int = 0  # message bytes the peer could read before the framework ran again
    buffered_at_cancel: int | None = None  # in the transport's buffer, where there is one
    delivered_later: int = 0  # message bytes that arrived after the framework ran again
    next_send_ok: bool = False
    next_send_error: str | None = None
    marker_received: bool = False
    intact: bool = False  # the peer read exactly the message, then the marker
    peer_error: str | None = None
    # Unsent bytes above which the socket stops reporting writable: trio
    # sets 16 KiB; 0 means the sysctl net.ipv4.tcp_notsent_lowat (no limit).
    notsent_lowat: int = 0


async def probe_cancel(
    model: str, connect: Connected, size: int, cut_after: float
) -> CancelOutcome:
    outcome = CancelOutcome(model, size)
    message = b"m" * (size - 1) + b"\n"
    expected = message + MARKER
    async with connect as (sender, peer):
        outcome.notsent_lowat = notsent_lowat(sender.fileno)
        outcome.finished = await sender.send_within(message, cut_after)
        outcome.buffered_at_cancel = sender.buffered()
        # Still without yielding to the framework: only what the kernels took.
        before = peer.read_available(len(expected))
        reader = ReadToEof(peer.sock, len(expected) - len(before))
        reader.start()
        try:
            outcome.next_send_ok = await sender.send_within(MARKER, PATIENCE)
        except Exception as exc:  # Whether the stream still works is measured.
            outcome.next_send_error = describe(exc)
        # The reader stops at the EOF this sends, once the framework has sent
        # what it still holds.
        await sender.aclose()
        after = reader.result()
        outcome.peer_error = reader.error
    received = before + after
    outcome.marker_received = received.endswith(MARKER)
    body = received[: -len(MARKER)] if outcome.marker_received else received
    if not message.startswith(body):
        raise AssertionError(f"{model}: the peer read bytes that were never sent")
    outcome.taken_at_cancel = len(before)
    outcome.delivered_later = len(body) - len(before)
    outcome.intact = received == expected
    return outcome


@dataclass(frozen=True, slots=True)
class Model:
    label: str
    framework: str  # asyncio, uvloop, trio, anyio-asyncio, anyio-trio
    connect: Callable[[TLSPair | None], Connected]
    tls: bool = False  # over TLS: the probe needs --cert and --key


def streams(drain: bool) -> Callable[[TLSPair | None], Connected]:
    return partial(asyncio_streams, drain=drain)


MODELS = {
    "asyncio-write": Model("asyncio write()", "asyncio", streams(drain=False)),
    "asyncio-drain": Model("asyncio write()+drain()", "asyncio", streams(drain=True)),
    "asyncio-protocol": Model("asyncio Protocol", "asyncio", asyncio_protocol),
    "asyncio-sockets": Model("asyncio sock_sendall()", "asyncio", asyncio_sockets),
    "uvloop-sockets": Model("uvloop sock_sendall()", "uvloop", asyncio_sockets),
    "trio": Model("trio send_all()", "trio", trio_stream),
    "anyio-asyncio": Model("anyio send(), asyncio", "anyio-asyncio", anyio_stream),
    "anyio-trio": Model("anyio send(), trio", "anyio-trio", anyio_stream),
    "uvloop-write": Model("uvloop write()", "uvloop", streams(drain=False)),
    "uvloop-drain": Model("uvloop write()+drain()", "uvloop", streams(drain=True)),
    "asyncio-drain-tls": Model(
        "asyncio write()+drain(), TLS", "asyncio", streams(drain=True), tls=True
    ),
    "uvloop-drain-tls": Model(
        "uvloop write()+drain(), TLS", "uvloop", streams(drain=True), tls=True
    ),
    "trio-tls": Model("trio SSLStream.send_all()", "trio", trio_stream, tls=True),
    "anyio-asyncio-tls": Model(
        "anyio TLSStream.send(), asyncio", "anyio-asyncio", anyio_stream, tls=True
    ),
    "anyio-trio-tls": Model("anyio TLSStream.send(), trio", "anyio-trio", anyio_stream, tls=True),
}


def run_on(framework: str, probe: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    if framework in ("asyncio", "uvloop"):
        factory = asyncio_loop_factory("uvloop" if framework == "uvloop" else "asyncio")
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(probe())
    if framework == "trio":
        return trio.run(probe)
    return anyio.run(probe, backend=framework.removeprefix("anyio-"))


def available(models: list[str]) -> tuple[list[str], list[str]]:
    """The models this machine can run, and those skipped (uvloop is an optional extra)."""
    missing = importlib.util.find_spec("uvloop") is None
    skipped = [name for name in models if missing and MODELS[name].framework == "uvloop"]
    return [name for name in models if name not in skipped], skipped


def run_probe(scenario: str, model: str, *options: str) -> dict[str, Any]:
    """Run one probe in a fresh interpreter and return its JSON line."""
    command = [sys.executable, "-m", "echochat.experiments.probes", scenario, model, *options]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"probe {scenario} {model} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m echochat.experiments.probes")
    parser.add_argument("scenario", choices=["errors", "cancel"])
    parser.add_argument("model", choices=list(MODELS))
    parser.add_argument("--count", type=int, default=20_000, help="errors: most writes")
    parser.add_argument("--seconds", type=float, default=5.0, help="errors: most time writing")
    parser.add_argument("--size", type=int, default=8 * MiB, help="cancel: message size")
    parser.add_argument("--timeout", type=float, default=0.5, help="cancel: send timeout")
    parser.add_argument("--cert", help="the -tls models: the server's PEM certificate")
    parser.add_argument("--key", help="the -tls models: its PEM private key")
    args = parser.parse_args()
    model = MODELS[args.model]
    if model.tls and (args.cert is None or args.key is None):
        parser.error(f"{args.model} speaks TLS: give --cert and --key")
    tls = TLSPair.load(args.cert, args.key) if model.tls else None

    async def probe() -> ErrorOutcome | CancelOutcome:
        if args.scenario == "errors":
            return await probe_errors(args.model, model.connect(tls), args.count, args.seconds)
        return await probe_cancel(args.model, model.connect(tls), args.size, args.timeout)

    print(json.dumps(asdict(run_on(model.framework, probe))), flush=True)


if __name__ == "__main__":
    main()
