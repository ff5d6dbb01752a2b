"""Registration, CAP, nicks and PING, against every implementation over real sockets."""

from __future__ import annotations

from collections.abc import Callable

from irc import IrcClient, unique_nick

Connect = Callable[..., IrcClient]
SERVER = "echochat.local"


def test_registration_nick_then_user(connect: Connect) -> None:
    client = connect()
    nick = unique_nick()
    client.send(f"NICK {nick}", "USER alice 0 * :Alice Liddell")
    client.expect(
        rf":{SERVER} 001 {nick} :Welcome to the echochat IRC network {nick}!alice@127\.0\.0\.1"
    )
    client.expect(rf":{SERVER} 002 {nick} :Your host is {SERVER}, running version echochat-\S+")
    client.expect(rf":{SERVER} 003 {nick} :This server was created .+")
    client.expect(rf":{SERVER} 004 {nick} {SERVER} echochat-\S+ iow biklmnostv bklov")
    isupport = client.expect(rf":{SERVER} 005 {nick} (.+) :are supported by this server").group(1)
    isupport += " " + client.expect(rf":{SERVER} 005 {nick} (.+) :are supported by this server")[1]
    # The full list is checked in tests/core/test_chat.py; here, that it arrives.
    for token in ["CASEMAPPING=ascii", "NICKLEN=16", "PREFIX=(ov)@+", "CHANMODES=b,k,l,imnst"]:
        assert token in isupport.split()
    client.expect(rf":{SERVER} 422 {nick} :MOTD File is missing")


def test_registration_user_then_nick(connect: Connect) -> None:
    client = connect()
    nick = unique_nick()
    client.send("USER bob 0 * :Bob", f"NICK {nick}")
    client.expect(
        rf":{SERVER} 001 {nick} :Welcome to the echochat IRC network {nick}!bob@127\.0\.0\.1"
    )
    assert client.read_until(rf":{SERVER} 422 {nick} .*")[-1].endswith("MOTD File is missing")


def test_cap_negotiation_delays_registration_until_cap_end(connect: Connect) -> None:
    client = connect()
    nick = unique_nick()
    client.send("CAP LS 302", f"NICK {nick}", "USER u 0 * :U")
    client.expect(rf":{SERVER} CAP \* LS :")
    # Still negotiating: no welcome yet, and PING is answered meanwhile.
    assert client.sync() == []
    client.send("CAP REQ :multi-prefix sasl")
    client.expect(rf":{SERVER} CAP \* NAK :multi-prefix sasl")
    client.send("PASS secret", "CAP END")
    client.expect(rf":{SERVER} 001 {nick} .*")


def test_commands_before_registration_get_451(connect: Connect) -> None:
    client = connect()
    for command in ["JOIN #x", "PRIVMSG #x :hi", "NAMES", "WHOIS x", "FROB"]:
        client.send(command)
        client.expect(rf":{SERVER} 451 \* :You have not registered")


def test_nick_errors(connect: Connect) -> None:
    client = connect()
    nick = unique_nick()
    client.register(nick)
    client.send("NICK")
    client.expect(rf":{SERVER} 431 {nick} :No nickname given")
    for bad in ["1abc", "-abc", "a b", "abcdefghijklmnopq", "a!b", "a@b", "#chan"]:
        # As a trailing parameter, so the space in "a b" reaches the server.
        client.send(f"NICK :{bad}")
        shown = bad.split(" ")[0]
        client.expect(rf":{SERVER} 432 {nick} {shown} :Erroneous nickname")


def test_nick_collision_is_case_insensitive_and_failed_change_keeps_old_nick(
    connect: Connect,
) -> None:
    first, second = connect(), connect()
    taken, other = unique_nick("Taken"), unique_nick()
    first.register(taken)
    second.register(other)
    second.send(f"NICK {taken.lower()}")
    second.expect(rf":{SERVER} 433 {other} {taken.lower()} :Nickname is already in use")
    second.send(f"NICK {taken.upper()}")
    second.expect(rf":{SERVER} 433 {other} {taken.upper()} :Nickname is already in use")
    # The failed change kept the old nick: numerics still address it.
    second.send("PING x")
    second.expect(rf":{SERVER} PONG {SERVER} :x")
    second.send("MODE " + other)
    second.expect(rf":{SERVER} 221 {other} \+")
    # Special characters fold only A-Z (CASEMAPPING=ascii): [ and { differ.
    bracket = unique_nick("[x]")
    first.send(f"NICK {bracket}")
    first.expect(rf":{taken}!u@127\.0\.0\.1 NICK {bracket.replace('[', '.').replace(']', '.')}")
    second.send(f"NICK {bracket.replace('[', '{').replace(']', '}')}")
    second.expect(rf":{other}!u@127\.0\.0\.1 NICK .*")


