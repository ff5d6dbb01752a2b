"""The network of chat cores over one bus (``echochat.core.federation``), with no I/O.

Every test runs two or three cores on ``Bus``, which delivers every event to
every core in one order, as Redis pub/sub does; what the servers do over a
real Redis is checked in tests/contract/test_network*.py.
"""

from __future__ import annotations

import json

import pytest
from bus import Bus, Server, message
from core_helpers import Harness
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from echochat.core import LinkRefusedError, LinkRole
from echochat.core.federation import SPLIT_REASON, SYNC_WAIT, Phase
from echochat.core.limits import DEFAULT_SPLIT_AFTER as SILENCE
from echochat.core.passwords import PasswordHash, hash_password
from echochat.core.redislink import REPLY_TIMEOUT, RETRY_FIRST, RETRY_MAX, parse_redis_url

NICKS = ("alice", "bob", "carol")


def network(*names: str) -> tuple[Bus, list[Server]]:
    """Servers joined one after the other; the first finds the network empty."""
    bus = Bus()
    servers = [bus.add(name) for name in names]
    bus.link(servers[0])
    bus.advance(SYNC_WAIT + 0.1)  # Nobody answers its HELLO: it starts the network.
    for server in servers[1:]:
        bus.link(server)
    assert all(server.core.phase is Phase.JOINED for server in servers)
    return bus, servers


def hold(server: Server, conn: int, *lines: str) -> None:
    """Send lines without letting the bus deliver anything yet: they are in flight."""
    Harness.feed(server, conn, "".join(f"{line}\r\n" for line in lines).encode())


def said(server: Server, conn: int, command: str = "PRIVMSG") -> list[str | None]:
    return [p.trailing for p in server.take_parsed(conn) if p.command == command]


def numerics(server: Server, conn: int) -> list[str]:
    return [p.command for p in server.take_parsed(conn) if p.command.isdigit()]


def tables(server: Server) -> str:
    """A server's view of the network, without its own connection ids: equal on every server."""
    snapshot = server.core._snapshot()
    del snapshot["servers"], snapshot["split"], snapshot["most_users"]
    for user in snapshot["users"]:
        del user["conn"]
    for channel in snapshot["channels"]:
        channel["members"] = sorted(status for _, _, status in channel["members"])
    snapshot["users"].sort(key=lambda user: user["nick"])
    snapshot["channels"].sort(key=lambda channel: channel["name"])
    return json.dumps(snapshot, sort_keys=True)


def three_on_x() -> tuple[Bus, list[Server], list[int]]:
    bus, servers = network("a.test", "b.test", "c.test")
    conns = [server.register(nick) for server, nick in zip(servers, NICKS, strict=True)]
    for server, conn in zip(servers, conns, strict=True):
        server.send(conn, "JOIN #x")
    for server, conn in zip(servers, conns, strict=True):
        server.take(conn)
    return bus, servers, conns


def test_a_channel_spans_servers_and_every_member_sees_one_order() -> None:
    bus, servers, conns = three_on_x()
    a, _, c = servers
    c.send(conns[2], "NAMES #x")
    names = [p for p in c.take_parsed(conns[2]) if p.command == "353"]
    assert names[0].params[-1].split() == ["@alice", "bob", "carol"]
    # Three lines from each server at once, none delivered yet.
    for server, conn, nick in zip(servers, conns, NICKS, strict=True):
        hold(server, conn, *(f"PRIVMSG #x :{nick} {n}" for n in range(3)))
    bus.run()
    sent = [
        p.decode().rsplit(":", 1)[1]
        for p in bus.published
        if p.startswith(b"L ") and b"PRIVMSG" in p
    ]
    assert len(sent) == 9
    for server, conn, nick in zip(servers, conns, NICKS, strict=True):
        # Every line but its own, in the one order the bus carried them.
        assert said(server, conn) == [t for t in sent if not t.startswith(nick)], nick
    assert tables(a) == tables(c)


def test_private_messages_and_queries_reach_across_servers() -> None:
    _, (a, b) = network("a.test", "b.test")
    alice, bob = a.register("alice"), b.register("bob")
    b.send(bob, "PRIVMSG alice :hi there", "PRIVMSG nobody :hello")
    assert said(a, alice) == ["hi there"]
    assert numerics(b, bob) == ["401"]
    a.send(alice, "AWAY :lunch")
    b.send(bob, "PRIVMSG alice :back?", "WHOIS alice", "ISON alice nobody", "USERHOST alice")
    replies = {p.command: p for p in b.take_parsed(bob)}
    assert replies["301"].trailing == "lunch"
    assert replies["312"].params[2] == "a.test"  # The server alice is on.
    assert replies["303"].trailing == "alice"
    assert replies["302"].trailing == "alice=-alice@127.0.0.1"
    # A query is answered once, by the asker's server: alice saw nothing of it.
    assert said(a, alice) == ["back?"]


