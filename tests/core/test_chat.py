"""The chat state machine against docs/protocol.md, driven in memory by ``core_helpers.Harness``.

Every effect passes through the harness, which asserts on each one that lines
end with CR LF, fit in ``max_line``, are UTF-8, and that nothing is addressed
to a connection after its Close.
"""

from __future__ import annotations

import pytest
from core_helpers import CREATED, SERVER, Harness, lenient_limits, parse_line, prefix_of

from echochat.core import TURN_BYTES, Close, EchoCore, Limits, Send, __version__

NOT_REGISTERED = f":{SERVER} 451 * :You have not registered"


def commands(lines: list[str]) -> list[str]:
    return [parse_line(line).command for line in lines]


def registered_pair(harness: Harness, channel: str = "#a") -> tuple[int, int]:
    """alice and bob, both on ``channel``, with nothing left to read."""
    alice = harness.register("alice")
    bob = harness.register("bob")
    harness.join(alice, channel)
    harness.join(bob, channel, alice)
    return alice, bob


# -- Registration ------------------------------------------------------------------------


WELCOME = ["001", "002", "003", "004", "005", "005", "422"]


def check_welcome(lines: list[str], nick: str, user: str) -> None:
    assert commands(lines) == WELCOME, lines
    parsed = [parse_line(line) for line in lines]
    for message in parsed:
        assert message.prefix == SERVER
        assert message.params[0] == nick
    # RFC 2812 5.1: 001 ends with the full prefix, 002 names host and version, 003 the date.
    assert parsed[0].params[-1].endswith(prefix_of(nick, user))
    assert SERVER in parsed[1].params[-1]
    assert f"echochat-{__version__}" in parsed[1].params[-1]
    assert CREATED in parsed[2].params[-1]
    version = f"echochat-{__version__}"
    assert lines[3] == f":{SERVER} 004 {nick} {SERVER} {version} iow biklmnostv bklov"
    tokens = set(parsed[4].params[1:-1]) | set(parsed[5].params[1:-1])
    assert {
        "CASEMAPPING=ascii",
        "CHANTYPES=#",
        "NICKLEN=16",
        "CHANNELLEN=50",
        "UTF8ONLY",
        "PREFIX=(ov)@+",
        "CHANMODES=b,k,l,imnst",
        "STATUSMSG=@+",
        "CHANLIMIT=#:50",
        "MODES=6",
    } <= tokens
    assert all(len(message.params) <= 15 for message in parsed[4:6])
    assert lines[-1] == f":{SERVER} 422 {nick} :MOTD File is missing"


def test_register_nick_then_user() -> None:
    h = Harness()
    conn = h.connect()
    h.send(conn, "NICK alice")
    assert h.take(conn) == []
    h.send(conn, "USER al 0 * :Alice Liddell")
    check_welcome(h.take(conn), "alice", "al")


def test_register_user_then_nick() -> None:
    h = Harness()
    conn = h.connect()
    h.send(conn, "USER al 0 * :Alice Liddell")
    assert h.take(conn) == []
    h.send(conn, "NICK alice")
    check_welcome(h.take(conn), "alice", "al")


def test_register_in_one_packet_and_case_insensitive_commands() -> None:
    h = Harness()
    conn = h.connect()
    h.feed(conn, b"nick alice\nuser al 0 * :Alice\n")
    check_welcome(h.take(conn), "alice", "al")


def test_welcome_is_sent_once() -> None:
    h = Harness()
    conn = h.register("alice")
    h.send(conn, "NICK alice2", "USER x 0 * :x")
    assert "001" not in commands(h.take(conn))


def test_cap_ls_suspends_registration_until_cap_end() -> None:
    h = Harness()
    conn = h.connect()
    h.send(conn, "CAP LS 302")
    assert h.take(conn) == [f":{SERVER} CAP * LS :"]
    h.send(conn, "CAP REQ :multi-prefix sasl")
    assert h.take(conn) == [f":{SERVER} CAP * NAK :multi-prefix sasl"]
    h.send(conn, "PASS secret", "NICK alice", "USER al 0 * :Alice")
    assert h.take(conn) == []  # PASS is silent; registration waits for CAP END
    h.send(conn, "CAP END")
    check_welcome(h.take(conn), "alice", "al")


def test_cap_end_alone_is_silent() -> None:
    h = Harness()
    conn = h.connect()
    h.send(conn, "CAP END", "PASS x")
    assert h.take(conn) == []


@pytest.mark.parametrize(
    "line", ["JOIN #a", "PRIVMSG alice :hi", "MODE #a", "WHOIS alice", "NAMES #a", "TOPIC #a"]
)
def test_451_before_registration(line: str) -> None:
    h = Harness()
    conn = h.connect()
    h.send(conn, line)
    assert h.take(conn) == [NOT_REGISTERED]
    assert h.core.channel_count == 0


