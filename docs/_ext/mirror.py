"""The anyio adapter is the trio adapter with anyio's names: a table of renames says so.

As httpcore generates its sync code from its async code with a table of substitutions
and checks the result, ``tests/tools/test_adapter_mirror.py`` applies ``RENAMES`` in
order to the text of every file of ``trio_impl/`` and diffs the result with ``anyio_impl/``
(``linediff``: indentation ignored). Every change that is left must be one of
``ALLOWED``, each with the reason the frameworks need it; every rename must apply
somewhere and every allowed change must still occur, so the table cannot go stale.
The diff page (``docs/sidebyside/diff.md``) shows both tables from here.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from linediff import Change, changes

OLD = "trio_impl"
NEW = "anyio_impl"


@dataclass(frozen=True)
class Rename:
    """``old`` becomes ``new`` wherever it is not part of a longer word.

    Within a line: the renamed trio code keeps its line numbers.
    """

    old: str
    new: str
    reason: str

    def __post_init__(self) -> None:
        if "\n" in self.old + self.new or self.old == self.new:
            raise ValueError(f"not a rename within a line: {self.old!r} -> {self.new!r}")

    def pattern(self) -> re.Pattern[str]:
        before = r"(?<!\w)" if re.match(r"\w", self.old) else ""
        after = r"(?!\w)" if re.search(r"\w$", self.old) else ""
        return re.compile(before + re.escape(self.old) + after)


@dataclass(frozen=True)
class Allowed:
    """A change left after the renames: in ``file``, the ``removed`` lines of the renamed
    trio code became the ``added`` lines of the anyio code (both stripped), for ``reason``.

    Reasons, like those of renames, mark code with backticks: the docs show it as code.
    """

    file: str
    removed: tuple[str, ...]
    added: tuple[str, ...]
    reason: str

    def key(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return self.removed, self.added


SAME_NAME = "the same name and meaning"
PROSE = "the docstrings name the framework"

# In order: a longer name before any shorter one it contains.
RENAMES: tuple[Rename, ...] = (
    Rename("import trio", "import anyio", "the framework"),
    Rename("echochat.trio_impl", "echochat.anyio_impl", "the adapter's own package"),
    Rename("trio.open_nursery", "anyio.create_task_group", "a nursery is a task group"),
    Rename("nursery", "task group", "the same, in the comments"),
    Rename(
        "trio.open_memory_channel",
        "anyio.create_memory_object_stream",
        "a memory channel is a memory object stream: a sending and a receiving end",
    ),
    Rename(
        "trio.MemoryReceiveChannel",
        "MemoryObjectReceiveStream",
        "its receiving end, imported from `anyio.streams.memory`",
    ),
    Rename(
        "trio.abc.Stream",
        "ByteStream",
        "a connection, plain TCP or TLS, as the services see it, imported from `anyio.abc`",
    ),
    Rename("trio.SocketStream", "SocketStream", "a TCP connection, imported from `anyio.abc`"),
    Rename(
        "tcp_socket(stream).getpeername()",
        "stream.extra(SocketAttribute.remote_address)",
        "anyio's streams give their socket's details as typed attributes, and a `TLSStream` "
        "passes on those of the stream it wraps",
    ),
    Rename(
        "tcp_socket(stream)",
        "stream.extra(SocketAttribute.raw_socket)",
        "and the socket itself, where trio's `SSLStream` has no `.socket`",
    ),
    Rename(
        "stream.socket",
        "stream.extra(SocketAttribute.raw_socket)",
        "and the socket itself",
    ),
    Rename(
        "listener.socket",
        "listener.extra(SocketAttribute.raw_socket)",
        "a listener's socket too",
    ),
    Rename("trio.SocketListener", "SocketListener", "a TCP listener, imported from `anyio.abc`"),
    Rename("trio.Nursery", "TaskGroup", "a nursery is a task group, imported from `anyio.abc`"),
    Rename("receive_some", "receive", "read what has arrived, up to so many bytes"),
    Rename("send_all", "send", "send every byte: both return once the kernel holds them"),
    Rename(
        "trio.EndOfChannel",
        "anyio.EndOfStream",
        "a memory stream whose sending end is closed has no more items",
    ),
    Rename("trio.CancelScope", "anyio.CancelScope", SAME_NAME),
    Rename("trio.move_on_after", "anyio.move_on_after", SAME_NAME),
    Rename("trio.fail_after", "anyio.fail_after", SAME_NAME),
    Rename("trio.aclose_forcefully", "anyio.aclose_forcefully", SAME_NAME),
    Rename("trio.current_time", "anyio.current_time", SAME_NAME),
    Rename("trio.sleep", "anyio.sleep", SAME_NAME),
    Rename("trio.sleep_forever", "anyio.sleep_forever", SAME_NAME),
    Rename(
        "trio.TaskStatus",
        "TaskStatus",
        "what `start()` hands a task to say it has started, imported from `anyio.abc`",
    ),
    Rename("trio.TASK_STATUS_IGNORED", "anyio.TASK_STATUS_IGNORED", SAME_NAME),
    Rename("trio.open_unix_socket", "anyio.connect_unix", "connect to a unix socket (Redis's)"),
    Rename("trio.open_tcp_stream", "anyio.connect_tcp", "connect over TCP (to Redis)"),
    Rename("trio.BrokenResourceError", "anyio.BrokenResourceError", SAME_NAME),
    Rename("trio.WouldBlock", "anyio.WouldBlock", SAME_NAME),
    Rename(
        "trio.lowlevel.checkpoint_if_cancelled",
        "anyio.lowlevel.checkpoint_if_cancelled",
        SAME_NAME,
    ),
    Rename("trio.lowlevel.checkpoint", "anyio.lowlevel.checkpoint", SAME_NAME),
    Rename("trio.open_signal_receiver", "anyio.open_signal_receiver", SAME_NAME),
    Rename("memory channels", "memory object streams", "the same, in a docstring"),
    Rename(
        "trio leaves SIGTERM",
        "anyio leaves SIGTERM",
        "neither framework handles SIGTERM: Python's default ends the process",
    ),
    Rename("on trio", "on anyio", PROSE),
    Rename("shutdown with trio", "shutdown with anyio", PROSE),
)

# Why a change is left after the renames; several changes may share a reason.
BACKENDS_AND_LISTENER = (
    "anyio runs on either backend, and listens with `create_tcp_listener()` where trio has "
    "`open_tcp_listeners()` (server.py)"
)
SUBMODULES = (
    "`ByteStream`, `SocketStream`, `SocketListener`, `TaskGroup`, `TaskStatus`, "
    "`SocketAttribute`, `MemoryObjectReceiveStream` and `TLSStream` are in `anyio.abc`, "
    "`anyio.streams.memory` and `anyio.streams.tls`, not in `anyio` itself as trio's are in "
    "`trio`"
)
TLS_SOCKET = (
    "trio's `SSLStream` passes on only its `SSLObject`'s attributes, not the `.socket` of the "
    "stream it wraps (trio/_ssl.py, `__getattr__`); anyio's `TLSStream` passes on every typed "
    "attribute of its stream"
)
RECEIVE_TYPE = (
    "anyio has no `move_on_at()`: a `CancelScope(deadline=...)` is the same scope (and the "
    "longer line is wrapped); and trio's `Stream.receive_some()` is typed `bytes | bytearray` "
    "where anyio's `ByteStream.receive()` is typed `bytes`"
)
SUPPRESS = (
    "anyio's `start_soon()` is typed for coroutine functions, trio's for any function that "
    "returns an awaitable; and anyio's `TLSStream.aclose()` can raise (below)"
)
UNWRAP = (
    "closing, anyio's `TLSStream` sends close_notify and waits for the client's (`unwrap()`, "
    "anyio/streams/tls.py), raising `ssl.SSLError` or `BrokenResourceError` if the client "
    "closes without one; trio's `SSLStream` sends its own and does not wait (trio/_ssl.py, "
    "`aclose()`)"
)
SSL_GENERIC = (
    "trio's `SSLStream` is generic in the stream it wraps, anyio's `TLSStream` is not (and the "
    "shorter line is not wrapped)"
)
RAW_SSL_ERROR = (
    "anyio's `TLSStream` lets an `ssl.SSLError` other than an unexpected EOF through as it is "
    "(say a record that does not decrypt), where trio's `SSLStream` raises "
    "`BrokenResourceError` from it (anyio/streams/tls.py, `_call_sslobject_method`)"
)
HANDSHAKE = (
    "trio's `SSLStream` does the handshake at the first send or receive unless "
    "`do_handshake()` forces it; anyio's `TLSStream.wrap()` does it before it returns. A failed "
    "trio handshake raises `BrokenResourceError` (the `SSLError` is its cause), or "
    "`TooSlowError` out of time; anyio lets `ssl.SSLError` through, raises `EndOfStream` at EOF "
    "and `TimeoutError`, an `OSError`, out of time"
)
MOVE_ON_AT = (
    "anyio has no `move_on_at()`: a `CancelScope(deadline=...)` is the same scope (and the "
    "longer line is wrapped)"
)
EOF = "at EOF trio's `receive_some()` returns `b\"\"`, anyio's `receive()` raises `EndOfStream`"
SEND_WAITS = (
    "anyio's `send()` waits until the bytes have left on its asyncio backend too, where a "
    "plain `write()` would return at once"
)
CUT_SEND = (
    "a cancelled send may have sent part of a line (trio#889), on anyio only on its trio "
    "backend; and which error a dead stream raises differs by anyio backend (anyio#671)"
)
CLOSED_OR_BROKEN = (
    "which of `BrokenResourceError` and `ClosedResourceError` a dead stream raises differs "
    "by anyio backend (anyio#671)"
)
EOF_AND_SEND = (
    'at EOF `receive()` raises where `receive_some()` returns `b""`, so the loop cannot test '
    "the chunk; and how anyio's `send()` waits on its asyncio backend"
)
WORKAROUND = (
    "`pause_reading_until_received()`: the workaround for anyio's asyncio backend, which "
    "reads the sockets it accepts without backpressure (anyio <= 4.16)"
)
UNIX_RACE = (
    "`tolerate_unix_socket_race()`: anyio's UNIX sockets on its asyncio backend set a "
    "cancelled future's result from a queued reader callback, which asyncio logs as an "
    "ERROR (anyio <= 4.16)"
)
IMPORT_ORDER = (
    "sorted imports (ruff): the adapter's own `echochat.anyio_impl` comes before the shared "
    "`echochat.core`, `echochat.hub` and `echochat.options`, `echochat.trio_impl` after them"
)
TIMEOUT = (
    "out of time, trio's `fail_after()` raises `TooSlowError`, anyio's `TimeoutError`, an `OSError`"
)
NODELAY = (
    "trio's `SocketStream` sets `TCP_NODELAY` itself (trio/_highlevel_socket.py); anyio's trio "
    "backend sets it in `connect_tcp()` and on its asyncio backend the transport does "
    "(anyio/_backends/_trio.py; Lib/asyncio/selector_events.py)"
)
RUN = (
    "`anyio.run()` takes the backend (and uvloop, on asyncio) from the options; "
    "`trio.run()` has one event loop"
)
LISTEN = (
    "trio's `open_tcp_listeners()` returns a list of listeners; anyio's `create_tcp_listener()` "
    "returns one `MultiListener` whose parts are in `.listeners`, typed as any listener, and "
    "names its options `local_host` and `local_port`"
)
ADDRESS = (
    "the address to announce: a trio listener has its `.socket`; anyio gives it as a typed "
    "attribute, whose type also allows a UNIX socket's path, so mypy needs the check"
)
COROUTINES = (
    "anyio's `start_soon()` is typed for coroutine functions, trio's for any function that "
    "returns an awaitable"
)
OWN_LOOP = (
    "each docstring says what its framework's own accept loop does on `EMFILE`, with its source"
)
WRAPPED = (
    "on anyio's trio backend `accept()` raises `BrokenResourceError` from the `OSError` "
    "(`_convert_socket_error`), so the errno is found on its cause"
)

ALLOWED: tuple[Allowed, ...] = (
    Allowed(
        "server.py",
        (),
        ('if options.backend == "asyncio":', "tolerate_unix_socket_race()"),
        UNIX_RACE,
    ),
    Allowed(
        "__init__.py",
        ('"""echochat on anyio: ``serve_tcp``, ``send``, memory object streams."""',),
        (
            (
                '"""echochat on anyio, either backend: ``create_tcp_listener``, ``send``, '
                'memory object streams."""'
            ),
        ),
        BACKENDS_AND_LISTENER,
    ),
    Allowed(
        "chat.py",
        (),
        (
            "from anyio.abc import ByteStream, SocketAttribute",
            "from anyio.streams.memory import MemoryObjectReceiveStream",
        ),
        SUBMODULES,
    ),
    Allowed(
        "chat.py",
        (
            "",
            "",
            "def tcp_socket(stream: ByteStream) -> trio.socket.SocketType:",
            (
                '"""The TCP socket under a connection, plain or TLS: '
                'an SSLStream has no ``socket``."""'
            ),
            "if isinstance(stream, trio.SSLStream):",
            "stream = stream.transport_stream",
            "assert isinstance(stream, SocketStream)  # What the listeners accept.",
            "return stream.extra(SocketAttribute.raw_socket)",
        ),
        (),
        TLS_SOCKET,
    ),
    Allowed(
        "chat.py",
        (
            "with trio.move_on_at(math.inf if deadline is None else deadline) as waiting:",
            "# bytes(): a Stream's is typed bytes | bytearray, but plain",
            "# and TLS streams return bytes, which it returns as they are.",
            "data = bytes(await connection.stream.receive(READ_SIZE))",
        ),
        (
            "with anyio.CancelScope(",
            "deadline=math.inf if deadline is None else deadline",
            ") as waiting:",
            "data = await connection.stream.receive(READ_SIZE)",
        ),
        RECEIVE_TYPE,
    ),
    Allowed(
        "chat.py",
        ("elif data:",),
        ("else:",),
        EOF,
    ),
    Allowed(
        "chat.py",
        (
            "else:",
            "break  # EOF",
        ),
        (),
        EOF,
    ),
    Allowed(
        "chat.py",
        ("except anyio.BrokenResourceError as error:",),
        (
            "except anyio.EndOfStream:",
            ("pass  # EOF: where trio's receive_some() returns b\"\", anyio's receive() raises."),
            "# A TLSStream lets an SSLError (say a record that does not decrypt) through.",
            "except (anyio.BrokenResourceError, ssl.SSLError) as error:",
        ),
        f"{EOF}; and {RAW_SSL_ERROR}",
    ),
    Allowed("chat.py", (), ("import ssl",), RAW_SSL_ERROR),
    Allowed("echo.py", (), ("import ssl",), RAW_SSL_ERROR),
    Allowed(
        "echo.py",
        (),
        (
            (
                "except ssl.SSLError as error:  # Let through by a TLSStream: say a record that "
                "does not decrypt."
            ),
            'log.debug("echo connection failed: %r", error)',
        ),
        RAW_SSL_ERROR,
    ),
    Allowed(
        "chat.py",
        ("# Blocks while the client's socket buffer is full; only this",),
        ("# Waits until the bytes have left, on both backends; only this",),
        SEND_WAITS,
    ),
    Allowed(
        "chat.py",
        (
            "# Closed for SendQ: a send cut off by the cancel may have sent some,",
            "# all or none of the chunk (its docstring; trio#889). trio does not mark",
            "# the stream broken, but the client may hold half a line, so we treat it",
            "# as broken: the farewell goes out only if nothing was in flight.",
        ),
        (
            "# Closed for SendQ: on the trio backend a cancelled send() may have sent",
            "# part of a line, so the farewell goes out only if nothing was in flight.",
            "# Which of Broken- and ClosedResourceError a dead stream raises differs by",
            '# backend (anyio#671), so both mean "the client is gone".',
        ),
        CUT_SEND,
    ),
    Allowed(
        "chat.py",
        (("with anyio.move_on_after(CLOSE_GRACE), suppress(anyio.BrokenResourceError):"),),
        (
            "with (",
            "anyio.move_on_after(CLOSE_GRACE),",
            "suppress(anyio.BrokenResourceError, anyio.ClosedResourceError),",
            "):",
        ),
        CLOSED_OR_BROKEN,
    ),
    Allowed(
        "echo.py",
        (),
        ("from anyio.abc import ByteStream",),
        SUBMODULES,
    ),
    Allowed(
        "echo.py",
        (
            "while chunk := await stream.receive(READ_SIZE):",
            "# send returns only once the kernel holds every byte, so while",
            "# the client does not read we do not read either: backpressure",
            "# with no user-space buffer beyond this one chunk.",
        ),
        (
            "while True:",
            "chunk = await stream.receive(READ_SIZE)",
            "# send() returns once the bytes have left (on asyncio, anyio sets",
            "# the write buffer limit to 0 and waits for it to empty), so while",
            "# the client does not read we do not read either.",
        ),
        EOF_AND_SEND,
    ),
    Allowed(
        "echo.py",
        (),
        (
            "except anyio.EndOfStream:",
            "pass",
        ),
        EOF,
    ),
    Allowed(
        "server.py",
        ("trio.run(serve, options)",),
        (
            "# The CLI allows uvloop only with the asyncio backend.",
            ('backend_options = {"use_uvloop": True} if options.loop == "uvloop" else None'),
            ("anyio.run(serve, options, backend=options.backend, backend_options=backend_options)"),
        ),
        RUN,
    ),
    Allowed(
        "server.py",
        (),
        (
            "",
            "",
            "def tolerate_unix_socket_race() -> None:",
            '"""Keep a race of anyio\'s UNIX sockets on asyncio (anyio <= 4.16) out of the log.',
            "",
            "A UNIX stream waits for its socket with ``loop.add_reader(sock, f.set_result,",
            "None)`` (anyio/_backends/_asyncio.py, ``_RawSocketMixin._wait_until_readable``).",
            "When the socket becomes readable in the loop iteration in which the waiting",
            "task is cancelled (the link's reader, when its other connection ended: a",
            "Redis that stops closes both at once), the future is cancelled before the",
            "queued ``set_result`` runs, which raises InvalidStateError, and asyncio logs",
            '"Exception in callback Future.set_result(None)" at ERROR. asyncio\'s own',
            "``sock_recv()`` checks ``fut.done()`` first. Nothing is lost: the read was",
            "cancelled anyway. So that case (InvalidStateError from a callback that sets a",
            "future's result) is logged at debug level; every other error goes to the",
            "handler that was there before. On the trio backend there is nothing to do.",
            '"""',
            "import asyncio  # noqa: PLC0415  (only on the asyncio backend)",
            "",
            "loop = asyncio.get_running_loop()",
            "previous = loop.get_exception_handler()",
            "",
            "def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:",
            "# asyncio's Handle keeps the callback, uvloop's does not show it: its",
            '# message names it ("Exception in callback ... set_result ...").',
            'message = str(context.get("message"))',
            'if isinstance(context.get("exception"), asyncio.InvalidStateError) and (',
            '"set_result" in message',
            "):",
            'log.debug("anyio\'s UNIX socket race, harmless: %s", context.get("message"))',
            "elif previous is not None:",
            "previous(loop, context)",
            "else:",
            "loop.default_exception_handler(context)",
            "",
            "loop.set_exception_handler(handle)",
            "",
            "",
            "def pause_reading_until_received(stream: SocketStream) -> None:",
            (
                '"""Restore backpressure on sockets accepted by anyio\'s asyncio backend '
                "(anyio <= 4.16)."
            ),
            "",
            "That backend stops reading a socket only at the end of a ``receive()``",
            "that had to wait, and ``connect_tcp()`` pauses the streams it creates, but",
            "``TCPSocketListener.accept()`` does not. Bytes that arrive before the",
            "first ``receive()`` start a read loop that nothing pauses while the",
            "handler is busy sending, so a client that writes without reading grows",
            "the server without bound (docs/design.md, item 5). Pausing",
            "here, as ``connect_tcp()`` does, fixes it; ``receive()`` resumes reading",
            "whenever it waits. ``_transport`` is private: on the trio backend, or if",
            "anyio changes it, there is nothing to pause and this does nothing.",
            '"""',
            'transport: Any = getattr(stream, "_transport", None)',
            "if transport is not None:",
            "transport.pause_reading()",
        ),
        f"{UNIX_RACE}; {WORKAROUND}",
    ),
    Allowed(
        "server.py",
        ("from collections.abc import Awaitable, Callable",),
        ("from collections.abc import Callable, Coroutine", "from contextlib import suppress"),
        SUPPRESS,
    ),
    Allowed(
        "server.py",
        (),
        (
            "from anyio.abc import SocketAttribute, SocketListener, SocketStream, TaskGroup",
            "from anyio.streams.tls import TLSStream",
        ),
        SUBMODULES,
    ),
    Allowed(
        "server.py",
        (
            "from echochat.core import CLOSE_GRACE, AcceptPacer",
            "from echochat.options import ServerOptions, announce_listening, queue_empty",
        ),
        (),
        IMPORT_ORDER,
    ),
    Allowed(
        "server.py",
        (),
        (
            "from echochat.core import CLOSE_GRACE, AcceptPacer",
            "from echochat.options import ServerOptions, announce_listening, queue_empty",
        ),
        IMPORT_ORDER,
    ),
    Allowed("link.py", (), ("from anyio.abc import SocketStream, TaskStatus",), SUBMODULES),
    Allowed("link.py", (), ("from echochat.anyio_impl.chat import take_pending",), IMPORT_ORDER),
    Allowed("link.py", ("from echochat.anyio_impl.chat import take_pending",), (), IMPORT_ORDER),
    Allowed(
        "link.py",
        ("except (OSError, trio.TooSlowError) as error:",),
        ("except OSError as error:  # fail_after() raises TimeoutError, an OSError.",),
        TIMEOUT,
    ),
    Allowed(
        "link.py",
        ("# Sets TCP_NODELAY, as every SocketStream does: a PUBLISH goes out at once.",),
        ("# Sets TCP_NODELAY on both backends: a PUBLISH goes out at once.",),
        NODELAY,
    ),
    Allowed(
        "link.py",
        (
            "# bytes(): a Stream's is typed bytes | bytearray, but a",
            "# SocketStream returns bytes, which it returns as they are.",
            "while data := bytes(await connection.stream.receive(READ_SIZE)):",
        ),
        ("while True:", "data = await connection.stream.receive(READ_SIZE)"),
        f"{EOF}; and {RECEIVE_TYPE}",
    ),
    Allowed(
        "link.py",
        (),
        (
            "except anyio.EndOfStream:",
            'return f"Redis closed the {connection.role.value} connection"',
        ),
        EOF,
    ),
    Allowed(
        "link.py",
        ('return f"Redis closed the {connection.role.value} connection"',),
        (),
        EOF,
    ),
    Allowed(
        "link.py",
        ("with trio.move_on_at(math.inf if deadline is None else deadline) as alarm.waiting:",),
        (
            "with anyio.CancelScope(",
            "deadline=math.inf if deadline is None else deadline",
            ") as alarm.waiting:",
        ),
        MOVE_ON_AT,
    ),
    Allowed(
        "server.py",
        (
            "listeners = await trio.open_tcp_listeners(",
            "port, host=options.host, backlog=options.backlog",
        ),
        (
            "listeners = await anyio.create_tcp_listener(",
            "local_host=options.host, local_port=port, backlog=options.backlog",
        ),
        LISTEN,
    ),
    Allowed(
        "server.py",
        ("for listener in listeners:",),
        (
            "for listener in listeners.listeners:",
            "assert isinstance(listener, SocketListener)  # A TCP listener's parts are.",
        ),
        LISTEN,
    ),
    Allowed(
        "server.py",
        ("addresses.append(listeners[0].socket.getsockname())",),
        (
            "address = listeners.extra(SocketAttribute.local_address)",
            "assert isinstance(address, tuple)  # An IP socket, not a UNIX one.",
            "addresses.append(address)",
        ),
        ADDRESS,
    ),
    Allowed(
        "server.py",
        ("with anyio.move_on_after(CLOSE_GRACE):",),
        (
            "# anyio's also waits for the client's close_notify (unwrap()), and",
            "# raises if the client closed without one.",
            (
                "with anyio.move_on_after(CLOSE_GRACE), suppress(ssl.SSLError, "
                "anyio.BrokenResourceError):"
            ),
        ),
        UNWRAP,
    ),
    Allowed(
        "server.py",
        (
            "async def secure(",
            "self, stream: SocketStream, tls: ssl.SSLContext",
            ") -> trio.SSLStream[SocketStream] | None:",
        ),
        ("async def secure(self, stream: SocketStream, tls: ssl.SSLContext) -> TLSStream | None:",),
        SSL_GENERIC,
    ),
    Allowed(
        "server.py",
        (
            "# SSLStream would do the handshake at the first send or",
            "# receive, with no bound of its own; doing it here bounds it.",
        ),
        (
            "# TLSStream.wrap() does the handshake before it returns, with",
            "# no bound of its own; this bounds it.",
        ),
        HANDSHAKE,
    ),
    Allowed(
        "server.py",
        (
            "connection = trio.SSLStream(stream, tls, server_side=True)",
            "await connection.do_handshake()",
            "except (trio.TooSlowError, anyio.BrokenResourceError) as error:",
            "# A plain-text client (the cause is an SSLError), a reset, a stall.",
        ),
        (
            "connection = await TLSStream.wrap(stream, server_side=True, ssl_context=tls)",
            "except (OSError, anyio.BrokenResourceError, anyio.EndOfStream) as error:",
            "# A plain-text client (ssl.SSLError), a reset, EOF, a stall (TimeoutError).",
        ),
        HANDSHAKE,
    ),
    Allowed(
        "server.py",
        ("handler: Callable[[SocketStream], Awaitable[None]],",),
        (
            (
                "# anyio's start_soon() takes coroutine functions only, where trio's takes "
                "any awaitable."
            ),
            "handler: Callable[[SocketStream], Coroutine[Any, Any, None]],",
        ),
        COROUTINES,
    ),
    Allowed(
        "server.py",
        (
            "What trio's serve_listeners does (trio/_highlevel_serve_listeners.py,",
            "_serve_one_listener: sleep 100 ms on EMFILE, ENFILE, ENOMEM, ENOBUFS), except",
            "that it logs an ERROR with a traceback on every retry, ten a second for as",
            "long as descriptors stay short; test_framework_traps.py pins that down.",
        ),
        (
            "Not Listener.serve(), which is ``while True: task_group.start_soon(handler, await",
            "self.accept())`` (anyio/abc/_sockets.py, anyio 4.16): the first EMFILE ends it and",
            "the server with it. On the asyncio backend accept() raises the OSError itself;",
            "on the trio backend a BrokenResourceError raised from it (_convert_socket_error,",
            "anyio/_backends/_trio.py). test_framework_traps.py pins both down.",
        ),
        OWN_LOOP,
    ),
    Allowed(
        "server.py",
        (
            "except OSError as error:",
            "if (retry := pacer.failed(error.errno, anyio.current_time())) is None:",
        ),
        (
            "except (OSError, anyio.BrokenResourceError) as error:",
            "# The trio backend raises BrokenResourceError from the OSError.",
            "cause = error if isinstance(error, OSError) else error.__cause__",
            "code = cause.errno if isinstance(cause, OSError) else None",
            "if (retry := pacer.failed(code, anyio.current_time())) is None:",
        ),
        WRAPPED,
    ),
    Allowed(
        "server.py",
        (),
        ("pause_reading_until_received(stream)",),
        WORKAROUND,
    ),
    Allowed(
        "server.py",
        (),
        ("from typing import Any",),
        f"{COROUTINES}; and the workaround's private transport",
    ),
)


