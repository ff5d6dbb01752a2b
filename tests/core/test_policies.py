"""The core's time and abuse policies, exactly: registration timeout, keepalive, flood control,
the per-IP limit, LUSERS, and the validation of their limits.

Time is the harness's clock: nothing happens between calls unless a test
advances it, and then each connection's timer fires at its deadline, as an
adapter's would. Times are binary fractions (0.5, 0.25) wherever a test
checks an instant, so that float rounding cannot move an event across it.
"""

from __future__ import annotations

from typing import Any

import pytest
from core_helpers import CREATED, SERVER, Harness, lenient_limits, parse_line, prefix_of

from echochat.core import ChatCore, Close, ConnId, Effect, Limits

REGISTRATION_TIMEOUT = b"ERROR :Closing link (Registration timeout)\r\n"
PING_TIMEOUT = b"ERROR :Closing link (Ping timeout: 60 seconds)\r\n"
EXCESS_FLOOD = b"ERROR :Closing link (Excess Flood)\r\n"
TOO_MANY = b"ERROR :Closing link (Too many connections from your IP)\r\n"
KEEPALIVE = f"PING :{SERVER}"

# Every policy off: nothing but input ever makes the core act.
ALL_OFF: dict[str, Any] = {
    "registration_timeout": 0,
    "ping_interval": 0,
    "flood_rate": 0,
    "max_per_ip": 0,
}


class ProgressCheckingCore(ChatCore):
    """A ChatCore that fails a test where an adapter would spin.

    An adapter calls ``handle_timer`` again as soon as ``deadline`` is not in
    the future, so a call that leaves the deadline at or before ``now`` makes
    it call again at once, for ever if its clock has not moved (as in
    ``Harness.advance``). Failing here turns that hang into a clear error. Lines
    left by a bounded turn (``has_ready_lines``) are the exception: the adapter
    calls again after a yield, and each call runs at least one of them.
    """

    def handle_timer(self, conn: ConnId, now: float) -> list[Effect]:
        effects = super().handle_timer(conn, now)
        deadline = self.deadline(conn)
        assert deadline is None or self.has_ready_lines(conn) or deadline > now, (
            f"handle_timer({conn}, {now!r}) left deadline {deadline!r}: an adapter would spin"
        )
        return effects


def harness(**overrides: Any) -> Harness:
    """A Harness over ``lenient_limits(**overrides)`` whose server checks timer progress."""
    h = Harness(lenient_limits(**overrides))
    h.core = ProgressCheckingCore(h.limits, created=CREATED)
    return h


def pongs(h: Harness, conn: ConnId) -> list[str]:
    """The tokens of the PONG replies ``conn`` has received since the last take."""
    got = []
    for line in h.take(conn):
        message = parse_line(line)
        assert message.command == "PONG", line
        got.append(message.params[-1])
    return got


def ping_lines(count: int, start: int = 0) -> list[str]:
    return [f"PING t{n}" for n in range(start, start + count)]


def tokens(count: int, start: int = 0) -> list[str]:
    return [f"t{n}" for n in range(start, start + count)]


# -- Defaults and validation ---------------------------------------------------------------


def test_defaults_are_the_documented_ones() -> None:
    limits = Limits()
    assert limits.registration_timeout == 60
    assert limits.ping_interval == 120
    assert limits.ping_timeout == 60
    assert limits.flood_burst == 20
    assert limits.flood_rate == 5
    assert limits.recvq == 8192
    assert limits.max_per_ip == 16


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"registration_timeout": -1}, "registration_timeout must be 0"),
        ({"ping_interval": -0.5}, "ping_interval must be 0"),
        ({"flood_rate": -1}, "flood_rate must be 0"),
        ({"max_per_ip": -1}, "max_per_ip must be 0"),
        ({"ping_timeout": 0}, "ping_timeout must be more than 0"),
        ({"ping_timeout": -1}, "ping_timeout must be more than 0"),
        ({"flood_burst": 0}, "flood_burst must be at least 1"),
        ({"recvq": 511}, r"recvq \(511\) must hold at least one line"),
        ({"max_line": 100, "recvq": 99}, r"recvq \(99\) must hold"),
    ],
)
def test_invalid_limits_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Limits(**overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        ALL_OFF,
        # A ping timeout or burst only matters while its policy is on.
        {"ping_interval": 0, "ping_timeout": 0},
        {"flood_rate": 0, "flood_burst": 0},
        {"recvq": 512},
        {"max_line": 64, "recvq": 64},
        {"ping_timeout": 0.25, "flood_burst": 1, "flood_rate": 0.5},
    ],
)
def test_valid_limits_are_accepted(overrides: dict[str, Any]) -> None:
    limits = Limits(**overrides)
    for name, value in overrides.items():
        assert getattr(limits, name) == value