def test_after_451_registration_still_works() -> None:
    h = Harness()
    conn = h.connect()
    h.send(conn, "JOIN #a", "NICK alice", "USER al 0 * :A")
    lines = h.take(conn)
    assert lines[0] == NOT_REGISTERED
    check_welcome(lines[1:], "alice", "al")


def test_user_needs_four_parameters() -> None:
    h = Harness()
    conn = h.connect()
    h.send(conn, "USER al 0")
    assert h.take(conn) == [f":{SERVER} 461 * USER :Not enough parameters"]


# -- Nicks ---------------------------------------------------------------------------------


def test_431_no_nick_given() -> None:
    h = Harness()
    conn = h.connect()
    h.send(conn, "NICK")
    (line,) = h.take(conn)
    assert parse_line(line).command == "431"
    assert parse_line(line).params[0] == "*"


@pytest.mark.parametrize(
    "nick",
    ["1abc", "-abc", "a" * 17, "ab*c", "a.b", "é", "#chan", "ab!c", "ab@c", "a,b", "*"],
)
def test_432_erroneous_nickname(nick: str) -> None:
    h = Harness()
    conn = h.connect()
    h.send(conn, f"NICK {nick}")
    (line,) = h.take(conn)
    assert parse_line(line).command in ("432", "431"), line
    h.send(conn, "USER u 0 * :u")
    assert h.take(conn) == []  # no nick was taken, so no registration


@pytest.mark.parametrize("nick", ["a", "A" * 16, "[]\\`_^{|}", "x-1", "_9", "{a}", "Z-"])
def test_valid_nicknames(nick: str) -> None:
    h = Harness()
    conn = h.connect()
    h.send(conn, f"NICK {nick}", "USER u 0 * :u")
    check_welcome(h.take(conn), nick, "u")


def test_433_nick_in_use_case_insensitively() -> None:
    h = Harness()
    h.register("Alice")
    conn = h.connect()
    h.send(conn, "NICK aLICE")
    (line,) = h.take(conn)
    assert parse_line(line).command == "433"
    assert parse_line(line).params[:2] == ["*", "aLICE"]


def test_433_brackets_are_not_folded_under_ascii_casemapping() -> None:
    # CASEMAPPING=ascii: only A-Z fold, so [ and { are different nicks.
    h = Harness()
    h.register("a[")
    conn = h.connect()
    h.send(conn, "NICK a{", "USER u 0 * :u")
    check_welcome(h.take(conn), "a{", "u")


def test_failed_change_keeps_the_old_nick() -> None:
    h = Harness()
    alice = h.register("alice")
    bob = h.register("bob")
    h.send(alice, "NICK BOB")
    assert commands(h.take(alice)) == ["433"]
    h.send(alice, "NICK 9lives")
    assert commands(h.take(alice)) == ["432"]
    h.send(bob, "PRIVMSG alice :still there?")
    assert h.take(alice) == [f":{prefix_of('bob')} PRIVMSG alice :still there?"]
    h.send(alice, "PRIVMSG bob :yes")
    assert h.take(bob) == [f":{prefix_of('alice')} PRIVMSG bob :yes"]


def test_nick_change_announced_once_to_user_and_each_peer() -> None:
    h = Harness()
    alice = h.register("alice")
    bob = h.register("bob")
    carol = h.register("carol")
    dave = h.register("dave")
    for channel in ("#one", "#two", "#three"):
        h.join(alice, channel)
        h.join(bob, channel, alice)
    h.join(carol, "#one", alice, bob)
    h.send(alice, "NICK Alicia")
    expected = [f":{prefix_of('alice')} NICK Alicia"]
    assert h.take(alice) == expected
    assert h.take(bob) == expected
    assert h.take(carol) == expected
    assert h.take(dave) == []
    # The new nick is in force, the old one is free.
    h.send(dave, "PRIVMSG Alicia :hi", "NICK alice")
    assert h.take(dave) == [f":{prefix_of('dave')} NICK alice"]
    assert h.take(alice) == [f":{prefix_of('dave')} PRIVMSG Alicia :hi"]


def test_nick_case_change_of_own_nick_is_allowed() -> None:
    h = Harness()
    alice = h.register("alice")
    h.send(alice, "NICK ALICE")
    assert h.take(alice) == [f":{prefix_of('alice')} NICK ALICE"]


def test_nick_change_to_the_same_nick_does_nothing() -> None:
    h = Harness()
    alice, bob = registered_pair(h)
    h.send(alice, "NICK alice")
    assert h.take(alice) == []
    assert h.take(bob) == []


def test_nick_freed_after_quit() -> None:
    h = Harness()
    alice = h.register("alice")
    h.send(alice, "QUIT :bye")
    h.register("ALICE")  # asserts the welcome burst


def test_nick_freed_after_connection_lost() -> None:
    h = Harness()
    alice = h.register("alice")
    h.lose(alice)
    h.register("alice")


def test_nick_freed_after_unregistered_client_leaves() -> None:
    h = Harness()
    first = h.connect()
    h.send(first, "NICK alice")
    h.lose(first)
    h.register("alice")


