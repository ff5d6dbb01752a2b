"""What each framework's TLS does that the adapters and docs/backpressure.md rely on.

Each test runs a TLS server and client in one process, on 127.0.0.1, with a
certificate made for the module (tests/certs.py).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

import anyio
import pytest
import trio
import uvloop
from anyio.abc import ByteStream
from anyio.streams.tls import TLSStream

from certs import Certificate, make_certificate
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