def test_a_nick_is_unique_across_the_network_the_first_claim_on_the_bus_wins() -> None:
    bus, (a, b) = network("a.test", "b.test")
    first, second = a.connect(), b.connect()
    hold(a, first, "NICK same", "USER x 0 * :X")
    hold(b, second, "NICK same", "USER y 0 * :Y")
    bus.run()
    assert numerics(a, first)[:1] == ["001"]
    assert numerics(b, second) == ["433"]
    b.send(second, "NICK other")
    assert "001" in numerics(b, second)
    assert tables(a) == tables(b)
    # A registered user's NICK onto a nick taken on another server: 433.
    b.send(second, "NICK same")
    assert numerics(b, second) == ["433"]


def test_nick_changes_in_flight_for_one_nick_the_first_wins_everywhere() -> None:
    bus, (a, b) = network("a.test", "b.test")
    alice, bob = a.register("alice"), b.register("bob")
    hold(a, alice, "NICK zed")
    hold(b, bob, "NICK zed")
    bus.run()
    assert [p.command for p in a.take_parsed(alice)] == ["NICK"]
    assert numerics(b, bob) == ["433"]
    assert tables(a) == tables(b)


def test_channel_modes_bans_limits_and_kicks_hold_for_users_of_every_server() -> None:
    bus, (a, b, c), (alice, bob, carol) = three_on_x()
    a.send(alice, "MODE #x +l 3", "MODE #x +b carol!*@*", "KICK #x carol :bye")
    assert said(c, carol, "KICK") == ["bye"]
    c.send(carol, "JOIN #x")
    assert numerics(c, carol) == ["474"]  # Banned.
    a.send(alice, "MODE #x -b carol!*@*")
    # Two joins in flight for the last place: the first on the bus gets it, for everyone.
    dave = b.register("dave")
    hold(b, dave, "JOIN #x")
    hold(c, carol, "JOIN #x")
    bus.run()
    assert "471" not in numerics(b, dave)
    assert numerics(c, carol) == ["471"]
    b.send(bob, "TOPIC #x :no")  # +t: only operators.
    assert numerics(b, bob) == ["482"]
    a.send(alice, "MODE #x +o bob")
    b.send(bob, "TOPIC #x :yes")
    assert said(a, alice, "TOPIC") == ["yes"]
    assert tables(a) == tables(b) == tables(c)


def test_invite_and_secret_channels_across_servers() -> None:
    _, (a, b) = network("a.test", "b.test")
    alice, bob = a.register("alice"), b.register("bob")
    a.send(alice, "JOIN #s", "MODE #s +si")
    a.take(alice)
    b.send(bob, "LIST", "JOIN #s")
    assert numerics(b, bob) == ["321", "323", "473"]  # Hidden, and invite-only.
    a.send(alice, "INVITE bob #s")
    assert numerics(a, alice) == ["341"]
    assert [p.command for p in b.take_parsed(bob)] == ["INVITE"]
    b.send(bob, "JOIN #s")
    assert "366" in numerics(b, bob)


def test_an_operator_of_one_server_acts_on_users_of_every_server() -> None:
    bus = Bus()
    oper_hash = PasswordHash.parse(hash_password("sesame", b"0123456789abcdef"))
    a = bus.add("a.test", opers=(("admin", oper_hash),))
    b = bus.add("b.test")
    bus.link(a)
    bus.advance(SYNC_WAIT + 0.1)
    bus.link(b)
    alice, bob, carol = a.register("alice"), b.register("bob"), b.register("carol")
    b.send(carol, "MODE carol +w")
    b.take(carol)
    b.send(bob, "OPER admin sesame")
    assert numerics(b, bob) == ["491"]  # b has no operators: its own configuration decides.
    a.send(alice, "OPER admin sesame")
    assert numerics(a, alice) == ["381"]
    b.send(carol, "WHOIS alice")
    assert "313" in numerics(b, carol)
    a.send(alice, "WALLOPS :maintenance", "KILL bob :spam")
    assert said(b, carol, "WALLOPS") == ["maintenance"]
    assert bob in b.closed
    b.send(carol, "ISON bob")
    assert [p.trailing for p in b.take_parsed(carol) if p.command == "303"] == [""]