# -- Channels -------------------------------------------------------------------------------


def test_join_replies() -> None:
    h = Harness()
    alice = h.register("alice")
    h.send(alice, "JOIN #a")
    lines = h.take(alice)
    assert lines[0] == f":{prefix_of('alice')} JOIN #a"
    # No 331 on JOIN: a channel without a topic says nothing about it.
    assert commands(lines[1:]) == ["353", "366"]
    assert lines[1] == f":{SERVER} 353 alice = #a :@alice"
    assert lines[2] == f":{SERVER} 366 alice #a :End of /NAMES list"
    assert h.core.channel_count == 1

    bob = h.register("bob")
    h.send(bob, "join #A")  # same channel, compared case-insensitively
    join = f":{prefix_of('bob')} JOIN #a"
    assert h.take(alice) == [join]
    lines = h.take(bob)
    assert lines[0] == join
    assert commands(lines) == ["JOIN", "353", "366"]
    assert set(parse_line(lines[1]).params[-1].split()) == {"@alice", "bob"}
    assert h.core.channel_count == 1


def test_join_several_channels_and_rejoin_does_nothing() -> None:
    h = Harness()
    alice = h.register("alice")
    h.send(alice, "JOIN #a,#b")
    assert commands(h.take(alice)) == ["JOIN", "353", "366"] * 2
    assert h.core.channel_count == 2
    h.send(alice, "JOIN #a")
    assert h.take(alice) == []


def test_join_0_parts_all_channels() -> None:
    h = Harness()
    alice, bob = registered_pair(h)
    h.join(alice, "#b")
    h.send(alice, "JOIN 0")
    assert sorted(h.take(alice)) == sorted(
        [f":{prefix_of('alice')} PART #a", f":{prefix_of('alice')} PART #b"]
    )
    assert h.take(bob) == [f":{prefix_of('alice')} PART #a"]
    assert h.core.channel_count == 1  # #b is empty, so gone


@pytest.mark.parametrize("name", ["a", "#a b", "#a\x07b", "#" + "c" * 50, "&a"], ids=repr)
def test_join_invalid_channel_name(name: str) -> None:
    h = Harness()
    alice = h.register("alice")
    h.send(alice, f"JOIN :{name}")
    lines = h.take(alice)
    assert len(lines) == 1
    assert parse_line(lines[0]).command in ("403", "476", "479"), lines
    assert h.core.channel_count == 0


def test_join_channel_name_of_50_characters() -> None:
    h = Harness()
    alice = h.register("alice")
    name = "#" + "c" * 49
    h.send(alice, f"JOIN {name}")
    assert h.take(alice)[0] == f":{prefix_of('alice')} JOIN {name}"


def test_join_461() -> None:
    h = Harness()
    alice = h.register("alice")
    h.send(alice, "JOIN")
    assert h.take(alice) == [f":{SERVER} 461 alice JOIN :Not enough parameters"]


def test_part_with_reason_and_channel_disappears_when_empty() -> None:
    h = Harness()
    alice, bob = registered_pair(h)
    h.send(alice, "PART #a :see you")
    part = f":{prefix_of('alice')} PART #a :see you"
    assert h.take(alice) == [part]
    assert h.take(bob) == [part]
    assert h.core.channel_count == 1
    h.send(bob, "PART #A")
    assert h.take(bob) == [f":{prefix_of('bob')} PART #a"]
    assert h.take(alice) == []
    assert h.core.channel_count == 0
    h.send(bob, "TOPIC #a")
    assert commands(h.take(bob)) == ["403"]


def test_part_errors() -> None:
    h = Harness()
    alice, _ = registered_pair(h)
    carol = h.register("carol")
    h.send(carol, "PART #nowhere", "PART #a", "PART")
    lines = h.take(carol)
    assert commands(lines) == ["403", "442", "461"]
    assert parse_line(lines[0]).params[:2] == ["carol", "#nowhere"]
    assert parse_line(lines[1]).params[:2] == ["carol", "#a"]
    assert lines[2] == f":{SERVER} 461 carol PART :Not enough parameters"
    assert h.take(alice) == []


def test_privmsg_to_channel_reaches_every_member_but_the_sender() -> None:
    h = Harness()
    alice, bob = registered_pair(h)
    carol = h.register("carol")
    h.join(carol, "#a", alice, bob)
    outsider = h.register("dave")
    h.send(alice, "PRIVMSG #A :hello there")
    line = f":{prefix_of('alice')} PRIVMSG #a :hello there"
    assert h.take(alice) == []
    assert h.take(bob) == [line]
    assert h.take(carol) == [line]
    assert h.take(outsider) == []


