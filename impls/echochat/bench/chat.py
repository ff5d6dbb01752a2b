"""Chat fan-out load: N members in one channel, S of them posting, every member reading.

Members ``m0`` .. ``m{N-1}`` register and join ``#bench``; the first S are
also the senders. The members may be spread over several servers of one
network (``run_fan_out``): member ``i`` on the ``i % len(servers)``-th, so the
senders are spread too. Sender ``s`` posts ``PRIVMSG #bench :<s> <seq> <sent-at>``
with ``seq`` counting from 0 and ``sent-at`` the client's monotonic clock
when the line was written, so each message reaches the N - 1 other members
and its latency is read from its own text. One process drives every socket
through one ``selectors`` loop: the GIL would make client threads take turns
anyway, and the report gives the client's share of a core, so a run where
the client rather than the server is the limit shows as such.

Flow control: a window, not a rate. Sender ``s`` may post message ``k``
only once its message ``k - window`` has reached every member. A fixed rate
is wrong both ways: below what the server can do it measures the rate, not
the server; above it the members' queues grow until the server drops them
for SendQ. With the window the server's own speed paces the senders (a
closed loop), and no member can ever be more than ``senders * window``
messages behind, which ``run_chat`` checks fits the server's SendQ with room
to spare, so a drop for SendQ is impossible by construction and any loss is
a fault. The cost is that latency is partly the window's making: by
Little's law the messages in flight are throughput times latency, so a
bigger window buys batching (throughput) with queueing (latency).
DEFAULT_WINDOW was chosen by measuring that trade-off (see its comment).

Every delivery is checked as it arrives: each member must get each
sender's messages exactly once, in order, and nothing else; the run fails
with ``DeliveryError`` naming the member, sender and numbers otherwise.

For the soak test, ``stalled`` extra clients ``stalled0``.. join first and
never read: the server must drop each for SendQ, and every member must
hear of it exactly once (their QUIT is the one other line allowed), while
the messages keep reaching everyone else.
"""

from __future__ import annotations

import contextlib
import errno
import re
import resource
import selectors
import socket
import time
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol, TypedDict, Unpack

from echochat.core.limits import DEFAULT_SENDQ
from echochat.experiments.common import MiB, quantile
from echochat.launch import ServerUnderTest
from echochat.options import allow_open_files

CHANNEL = "#bench"
DEFAULT_SENDERS = 4
DEFAULT_MESSAGES = 100_000  # all senders together; with the duration, the run's bounds
DEFAULT_DURATION = 5.0  # seconds of posting
# Messages per sender. With 100 members and 4 senders on the 2-core machine,
# a window of 4 gave every server 2.5-6x the 50k deliveries/s target with p99
# at 10-35 ms; 8 bought 0-45% more throughput for about twice the p99, as
# Little's law says it must. With 1000 members 8 doubled throughput at the
# same p99, so the window is an option of run_chat.
DEFAULT_WINDOW = 4
# Clients connecting and registering at once: enough to keep the server
# busy, few enough to stay far below any listen backlog (asyncio's is 100).
SETUP_IN_FLIGHT = 64
SETUP_TIMEOUT = 120.0
# After posting ends, the longest to wait for messages still under way.
SETTLE = 10.0
RSS_INTERVAL = 0.1
# 64 KiB, like the servers: above glibc's initial 128 KiB mmap threshold every
# recv would cost an mmap (docs/backpressure.md, on warming servers up).
RECV_SIZE = 65_536
# Far more than a welcome, a NAMES list of 1000 nicks and 1000 JOINs.
SETUP_BUFFER_LIMIT = 1 << 20

# One relayed message, a whole line; the member's nick must be the sender's.
_STALLED_QUIT = re.compile(rb"^:stalled(\d+)![^ ]+ QUIT :SendQ exceeded\r$", re.MULTILINE)
_MESSAGE = re.compile(
    rb"^:m(\d+)![^ ]+ PRIVMSG " + re.escape(CHANNEL.encode()) + rb" :(\d+) (\d+) (\d+\.\d+)\r$",
    re.MULTILINE,
)