def test_a_users_answers_come_in_the_order_of_its_commands() -> None:
    _, (a, b) = network("a.test", "b.test")
    alice = a.register("alice")
    b.register("bob")
    a.send(alice, "JOIN #x", "PING token", "WHOIS bob", "TIME")
    commands = [p.command for p in a.take_parsed(alice)]
    assert commands.index("366") < commands.index("PONG") < commands.index("318")
    assert commands.index("318") < commands.index("391")


def test_a_server_that_goes_silent_is_split_within_15_seconds() -> None:
    bus, (a, b) = network("a.test", "b.test")
    alice, bob = a.register("alice"), b.register("bob")
    a.send(alice, "JOIN #x")
    b.send(bob, "JOIN #x")
    a.take(alice)
    bus._unlink(b.key)  # b is killed: it says nothing more.
    del bus.servers[b.key]
    bus.advance(SILENCE + 3.5)
    assert said(a, alice, "QUIT") == [SPLIT_REASON]
    assert SILENCE + 3.5 <= 15
    # bob's nick is free again.
    newbob = a.register("bob")
    assert newbob


def test_a_server_that_loses_redis_serves_its_own_users_tells_them_and_rejoins() -> None:
    bus, (a, b) = network("a.test", "b.test")
    alice, bob = a.register("alice"), b.register("bob")
    other = b.register("other")
    a.send(alice, "JOIN #x")
    b.send(bob, "JOIN #x")
    b.send(other, "JOIN #x")
    for server, conn in ((a, alice), (b, bob), (b, other)):
        server.take(conn)
    bus.cut(b)
    notices = b.take_parsed(bob)
    assert [p.command for p in notices] == ["QUIT", "NOTICE"]
    assert notices[0].trailing == SPLIT_REASON
    assert "Lost the link" in str(notices[1].trailing)
    # Alone, b still serves its own users.
    b.send(bob, "PRIVMSG #x :alone")
    assert said(b, other) == ["alone"]
    bus.advance(SILENCE + 3.5)
    assert [p.trailing for p in a.take_parsed(alice) if p.command == "QUIT"] == [SPLIT_REASON] * 2
    # Meanwhile someone on a takes bob's nick; bob's is older and keeps it.
    usurper = a.register("bob")
    bus.link(b)
    assert b.core.phase is Phase.JOINED
    assert any("Linked to the network" in str(p.trailing) for p in b.take_parsed(bob))
    renamed = [p for p in a.take_parsed(usurper) if p.command == "NICK"]
    assert renamed
    assert renamed[0].params[0].startswith("Guest")
    assert tables(a) == tables(b)
    b.send(bob, "PRIVMSG #x :back")
    assert said(a, alice) == ["back"]


def test_a_newer_nick_on_the_rejoining_server_yields_to_the_older_user_everywhere() -> None:
    """The other way round from above: the newcomer is on the server that comes back, and
    every server, its BURST's receivers included, keeps the older user under the nick."""
    bus, (a, b) = network("a.test", "b.test")
    alice, bob = a.register("alice"), b.register("bob")
    bus.cut(b)
    bus.advance(SILENCE + 3.5)
    # alice is split off on b, so her nick is free there (b's welcome says it is alone).
    usurper = b.connect()
    b.send(usurper, "NICK alice", "USER alice 0 * :Real alice")
    assert numerics(b, usurper)[0] == "001"
    bus.link(b)
    renamed = [p for p in b.take_parsed(usurper) if p.command == "NICK"]
    assert [p.params[0][:5] for p in renamed] == ["Guest"]
    for server in (a, b):
        holder = server.core._nicks.get("alice")
        assert holder is not None, f"{server.core.server_name} lost alice's nick"
        assert (holder.origin or server.core.server_name, holder.nick) == ("a.test", "alice")
    b.send(bob, "PRIVMSG alice :to the older alice")
    assert said(a, alice) == ["to the older alice"]
    assert said(b, usurper) == []


def test_the_older_channel_keeps_its_modes_when_split_networks_merge() -> None:
    bus, (a, b) = network("a.test", "b.test")
    alice, bob = a.register("alice"), b.register("bob")
    a.send(alice, "JOIN #x", "MODE #x +m")
    bus.cut(b)
    b.now += 5  # b's #x is newer.
    b.send(bob, "JOIN #x", "MODE #x +k secret")
    bus.link(b)
    assert tables(a) == tables(b)
    assert a.core._channels["#x"].modes >= {"m"}
    assert a.core._channels["#x"].key is None
    assert bob not in b.core._channels["#x"].ops  # bob lost his status.