# -- Registration timeout --------------------------------------------------------------------


def test_registration_timeout_closes_at_the_deadline_and_not_before() -> None:
    h = harness()
    conn = h.connect()
    assert h.core.deadline(conn) == 1060.0
    # Woken early, as an adapter may be: nothing happens.
    assert h.apply(h.core.handle_timer(conn, 1059.5)) == []
    assert h.advance(59.5) == []
    assert conn not in h.closed
    assert h.advance(0.5) == [Close(conn, REGISTRATION_TIMEOUT, flush=True)]
    assert h.core.client_count == 0
    assert h.core.deadline(conn) is None


def test_registration_timeout_counts_from_connect_not_from_input() -> None:
    """Bytes, whole lines and a half registration buy no time."""
    h = harness(registration_timeout=10)
    trickler = h.connect()
    half = h.connect()
    h.send(half, "NICK alice")
    for _ in range(9):
        h.advance(1)
        h.send(half, "PING x")
        h.feed(trickler, b"N")  # One byte a second, never a line (slowloris).
    h.take(half)
    assert h.advance(0.5) == []
    assert h.advance(0.5) == [
        Close(trickler, REGISTRATION_TIMEOUT, flush=True),
        Close(half, REGISTRATION_TIMEOUT, flush=True),
    ]


def test_nick_is_freed_after_a_registration_timeout() -> None:
    h = harness()
    squatter = h.connect()
    h.send(squatter, "NICK alice")
    other = h.connect()
    h.send(other, "NICK alice")
    assert [parse_line(line).command for line in h.take(other)] == ["433"]
    h.advance(60)
    assert squatter in h.closed
    assert other in h.closed  # It too never registered.
    h.register("alice")


def test_registration_stops_the_registration_timer() -> None:
    h = harness()
    conn = h.register("alice")
    assert h.core.deadline(conn) == 1000.0 + 120  # Only the keepalive is left.
    assert h.advance(119.5) == []
    assert conn not in h.closed


def test_registration_timeout_0_is_off() -> None:
    h = harness(registration_timeout=0)
    conn = h.connect()
    assert h.core.deadline(conn) is None
    assert h.advance(100_000) == []
    h.send(conn, "NICK alice", "USER alice 0 * :A")
    assert [parse_line(line).command for line in h.take(conn)][-1] == "422"


# -- Keepalive -----------------------------------------------------------------------------


def test_ping_after_the_interval_of_silence_and_not_before() -> None:
    h = harness()
    conn = h.register("alice")
    assert h.advance(119.5) == []
    assert h.take(conn) == []
    h.advance(0.5)
    assert h.take(conn) == [KEEPALIVE]
    # The timeout runs from the PING.
    assert h.core.deadline(conn) == 1000.0 + 120 + 60
    # One PING per silence, not one per wakeup.
    assert h.apply(h.core.handle_timer(conn, 1150.0)) == []
    assert h.take(conn) == []


@pytest.mark.parametrize("line", ["PONG x", f"PONG :{SERVER}", "LUSERS", "FOO", "", "\xff"])
def test_any_whole_line_resets_the_keepalive(line: str) -> None:
    h = harness()
    conn = h.register("alice")
    h.advance(100)
    h.feed(conn, line.encode("latin-1") + b"\r\n")
    h.take(conn)
    assert h.core.deadline(conn) == 1100.0 + 120
    h.advance(119.5)
    assert h.take(conn) == []
    h.advance(0.5)
    assert h.take(conn) == [KEEPALIVE]