def test_nick_collision_before_registration(connect: Connect) -> None:
    first, second = connect(), connect()
    nick = unique_nick()
    first.register(nick)
    second.send(f"NICK {nick}")
    second.expect(rf":{SERVER} 433 \* {nick} :Nickname is already in use")


def test_nick_is_free_again_after_quit_and_after_disconnect(connect: Connect) -> None:
    nick = unique_nick()
    first = connect()
    first.register(nick)
    first.send("QUIT :bye")
    first.expect(r"ERROR :Closing link \(Quit: bye\)")
    first.expect_eof()
    second, witness = connect(), connect()
    second.register(nick)  # Would get 433 if the nick were still held.
    witness.register(unique_nick())
    channel = "#free" + nick
    second.join(channel)
    witness.join(channel)
    second.close()
    # The witness hears of the disconnect when the server forgets the nick.
    witness.expect(rf":{nick}!u@127\.0\.0\.1 QUIT :Connection closed")
    third = connect()
    third.register(nick)


def test_nick_change_is_announced_once_to_user_and_each_peer(connect: Connect) -> None:
    alice, bob, carol = connect(), connect(), connect()
    a, b, c = unique_nick("a"), unique_nick("b"), unique_nick("c")
    alice.register(a)
    bob.register(b)
    carol.register(c)
    for channel in ["#n1", "#n2"]:
        ch = channel + a
        alice.join(ch)
        bob.join(ch)
        alice.read_until(rf":{b}!.* JOIN {ch}")
    new = unique_nick("renamed")
    alice.send(f"NICK {new}")
    alice.expect(rf":{a}!u@127\.0\.0\.1 NICK {new}")
    assert alice.sync() == []
    bob.expect(rf":{a}!u@127\.0\.0\.1 NICK {new}")
    assert bob.sync() == []  # Once, although they share two channels.
    assert carol.sync() == []  # Shares no channel: not told.


def test_ping_is_answered_in_order_with_other_replies(connect: Connect) -> None:
    client = connect()
    nick = unique_nick()
    client.register(nick)
    client.send("PING :first token", "FOO", "PING second", "PING")
    client.expect(rf":{SERVER} PONG {SERVER} :first token")
    client.expect(rf":{SERVER} 421 {nick} FOO :Unknown command")
    client.expect(rf":{SERVER} PONG {SERVER} :second")
    client.expect(rf":{SERVER} 461 {nick} PING :Not enough parameters")


def test_commands_are_case_insensitive(connect: Connect) -> None:
    client = connect()
    nick = unique_nick()
    client.send(f"nick {nick}", "uSeR u 0 * :U")
    client.read_until(rf":{SERVER} 422 {nick} .*")
    client.send("ping :x")
    client.expect(rf":{SERVER} PONG {SERVER} :x")


def test_mode_and_whois(connect: Connect) -> None:
    client, other = connect(), connect()
    nick, peer = unique_nick(), unique_nick()
    client.register(nick)
    other.register(peer, user="pu", realname="Peer Person")
    client.send(f"MODE {nick}", f"MODE {nick} +X", f"MODE {peer}")
    client.expect(rf":{SERVER} 221 {nick} \+")
    client.expect(rf":{SERVER} 501 {nick} :Unknown MODE flag")
    client.expect(rf":{SERVER} 502 {nick} :.*")
    channel = "#m" + nick
    client.join(channel)
    client.send(f"MODE {channel}", f"MODE {channel} +X", "MODE #nonexistent" + nick)
    client.expect(rf":{SERVER} 324 {nick} {channel} \+nt")
    client.expect(rf":{SERVER} 329 {nick} {channel} \d+")
    client.expect(rf":{SERVER} 472 {nick} X :is unknown mode char to me")
    client.expect(rf":{SERVER} 403 {nick} #nonexistent{nick} :No such channel")
    client.send(f"WHOIS {peer}", "WHOIS nobody" + nick)
    client.expect(rf":{SERVER} 311 {nick} {peer} pu 127\.0\.0\.1 \* :Peer Person")
    client.expect(rf":{SERVER} 312 {nick} {peer} {SERVER} :.*")
    client.expect(rf":{SERVER} 317 {nick} {peer} \d+ \d+ :seconds idle, signon time")
    client.expect(rf":{SERVER} 318 {nick} {peer} :End of /WHOIS list")
    client.expect(rf":{SERVER} 401 {nick} nobody{nick} :No such nick/channel")
    client.expect(rf":{SERVER} 318 {nick} nobody{nick} :End of /WHOIS list")