def test_privmsg_to_nick_and_several_targets() -> None:
    h = Harness()
    alice, bob = registered_pair(h)
    carol = h.register("carol")
    h.send(alice, "PRIVMSG BOB,carol,#a :hi all")
    assert h.take(carol) == [f":{prefix_of('alice')} PRIVMSG carol :hi all"]
    assert h.take(bob) == [
        f":{prefix_of('alice')} PRIVMSG bob :hi all",
        f":{prefix_of('alice')} PRIVMSG #a :hi all",
    ]
    assert h.take(alice) == []


def test_privmsg_errors() -> None:
    h = Harness()
    alice = h.register("alice")
    h.register("bob")
    h.send(
        alice, "PRIVMSG nobody :x", "PRIVMSG #nowhere :x", "PRIVMSG", "PRIVMSG bob", "PRIVMSG bob :"
    )
    lines = h.take(alice)
    assert commands(lines) == ["401", "401", "411", "412", "412"]
    assert parse_line(lines[0]).params[:2] == ["alice", "nobody"]
    assert parse_line(lines[1]).params[:2] == ["alice", "#nowhere"]


def test_privmsg_404_when_not_on_channel() -> None:
    h = Harness()
    alice, bob = registered_pair(h)
    carol = h.register("carol")
    h.send(carol, "PRIVMSG #a :let me in")
    lines = h.take(carol)
    assert commands(lines) == ["404"]
    assert parse_line(lines[0]).params[:2] == ["carol", "#a"]
    assert h.take(alice) == []
    assert h.take(bob) == []


def test_an_error_on_one_target_spares_the_others() -> None:
    h = Harness()
    alice = h.register("alice")
    bob = h.register("bob")
    h.send(alice, "PRIVMSG nobody,bob :hey")
    assert commands(h.take(alice)) == ["401"]
    assert h.take(bob) == [f":{prefix_of('alice')} PRIVMSG bob :hey"]


def test_notice_relays_and_never_errors() -> None:
    h = Harness()
    alice, bob = registered_pair(h)
    carol = h.register("carol")
    h.send(alice, "NOTICE #a :note", "NOTICE carol :direct")
    assert h.take(bob) == [f":{prefix_of('alice')} NOTICE #a :note"]
    assert h.take(carol) == [f":{prefix_of('alice')} NOTICE carol :direct"]
    h.send(carol, "NOTICE nobody :x", "NOTICE #nowhere :x", "NOTICE #a :x", "NOTICE", "NOTICE a")
    assert h.take(carol) == []
    assert h.take(alice) == []
    assert h.take(bob) == []


def test_names() -> None:
    h = Harness()
    alice, _ = registered_pair(h)
    carol = h.register("carol")
    for who in (alice, carol):  # members and non-members alike
        h.send(who, "NAMES #a")
        lines = h.take(who)
        assert commands(lines) == ["353", "366"]
        nick = "alice" if who == alice else "carol"
        assert parse_line(lines[0]).params[:3] == [nick, "=", "#a"]
        assert sorted(parse_line(lines[0]).params[-1].split()) == ["@alice", "bob"]
        assert lines[1] == f":{SERVER} 366 {nick} #a :End of /NAMES list"


def test_topic_query_set_and_shown_on_join() -> None:
    h = Harness()
    alice, bob = registered_pair(h)
    h.send(bob, "TOPIC #a")
    lines = h.take(bob)
    assert commands(lines) == ["331"]
    assert parse_line(lines[0]).params[:2] == ["bob", "#a"]
    h.send(bob, "TOPIC #a :tea at five")
    assert commands(h.take(bob)) == ["482"]  # A new channel is +t: operators only.
    h.send(alice, "TOPIC #a :tea at five")
    topic = f":{prefix_of('alice')} TOPIC #a :tea at five"
    assert h.take(bob) == [topic]
    assert h.take(alice) == [topic]
    h.send(bob, "TOPIC #A")
    assert h.take(bob) == [
        f":{SERVER} 332 bob #a :tea at five",
        f":{SERVER} 333 bob #a {prefix_of('alice')} 1000",
    ]
    carol = h.register("carol")
    h.send(carol, "JOIN #a")
    assert commands(h.take(carol)) == ["JOIN", "332", "333", "353", "366"]


def test_topic_errors() -> None:
    h = Harness()
    alice, _ = registered_pair(h)
    carol = h.register("carol")
    h.send(carol, "TOPIC #a :hijack", "TOPIC #nowhere", "TOPIC")
    assert commands(h.take(carol)) == ["442", "403", "461"]
    h.send(alice, "TOPIC #a")
    assert commands(h.take(alice)) == ["331"]  # the refused change did not stick


def test_mode_replies() -> None:
    h = Harness()
    alice, _ = registered_pair(h)
    h.send(alice, "MODE #a")
    assert h.take(alice) == [f":{SERVER} 324 alice #a +nt", f":{SERVER} 329 alice #a 1000"]
    h.send(alice, "MODE alice")
    assert h.take(alice) == [f":{SERVER} 221 alice +"]
    h.send(alice, "MODE #a +X")
    assert commands(h.take(alice)) == ["472"]
    h.send(alice, "MODE alice +X")
    assert commands(h.take(alice)) == ["501"]
    h.send(alice, "MODE #nowhere", "MODE")
    assert commands(h.take(alice)) == ["403", "461"]