def test_a_reply_to_the_ping_cancels_the_timeout() -> None:
    h = harness()
    conn = h.register("alice")
    h.advance(120)
    assert h.take(conn) == [KEEPALIVE]
    h.advance(59.5)
    h.send(conn, f"PONG :{SERVER}")
    assert h.core.deadline(conn) == 1179.5 + 120
    assert h.advance(100) == []
    assert conn not in h.closed
    h.advance(20)
    assert h.take(conn) == [KEEPALIVE]


def test_ping_timeout_closes_at_the_deadline_and_tells_channel_peers_once() -> None:
    h = harness()
    alice = h.register("alice")
    bob = h.register("bob")
    loner = h.register("carol")
    h.join(alice, "#a")
    h.join(bob, "#a", alice)
    h.join(alice, "#b")
    h.join(bob, "#b", alice)
    h.advance(120)
    for conn in (alice, bob, loner):
        assert h.take(conn) == [KEEPALIVE]
    h.send(bob, f"PONG :{SERVER}")
    h.send(loner, f"PONG :{SERVER}")
    assert h.advance(59.5) == []
    effects = h.advance(0.5)
    assert effects[0] == Close(alice, PING_TIMEOUT, flush=True)
    assert h.now == 1180.0
    assert h.take(bob) == [f":{prefix_of('alice')} QUIT :Ping timeout: 60 seconds"]
    assert h.take(loner) == []
    assert h.core.client_count == 2
    # The nick is free again.
    h.register("alice")


def test_ping_timeout_reason_names_the_configured_timeout() -> None:
    h = harness(ping_interval=10, ping_timeout=2.5)
    conn = h.register("alice")
    h.advance(12.5)
    assert h.closed[conn] == Close(
        conn, b"ERROR :Closing link (Ping timeout: 2.5 seconds)\r\n", flush=True
    )


def test_partial_lines_are_not_activity() -> None:
    """A registered client that trickles bytes without ever ending a line (slowloris)."""
    h = harness()
    conn = h.register("alice")
    seen: list[tuple[float, str]] = []
    closed_at = None
    for _ in range(30):
        h.advance(10)
        seen += [(h.now, line) for line in h.take(conn)]
        if conn in h.closed:
            closed_at = h.now
            break
        h.feed(conn, b"P")
    assert seen == [(1120.0, KEEPALIVE)]
    assert closed_at == 1180.0
    assert h.closed[conn] == Close(conn, PING_TIMEOUT, flush=True)


def test_ping_interval_0_is_off() -> None:
    h = harness(ping_interval=0)
    conn = h.register("alice")
    assert h.core.deadline(conn) is None
    assert h.advance(100_000) == []
    assert h.take(conn) == []


# -- Flood control -------------------------------------------------------------------------


def flooder(h: Harness, nick: str = "flood") -> ConnId:
    """A registered client whose token bucket is full again."""
    conn = h.connect()
    h.send(conn, f"NICK {nick}", f"USER {nick} 0 * :{nick}")
    # With a burst of 1, USER waits for a token; 10 s refill any bucket here.
    h.advance(10)
    assert parse_line(h.take(conn)[-1]).command == "422"
    return conn


def test_burst_at_once_then_one_line_per_token_in_order() -> None:
    # 4 lines/s: a token every 0.25 s, exact in binary.
    h = harness(flood_rate=4.0, flood_burst=20)
    conn = flooder(h)
    h.send(conn, *ping_lines(25))
    assert pongs(h, conn) == tokens(20)
    start = h.now
    assert h.core.deadline(conn) == start + 0.25
    for n in range(20, 25):
        h.advance(0.125)
        assert pongs(h, conn) == []
        h.advance(0.125)
        assert pongs(h, conn) == [f"t{n}"], h.now - start
    # Back to the keepalive only, which counts from when the lines arrived.
    assert h.core.deadline(conn) == start + 120


