"""Behaviours of asyncio, trio and anyio that the adapters rely on or work around.

Each test pins down one claim made in a comment or in docs/protocol.md, so a
framework release that changes it shows up here first.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import psutil
import pytest
import trio
import uvloop
from anyio.streams.buffered import BufferedByteReceiveStream
from test_version_matrix import PROBES, Interpreter, find_interpreter
from test_version_matrix import run_probe as run_version_probe

from flood import MiB, send_without_reading

MINIMAL_ANYIO_ECHO = Path(__file__).parent / "minimal" / "anyio_echo.py"
RECEIVE_BUFFER = Path(__file__).parent / "minimal" / "receive_buffer.py"


def run_probe(name: str) -> dict[str, Any]:
    """Run version_probes/NAME.py under this interpreter, as the version matrix does."""
    result: dict[str, Any] = run_version_probe(
        Interpreter(sys.executable, platform.python_version()), name
    )
    return result


def run_probe_on_uvloop(name: str) -> dict[str, Any]:
    """Run the ``main()`` of version_probes/NAME.py on a uvloop event loop."""
    spec = importlib.util.spec_from_file_location(f"version_probes.{name}", PROBES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result: dict[str, Any] = runner.run(probe.main())
    return result


ACCEPT_EMFILE = Path(__file__).parent / "minimal" / "accept_emfile.py"


def run_minimal_anyio_echo(*args: str) -> tuple[int, int]:
    """Flood a minimal anyio echo server without reading; return (bytes sent, RSS growth)."""
    server = subprocess.Popen(
        [sys.executable, str(MINIMAL_ANYIO_ECHO), *args], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().rsplit(":", 1)[1])
        baseline = psutil.Process(server.pid).memory_info().rss
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sent = send_without_reading(sock, 200 * MiB)
            grown = psutil.Process(server.pid).memory_info().rss - baseline
    finally:
        server.kill()
        server.wait()
        assert server.stdout is not None
        server.stdout.close()
    return sent, grown


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(
            ["asyncio"],
            marks=pytest.mark.xfail(
                strict=True,
                reason="anyio <= 4.16, asyncio backend: TCPSocketListener.accept() leaves the "
                "transport reading (connect_tcp() pauses it), and SocketStream.receive() pauses "
                "only after waiting, so bytes queued before the first receive() are never "
                "throttled; echochat works around it in anyio_impl/server.py",
            ),
            id="asyncio-backend",
        ),
        pytest.param(["asyncio", "--pause"], id="asyncio-backend-with-echochat-workaround"),
        pytest.param(["trio"], id="trio-backend"),
    ],
)
def test_minimal_anyio_echo_server_keeps_memory_bounded(args: list[str]) -> None:
    sent, grown = run_minimal_anyio_echo(*args)
    assert sent < 64 * MiB, f"the server kept reading: {sent / MiB:.0f} MiB accepted"
    assert grown < 16 * MiB, f"RSS grew by {grown / MiB:.0f} MiB"


def test_asyncio_readline_returns_the_tail_of_an_overlong_line_as_a_new_line() -> None:
    """Why the asyncio adapter reads with read() and frames lines in the core.

    StreamReader.readline() turns LimitOverrunError into ValueError and, when
    no separator is buffered yet, clears the buffer (Lib/asyncio/streams.py,
    StreamReader.readline): the rest of the long line later reads as a line.
    """

    async def scenario() -> bytes:
        reader = asyncio.StreamReader(limit=16)
        reader.feed_data(b"PRIVMSG #c :" + b"x" * 40)
        with pytest.raises(ValueError, match="chunk exceed the limit"):
            await reader.readline()
        reader.feed_data(b" QUIT :injected\n")
        return await reader.readline()

    assert asyncio.run(scenario()) == b" QUIT :injected\n"


def test_asyncio_readline_discards_an_overlong_line_whose_lf_is_already_buffered() -> None:
    """The other half of readline()'s over-long line: when the LF has arrived,
    LimitOverrunError says the separator was found, and readline() deletes the
    line through its LF (Lib/asyncio/streams.py, StreamReader.readline and
    readuntil), so nothing of it comes back and the next line reads normally."""

    async def scenario() -> bytes:
        reader = asyncio.StreamReader(limit=16)
        reader.feed_data(b"PRIVMSG #c :" + b"x" * 40 + b" QUIT :injected\nNICK ok\n")
        with pytest.raises(ValueError, match="Separator is found, but chunk is longer than limit"):
            await reader.readline()
        return await reader.readline()

    assert asyncio.run(scenario()) == b"NICK ok\n"


def test_asyncio_drain_does_not_yield_below_the_high_water_mark() -> None:
    """drain() returns at once while the transport's buffer is below 64 KiB (gh-75279).

    So a write()+drain() loop to a fast reader can starve other tasks. The
    scenario is the version matrix's probe, run here on this interpreter
    (test_version_matrix.py runs it on every installed 3.11, 3.12 and 3.13).
    """
    result = run_probe("drain_without_yield")
    assert result["outcome"] == "never yields", result
    assert result["other_task_ran"] == 0


def test_asyncio_drain_after_a_reset_raises_what_met_it_first() -> None:
    """drain() re-raises the reader's stored error, ConnectionResetError(104), when
    the loop met the reset first, and ConnectionResetError('Connection lost')
    when a write() met it; write() logs from the fifth or the sixth write on
    (the version matrix's drain_after_reset probe, run on this interpreter)."""
    result = run_probe("drain_after_reset")
    assert result["reader"]["drain"] == "ConnectionResetError(104, 'Connection reset by peer')"
    assert result["write"]["drain"] == "ConnectionResetError('Connection lost',)"
    assert (result["reader"]["logged"], result["write"]["logged"]) == (16, 15)
    assert result["reader"]["log_messages"] == ["socket.send() raised exception."]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_asyncio_timeout_reschedule_raises_once_expired_before_its_task_resumes(loop: str) -> None:
    """Why the link's timer (loops.LinkAlarm.rearm) leaves an expired Timeout alone.

    When a Timeout's deadline passes it cancels its task, but until that task
    resumes the Timeout is only expiring: another task that moves its
    deadline then gets RuntimeError from reschedule() (Lib/asyncio/timeouts.py,
    3.11 to 3.13), and expired() is already True.
    """
    seen: dict[str, object] = {}

    async def waiter(timeouts: list[asyncio.Timeout]) -> None:
        with contextlib.suppress(TimeoutError):
            # Due at once: entering schedules its expiry for the loop's next turn.
            async with asyncio.timeout_at(asyncio.get_running_loop().time()) as timeout:
                timeouts.append(timeout)
                await asyncio.Event().wait()

    async def main() -> None:
        timeouts: list[asyncio.Timeout] = []
        task = asyncio.create_task(waiter(timeouts))
        # The ready queue is first in, first out: the waiter enters, then its
        # expiry runs and cancels it, then we run before it resumes.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        (timeout,) = timeouts
        seen["expired"] = timeout.expired()
        seen["done"] = task.done()
        try:
            timeout.reschedule(asyncio.get_running_loop().time() + 60)
        except RuntimeError as error:
            seen["error"] = str(error)
        await task

    (uvloop.run if loop == "uvloop" else asyncio.run)(main())
    assert seen == {
        "expired": True,
        "done": False,
        "error": "Cannot change state of expiring Timeout",
    }


def test_uvloop_write_raises_once_the_loop_has_seen_the_reset() -> None:
    """On uvloop 0.23, write() raises RuntimeError ("the handler is closed",
    UVHandle._ensure_alive) once the loop has handled the loss, and logs nothing;
    writes before that are dropped silently and drain() raises
    ConnectionResetError('Connection lost'), as on the selector loop."""
    result = run_probe_on_uvloop("drain_after_reset")
    assert result["reader"]["write"].startswith("RuntimeError("), result["reader"]
    assert "the handler is closed" in result["reader"]["write"]
    assert result["reader"]["writes_accepted"] == 0
    assert result["write"]["write"] == "nothing", result["write"]
    assert result["write"]["drain"] == "ConnectionResetError('Connection lost',)"
    assert result["reader"]["logged"] == result["write"]["logged"] == 0


def test_uvloop_low_water_mark_is_16_bytes() -> None:
    """uvloop 0.23's default low-water mark is FLOW_CONTROL_HIGH_WATER // 4 = 16
    *bytes* (the high one is FLOW_CONTROL_HIGH_WATER * 1024; uvloop
    handles/basetransport.pyx), so drain() waits until the buffer is all but empty."""

    async def scenario() -> tuple[tuple[int, int], bool, int]:
        peers: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        accepted = asyncio.Event()

        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peers.append((reader, writer))
            accepted.set()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        _, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        await accepted.wait()
        peer_reader, peer_writer = peers[0]
        # Small kernel buffers on both sides: left to autotuning, loopback can
        # absorb the whole 4 MiB, and writing would never pause.
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        peer_writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        limits = writer.transport.get_write_buffer_limits()
        writer.write(b"x" * (4 * MiB))  # The peer is not reading yet: writing pauses.
        drain = asyncio.ensure_future(writer.drain())
        await asyncio.sleep(0)
        waited = not drain.done()
        reading = asyncio.ensure_future(peer_reader.readexactly(4 * MiB))
        await drain
        left = writer.transport.get_write_buffer_size()
        await reading
        for stream in (writer, peer_writer):
            stream.close()
            await stream.wait_closed()
        server.close()
        await server.wait_closed()
        return limits, waited, left

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        limits, waited, left = runner.run(scenario())
    assert limits == (16, 64 * 1024)
    assert waited
    assert left <= 16


def test_uvloop_writelines_pauses_like_write() -> None:
    """The writelines() flow-control bug (cpython#127655) is the selector
    transport's: uvloop's writelines() pauses past the high-water mark."""
    result = run_probe_on_uvloop("writelines_flow_control")
    assert result["outcome"] == "pauses", result


def test_one_large_write_is_buffered_whole_past_the_high_water_mark() -> None:
    """Backpressure acts between writes: write() takes all it is given, so one
    16 MiB write() to a peer that does not read leaves megabytes in the
    transport, far past the 64 KiB high-water mark, before drain() can wait
    (Lib/asyncio/selector_events.py, _SelectorSocketTransport.write appends to
    an unbounded buffer). The scenario is the writelines_flow_control probe's
    control case."""
    result = run_probe("writelines_flow_control")["write"]
    assert result["buffered"] > 4 * MiB, result
    assert result["drain_waited"], result


def test_start_server_keeps_a_strong_reference_to_each_handler_task() -> None:
    """StreamReaderProtocol keeps the handler's task in self._task (cpython
    PR #96323, gh-90467; Lib/asyncio/streams.py), so a handler task does not
    need a TaskGroup to stay alive: echochat's TaskGroup is there to wait for
    the handlers at shutdown."""

    async def scenario() -> bool:
        held = asyncio.Event()
        holds = False

        async def handler(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal holds
            holds = writer._protocol._task is asyncio.current_task()  # type: ignore[attr-defined]
            writer.close()
            held.set()

        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        _, client = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        await held.wait()
        client.close()
        await client.wait_closed()
        server.close()
        await server.wait_closed()
        return holds

    assert asyncio.run(scenario())


def receive_buffer_placement(**environment: str) -> dict[str, Any]:
    ran = subprocess.run(
        [sys.executable, str(RECEIVE_BUFFER)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        # Not -I: MALLOC_MMAP_THRESHOLD_ is read by glibc, but keep PYTHON* out.
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MALLOC_"))},
            **environment,
        },
    )
    result: dict[str, Any] = json.loads(ran.stdout)
    return result


def test_a_cold_process_receives_into_an_mmap_until_a_whole_buffer_is_freed() -> None:
    """Why a cold asyncio server is slower: its transport's recv(256 KiB) buffer
    is above glibc's initial 128 KiB mmap threshold, so each read is an mmap (and
    an mremap and a munmap) until a recv that returns b"" frees a whole buffer
    and glibc raises the threshold; MALLOC_MMAP_THRESHOLD_ does the same from
    the start (tests/tools/minimal/receive_buffer.py says how)."""
    cold = receive_buffer_placement()
    assert cold["max_size"] == 256 * 1024
    assert not cold["cold_on_heap"], cold
    assert cold["after_eof_on_heap"], cold
    tuned = receive_buffer_placement(MALLOC_MMAP_THRESHOLD_=str(MiB))
    assert tuned["cold_on_heap"], tuned


def test_trio_cancelled_send_all_can_send_part_of_the_data() -> None:
    """Why the trio and anyio adapters skip the farewell after a cancelled send.

    trio's docs: if send_all is cancelled, some, all or none of the data may
    have been sent (trio.abc.SendStream.send_all; trio#889). Nothing marks the
    stream broken: the next send_all works and its bytes follow the cut-off
    part, so it is the peer's view of the protocol that is broken.
    """

    def drain(sock: socket.socket) -> bytes:
        received = bytearray()
        while True:
            try:
                received += sock.recv(MiB)
            except BlockingIOError:
                return bytes(received)

    async def scenario() -> tuple[int, int, bytes]:
        left, right = socket.socketpair()
        right.setblocking(False)
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(left))
        payload = b"m" * (8 * MiB)
        with trio.move_on_after(0.5):  # The peer does not read: send_all blocks.
            await stream.send_all(payload)
        received = len(drain(right))
        await stream.send_all(b"marker\n")  # Raises if the stream were marked broken.
        after = drain(right)
        await stream.aclose()
        right.close()
        return received, len(payload), after

    received, total, after = trio.run(scenario)
    assert 0 < received < total
    assert after == b"marker\n"


def test_trio_socket_stream_sets_nodelay_and_a_16_kib_notsent_lowat() -> None:
    """trio's SocketStream sets TCP_NODELAY and TCP_NOTSENT_LOWAT = 16 KiB on its
    socket (src/trio/_highlevel_socket.py, SocketStream.__init__; trio#72), so the
    kernel holds little unsent data for it."""

    async def scenario() -> tuple[int, int]:
        listener = trio.socket.socket()
        await listener.bind(("127.0.0.1", 0))
        listener.listen()
        stream = await trio.open_tcp_stream("127.0.0.1", listener.getsockname()[1])
        options = (
            stream.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
            stream.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT),
        )
        await stream.aclose()
        listener.close()
        return options

    nodelay, notsent_lowat = trio.run(scenario)
    assert nodelay
    assert notsent_lowat == 16 * 1024