def test_a_second_server_with_a_live_name_is_refused_at_start() -> None:
    bus, _ = network("a.test")
    twin = bus.add("a.test", key="twin")
    with pytest.raises(LinkRefusedError, match="in use by another live server"):
        bus.link(twin)


def test_users_of_a_server_not_yet_linked_are_told() -> None:
    bus = Bus()
    a = bus.add("a.test")
    conn = a.connect()
    a.send(conn, "NICK alice", "USER a 0 * :A")
    notices = [p.trailing for p in a.take_parsed(conn) if p.command == "NOTICE"]
    assert notices == [
        "*** This server is not linked to its network yet (Redis cannot be reached): "
        "only users of this server can be reached until it is."
    ]
    bus.link(a)
    bus.advance(SYNC_WAIT + 0.1)
    assert any("Linked to the network" in str(p.trailing) for p in a.take_parsed(conn))


def test_backoff_grows_with_jitter_and_resets_once_linked() -> None:
    bus, (a,) = network("a.test")
    link = a.core.link
    assert link is not None
    bus.cut(a)
    delays = []
    for _ in range(8):
        delays.append(a.core.link_retry_delay())
        a.apply(a.core.link_closed("refused", a.now))  # Each attempt fails.
    assert delays[0] <= RETRY_FIRST
    assert all(d <= RETRY_MAX for d in delays)
    assert delays[-1] >= RETRY_MAX / 2
    bus.link(a)
    assert a.core.link_retry_delay() == 0


def test_garbage_from_redis_or_on_the_bus_is_a_lost_link_never_a_crash() -> None:
    bus, (a, b) = network("a.test", "b.test")
    alice = a.register("alice")
    a.apply(a.core.link_receive(LinkRole.SUBSCRIBER, b"HTTP/1.1 400 Bad\r\n", a.now))
    assert a.core.phase is Phase.ALONE
    assert any("Lost the link" in str(p.trailing) for p in a.take_parsed(alice))
    bus.link(a)
    # Another program publishing on the bus.
    bus.in_flight.append((b.key, LinkRole.SUBSCRIBER, message(b"not an event")))
    bus.run()
    assert b.core.phase is Phase.ALONE


def test_a_fast_member_keeps_up_with_a_burst_that_crosses_the_bus() -> None:
    _, (a, b) = network("a.test", "b.test")
    talker, reader = a.register("talker"), b.register("reader")
    slow = b.register("slow")
    for server, conn in ((a, talker), (b, reader), (b, slow)):
        server.send(conn, "JOIN #x")
    b.stall(slow)
    for server, conn in ((a, talker), (b, reader)):
        server.take(conn)
    a.send(talker, *(f"PRIVMSG #x :{n:05d} {'x' * 400}" for n in range(2000)))
    got = said(b, reader)
    assert [line.split()[0] for line in got if line] == [f"{n:05d}" for n in range(2000)]
    assert slow in b.closed
    assert said(a, talker, "QUIT") == ["SendQ exceeded"]


def test_redis_urls() -> None:
    assert str(parse_redis_url("redis://127.0.0.1:6380")) == "redis://127.0.0.1:6380"
    assert str(parse_redis_url("redis://localhost")) == "redis://localhost:6379"
    assert str(parse_redis_url("unix:///tmp/r.sock")) == "unix:///tmp/r.sock"
    for bad in ("http://x", "redis://:0", "redis://h:99999", "unix://rel/path", "redis://u:p@h"):
        with pytest.raises(ValueError, match=r"redis://|unix://|port|host"):
            parse_redis_url(bad)