def test_the_bucket_holds_no_more_than_the_burst() -> None:
    h = harness(flood_rate=4.0, flood_burst=5)
    conn = flooder(h)
    h.advance(100)  # Idle for long enough to earn 400 tokens, were they not capped.
    h.send(conn, *ping_lines(8))
    assert pongs(h, conn) == tokens(5)
    h.advance(0.25)
    assert pongs(h, conn) == ["t5"]


def test_nothing_is_dropped_at_the_default_rate() -> None:
    """60 lines at the default 20 burst and 5 lines/s: all run, in order, 0.2 s apart."""
    h = harness(flood_rate=5.0, flood_burst=20)
    conn = flooder(h)
    h.send(conn, *ping_lines(60))
    assert pongs(h, conn) == tokens(20)
    start = h.now
    times: list[float] = []
    got: list[str] = []
    while len(got) < 60 - 20 and h.now < start + 60:
        h.advance(0.05)
        new = pongs(h, conn)
        got += new
        times += [h.now] * len(new)
    assert got == tokens(40, start=20)
    # Each line waited for its token: the n-th delayed one ran (n + 1) / 5 s after the burst.
    for n, when in enumerate(times):
        assert when - start == pytest.approx((n + 1) / 5, abs=0.05 + 1e-9)


def test_lines_arriving_while_others_wait_queue_behind_them() -> None:
    h = harness(flood_rate=4.0, flood_burst=2)
    conn = flooder(h)
    h.send(conn, *ping_lines(3))
    assert pongs(h, conn) == tokens(2)
    h.advance(0.125)
    h.send(conn, "PING t3")  # No token yet: it waits behind t2.
    assert pongs(h, conn) == []
    h.advance(0.125)
    assert pongs(h, conn) == ["t2"]
    h.advance(0.25)
    assert pongs(h, conn) == ["t3"]


def test_quit_among_waiting_lines_runs_in_turn_and_ends_the_rest() -> None:
    h = harness(flood_rate=4.0, flood_burst=1)
    conn = flooder(h)
    h.send(conn, "PING t0", "PING t1", "QUIT :bye", "PING t2")
    assert pongs(h, conn) == ["t0"]
    h.advance(0.25)
    assert pongs(h, conn) == ["t1"]
    assert conn not in h.closed
    h.advance(0.25)
    assert h.closed[conn].farewell == b"ERROR :Closing link (Quit: bye)\r\n"
    assert h.take(conn) == []


def padded_ping(n: int, size: int) -> str:
    """``PING`` with token ``t<n>`` padded to ``size`` bytes with its CR LF."""
    head = f"PING t{n}:"
    return head + "x" * (size - 2 - len(head))


def test_excess_flood_past_recvq_bytes_waiting() -> None:
    # Lines of 128 bytes with CR LF: 8 of them fill a RecvQ of 1024 exactly.
    h = harness(flood_rate=4.0, flood_burst=2, recvq=1024)
    peer = flooder(h, "peer")
    conn = flooder(h)
    h.join(conn, "#a")
    h.join(peer, "#a", conn)
    h.advance(10)  # The JOIN's token back.
    lines = [padded_ping(n, 128) for n in range(2 + 8)]
    assert all(len(line) + 2 == 128 for line in lines)
    h.send(conn, *lines)
    assert len(pongs(h, conn)) == 2
    assert conn not in h.closed  # 1024 bytes waiting: full, not over.
    h.feed(conn, b"X\r\n")
    assert h.closed[conn] == Close(conn, EXCESS_FLOOD, flush=True)
    assert h.take(peer) == [f":{prefix_of('flood')} QUIT :Excess Flood"]
    assert h.core.client_count == 1


