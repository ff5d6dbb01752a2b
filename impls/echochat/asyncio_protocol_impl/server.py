"""Listening, signals and shutdown on asyncio Transports and Protocols (a teaching variant)."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
from collections.abc import Callable, Collection

from echochat.asyncio_protocol_impl.chat import ChatConnection, ChatService
from echochat.asyncio_protocol_impl.echo import EchoConnection, EchoService
from echochat.asyncio_protocol_impl.link import link_loop
from echochat.core import AcceptPacer
from echochat.loops import asyncio_loop_factory, like_plain_tcp, listening_sockets
from echochat.options import ServerOptions, announce_listening, queue_empty

log = logging.getLogger(__name__)


def run(options: ServerOptions) -> None:
    with asyncio.Runner(loop_factory=asyncio_loop_factory(options.loop)) as runner:
        runner.run(serve(options))


async def serve(options: ServerOptions) -> None:
    service = ChatService(options) if options.service == "chat" else EchoService(options)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop_on_signal, signum, stop)
    # No handler tasks: the loop calls each connection's Protocol methods
    # itself. If one raises, the transport logs it and closes that
    # connection (connection_lost() still runs); the server goes on. Only a
    # TLS handshake, which can stall, gets a task until it is done.
    handshakes: set[asyncio.Task[None]] = set()
    linking = None
    if isinstance(service, ChatService) and options.redis is not None:
        # The link to the network: a task beside the accept loops until
        # shutdown. Should it fail (LinkRefusedError) the server stops as on
        # a signal, and serve() raises what it failed with.
        linking = asyncio.create_task(link_loop(service.hub))
        linking.add_done_callback(lambda _: stop.set())
    ports = options.listening_ports()
    with listening_sockets(options.host, ports, options.backlog) as listeners:
        announce_listening(*(listener.getsockname() for listener, _ in listeners))
        accepting = []
        for listener, tls in listeners:
            connect = Connect(service.protocol_factory, tls, options.handshake_timeout, handshakes)
            accepting.append(asyncio.create_task(accept_loop(listener, connect)))
        await stop.wait()
        for task in accepting:
            task.cancel()  # Stop accepting; connections stay open.
        await asyncio.wait(accepting)
    for task in handshakes:
        task.cancel()  # Not connections yet: nothing to say goodbye to.
    if handshakes:
        await asyncio.wait(handshakes)
    service.shutdown()  # On a network, this queues the server's SPLIT for Redis.
    if linking is not None:
        linking.cancel()  # Its transports still have CLOSE_GRACE to send it.
        await asyncio.wait([linking])
    await wait_closed(service.connections)
    if linking is not None and not linking.cancelled():
        linking.result()  # It failed, which stopped the server: raise why.


async def accept_loop(listener: socket.socket, connect: Connect) -> None:
    """Accept connections until cancelled, pausing while the process is out of descriptors.

    asyncio_impl/server.py's accept_loop, which says why it is not the loop's own,
    except that each socket is put under a Protocol here, with the public
    connect_accepted_socket(), instead of getting a task.
    """
    loop = asyncio.get_running_loop()
    pacer = AcceptPacer()
    while True:
        try:
            sock, _ = await loop.sock_accept(listener)
        except OSError as error:
            if (retry := pacer.failed(error.errno, loop.time())) is None:
                raise
            if retry.warning is not None:
                log.warning(retry.warning)
            await asyncio.sleep(retry.pause)
            continue
        if pacer.pausing and (warning := pacer.accepted(loop.time(), queue_empty(listener))):
            log.warning(warning)
        if connect.tls is None:
            await connect(sock)
        else:
            # The handshake takes round trips and may stall: never in this loop.
            handshake = asyncio.create_task(connect(sock))
            connect.handshakes.add(handshake)
            handshake.add_done_callback(connect.handshakes.discard)


class Connect:
    """Puts an accepted socket under a new Protocol, plain or TLS."""

    def __init__(
        self,
        protocol_factory: Callable[[], asyncio.Protocol],
        tls: ssl.SSLContext | None,
        handshake_timeout: float,
        handshakes: set[asyncio.Task[None]],
    ) -> None:
        self.protocol_factory = protocol_factory
        self.tls = tls
        self.handshake_timeout = handshake_timeout
        self.handshakes = handshakes

    async def __call__(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            # With ssl=, connection_made() runs only after the handshake, and
            # a failed handshake never calls connection_lost(): the Protocol
            # must register nothing before connection_made().
            transport, _ = await loop.connect_accepted_socket(
                self.protocol_factory,
                sock,
                ssl=self.tls,
                ssl_handshake_timeout=None if self.tls is None else self.handshake_timeout,
            )
        except OSError as error:
            # Reset before it could be wrapped, or a failed TLS handshake (see
            # asyncio_impl/server.py, handle_connection): nothing to serve.
            log.debug("connection failed before it was served: %r", error)
            sock.close()
            return
        if self.tls is not None:
            like_plain_tcp(transport)


def stop_on_signal(signum: int, stop: asyncio.Event) -> None:
    log.info("%s: shutting down", signal.Signals(signum).name)
    stop.set()


async def wait_closed(connections: Collection[ChatConnection | EchoConnection]) -> None:
    """Until connection_lost() has run for every connection: nobody waits for them otherwise.

    It ends: shutdown() closes each one, and every close is cut short by an
    abort() after CLOSE_GRACE. A connection accepted meanwhile is refused.
    """
    while connections:
        await asyncio.wait([connection.closed for connection in connections])