class DeliveryError(RuntimeError):
    """A message was lost, duplicated or reordered, or something else arrived instead."""


class Measured(Protocol):
    """A process whose CPU time and memory a run reads (a server, Redis)."""

    def rss(self) -> int: ...

    def cpu_seconds(self) -> float: ...


@dataclass(slots=True)
class FanOut:
    """One fan-out run, on one server or several; times in seconds, latency in ms."""

    members: int
    senders: int
    window: int
    messages: int  # posted, all senders together
    deliveries: int  # messages received by members: messages * (members - 1)
    setup_s: float  # connect, register and join every member
    duration_s: float  # first post to last delivery
    deliveries_per_s: float
    messages_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    client_cpu_s: float
    client_cpu_share: float  # of one core, over duration_s


@dataclass(slots=True)
class Usage:
    """What one process used over a fan-out run: CPU seconds, memory in MiB."""

    cpu_s: float
    rss_before_mib: float  # members joined, nothing posted yet
    rss_peak_mib: float


@dataclass(slots=True)
class ChatResult(FanOut):
    """A fan-out run on one server, with what that server used."""

    server: str
    server_cpu_s: float
    server_rss_before_mib: float
    server_rss_peak_mib: float


class Verifier:
    """Checks every delivery as it arrives and tracks which messages reached everyone.

    ``posted(s)`` announces sender ``s``'s next message; ``receive`` takes a
    member's bytes as they come off the socket (any split); ``finish`` checks
    that nothing is missing at the end. Sender ``s`` is member ``s``.
    """

    def __init__(self, members: int, senders: int, stalled: int = 0) -> None:
        if not 1 <= senders < members:
            raise ValueError(f"need 1 <= senders < members, not {senders} and {members}")
        self.members = members
        self.senders = senders
        # next_seq[member][sender]: the number that member must get next from that sender.
        self._next_seq = [[0] * senders for _ in range(members)]
        # arrivals[sender][seq]: how many members have that message so far.
        self._arrivals: list[list[int]] = [[] for _ in range(senders)]
        # complete[sender]: how many of its messages, from the first, every member has.
        # Each member gets a sender's messages in order, so they complete in order too.
        self.complete = [0] * senders
        self._pending = [b""] * members
        # quits[member][s]: how often that member heard stalled client s leave.
        self._quits = [[0] * stalled for _ in range(members)]
        self.latencies = array("d")  # seconds, one per delivery
        self.deliveries = 0

    def posted(self, sender: int) -> None:
        self._arrivals[sender].append(0)

    def posted_count(self, sender: int) -> int:
        return len(self._arrivals[sender])

    def all_complete(self) -> bool:
        return all(
            self.complete[sender] == len(self._arrivals[sender]) for sender in range(self.senders)
        )

    def receive(self, member: int, data: bytes, now: float) -> None:
        """Bytes from ``member``'s socket, read at ``now`` (the clock in the messages)."""
        if self._pending[member]:
            data = self._pending[member] + data
        end = data.rfind(b"\n") + 1
        self._pending[member] = data[end:]
        if not end:
            return
        matches = _MESSAGE.findall(data, 0, end)
        if len(matches) != data.count(b"\n", 0, end):
            self._stalled_quits(member, data[:end], len(matches))
        # The hot loop of the whole client: locals, and no call per line.
        next_seq = self._next_seq[member]
        arrivals = self._arrivals
        complete = self.complete
        latencies = self.latencies
        everyone = self.members - 1
        senders = self.senders
        for nick, sender_text, seq_text, stamp in matches:
            sender = int(sender_text)
            seq = int(seq_text)
            if (
                nick != sender_text
                or sender >= senders
                or sender == member
                or seq != next_seq[sender]
                or seq >= len(arrivals[sender])
            ):
                self._misdelivered(member, nick, sender, seq)
            next_seq[sender] = seq + 1
            latencies.append(now - float(stamp))
            counts = arrivals[sender]
            counts[seq] += 1
            if counts[seq] == everyone:
                complete[sender] = seq + 1
        self.deliveries += len(matches)

    def finish(self) -> None:
        """Every member must have every message posted by every other member,
        and have heard each stalled client leave once."""
        for member in range(self.members):
            for stalled, heard in enumerate(self._quits[member]):
                if heard != 1:
                    raise DeliveryError(f"m{member} heard stalled{stalled} leave {heard} times")
            for sender in range(self.senders):
                expected = 0 if sender == member else len(self._arrivals[sender])
                got = self._next_seq[member][sender]
                if got != expected:
                    raise DeliveryError(
                        f"m{member} got m{sender}'s messages up to #{got - 1} of "
                        f"#0..#{expected - 1}: {expected - got} missing"
                    )
            if self._pending[member]:
                raise DeliveryError(f"m{member} got a partial line: {self._pending[member]!r}")

    def _stalled_quits(self, member: int, block: bytes, messages: int) -> None:
        """Count the QUITs of stalled clients in ``block``; anything else is unexpected."""
        quits = [int(number) for number in _STALLED_QUIT.findall(block)]
        if messages + len(quits) != block.count(b"\n") or any(
            number >= len(self._quits[member]) for number in quits
        ):
            self._unexpected(member, block)
        for number in quits:
            self._quits[member][number] += 1

    def _unexpected(self, member: int, block: bytes) -> None:
        for line in block.splitlines(keepends=True):
            if not _MESSAGE.fullmatch(line.rstrip(b"\n")):
                raise DeliveryError(f"m{member} got an unexpected line: {line!r}")
        raise DeliveryError(f"m{member} got lines split oddly: {block[:300]!r}")

    def _misdelivered(self, member: int, nick: bytes, sender: int, seq: int) -> None:
        if nick != str(sender).encode():
            raise DeliveryError(f"m{member} got message {sender} #{seq} from m{nick.decode()}")
        if sender >= self.senders or seq >= len(self._arrivals[sender]):
            raise DeliveryError(f"m{member} got m{sender}'s #{seq}, which was never posted")
        if sender == member:
            raise DeliveryError(f"m{member} got its own message #{seq} back")
        expected = self._next_seq[member][sender]
        what = "duplicated or reordered" if seq < expected else "lost or reordered"
        raise DeliveryError(f"m{member} got m{sender}'s #{seq} when #{expected} was due: {what}")