def test_lines_left_by_a_bounded_turn_take_no_token_and_do_not_count_as_waiting() -> None:
    """A turn stopped by its output budget leaves lines that flood control let through:
    they run in the next turns with the tokens they had, and are not the RecvQ."""
    h = harness(flood_rate=4.0, flood_burst=20, sendq=4096)  # A budget of 512 bytes.
    conn = flooder(h)
    # 20 lines (a whole burst) of 450 bytes: more than the 8 KiB RecvQ in all.
    lines = [f"PING {n:02}" + "p" * 440 for n in range(20)]
    assert sum(len(line) + 2 for line in lines) > h.limits.recvq
    h.apply(h.core.receive_data(conn, "".join(f"{line}\r\n" for line in lines).encode(), h.now))
    assert h.core.has_ready_lines(conn)
    first_turn = pongs(h, conn)
    assert 0 < len(first_turn) < 20
    h.run_ready(conn)  # The clock stands still: no token was lost to the stops.
    assert conn not in h.closed
    assert [pong[:2] for pong in first_turn + pongs(h, conn)] == [f"{n:02}" for n in range(20)]
    h.send(conn, "PING late")  # The 21st line waits for a token.
    assert pongs(h, conn) == []
    h.advance(0.25)
    assert pongs(h, conn) == ["late"]


def test_a_slow_trickle_within_the_rate_never_floods() -> None:
    h = harness(flood_rate=4.0, flood_burst=1, recvq=512)
    conn = flooder(h)
    for n in range(200):
        h.send(conn, f"PING t{n}")
        assert pongs(h, conn) == [f"t{n}"]
        h.advance(0.25)
    assert conn not in h.closed


def test_over_long_lines_count_as_max_line_bytes_waiting() -> None:
    """A dropped line still costs the most a line can: it cannot flood for free."""
    h = harness(flood_rate=4.0, flood_burst=1, recvq=1024)
    conn = flooder(h)
    too_long = b"x" * 600 + b"\r\n"
    h.feed(conn, b"PING t0\r\n" + too_long * 2)  # 2 x 512 waiting: full.
    assert pongs(h, conn) == ["t0"]
    assert conn not in h.closed
    h.feed(conn, too_long)
    assert h.closed[conn] == Close(conn, EXCESS_FLOOD, flush=True)


def test_a_flooder_does_not_delay_anyone_else() -> None:
    h = harness(flood_rate=4.0, flood_burst=20)
    other = flooder(h, "other")
    flood = flooder(h)
    h.send(flood, *ping_lines(200))
    assert len(pongs(h, flood)) == 20
    # The other client's lines run in the same call, and its timer is its own.
    h.send(other, "PING mine")
    assert pongs(h, other) == ["mine"]
    assert h.core.deadline(other) == h.now + 120
    h.send(other, *ping_lines(19))
    assert pongs(h, other) == tokens(19)


def test_flood_rate_0_runs_every_line_at_once_and_never_floods() -> None:
    h = harness(flood_rate=0, recvq=512)
    conn = h.register("alice")
    h.send(conn, *ping_lines(500))
    assert pongs(h, conn) == tokens(500)
    assert conn not in h.closed
    assert h.core.deadline(conn) == h.now + 120


# -- Per-IP limit ----------------------------------------------------------------------------


def test_the_connection_over_the_per_ip_limit_is_refused_with_an_error() -> None:
    h = harness(max_per_ip=3)
    admitted = [h.connect() for _ in range(3)]
    refused = h.connect()
    assert h.closed == {refused: Close(refused, TOO_MANY, flush=True)}
    assert h.core.client_count == 3
    # Others are counted on their own.
    h.register("other", host="10.0.0.2")
    # Freed by a disconnect, a QUIT or a timeout, a slot can be taken again.
    h.lose(admitted[0])
    assert h.connect() not in h.closed
    assert h.connect() in h.closed
    h.send(admitted[1], "QUIT")
    assert h.connect() not in h.closed
    assert h.connect() in h.closed
    assert h.core.client_count == 4


def test_a_refused_connection_takes_no_slot() -> None:
    h = harness(max_per_ip=1)
    first = h.connect()
    for _ in range(5):
        h.connect()
    h.lose(first)
    assert h.connect() not in h.closed


def test_ipv6_hosts_are_limited_too() -> None:
    h = harness(max_per_ip=1)
    h.connect("::1")
    refused = h.connect("::1")
    assert h.closed[refused].farewell == TOO_MANY
    assert h.connect("::2") not in h.closed