def test_trio_send_all_always_checkpoints() -> None:
    """send_all yields to other tasks even when the kernel takes every byte at
    once (trio's checkpoint rules: every async function in trio checkpoints),
    unlike asyncio's drain() below the high-water mark."""

    async def scenario() -> int:
        ran = 0

        async def count() -> None:
            nonlocal ran
            while True:
                ran += 1
                await trio.lowlevel.checkpoint()

        left, right = trio.socket.socketpair()
        stream = trio.SocketStream(left)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(count)
            await trio.lowlevel.checkpoint()  # The counter has started.
            before = ran
            for _ in range(100):
                await stream.send_all(b"x" * 100)  # 10 KB: the socket buffer takes it all.
            during = ran - before
            nursery.cancel_scope.cancel()
        await stream.aclose()
        right.close()
        return during

    # About once per send_all (asyncio's drain() below the mark: 0 times).
    assert trio.run(scenario) >= 90


def test_concurrent_sends_raise_busy_resource_error_on_trio() -> None:
    """Why each chat client has exactly one writer task (trio#328)."""

    async def scenario() -> None:
        left, right = trio.socket.socketpair()
        stream = trio.SocketStream(left)
        with pytest.RaisesGroup(trio.BusyResourceError):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream.send_all, b"a" * (8 * MiB))
                nursery.start_soon(stream.send_all, b"b" * (8 * MiB))
        await stream.aclose()
        right.close()

    trio.run(scenario)