def test_unknown_command_and_missing_parameters(connect: Connect) -> None:
    client = connect()
    nick = unique_nick()
    client.register(nick)
    client.send("FROBNICATE a b")
    client.expect(rf":{SERVER} 421 {nick} FROBNICATE :Unknown command")
    for command in ["JOIN", "PART", "TOPIC", "MODE", "WHOIS", "USER", "CAP"]:
        client.send(command)
        if command == "USER":
            client.expect(rf":{SERVER} 461 {nick} USER :Not enough parameters")
        else:
            client.expect(rf":{SERVER} 461 {nick} {command} :Not enough parameters")
    client.send("USER a b c :d")
    client.expect(rf":{SERVER} 462 {nick} :You may not reregister")


def test_numerics_address_star_until_registered(connect: Connect) -> None:
    client = connect()
    client.send("NICK " + unique_nick(), "JOIN #x", "CAP LIST", "CAP FOO")
    client.expect(rf":{SERVER} 451 \* :You have not registered")
    client.expect(rf":{SERVER} CAP \* LIST :")
    client.expect(rf":{SERVER} 410 \* FOO :Invalid CAP command")


def test_non_ascii_command_words_are_unknown(connect: Connect) -> None:
    client = connect()
    nick = unique_nick()
    client.register(nick)
    # str.upper() would fold "pr\u0131vmsg" (a dotless i) into PRIVMSG.
    dotless = "pr\u0131vmsg"
    client.send(f"{dotless} {nick} :x")
    client.expect(rf":{SERVER} 421 {nick} {dotless} :Unknown command")


def test_username_cannot_forge_a_prefix(connect: Connect) -> None:
    client, other = connect(), connect()
    nick = unique_nick()
    client.send(f"NICK {nick}", "USER evil@host!x 0 * :Eve")
    client.expect(
        rf":{SERVER} 001 {nick} :Welcome to the echochat IRC network {nick}!evilhostx@127\.0\.0\.1"
    )
    other.register(unique_nick())
    other.send(f"WHOIS {nick}")
    other.expect(rf":{SERVER} 311 {other.nick} {nick} evilhostx 127\.0\.0\.1 \* :Eve")


def test_who_lists_channel_members_and_ban_list_is_empty(connect: Connect) -> None:
    alice, bob = connect(), connect()
    alice.register(unique_nick(), user="al", realname="Alice A")
    bob.register(unique_nick(), user="bo", realname="Bob B")
    channel = "#who" + alice.nick
    alice.join(channel)
    bob.join(channel)
    alice.sync()
    alice.send(f"WHO {channel}", f"MODE {channel} b", f"WHO {bob.nick}")
    alice.expect(
        rf":{SERVER} 352 {alice.nick} {channel} al 127\.0\.0\.1 {SERVER} {alice.nick} H@ :0 Alice A"
    )
    alice.expect(
        rf":{SERVER} 352 {alice.nick} {channel} bo 127\.0\.0\.1 {SERVER} {bob.nick} H :0 Bob B"
    )
    alice.expect(rf":{SERVER} 315 {alice.nick} {channel} :End of WHO list")
    alice.expect(rf":{SERVER} 368 {alice.nick} {channel} :End of channel ban list")
    alice.expect(rf":{SERVER} 352 {alice.nick} \* bo 127\.0\.0\.1 {SERVER} {bob.nick} H :0 Bob B")
    alice.expect(rf":{SERVER} 315 {alice.nick} {bob.nick} :End of WHO list")
