"""What each framework's TLS does that the adapters and docs/backpressure.md rely on.

Each test runs a TLS server and client in one process, on 127.0.0.1, with a
certificate made for the module (tests/certs.py).
"""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any, cast

import anyio
import pytest
import trio
import uvloop
from anyio.abc import ByteStream
from anyio.streams.tls import TLSStream

from certs import Certificate, make_certificate
from echochat.experiments.probes import Peer, TLSPair
from echochat.loops import PLAIN_HIGH_WATER, like_plain_tcp
from flood import MiB

KiB = 1024
PAYLOAD = 8 * MiB


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return make_certificate(tmp_path_factory.mktemp("tls"))


def contexts(certificate: Certificate) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts, as echochat/tls.py and a checking client make them."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(certificate.cert, certificate.key)
    return server, ssl.create_default_context(cafile=str(certificate.cert))


def asyncio_runner(loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    return uvloop.new_event_loop if loop == "uvloop" else None


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_asyncio_tls_transport_pauses_writing_at_512_kib(
    certificate: Certificate, loop: str
) -> None:
    """asyncio's TLS transport pauses its protocol above 512 KiB and resumes at 128 KiB
    (FLOW_CONTROL_HIGH_WATER_SSL_WRITE, Lib/asyncio/constants.py, 3.11-3.13; uvloop's
    includes/consts.pxi), eight times a plain transport's 64 KiB; like_plain_tcp() brings
    it down to the plain marks, 64 and 16 KiB."""
    server_context, client_context = contexts(certificate)

    async def scenario() -> tuple[tuple[int, int], tuple[int, int]]:
        async def close_at_once(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(close_at_once, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context, server_hostname="localhost"
        )
        default = writer.transport.get_write_buffer_limits()
        like_plain_tcp(writer.transport)
        adjusted = writer.transport.get_write_buffer_limits()
        writer.transport.abort()
        server.close()
        await server.wait_closed()
        return default, adjusted

    with asyncio.Runner(loop_factory=asyncio_runner(loop)) as runner:
        default, adjusted = runner.run(scenario())
    assert default == (128 * KiB, 512 * KiB)
    assert adjusted == (16 * KiB, PLAIN_HIGH_WATER) == (16 * KiB, 64 * KiB)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_asyncio_tls_drain_does_not_wait_for_one_large_write(
    certificate: Certificate, loop: str
) -> None:
    """Over TLS, a write() while the socket transport beneath has room is encrypted whole
    and handed down to it (Lib/asyncio/sslproto.py, _do_write and _process_outgoing), so
    the TLS transport's buffer, all drain() looks at, is empty again at once: drain()
    returns with 8 MiB unsent and the client not reading. Nothing is lost or cut: a later
    write follows it, and the client decrypts every byte."""
    server_context, client_context = contexts(certificate)

    async def scenario() -> tuple[bool, int, int]:
        drained: asyncio.Future[tuple[bool, int]] = asyncio.get_running_loop().create_future()

        async def write_large(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"m" * PAYLOAD)
            try:
                await asyncio.wait_for(writer.drain(), 0.3)  # The client is not reading yet.
            except TimeoutError:
                drained.set_result((False, writer.transport.get_write_buffer_size()))
            else:
                drained.set_result((True, writer.transport.get_write_buffer_size()))
            writer.write(b"marker\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(write_large, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context, server_hostname="localhost", limit=2 * PAYLOAD
        )
        at_once, buffered = await drained
        received = await reader.readuntil(b"marker\n")
        writer.close()
        server.close()
        await server.wait_closed()
        return at_once, buffered, len(received)

    with asyncio.Runner(loop_factory=asyncio_runner(loop)) as runner:
        at_once, buffered, received = runner.run(scenario())
    assert at_once
    assert buffered < 64 * KiB
    assert received == PAYLOAD + len(b"marker\n")


def test_trio_cancelled_tls_send_breaks_the_stream(certificate: Certificate) -> None:
    """Unlike a plain SocketStream's (test_framework_traps.py), a cancelled
    SSLStream.send_all() leaves the stream broken: the encrypted records are
    cut off at an unknown point, so every later send and receive raises
    BrokenResourceError (trio/_ssl.py, _retry: "This stream is doomed")."""
    server_context, client_context = contexts(certificate)

    async def scenario() -> tuple[bool, bool]:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        tls_listener = trio.SSLListener(listeners[0], server_context)
        async with trio.open_nursery() as nursery:
            client_stream: list[trio.SSLStream[trio.SocketStream]] = []

            async def connect() -> None:
                client = await trio.open_ssl_over_tcp_stream(
                    "127.0.0.1", port, ssl_context=client_context
                )
                await client.do_handshake()  # Else done at its first send or receive.
                client_stream.append(client)

            nursery.start_soon(connect)
            stream = await tls_listener.accept()
            await stream.do_handshake()
        with trio.move_on_after(0.3) as cut:  # The client does not read.
            await stream.send_all(b"m" * PAYLOAD)
        try:
            await stream.send_all(b"marker\n")
        except trio.BrokenResourceError:
            broken = True
        else:
            broken = False
        await trio.aclose_forcefully(stream)
        await trio.aclose_forcefully(client_stream[0])
        await tls_listener.aclose()
        return cut.cancelled_caught, broken

    cancelled, broken = trio.run(scenario)
    assert cancelled
    assert broken


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_anyio_cancelled_tls_send_breaks_the_stream(certificate: Certificate, backend: str) -> None:
    """anyio's TLSStream does as trio's SSLStream: a cancelled send() marks it broken
    (anyio/streams/tls.py, _flush_write_bio), and the next send() raises
    BrokenResourceError."""
    server_context, client_context = contexts(certificate)

    async def scenario() -> tuple[bool, bool]:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        accepted: list[ByteStream] = []
        async with anyio.create_task_group() as tasks:

            async def serve_one() -> None:
                (tcp_listener,) = listener.listeners
                assert isinstance(tcp_listener, anyio.abc.SocketListener)
                raw = await tcp_listener.accept()
                accepted.append(
                    await TLSStream.wrap(raw, server_side=True, ssl_context=server_context)
                )

            tasks.start_soon(serve_one)
            client = await anyio.connect_tcp(
                "127.0.0.1", port, ssl_context=client_context, tls_hostname="localhost"
            )
        stream = accepted[0]
        with anyio.move_on_after(0.3) as cut:  # The client does not read.
            await stream.send(b"m" * PAYLOAD)
        try:
            await stream.send(b"marker\n")
        except anyio.BrokenResourceError:
            broken = True
        else:
            broken = False
        await anyio.aclose_forcefully(stream)
        await anyio.aclose_forcefully(client)
        await listener.aclose()
        return cut.cancelled_caught, broken

    cancelled, broken = anyio.run(scenario, backend=backend)
    assert cancelled
    assert broken


def test_trio_ssl_stream_does_not_pass_on_the_socket(certificate: Certificate) -> None:
    """Why trio_impl/chat.py has tcp_socket(): SSLStream passes on only its SSLObject's
    attributes (trio/_ssl.py, _forwarded and __getattr__), not the wrapped stream's."""
    server_context, _ = contexts(certificate)

    async def scenario() -> bool:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        connected = await trio.open_tcp_stream("127.0.0.1", port)
        accepted = await listeners[0].accept()
        wrapped = trio.SSLStream(accepted, server_context, server_side=True)
        has_socket = hasattr(wrapped, "socket")
        for resource in (connected, accepted, listeners[0]):
            await resource.aclose()
        return has_socket

    assert not trio.run(scenario)


RECORD = 16 * KiB  # the most plaintext one TLS record carries
MESSAGE = 100 * KiB


def hold_until_queued(sock: Any, peer: Peer) -> None:
    """Send MESSAGE from the peer and return once the server's kernel holds all of it, the
    event loop standing still meanwhile (SO_RCVLOWAT: readable only with that much queued).

    ``sock``: the server's socket as its framework hands it out (trio's, asyncio's
    TransportSocket, uvloop's PseudoSocket): each has fileno() and setsockopt()."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, MESSAGE)
    sender = threading.Thread(target=peer.sock.sendall, args=(b"m" * MESSAGE,))
    sender.start()
    readable, _, _ = select.select([sock], [], [], 5)
    sender.join(5)
    assert readable, "the message did not arrive"


@pytest.mark.parametrize("framework", ["trio", "anyio-asyncio", "anyio-trio"])
def test_a_tls_stream_receive_returns_one_record_on_trio_and_anyio(
    certificate: Certificate, framework: str
) -> None:
    """trio's SSLStream.receive_some(65536) and anyio's TLSStream.receive(65536) return one
    TLS record at most, 16 KiB, with 100 KiB waiting: each is one SSLObject.read(), which
    OpenSSL answers from one record (trio/_ssl.py, SSLStream.receive_some; anyio
    streams/tls.py, TLSStream.receive), so an echo of 100 KiB takes seven receives and
    seven sends where plain TCP takes two of each."""
    tls = TLSPair.load(str(certificate.cert), str(certificate.key))

    async def on_trio() -> int:
        listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
        peer = Peer(listener.socket.getsockname()[1], tls)
        accepted = await listener.accept()
        stream = trio.SSLStream(accepted, tls.server, server_side=True)
        await stream.do_handshake()
        peer.handshook()
        hold_until_queued(accepted.socket, peer)
        received = len(await stream.receive_some(65536))
        peer.close()
        await trio.aclose_forcefully(stream)
        await listener.aclose()
        return received

    async def on_anyio() -> int:
        async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listeners:
            listener = listeners.listeners[0]
            assert isinstance(listener, anyio.abc.SocketListener)
            peer = Peer(listener.extra(anyio.abc.SocketAttribute.local_port), tls)
            accepted = await listener.accept()
            stream = await TLSStream.wrap(accepted, server_side=True, ssl_context=tls.server)
            peer.handshook()
            hold_until_queued(accepted.extra(anyio.abc.SocketAttribute.raw_socket), peer)
            received = len(await stream.receive(65536))
            peer.close()
            await anyio.aclose_forcefully(stream)
            return received

    if framework == "trio":
        received = trio.run(on_trio)
    else:
        received = anyio.run(on_anyio, backend=framework.removeprefix("anyio-"))
    assert received == RECORD


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_asyncios_tls_transport_hands_over_every_record_that_arrived(
    certificate: Certificate, loop: str
) -> None:
    """asyncio's TLS transport decrypts every whole record a socket read brought and calls
    data_received() once with all of it (Lib/asyncio/sslproto.py, SSLProtocol._do_read and
    _do_read__copied, 3.11-3.13; uvloop/sslproto.pyx, uvloop 0.23)."""
    tls = TLSPair.load(str(certificate.cert), str(certificate.key))

    async def scenario() -> list[int]:
        made: asyncio.Future[asyncio.Transport] = asyncio.get_running_loop().create_future()
        received: list[int] = []
        got = asyncio.Event()

        class Receiver(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                # Over TLS: once the handshake is done. A cast: uvloop's transports
                # do not derive from asyncio.Transport.
                made.set_result(cast(asyncio.Transport, transport))

            def data_received(self, data: bytes) -> None:
                received.append(len(data))
                got.set()

        loop = asyncio.get_running_loop()
        server = await loop.create_server(Receiver, "127.0.0.1", 0, ssl=tls.server)
        peer = Peer(server.sockets[0].getsockname()[1], tls)
        transport = await asyncio.wait_for(made, 5)
        peer.handshook()
        hold_until_queued(transport.get_extra_info("socket"), peer)
        await asyncio.wait_for(got.wait(), 5)
        peer.close()
        transport.abort()
        server.close()
        await server.wait_closed()
        return received

    with asyncio.Runner(loop_factory=asyncio_runner(loop)) as runner:
        received = runner.run(scenario())
    # Every whole record at once; the last may still have been on its way.
    assert received[0] >= MESSAGE - RECORD