def test_anyio_receive_until_can_return_more_than_max_bytes() -> None:
    """Why echochat does not frame lines with receive_until (anyio PR #1340)."""

    async def scenario() -> bytes:
        send, receive = anyio.create_memory_object_stream[bytes](1)
        await send.send(b"A" * 1000 + b"\n")
        buffered = BufferedByteReceiveStream(receive)
        line = await buffered.receive_until(b"\n", max_bytes=10)
        send.close()
        receive.close()
        return line

    assert len(anyio.run(scenario)) == 1000


def test_asyncio_write_is_plain_and_the_watermarks_are_64_and_16_kib() -> None:
    """write() returns None (there is no awrite(): cpython#78847 added it during 3.8
    development, cpython#82423 reverted it before 3.8.0); the transport pauses the
    protocol above 64 KiB and resumes it at or below 16 KiB (Lib/asyncio/transports.py,
    _FlowControlMixin._set_write_buffer_limits)."""

    async def scenario() -> tuple[object, tuple[int, int], bool]:
        served = asyncio.Event()

        async def close_at_once(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()
            await writer.wait_closed()
            served.set()

        server = await asyncio.start_server(close_at_once, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        # What mypy already knows from typeshed, checked here at run time.
        result = writer.write(b"x")  # type: ignore[func-returns-value]
        limits = writer.transport.get_write_buffer_limits()
        writer.close()
        await writer.wait_closed()
        await served.wait()
        server.close()
        await server.wait_closed()
        return result, limits, hasattr(writer, "awrite")

    result, limits, has_awrite = asyncio.run(scenario())
    assert result is None
    assert limits == (16 * 1024, 64 * 1024)
    assert not has_awrite


def test_asyncio_start_server_can_report_a_cancelled_handler() -> None:
    """Why the asyncio adapter spawns handlers into its own TaskGroup and never cancels
    one: on 3.11.7 and 3.12.1 start_server's done callback (cpython#110894)
    calls task.exception(), which raises on a cancelled task ("Exception in
    callback"); 3.11.8, 3.12.2 and 3.13 close it silently (cpython PR #113690;
    the version matrix, docs/design/version_matrix.json, has every release).
    Lib/asyncio/streams.py, StreamReaderProtocol.connection_made."""

    async def scenario() -> list[dict[str, object]]:
        reported: list[dict[str, object]] = []
        asyncio.get_running_loop().set_exception_handler(
            lambda _, context: reported.append(context)
        )
        handlers: list[asyncio.Task[object]] = []
        started = asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.append(task)
            started.set()
            try:
                await reader.read()
            finally:
                writer.close()

        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        _, client = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        await started.wait()
        handlers[0].cancel()
        # Done callbacks run in the order they were added: start_server's first.
        await asyncio.wait(handlers)
        client.close()
        await client.wait_closed()
        server.close()
        await server.wait_closed()
        return reported

    reported = asyncio.run(scenario())
    affected = sys.version_info[:3] in ((3, 11, 7), (3, 12, 1))
    assert bool(reported) == affected, reported


def test_trio_serve_tcp_closes_the_stream_when_the_handler_returns() -> None:
    """What the trio adapter's handle_connection does itself now that it accepts in its own
    loop: close the stream when the handler returns (trio _highlevel_serve_listeners.py,
    _run_handler: aclose_forcefully)."""

    async def handler(_: trio.SocketStream) -> None:
        return

    async def scenario() -> bytes:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
            client = await trio.open_tcp_stream("127.0.0.1", listeners[0].socket.getsockname()[1])
            with trio.fail_after(5):
                received = await client.receive_some()
            await client.aclose()
            nursery.cancel_scope.cancel()
        return received

    assert trio.run(scenario) == b""  # EOF: serve_tcp closed it.


def _send_in_pieces(sock: socket.socket, payload: bytes) -> None:
    """Send ``payload`` in small pieces with pauses, so the receiver often waits for more."""
    for start in range(0, len(payload), 4096):
        sock.sendall(payload[start : start + 4096])
        if start % 32768 == 0:
            time.sleep(0.003)  # Longer than the receiver's deadline: shapes the load.
    sock.shutdown(socket.SHUT_WR)


PAYLOAD = bytes(range(256)) * 4096  # 1 MiB with a pattern: loss or reordering shows


def test_receives_cut_off_by_a_deadline_lose_no_bytes() -> None:
    """Why the adapters can wait for input only until the core's next deadline.

    asyncio's StreamReader.read (asyncio/streams.py, _wait_for_data before
    taking from its buffer) and anyio's asyncio backend (it waits on its
    protocol's read event, anyio/_backends/_asyncio.py) wait first and take
    bytes only after. trio (and anyio on trio) calls recv() first
    (trio/_socket.py, _nonblocking_helper) and waits only on BlockingIOError;
    _try_sync checks for cancellation before the call and, after a call that
    returned, takes a shielded checkpoint, so a cancellation never discards
    what recv() returned. So a receive cancelled by a deadline has taken
    nothing, and the next one gets every byte, in order.
    A 1 ms deadline per receive makes hundreds of cancellations likely.
    """

    def check(received: bytes, cancelled: int) -> None:
        assert received == PAYLOAD
        assert cancelled > 0

    async def trio_scenario() -> None:
        left, right = socket.socketpair()
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(left))
        received, cancelled = bytearray(), 0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, _send_in_pieces, right, PAYLOAD)
            while True:
                with trio.move_on_at(trio.current_time() + 0.001) as waiting:
                    data = await stream.receive_some(65536)
                if waiting.cancelled_caught:
                    cancelled += 1
                elif data:
                    received += data
                else:
                    break
        await stream.aclose()
        right.close()
        check(bytes(received), cancelled)

    async def anyio_scenario() -> None:
        left, right = socket.socketpair()
        async with await anyio.abc.UNIXSocketStream.from_socket(left) as stream:
            received, cancelled = bytearray(), 0
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(anyio.to_thread.run_sync, _send_in_pieces, right, PAYLOAD)
                while True:
                    with anyio.CancelScope(deadline=anyio.current_time() + 0.001) as waiting:
                        try:
                            data = await stream.receive(65536)
                        except anyio.EndOfStream:
                            break
                    if waiting.cancelled_caught:
                        cancelled += 1
                    else:
                        received += data
        right.close()
        check(bytes(received), cancelled)

    async def asyncio_scenario() -> None:
        left, right = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=left)
        loop = asyncio.get_running_loop()
        sending = asyncio.create_task(asyncio.to_thread(_send_in_pieces, right, PAYLOAD))
        received, cancelled = bytearray(), 0
        while True:
            try:
                async with asyncio.timeout_at(loop.time() + 0.001):
                    data = await reader.read(65536)
            except TimeoutError:
                cancelled += 1
                continue
            if not data:
                break
            received += data
        await sending
        writer.close()
        await writer.wait_closed()
        right.close()
        check(bytes(received), cancelled)

    trio.run(trio_scenario)
    anyio.run(anyio_scenario, backend="asyncio")
    anyio.run(anyio_scenario, backend="trio")
    asyncio.run(asyncio_scenario())