def test_max_per_ip_0_is_off() -> None:
    h = harness(max_per_ip=0)
    conns = [h.connect() for _ in range(100)]
    assert h.closed == {}
    assert h.core.client_count == len(conns)


# -- Deadlines -----------------------------------------------------------------------------


def test_deadline_is_none_when_every_policy_is_off() -> None:
    h = harness(**ALL_OFF)
    unregistered = h.connect()
    alice = h.register("alice")
    h.send(alice, *ping_lines(100))
    for conn in (unregistered, alice):
        assert h.core.deadline(conn) is None
    assert h.advance(1e9) == []


def test_deadline_and_timer_of_unknown_or_closed_connections() -> None:
    h = harness()
    conn = h.connect()
    h.lose(conn)
    for gone in (conn, 12345):
        assert h.core.deadline(gone) is None
        assert h.core.handle_timer(gone, h.now + 1e6) == []


def test_deadline_is_the_earliest_policy() -> None:
    h = harness(flood_rate=4.0, flood_burst=2, ping_interval=1)
    conn = h.register("alice")  # Both tokens spent.
    assert h.core.deadline(conn) == 1001.0
    h.send(conn, "PING t0")
    assert h.core.deadline(conn) == 1000.25  # The flood token, before the keepalive.
    h.advance(0.25)
    assert pongs(h, conn) == ["t0"]
    assert h.core.deadline(conn) == 1001.0


def test_a_registration_held_back_by_flood_control_leaves_no_deadline_overdue() -> None:
    """NICK and USER waited longer than the keepalive interval: the timer that finally
    registers the client must not leave the keepalive overdue (found by the state machine)."""
    h = harness(flood_rate=4.0, flood_burst=1, ping_interval=2)
    conn = h.connect()
    # The first blank line takes the token; the rest run one per 0.25 s, USER at 1002.75.
    h.send(conn, *[""] * 10, "NICK alice", "USER alice 0 * :A")
    h.advance(5)
    lines = h.take(conn)
    assert f":{SERVER} 422 alice :MOTD File is missing" in lines
    # Silent since 1000: pinged an interval after registering (1004.75) at the latest.
    assert KEEPALIVE in lines
    assert conn not in h.closed


# -- LUSERS ----------------------------------------------------------------------------------


def lusers(h: Harness, conn: ConnId) -> list[str]:
    h.send(conn, "LUSERS")
    return h.take(conn)


def test_lusers_counts_users_unknown_connections_and_channels() -> None:
    h = harness()
    alice = h.register("alice")
    bob = h.register("bob")
    h.join(alice, "#a")
    h.join(bob, "#b")
    h.connect()
    h.send(h.connect(), "NICK half")
    assert lusers(h, alice) == [
        f":{SERVER} 251 alice :There are 2 users and 0 invisible on 1 servers",
        f":{SERVER} 253 alice 2 :unknown connection(s)",
        f":{SERVER} 254 alice 2 :channels formed",
        # 255 and 265 count users; unregistered connections are 253's.
        f":{SERVER} 255 alice :I have 2 clients and 0 servers",
        f":{SERVER} 265 alice 2 2 :Current local users 2, max 2",
        f":{SERVER} 266 alice 2 2 :Current global users 2, max 2",
    ]


def test_lusers_follows_departures_and_omits_253_without_unknown_connections() -> None:
    h = harness()
    alice = h.register("alice")
    bob = h.register("bob")
    h.join(bob, "#b")
    h.send(bob, "QUIT")
    assert lusers(h, alice) == [
        f":{SERVER} 251 alice :There are 1 users and 0 invisible on 1 servers",
        f":{SERVER} 254 alice 0 :channels formed",
        f":{SERVER} 255 alice :I have 1 clients and 0 servers",
        # The most there ever were stays.
        f":{SERVER} 265 alice 1 2 :Current local users 1, max 2",
        f":{SERVER} 266 alice 1 2 :Current global users 1, max 2",
    ]


def test_lusers_needs_registration() -> None:
    h = harness()
    conn = h.connect()
    assert lusers(h, conn) == [f":{SERVER} 451 * :You have not registered"]