def test_whois() -> None:
    h = Harness()
    alice = h.register("alice")
    h.register("bob", user="bobby", host="10.1.2.3")
    h.send(alice, "WHOIS BOB")
    lines = h.take(alice)
    assert commands(lines) == ["311", "312", "317", "318"]
    assert lines[0] == f":{SERVER} 311 alice bob bobby 10.1.2.3 * :Real bob"
    h.send(alice, "WHOIS nobody")
    lines = h.take(alice)
    assert "401" in commands(lines)
    assert "311" not in commands(lines)
    h.send(alice, "WHOIS")
    assert commands(h.take(alice)) == ["461"]


def test_whois_of_a_nick_held_by_an_unregistered_connection() -> None:
    # A connection that sent only NICK is not a user yet (InspIRCd and Ergo answer
    # 401): in particular it has no username to show.
    h = Harness()
    alice = h.register("alice")
    pending = h.connect()
    h.send(pending, "NICK ghost")
    h.send(alice, "WHOIS ghost")
    lines = h.take(alice)
    assert not any(" None " in line for line in lines), lines
    assert commands(lines)[0] == "401", lines


def test_privmsg_to_an_unregistered_connection_is_not_delivered() -> None:
    # Before 001 a connection must receive nothing but registration replies.
    h = Harness()
    alice = h.register("alice")
    pending = h.connect()
    h.send(pending, "NICK ghost")
    h.send(alice, "PRIVMSG ghost :boo")
    assert h.take(pending) == []
    assert commands(h.take(alice)) == ["401"]


def test_421_unknown_command() -> None:
    h = Harness()
    alice = h.register("alice")
    h.send(alice, "FOO bar baz")
    assert h.take(alice) == [f":{SERVER} 421 alice FOO :Unknown command"]


def test_ping_pong_in_order_with_everything_else() -> None:
    h = Harness()
    alice = h.register("alice")
    h.send(alice, "PING :tok 1", "PRIVMSG nobody :x", "ping second")
    lines = h.take(alice)
    assert lines[0] == f":{SERVER} PONG {SERVER} :tok 1"
    assert parse_line(lines[1]).command == "401"
    assert lines[2] == f":{SERVER} PONG {SERVER} :second"
    assert len(lines) == 3


def test_blank_lines_are_ignored() -> None:
    h = Harness()
    alice = h.register("alice")
    h.feed(alice, b"\r\n\n   \r\n")
    assert h.take(alice) == []


def test_cr_and_nul_cannot_inject_lines_into_other_streams() -> None:
    h = Harness()
    alice, bob = registered_pair(h)
    h.feed(alice, b"PRIVMSG #a :one\rPRIVMSG #a :two\0QUIT\r\n")
    assert h.take(bob) == [f":{prefix_of('alice')} PRIVMSG #a :one PRIVMSG #a :two QUIT"]
    assert h.core.client_count == 2


# -- Leaving ------------------------------------------------------------------------------


def test_quit() -> None:
    h = Harness()
    alice, bob = registered_pair(h)
    for channel in ("#b", "#c"):
        h.join(alice, channel)
        h.join(bob, channel, alice)
    carol = h.register("carol")
    effects = h.feed(alice, b"QUIT :gone fishing\r\nPRIVMSG #a :after quit\r\n")
    closes = [e for e in effects if isinstance(e, Close)]
    assert closes == [Close(alice, b"ERROR :Closing link (Quit: gone fishing)\r\n", flush=True)]
    assert h.take(bob) == [f":{prefix_of('alice')} QUIT :Quit: gone fishing"]
    assert h.take(carol) == []
    assert h.core.client_count == 2
    assert h.core.channel_count == 3  # bob is still on all three
    # The adapter reports the closed socket: nothing more happens.
    assert h.lose(alice) == []
    assert h.feed(alice, b"PRIVMSG #a :ghost\r\n") == []


def test_quit_before_registration() -> None:
    h = Harness()
    conn = h.connect()
    effects = h.send(conn, "QUIT :nope")
    assert effects == [Close(conn, b"ERROR :Closing link (Quit: nope)\r\n", flush=True)]
    assert h.core.client_count == 0


def test_connection_lost_announced_once() -> None:
    h = Harness()
    alice, bob = registered_pair(h)
    h.join(alice, "#b")
    h.join(bob, "#b", alice)
    carol = h.register("carol")
    h.join(carol, "#b", alice, bob)
    h.lose(alice)
    quit_line = f":{prefix_of('alice')} QUIT :Connection closed"
    assert h.take(bob) == [quit_line]
    assert h.take(carol) == [quit_line]
    assert h.core.client_count == 2
    assert h.lose(alice) == []