def rename(text: str, uses: Counter[Rename] | None = None) -> str:
    """``text`` with every rule of ``RENAMES`` applied in order; ``uses`` counts each."""
    for rule in RENAMES:
        text, used = rule.pattern().subn(rule.new.replace("\\", r"\\"), text)
        if uses is not None:
            uses[rule] += used
    return text


@dataclass(frozen=True)
class FileMirror:
    """One file: the renamed trio code, the anyio code, and the reason of each change left."""

    name: str
    renamed: tuple[str, ...]
    anyio: tuple[str, ...]
    # None for a change that no entry of ALLOWED explains.
    reasons: dict[Change, Allowed | None]


@dataclass(frozen=True)
class Mirror:
    """What is left of the difference between the renamed trio code and the anyio code."""

    files: tuple[FileMirror, ...]
    uses: Counter[Rename]
    unused_allowed: tuple[Allowed, ...]

    @property
    def unused_renames(self) -> list[Rename]:
        return [rule for rule in RENAMES if not self.uses[rule]]

    @property
    def unexplained(self) -> list[tuple[str, Change]]:
        return [
            (file.name, change)
            for file in self.files
            for change, entry in file.reasons.items()
            if entry is None
        ]


def lines_of(path: Path) -> list[str]:
    """A file's lines; none if it does not exist (compared as ``diff -N`` would)."""
    return path.read_text().splitlines(keepends=True) if path.exists() else []


def check(adapters: Path) -> Mirror:
    """Rename ``adapters/trio_impl/*.py`` and match what still differs from ``anyio_impl``."""
    uses: Counter[Rename] = Counter(dict.fromkeys(RENAMES, 0))
    unused = list(ALLOWED)
    files = []
    names = sorted(
        {path.name for package in (OLD, NEW) for path in (adapters / package).glob("*.py")}
    )
    for name in names:
        old = rename("".join(lines_of(adapters / OLD / name)), uses).splitlines(keepends=True)
        new = lines_of(adapters / NEW / name)
        reasons: dict[Change, Allowed | None] = {}
        for change in changes(old, new):
            entry = next((e for e in unused if (e.file, e.key()) == (name, change.key())), None)
            if entry is not None:
                unused.remove(entry)
            reasons[change] = entry
        files.append(FileMirror(name, tuple(old), tuple(new), reasons))
    return Mirror(tuple(files), uses, tuple(unused))