@dataclass(slots=True)
class _Joining:
    """A client waiting for the PONG that ends a step (registration, synchronisation)."""

    index: int
    marker: bytes = b""  # what ends the step
    tail: bytes = b""  # the last bytes seen, in case the marker spans two reads
    seen: int = 0
    done: bool = False
    after: bytes = b""  # what came after the marker in the read that found it

    def expect(self, marker: bytes) -> None:
        """Start a step that ``marker`` ends."""
        self.marker = marker
        self.tail = self.after = b""
        self.seen = 0
        self.done = False


# The PONG that ends joining the channel.
_JOINED = b" :joined\r\n"


def open_clients(
    ports: Sequence[int],
    count: int,
    *,
    channel: str | None = None,
    in_flight: int = SETUP_IN_FLIGHT,
    timeout: float = SETUP_TIMEOUT,
) -> list[socket.socket]:
    """Connect and register ``count`` clients ``m0``.. (joined to ``channel`` if given),
    client ``i`` on ``ports[i % len(ports)]``.

    At most ``in_flight`` are between connect() and their last reply at a time.
    Clients already registered keep being read, because later JOINs are
    broadcast to them. Returns non-blocking sockets, in nick order.

    A client sends its JOIN only once welcomed (001): on a network the
    welcome waits for the client's introduction to come back from Redis, and
    a JOIN sent before it is refused (451). Then a PING: its PONG comes after
    the JOIN's replies, since a registered client's commands run in order.
    """
    wanted = count + 64  # stdio, the selector, the server's pipes, a margin
    if (allowed := allow_open_files(wanted)) < wanted:
        raise OSError(f"{count} connections need {wanted} open files; the limit is {allowed}")
    deadline = time.monotonic() + timeout
    socks: list[socket.socket] = []
    with contextlib.ExitStack() as on_failure, selectors.DefaultSelector() as selector:
        started = done = 0
        while done < count:
            while started < count and started - done < in_flight:
                socks.append(_start_connect(ports[started % len(ports)]))
                on_failure.callback(socks[-1].close)
                welcome = f" 001 m{started} :".encode()
                selector.register(socks[-1], selectors.EVENT_WRITE, _Joining(started, welcome))
                started += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{done} of {count} clients registered in {timeout} s")
            for key, mask in selector.select(remaining):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                state: _Joining = key.data
                if mask & selectors.EVENT_WRITE:
                    _send_registration(sock, state.index)
                    selector.modify(sock, selectors.EVENT_READ, state)
                elif not _read_to_marker(sock, state, state.marker):
                    continue
                elif channel is not None and state.marker != _JOINED:
                    _send_small(sock, f"JOIN {channel}\r\nPING :joined\r\n")
                    state.expect(_JOINED)
                else:
                    done += 1
                    if channel is None:
                        selector.unregister(sock)  # Nothing more will come.
        on_failure.pop_all()  # Registered: the caller closes them.
    return socks