def run_accept_emfile(kind: str, python: str = sys.executable) -> dict[str, Any]:
    """The accept_emfile.py probe's findings; a probe that breaks or never ran out of
    descriptors raises RuntimeError, which a strict xfail(raises=AssertionError) does not
    take for the expected failure."""
    ran = subprocess.run(
        [python, "-I", str(ACCEPT_EMFILE), kind],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        # -I leaves out site-packages: give back where trio, anyio and uvloop are.
        env=None if kind == "asyncio" else {"PYTHONPATH": os.pathsep.join(sys.path)},
    )
    if ran.returncode != 0 or ran.stderr:
        raise RuntimeError(f"accept_emfile.py {kind} failed:\n{ran.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(ran.stdout)
    if not result.get("filled"):
        raise RuntimeError(f"the probe did not run out of descriptors: {result}")
    return result


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="cpython#151615 (3.11.7, 3.12.1, 3.13.0): BaseSelectorEventLoop._accept_connection "
    "does not return after an EMFILE; it calls accept() again up to `backlog` (100) times per "
    "wake-up, each one reported (with its traceback) and each scheduling another retry 1 s "
    "later; fixed by PR #151616. The asyncio adapters accept with sock_accept() instead",
)
@pytest.mark.parametrize(
    "minor",
    [
        # A Python that is not installed is a skip decided at collection, with its reason.
        pytest.param(
            minor,
            marks=pytest.mark.skipif(
                isinstance(found := find_interpreter(minor), str), reason=str(found)
            ),
        )
        for minor in ("3.11", "3.12", "3.13")
    ],
)
def test_asyncio_start_server_reports_running_out_once_per_wake_up(minor: str) -> None:
    interpreter = find_interpreter(minor)
    assert not isinstance(interpreter, str), interpreter
    result = run_accept_emfile("asyncio", interpreter.executable)
    if result["reports_while_exhausted"] < 1:
        raise RuntimeError(f"start_server never hit EMFILE: {result}")
    assert result["reply"] == "hi\n", result  # It does recover, a second later.
    assert result["reports_while_exhausted"] == 1, result


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="uvloop 0.23 accepts in libuv: on EMFILE or ENFILE, uv__server_io calls "
    "uv__emfile_trick (libuv src/unix/stream.c), which closes a spare descriptor, then accepts "
    "and closes every queued connection, silently; the asyncio adapters accept with "
    "sock_accept() instead",
)
def test_uvloop_serves_a_client_queued_while_out_of_descriptors() -> None:
    result = run_accept_emfile("uvloop")
    assert result["reply"] == "hi\n", result


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="trio 0.35 serve_listeners (trio/_highlevel_serve_listeners.py, _serve_one_listener) "
    "logs an ERROR with a traceback on every 100 ms retry; the trio adapter has its own loop",
)
def test_trio_serve_tcp_logs_running_out_once() -> None:
    result = run_accept_emfile("trio")
    assert result["reply"] == "hi\n", result  # It does recover: this part holds.
    if result["reports_while_exhausted"] < 1:
        raise RuntimeError(f"serve_tcp never hit EMFILE: {result}")
    assert result["reports_while_exhausted"] == 1, result


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="anyio 4.16 Listener.serve (anyio/abc/_sockets.py) handles no accept() error: EMFILE "
    "ends it (an OSError on the asyncio backend, BrokenResourceError from it on trio's); the "
    "anyio adapter has its own loop",
)
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_anyio_serve_survives_running_out_of_descriptors(backend: str) -> None:
    result = run_accept_emfile(f"anyio-{backend}")
    assert "serve_raised" not in result, result
    assert result["reply"] == "hi\n", result