# Users are u{slot}{server}: two on each of three servers.
_TARGETS = [f"u{slot}{server}" for slot in range(2) for server in range(3)]
_ACTIONS = [
    "JOIN #a",
    "JOIN #b",
    "PART #a",
    "PRIVMSG #a :hi",
    "TOPIC #a :news",
    "MODE #a +m",
    "MODE #a +l 2",
    "MODE #a -l",
    "MODE #b +i",
    "AWAY :gone",
    "AWAY",
    "QUIT :bye",
    *(f"MODE #a +b {nick}!*@*" for nick in _TARGETS[:2]),
    *(f"MODE #a -b {nick}!*@*" for nick in _TARGETS[:2]),
    *(f"MODE #a +o {nick}" for nick in _TARGETS),
    *(f"KICK #a {nick}" for nick in _TARGETS),
    *(f"INVITE {nick} #b" for nick in _TARGETS),
    *(f"NICK {nick}" for nick in _TARGETS),
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2),  # server
            st.integers(0, 1),  # user slot on it
            # "deliver": the bus carries everything in flight; "cut": the
            # server loses Redis and joins again.
            st.sampled_from([*_ACTIONS, *["deliver"] * 10, "cut"]),
        ),
        min_size=10,
        max_size=60,
    )
)
def test_whatever_happens_every_server_ends_with_the_same_tables(
    steps: list[tuple[int, int, str]],
) -> None:
    """Any commands from users of three servers, in flight in any mix, with links cut and
    restored: once the bus is quiet, every server holds the same network."""
    bus, servers = network("a.test", "b.test", "c.test")
    users: dict[tuple[int, int], int] = {}
    for server_index, slot, action in steps:
        server = servers[server_index]
        conn = users.get((server_index, slot))
        if action == "deliver":
            bus.run()
        elif action == "cut":
            bus.cut(server)
            bus.link(server)
        elif conn is None or conn in server.closed:
            conn = server.connect()
            hold(server, conn, f"NICK u{slot}{server_index}", f"USER u 0 * :U{slot}")
            users[(server_index, slot)] = conn
        else:
            hold(server, conn, action)
    bus.run()
    bus.advance(SILENCE + 5)  # Heartbeats all round; nobody is silent.
    views = {server.key: tables(server) for server in servers}
    assert len(set(views.values())) == 1, views


def test_lines_sent_with_nick_and_user_wait_for_the_introduction_then_run_in_order() -> None:
    """A client that sends NICK, USER, JOIN and PING in one write is joined, as on one server:
    its JOIN waits until Redis brings its introduction back."""
    bus, (a, b) = network("a.test", "b.test")
    bob = b.register("bob")
    b.send(bob, "JOIN #x")
    b.take(bob)
    alice = a.connect()
    hold(a, alice, "NICK alice", "USER a 0 * :A", "JOIN #x", "PING :done", "PRIVMSG #x :hi")
    assert a.take(alice) == []  # Nothing yet: its introduction is in flight.
    bus.run()
    commands = [p.command for p in a.take_parsed(alice)]
    assert "451" not in commands
    assert commands.index("001") < commands.index("JOIN") < commands.index("PONG")
    assert said(b, bob) == ["hi"]


def test_a_registration_in_flight_when_the_link_is_lost_completes_here() -> None:
    bus, (a, _) = network("a.test", "b.test")
    alice = a.connect()
    hold(a, alice, "NICK alice", "USER a 0 * :A", "JOIN #x")
    bus.cut(a)  # Its introduction never comes back.
    commands = [p.command for p in a.take_parsed(alice)]
    assert "001" in commands
    assert "JOIN" in commands


def test_a_server_that_was_stalled_does_not_split_the_others_when_it_resumes() -> None:
    """Stopped for longer than --split-after (SIGSTOP, a long GC pause), it finds the others
    silent on its clock only because it has not read their heartbeats yet."""
    bus, (a, b) = network("a.test", "b.test")
    bob = b.register("bob")
    a.register("alice")
    # a is frozen: time passes for b, whose heartbeats wait for a in Redis.
    bus.frozen.add(a.key)
    bus.advance(SILENCE + 2)
    bus.frozen.clear()
    a.now = b.now  # a resumes: its timers fire before it reads what waited.
    a.apply(a.core.link_handle_timer(a.now))
    bus.run()
    assert not [p for p in b.take_parsed(bob) if "Lost the link" in str(p.trailing)]
    assert a.core.phase is Phase.JOINED
    assert b.core.phase is Phase.JOINED


def test_a_process_stopped_past_the_reply_timeout_does_not_blame_redis() -> None:
    bus, (a, _) = network("a.test", "b.test")
    alice = a.register("alice")
    hold(a, alice, "PRIVMSG bob :x")  # A PUBLISH whose reply is pending...
    a.now += REPLY_TIMEOUT + 2  # ... when the process is stopped, then resumes.
    a.apply(a.core.link_handle_timer(a.now))
    bus.run()
    assert a.core.joined
    # A Redis that really stops answering, while this process runs, still loses the link.
    bus.frozen.add(a.key)  # What Redis sends a waits.
    hold(a, alice, "PRIVMSG bob :y")
    for _ in range(int(REPLY_TIMEOUT) + 2):
        a.now += 1
        a.apply(a.core.link_handle_timer(a.now))
    assert not a.core.joined