def test_channels_vanish_when_their_last_member_leaves() -> None:
    h = Harness()
    alice = h.register("alice")
    h.join(alice, "#a")
    h.join(alice, "#b")
    assert h.core.channel_count == 2
    h.lose(alice)
    assert h.core.channel_count == 0
    assert h.core.client_count == 0


# -- Capacity -----------------------------------------------------------------------------


def test_max_clients() -> None:
    h = Harness(lenient_limits(max_clients=2))
    alice = h.register("alice")
    bob = h.register("bob")
    full = h.connect()
    assert h.closed[full].farewell == b"ERROR :Closing link (Server is full)\r\n"
    assert h.core.client_count == 2
    assert h.feed(full, b"NICK x\r\nUSER x 0 * :x\r\n") == []
    # The others are unaffected.
    h.send(alice, "PRIVMSG bob :still here")
    assert h.take(bob) == [f":{prefix_of('alice')} PRIVMSG bob :still here"]
    # A freed slot can be used again.
    h.send(bob, "QUIT")
    h.register("carol")
    assert h.core.client_count == 2
    again = h.connect()
    assert again in h.closed


def test_echo_server_admission() -> None:
    echo = EchoCore(Limits(max_clients=2))
    assert echo.connect()
    assert echo.connect()
    assert not echo.connect()
    echo.connection_lost()
    assert echo.connect()
    echo.shutdown()
    echo.connection_lost()
    assert not echo.connect()


# -- SendQ ---------------------------------------------------------------------------------


@pytest.mark.parametrize("per_packet", [1, 20])
def test_sendq_overflow_drops_only_the_stalled_member(per_packet: int) -> None:
    sendq = 4096
    h = Harness(lenient_limits(sendq=sendq))
    alice, bob = registered_pair(h)
    carol = h.register("carol")
    dave = h.register("dave")
    h.join(carol, "#a", alice, bob)
    h.join(dave, "#a", alice, bob, carol)
    h.stall(dave)
    texts = [f"message {i:04} " + "x" * 80 for i in range(200)]  # far beyond 4 KiB in total
    # The readers read between packets; 20 messages fit in their SendQ.
    for i in range(0, len(texts), per_packet):
        h.send(alice, *(f"PRIVMSG #a :{t}" for t in texts[i : i + per_packet]))
    expected = [f":{prefix_of('alice')} PRIVMSG #a :{t}" for t in texts]
    quit_line = f":{prefix_of('dave')} QUIT :SendQ exceeded"
    for peer in (bob, carol):
        lines = h.take(peer)
        assert [line for line in lines if line != quit_line] == expected
        assert lines.count(quit_line) == 1
    assert h.take(alice) == [quit_line]
    assert h.closed[dave] == Close(dave, b"ERROR :Closing link (SendQ exceeded)\r\n", flush=False)
    # dave never had more than sendq bytes queued, and was dropped only when the
    # next message would not fit.
    got = h.take(dave)
    queued = sum(len(line) + 2 for line in got)
    assert queued == h.pending[dave]
    assert queued <= sendq
    assert queued + len(expected[len(got)]) + 2 > sendq
    assert got == expected[: len(got)]
    assert h.core.client_count == 3


def test_a_reading_client_is_never_dropped_for_total_volume() -> None:
    sendq = 2048
    h = Harness(lenient_limits(sendq=sendq))
    alice, bob = registered_pair(h)
    for i in range(200):  # about 20 times the SendQ, read as it comes
        h.send(alice, f"PRIVMSG #a :{i} " + "y" * 90)
    assert len(h.take(bob)) == 200
    assert bob not in h.closed


def test_sendq_holds_exactly_sendq_bytes() -> None:
    h = Harness(lenient_limits(sendq=1024))
    alice = h.register("alice")
    bob = h.register("bob")
    h.stall(bob)
    line = f":{prefix_of('alice')} PRIVMSG bob :"
    # Fill bob's queue to exactly 1024 bytes with three messages.
    sizes = [400, 400, 224]
    h.send(alice, *("PRIVMSG bob :" + "a" * (size - len(line) - 2) for size in sizes))
    assert h.pending[bob] == 1024
    assert bob not in h.closed
    h.send(alice, "PRIVMSG bob :c")
    assert bob in h.closed
    assert h.closed[bob].flush is False


def test_stalled_sender_overflowing_its_own_queue_is_dropped() -> None:
    h = Harness(lenient_limits(sendq=1024))
    alice, bob = registered_pair(h)
    h.stall(alice)
    h.send(alice, *(["NAMES #a"] * 100))
    assert alice in h.closed
    assert h.take(bob) == [f":{prefix_of('alice')} QUIT :SendQ exceeded"]
    assert h.core.client_count == 1