def test_asyncio_sock_accept_does_not_suspend_when_a_connection_waits() -> None:
    """Why the asyncio adapter's accept_loop yields after each connection: sock_accept()
    accepts at once when it can (BaseSelectorEventLoop._sock_accept sets the future's result
    before sock_accept awaits it, Lib/asyncio/selector_events.py), and awaiting a done future
    does not suspend, so a loop over it starves every other task while connections wait."""

    async def scenario() -> tuple[int, int]:
        other_task_ran = 0

        async def other() -> None:
            nonlocal other_task_ran
            while True:
                other_task_ran += 1
                await asyncio.sleep(0)

        with socket.create_server(("127.0.0.1", 0), backlog=64) as listener:
            listener.setblocking(False)
            port = listener.getsockname()[1]
            # Connected: on loopback the 20 are in the accept queue once connect() returns.
            clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
            loop = asyncio.get_running_loop()
            ticker = asyncio.create_task(other())
            await asyncio.sleep(0)  # The ticker starts ...
            before = other_task_ran
            for _ in clients:  # ... and never runs again while 20 are accepted.
                sock, _ = await loop.sock_accept(listener)
                sock.close()
            ran_meanwhile = other_task_ran - before
            ticker.cancel()
            for client in clients:
                client.close()
        return before, ran_meanwhile

    started, ran_meanwhile = asyncio.run(scenario())
    assert started == 1
    assert ran_meanwhile == 0