def _start_connect(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    # Lines go out as posted, not when Nagle's algorithm sees fit.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    code = sock.connect_ex(("127.0.0.1", port))
    if code not in (0, errno.EINPROGRESS):
        sock.close()
        raise OSError(code, f"connect to 127.0.0.1:{port}: {errno.errorcode.get(code)}")
    return sock


def _send_registration(sock: socket.socket, index: int) -> None:
    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code:
        raise OSError(code, f"connect m{index}: {errno.errorcode.get(code)}")
    _send_small(sock, f"NICK m{index}\r\nUSER u 0 * :bench\r\n")


def _send_small(sock: socket.socket, lines: str) -> None:
    """Send a few lines on a non-blocking socket whose buffer is empty: it takes them whole."""
    data = lines.encode()
    if sock.send(data) != len(data):
        raise OSError(f"{lines!r} did not fit an empty socket buffer")


def _read_to_marker(sock: socket.socket, state: _Joining, marker: bytes) -> bool:
    """Read once; True when ``marker`` is first seen. Later bytes are read and discarded."""
    data = sock.recv(RECV_SIZE)
    if not data:
        raise ConnectionError(f"m{state.index} was disconnected; last bytes {state.tail!r}")
    if state.done:
        return False
    state.seen += len(data)
    window = state.tail + data
    found = window.find(marker)
    if found >= 0:
        state.done = True
        state.after = window[found + len(marker) :]
        return True
    if state.seen > SETUP_BUFFER_LIMIT:
        raise RuntimeError(
            f"m{state.index}: no {marker!r} in {state.seen} bytes: {window[-300:]!r}"
        )
    state.tail = window[-len(marker) :]
    return False


def synchronise(socks: list[socket.socket], timeout: float = SETUP_TIMEOUT) -> None:
    """PING every client and read to its PONG: then everything sent before has arrived.

    The server runs one client's commands in order and queues one client's
    lines in order, so once all are joined a member's PONG comes after every
    JOIN broadcast to it, and nothing may follow it until somebody posts.
    """
    deadline = time.monotonic() + timeout
    marker = b" :synchronised\r\n"
    with selectors.DefaultSelector() as selector:
        for index, sock in enumerate(socks):
            selector.register(sock, selectors.EVENT_READ, _Joining(index))
            _send_small(sock, "PING :synchronised\r\n")
        waiting = len(socks)
        while waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{waiting} of {len(socks)} clients did not answer a PING")
            for key, _ in selector.select(remaining):
                state: _Joining = key.data
                if _read_to_marker(key.fileobj, state, marker):  # type: ignore[arg-type]
                    if state.after:
                        raise DeliveryError(f"m{state.index} got {state.after[:300]!r} after PONG")
                    selector.unregister(key.fileobj)
                    waiting -= 1


@dataclass(slots=True)
class _Sender:
    index: int
    sock: socket.socket
    outgoing: bytearray
    limit: int  # messages it may post in all


class Load(TypedDict, total=False):
    """How hard a fan-out run pushes; each left out takes ``run_fan_out``'s default."""

    senders: int
    messages: int  # all senders together
    duration: float  # seconds of posting at most
    window: int
    sendq: int  # the servers' --sendq: the window must fit in it
    stalled: int  # clients that join and never read


def run_chat(server: ServerUnderTest, members: int, **load: Unpack[Load]) -> ChatResult:
    """Fan ``messages`` (all senders together) out to ``members``, for at most ``duration`` s.

    Warms the server first (one connect/close, the same for every server).
    ``sendq`` is the server's ``--sendq``: the window must fit in it. Raises
    ``DeliveryError`` if any member misses, repeats or reorders a message,
    or if one of the ``stalled`` clients is not dropped.
    """
    fan_out, usage = run_fan_out([server], {server.label: server}, members, **load)
    used = usage[server.label]
    return ChatResult(
        **asdict(fan_out),
        server=server.label,
        server_cpu_s=used.cpu_s,
        server_rss_before_mib=used.rss_before_mib,
        server_rss_peak_mib=used.rss_peak_mib,
    )


def run_fan_out(
    servers: Sequence[ServerUnderTest],
    measured: Mapping[str, Measured],
    members: int,
    *,
    senders: int = DEFAULT_SENDERS,
    messages: int = DEFAULT_MESSAGES,
    duration: float = DEFAULT_DURATION,
    window: int = DEFAULT_WINDOW,
    sendq: int = DEFAULT_SENDQ,
    stalled: int = 0,
) -> tuple[FanOut, dict[str, Usage]]:
    """``run_chat`` with the members spread over ``servers`` (of one network), and what
    each of the ``measured`` processes used while the messages were posted and read.

    Every server is warmed the same way first; the ``stalled`` clients are
    on the first server.
    """
    verifier = Verifier(members, senders, stalled)
    # The longest line a member can get (a nick no longer than any member's).
    line = len(_format(f":m{members - 1}!u@127.0.0.1 ", senders - 1, messages, time.monotonic()))
    if senders * window * line > sendq // 2:
        raise ValueError(f"{senders} senders x window {window} could overflow a {sendq}-byte SendQ")
    for server in servers:
        server.warm_up()
    setup_start = time.monotonic()
    stalled_socks = [_join_and_stall(servers[0].port, number) for number in range(stalled)]
    socks = open_clients([server.port for server in servers], members, channel=CHANNEL)
    try:
        synchronise(socks)
        setup = time.monotonic() - setup_start
        return _post_and_read(
            measured,
            socks,
            verifier,
            messages=messages,
            duration=duration,
            window=window,
            setup=setup,
        )
    finally:
        for sock in socks + stalled_socks:
            sock.close()


def _join_and_stall(port: int, number: int) -> socket.socket:
    """A client ``stalled<number>`` in the channel that reads nothing after joining.

    Its receive buffer is tiny, so the kernel takes little on its behalf
    and what the server sends it piles up in the server's SendQ.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(SETUP_TIMEOUT)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        f"NICK stalled{number}\r\nUSER u 0 * :stalled\r\nJOIN {CHANNEL}\r\n"
        "PING :registered\r\n".encode()
    )
    state = _Joining(number)
    while not _read_to_marker(sock, state, b" :registered\r\n"):
        pass
    return sock


def _format(prefix: str, sender: int, seq: int, now: float) -> bytes:
    return f"{prefix}PRIVMSG {CHANNEL} :{sender} {seq} {now:.6f}\r\n".encode()


def _post_and_read(
    measured: Mapping[str, Measured],
    socks: list[socket.socket],
    verifier: Verifier,
    *,
    messages: int,
    duration: float,
    window: int,
    setup: float,
) -> tuple[FanOut, dict[str, Usage]]:
    senders = verifier.senders
    quota = [messages // senders + (s < messages % senders) for s in range(senders)]
    posting = [_Sender(s, socks[s], bytearray(), quota[s]) for s in range(senders)]
    rss_before = {name: process.rss() for name, process in measured.items()}
    rss_peak = dict(rss_before)
    cpu_before = {name: process.cpu_seconds() for name, process in measured.items()}
    client_before = _client_cpu()
    start = now = time.monotonic()
    stop_posting = start + duration
    give_up = stop_posting + SETTLE
    next_sample = start + RSS_INTERVAL
    with selectors.DefaultSelector() as selector:
        for index, sock in enumerate(socks):
            selector.register(sock, selectors.EVENT_READ, index)
        while now < give_up:
            for sender in posting:
                _post(sender, verifier, window, now if now < stop_posting else None, selector)
            if (
                now >= stop_posting
                or all(s.limit == verifier.posted_count(s.index) for s in posting)
            ) and verifier.all_complete():
                break
            if now >= next_sample:
                _sample_rss(measured, rss_peak)
                next_sample = now + RSS_INTERVAL
            for key, mask in selector.select(min(RSS_INTERVAL, max(give_up - now, 0.0))):
                if mask & selectors.EVENT_WRITE:
                    _flush(posting[key.data], selector)
                if mask & selectors.EVENT_READ:
                    data = key.fileobj.recv(RECV_SIZE)  # type: ignore[union-attr]
                    if not data:
                        raise DeliveryError(f"m{key.data} was disconnected by the server")
                    verifier.receive(key.data, data, time.monotonic())
            now = time.monotonic()
    end = time.monotonic()
    client_cpu = _client_cpu() - client_before
    usage = {
        name: Usage(
            cpu_s=round(process.cpu_seconds() - cpu_before[name], 3),
            rss_before_mib=round(rss_before[name] / MiB, 2),
            rss_peak_mib=round(max(rss_peak[name], process.rss()) / MiB, 2),
        )
        for name, process in measured.items()
    }
    verifier.finish()
    elapsed = end - start
    latencies = sorted(verifier.latencies)
    posted = sum(verifier.posted_count(s) for s in range(senders))
    fan_out = FanOut(
        members=len(socks),
        senders=senders,
        window=window,
        messages=posted,
        deliveries=verifier.deliveries,
        setup_s=round(setup, 6),
        duration_s=round(elapsed, 6),
        deliveries_per_s=round(verifier.deliveries / elapsed, 1),
        messages_per_s=round(posted / elapsed, 1),
        p50_ms=round(quantile(latencies, 0.5) * 1000, 3),
        p99_ms=round(quantile(latencies, 0.99) * 1000, 3),
        max_ms=round(latencies[-1] * 1000, 3),
        client_cpu_s=round(client_cpu, 3),
        client_cpu_share=round(client_cpu / elapsed, 3),
    )
    return fan_out, usage


def _sample_rss(measured: Mapping[str, Measured], peak: dict[str, int]) -> None:
    for name, process in measured.items():
        peak[name] = max(peak[name], process.rss())


def _post(
    sender: _Sender,
    verifier: Verifier,
    window: int,
    now: float | None,
    selector: selectors.BaseSelector,
) -> None:
    """Post what the window allows (nothing once ``now`` is None: time is up), then send.

    Messages are stamped when posted, not when the socket takes them: a
    server that stops reading a sender then shows as latency.
    """
    index = sender.index
    if now is not None:
        posted = verifier.posted_count(index)
        allowed = min(sender.limit, verifier.complete[index] + window)
        for seq in range(posted, allowed):
            sender.outgoing += _format("", index, seq, now)
            verifier.posted(index)
    if sender.outgoing:
        _flush(sender, selector)


def _flush(sender: _Sender, selector: selectors.BaseSelector) -> None:
    """Send what the socket takes; wait for it to be writable only while something is left."""
    was_blocked = bool(selector.get_key(sender.sock).events & selectors.EVENT_WRITE)
    with contextlib.suppress(BlockingIOError):
        del sender.outgoing[: sender.sock.send(sender.outgoing)]
    blocked = bool(sender.outgoing)
    if blocked != was_blocked:
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if blocked else 0)
        selector.modify(sender.sock, events, sender.index)


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