def test_overflow_cascade_during_quit_announcement() -> None:
    # bob overflows; announcing his QUIT overflows carol, whose QUIT reaches alice.
    sendq = 1024
    h = Harness(lenient_limits(sendq=sendq))
    alice, bob = registered_pair(h)
    carol = h.register("carol")
    h.join(carol, "#a", alice, bob)
    h.stall(bob)
    h.stall(carol)
    pong_overhead = len(f":{SERVER} PONG {SERVER} :\r\n")
    while (room := sendq - h.pending[carol]) > 0:
        assert carol not in h.closed
        size = room if room <= 500 else min(500, room - 100)
        h.send(carol, "PING :" + "p" * (size - pong_overhead))
    assert h.pending[carol] == sendq
    assert carol not in h.closed
    h.send(alice, *(["PRIVMSG bob :" + "b" * 400] * 3))  # more than bob's 1024 bytes
    assert h.closed[bob].flush is False
    assert h.closed[carol].flush is False
    assert h.take(alice) == [
        f":{prefix_of('bob')} QUIT :SendQ exceeded",
        f":{prefix_of('carol')} QUIT :SendQ exceeded",
    ]
    assert h.core.client_count == 1
    assert h.core.channel_count == 1


def test_one_read_queues_a_bounded_turn_and_the_rest_after_the_writers() -> None:
    """A 64 KiB read fanned out must not fill a 64 KiB SendQ before any writer runs.

    Each call stops before the next line once it has queued the budget (an
    eighth of the SendQ, at most TURN_BYTES) for any one client, and says so
    with ``has_ready_lines``; the adapter lets its writers run, then calls
    ``handle_timer`` for the rest. Before, bob was dropped in the first call.
    """
    sendq = 65_536
    h = Harness(lenient_limits(sendq=sendq))
    alice, bob = registered_pair(h)
    texts = [f"{i:03} " + "z" * 380 for i in range(160)]
    data = "".join(f"PRIVMSG #a :{text}\r\n" for text in texts).encode()
    assert len(data) > 60_000  # About one READ_SIZE.
    line_size = len(f":{prefix_of('alice')} PRIVMSG #a :{texts[0]}\r\n")
    budget = min(TURN_BYTES, sendq // 8)
    turns = 0
    effects = h.core.receive_data(alice, data, h.now)
    while True:
        turns += 1
        queued = sum(len(e.data) for e in effects if isinstance(e, Send) and e.conn == bob)
        assert queued < budget + line_size  # It stops once the budget is spent.
        h.apply(effects)  # The writers run: bob reads it all.
        if not h.core.has_ready_lines(alice):
            break
        effects = h.core.handle_timer(alice, h.now)
    assert turns >= len(texts) * line_size // budget
    assert h.take(bob) == [f":{prefix_of('alice')} PRIVMSG #a :{text}" for text in texts]
    assert bob not in h.closed
    assert not h.core.has_ready_lines(bob)


def test_a_sendq_past_half_full_ends_each_turn_after_one_line() -> None:
    """The budget is per call, and many talkers' calls may run before any writer: a
    member whose SendQ is past half full ends every turn after one line."""
    sendq = 65_536
    h = Harness(lenient_limits(sendq=sendq))
    alice, bob = registered_pair(h)
    carol = h.register("carol")
    h.join(carol, "#a", alice, bob)
    h.stall(bob)  # Its writer has not run yet.
    texts = [f"{i:03} " + "z" * 380 for i in range(40)]
    data = "".join(f"PRIVMSG #a :{text}\r\n" for text in texts).encode()
    turns = [h.core.receive_data(talker, data, h.now) for talker in (alice, carol) * 8]
    h.apply([effect for turn in turns for effect in turn])
    queued = h.pending[bob]
    # Calls ran whole turns until bob was past half full, then one line each.
    assert sendq // 2 < queued <= sendq // 2 + TURN_BYTES + len(turns) * 500
    # Every call after that ran one line: two sends (bob and the other talker).
    assert [len(turn) for turn in turns[-4:]] == [2, 2, 2, 2]
    assert bob not in h.closed


# -- Bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 13, 512, 100_000])
def test_417_line_too_long_is_never_executed(chunk: int) -> None:
    h = Harness()
    alice, bob = registered_pair(h)
    # Cut at any 512-byte boundary, the tail would be a PING command.
    head = b"PRIVMSG #a :" + b"x" * (512 - len(b"PRIVMSG #a :"))
    data = head + b"PING :injected\r\n" + b"PING :fine\r\n"
    for start in range(0, len(data), chunk):
        h.feed(alice, data[start : start + chunk])
    assert h.take(alice) == [
        f":{SERVER} 417 alice :Input line was too long",
        f":{SERVER} PONG {SERVER} :fine",
    ]
    assert h.take(bob) == []
    assert alice not in h.closed


def test_417_before_registration_addresses_star() -> None:
    h = Harness()
    conn = h.connect()
    h.feed(conn, b"NICK " + b"a" * 600 + b"\r\n")
    assert h.take(conn) == [f":{SERVER} 417 * :Input line was too long"]


def test_line_of_exactly_max_line_is_executed() -> None:
    h = Harness()
    alice, bob = registered_pair(h)
    head = b"PRIVMSG #a :"
    text = b"k" * (512 - len(head) - 2)
    h.feed(alice, head + text + b"\r\n")
    (line,) = h.take(bob)
    assert line.startswith(f":{prefix_of('alice')} PRIVMSG #a :k")
    assert h.take(alice) == []


def test_invalid_utf8_is_rejected_and_not_relayed() -> None:
    h = Harness()
    alice, bob = registered_pair(h)
    h.feed(alice, b"PRIVMSG #a :caf\xe9 \xff\xfe\r\n")
    assert h.take(alice) == [
        f":{SERVER} FAIL PRIVMSG INVALID_UTF8 :Message rejected, invalid UTF-8"
    ]
    assert h.take(bob) == []
    h.feed(alice, "PRIVMSG #a :café\r\n".encode())
    assert h.take(bob) == [f":{prefix_of('alice')} PRIVMSG #a :café"]


def test_invalid_utf8_in_topic_names_topic() -> None:
    h = Harness()
    alice, bob = registered_pair(h)
    h.feed(alice, b"topic #a :\xc3\x28\r\n")
    assert h.take(alice) == [f":{SERVER} FAIL TOPIC INVALID_UTF8 :Message rejected, invalid UTF-8"]
    assert h.take(bob) == []


# -- Output limits -------------------------------------------------------------------------


@pytest.mark.parametrize("char", ["x", "é", "€", "𝄞"])
def test_relayed_max_length_privmsg_is_cut_to_max_line(char: str) -> None:
    h = Harness()
    nick, user, host = "A" * 16, "u" * 16, "h" * 40 + ".example.org"
    alice = h.register(nick, user=user, host=host)
    bob = h.register("bob")
    h.join(alice, "#a")
    h.join(bob, "#a", alice)
    for target in ("#a", "bob"):
        head = f"PRIVMSG {target} :"
        text = char * ((512 - 2 - len(head)) // len(char.encode()))
        raw = f"{head}{text}\r\n".encode()
        assert 509 <= len(raw) <= 512
        h.feed(alice, raw)
        (line,) = h.take(bob)  # the harness checks CR LF, max_line and UTF-8
        start = f":{prefix_of(nick, user, host)} PRIVMSG {target} :"
        assert line.startswith(start), line
        relayed = line[len(start) :]
        assert text.startswith(relayed)
        # Cut on a character boundary close to the limit, not dropped or cut short.
        assert len(line.encode()) + 2 > 512 - len(char.encode())
        assert h.take(alice) == []


def test_names_of_300_members_is_split() -> None:
    h = Harness()
    members = [f"member{i:03}_{'x' * 6}" for i in range(300)]
    assert all(len(n) == 16 for n in members)
    conns = [h.register(nick) for nick in members]
    for conn in conns:
        h.send(conn, "JOIN #big")
    for conn in conns:
        h.take(conn)
    viewer = h.register("viewer")
    h.send(viewer, "NAMES #big")
    lines = h.take(viewer)
    assert parse_line(lines[-1]).command == "366"
    names_lines = lines[:-1]
    assert len(names_lines) > 1
    listed: list[str] = []
    for line in names_lines:
        parsed = parse_line(line)
        assert parsed.command == "353"
        assert parsed.params[:3] == ["viewer", "=", "#big"]
        assert len(line.encode()) + 2 <= 512  # the harness checks this too
        listed += parsed.params[-1].split()
    # The first member is the channel's operator.
    assert sorted(listed) == sorted(["@" + members[0], *members[1:]])


# -- Shutdown -------------------------------------------------------------------------------


def test_shutdown_closes_everyone_and_refuses_newcomers() -> None:
    h = Harness()
    alice, bob = registered_pair(h)
    pending = h.connect()
    effects = h.shutdown()
    farewell = b"ERROR :Server shutting down\r\n"
    assert sorted(effects, key=lambda e: e.conn) == [
        Close(alice, farewell, flush=True),
        Close(bob, farewell, flush=True),
        Close(pending, farewell, flush=True),
    ]
    assert h.core.client_count == 0
    assert h.core.channel_count == 0
    late = h.connect()
    assert late in h.closed
    assert h.core.client_count == 0
    assert h.feed(alice, b"PRIVMSG #a :hello?\r\n") == []
    assert h.lose(bob) == []


# -- Invariant checks of the harness itself --------------------------------------------------


def test_harness_rejects_an_effect_after_close() -> None:
    h = Harness()
    with pytest.raises(AssertionError, match="effect after Close"):
        h.apply([Close(7, b"", flush=True), Send(7, b"PING :x\r\n")])


@pytest.mark.parametrize(
    "data", [b"no ending", b"bare cr\r\rx\r\n", b"nul\0\r\n", b"\xff\r\n", b"x" * 600 + b"\r\n"]
)
def test_harness_rejects_bad_output(data: bytes) -> None:
    h = Harness()
    with pytest.raises((AssertionError, UnicodeDecodeError)):
        h.apply([Send(1, data)])