SIGNAL_PENDING_AT_CLOSE = """
import signal, sys, trio

async def main() -> None:
    if sys.argv[1] == "ignore-first":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        signal.raise_signal(signal.SIGTERM)
        async for _ in signals:
            break
        signal.raise_signal(signal.SIGTERM)  # Pending when the receiver closes.
        await trio.lowlevel.checkpoint()
    print("survived", flush=True)

trio.run(main)
"""


@pytest.mark.parametrize("before", ["default", "ignore-first"])
def test_trio_raises_a_pending_signal_again_when_its_receiver_closes(before: str) -> None:
    """Why the trio and anyio adapters set SIGINT and SIGTERM to SIG_IGN before receiving them.

    A second SIGTERM during shutdown is received but not consumed; when the
    receiver closes, trio raises it again under the handler from before it
    opened: by default that ends the process, with SIG_IGN nothing happens.
    """
    ran = subprocess.run(
        [sys.executable, "-c", SIGNAL_PENDING_AT_CLOSE, before],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if before == "default":
        # Raised again as the receiver closes, or, if it was still on its way in,
        # as trio hands it over afterwards: either way before the process ends.
        assert ran.returncode == -signal.SIGTERM, ran
    else:
        assert ran.returncode == 0, ran
        assert ran.stdout == "survived\n"


LOOP_FACTORIES = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.mark.parametrize("loop", list(LOOP_FACTORIES))
def test_sock_recv_into_cancelled_after_its_recv_loses_the_bytes(loop: str) -> None:
    """Why asyncio_sockets_impl/chat.py keeps its deadlines on a call_at timer.

    The reader callback (CPython Lib/asyncio/selector_events.py,
    _sock_recv_into; uvloop/loop.pyx, Loop._sock_recv_into) calls recv_into()
    and sets the future's result; a task.cancel() that lands before the task
    resumes (Lib/asyncio/tasks.py, Task.cancel: the future is done, so
    _must_cancel) throws CancelledError into the coroutine instead, and the
    count is gone while the bytes have left the kernel. Made deterministic by
    blocking the loop past the deadline while the bytes arrive, so the
    reader and the timeout run in the same iteration.
    """

    async def scenario() -> tuple[bool, bytes, bytes]:
        running = asyncio.get_running_loop()
        left, right = socket.socketpair()
        left.setblocking(False)
        buffer = bytearray(16)

        def arrive_late() -> None:
            right.send(b"hello")
            time.sleep(0.1)  # Past the deadline below: both fire in one iteration.

        running.call_later(0.01, arrive_late)
        timed_out = False
        try:
            async with asyncio.timeout(0.05):
                await running.sock_recv_into(left, buffer)
        except TimeoutError:
            timed_out = True
        try:
            left_in_kernel = left.recv(16)
        except BlockingIOError:
            left_in_kernel = b""
        left.close()
        right.close()
        return timed_out, left_in_kernel, bytes(buffer[:5])

    with asyncio.Runner(loop_factory=LOOP_FACTORIES[loop]) as runner:
        timed_out, left_in_kernel, in_buffer = runner.run(scenario())
    assert timed_out
    # Not in the kernel any more: only in our buffer, with no count to say so.
    assert left_in_kernel == b""
    assert in_buffer == b"hello"


@pytest.mark.parametrize(("loop", "suspends"), [("asyncio", False), ("uvloop", True)])
def test_sock_recv_into_with_bytes_waiting_suspends_only_on_uvloop(
    loop: str, suspends: bool
) -> None:
    """asyncio's sock_recv_into() tries recv_into() first and returns without
    suspending when bytes are waiting (Lib/asyncio/selector_events.py,
    sock_recv_into); uvloop's always adds a reader and awaits a future
    (uvloop/loop.pyx, Loop.sock_recv_into), so every receive is a trip
    through the loop, and other callbacks run in between."""

    async def scenario() -> bool:
        running = asyncio.get_running_loop()
        left, right = socket.socketpair()
        left.setblocking(False)
        right.send(b"waiting")
        ran: list[bool] = []
        running.call_soon(ran.append, True)
        count = await running.sock_recv_into(left, bytearray(16))
        assert count == len(b"waiting")
        left.close()
        right.close()
        return bool(ran)

    with asyncio.Runner(loop_factory=LOOP_FACTORIES[loop]) as runner:
        assert runner.run(scenario()) is suspends


def test_asyncio_sets_nodelay_only_for_proto_tcp() -> None:
    """Why loops.listening_socket() asks for IPPROTO_TCP rather than call socket.create_server().

    A transport sets TCP_NODELAY only on a socket whose proto is IPPROTO_TCP
    (Lib/asyncio/base_events.py, _set_nodelay; 3.11 to 3.13), and an accepted
    socket inherits its listener's proto: 0 from socket.create_server().
    """
    from echochat.loops import listening_socket  # noqa: PLC0415

    async def nodelay_of(listener: socket.socket) -> int:
        loop = asyncio.get_running_loop()
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            sock, _ = await loop.sock_accept(listener)
            transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, sock)
            option = transport.get_extra_info("socket").getsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY
            )
            transport.close()
        return int(option)

    plain = socket.create_server(("127.0.0.1", 0))
    plain.setblocking(False)
    with plain, listening_socket("127.0.0.1", 0, 16) as ours:
        assert plain.proto == 0
        assert ours.proto == socket.IPPROTO_TCP
        assert asyncio.run(nodelay_of(plain)) == 0
        assert asyncio.run(nodelay_of(ours)) != 0
