"""JOIN, PART, PRIVMSG, NOTICE, NAMES, TOPIC and QUIT, against every implementation."""

from __future__ import annotations

from collections.abc import Callable

from irc import IrcClient, unique_channel, unique_nick

Connect = Callable[..., IrcClient]
SERVER = "echochat.local"


def registered(connect: Connect, count: int) -> list[IrcClient]:
    clients = [connect() for _ in range(count)]
    for client in clients:
        client.register(unique_nick())
    return clients


def test_join_tells_every_member_and_sends_topic_and_names(connect: Connect) -> None:
    alice, bob = registered(connect, 2)
    channel = unique_channel()
    lines = alice.join(channel)
    # No 331 when there is no topic; the first member is the operator.
    assert lines == [
        f":{alice.nick}!u@127.0.0.1 JOIN {channel}",
        f":{SERVER} 353 {alice.nick} = {channel} :@{alice.nick}",
        f":{SERVER} 366 {alice.nick} {channel} :End of /NAMES list",
    ]
    # Channel names compare case-insensitively; the first spelling is kept.
    bob.send(f"JOIN {channel.upper()}")
    bob.expect(rf":{bob.nick}!u@127\.0\.0\.1 JOIN {channel}")
    bob.expect(rf":{SERVER} 353 {bob.nick} = {channel} :@{alice.nick} {bob.nick}")
    bob.expect(rf":{SERVER} 366 {bob.nick} {channel} :End of /NAMES list")
    alice.expect(rf":{bob.nick}!u@127\.0\.0\.1 JOIN {channel}")


def test_join_twice_does_nothing_and_join_several(connect: Connect) -> None:
    (alice,) = registered(connect, 1)
    first, second = unique_channel(), unique_channel()
    alice.join(first)
    alice.send(f"JOIN {first}")
    assert alice.sync() == []
    alice.send(f"JOIN {first},{second}")
    alice.expect(rf":{alice.nick}!u@127\.0\.0\.1 JOIN {second}")
    alice.read_until(rf":{SERVER} 366 {alice.nick} {second} .*")
    assert alice.sync() == []


def test_join_invalid_names(connect: Connect) -> None:
    (alice,) = registered(connect, 1)
    too_long = "#" + "x" * 50
    for name in ["nochan", too_long, "#"]:
        alice.send(f"JOIN {name}")
        alice.expect(rf":{SERVER} 403 {alice.nick} {name} :No such channel")
    alice.send("JOIN :#a b")
    alice.expect(rf":{SERVER} 403 {alice.nick} #a :No such channel")
    ok = "#" + "y" * 49
    alice.send(f"JOIN {ok}")
    alice.expect(rf":{alice.nick}!u@127\.0\.0\.1 JOIN {ok}")


def test_join_0_parts_all_channels(connect: Connect) -> None:
    alice, bob = registered(connect, 2)
    channels = [unique_channel(), unique_channel()]
    for channel in channels:
        alice.join(channel)
        bob.join(channel)
        alice.read_until(rf":{bob.nick}!.* JOIN {channel}")
    alice.send("JOIN 0")
    for channel in channels:
        alice.expect(rf":{alice.nick}!u@127\.0\.0\.1 PART {channel}")
        bob.expect(rf":{alice.nick}!u@127\.0\.0\.1 PART {channel}")


def test_privmsg_to_channel_reaches_every_other_member(connect: Connect) -> None:
    alice, bob, carol, outsider = registered(connect, 4)
    channel = unique_channel()
    for client in (alice, bob, carol):
        client.join(channel)
    alice.sync()
    bob.sync()
    alice.send(f"PRIVMSG {channel} :hello, world: 1 2 3")
    assert alice.sync() == []  # The sender does not get its own message.
    for client in (bob, carol):
        client.expect(rf":{alice.nick}!u@127\.0\.0\.1 PRIVMSG {channel} :hello, world: 1 2 3")
    assert outsider.sync() == []


def test_privmsg_to_nick_and_to_several_targets(connect: Connect) -> None:
    alice, bob, carol = registered(connect, 3)
    alice.send(f"PRIVMSG {bob.nick.upper()} :psst")
    bob.expect(rf":{alice.nick}!u@127\.0\.0\.1 PRIVMSG {bob.nick} :psst")
    alice.send(f"PRIVMSG {bob.nick},{carol.nick},{bob.nick} :both")
    bob.expect(rf":{alice.nick}!.* PRIVMSG {bob.nick} :both")
    carol.expect(rf":{alice.nick}!.* PRIVMSG {carol.nick} :both")
    alice.sync()
    assert bob.sync() == []  # Named twice, delivered once.


def test_privmsg_errors(connect: Connect) -> None:
    alice, bob = registered(connect, 2)
    channel = unique_channel()
    bob.join(channel)
    nick = alice.nick
    alice.send("PRIVMSG", "PRIVMSG #x", f"PRIVMSG {bob.nick} :", "PRIVMSG nobody_here :hi")
    alice.expect(rf":{SERVER} 411 {nick} :No recipient given \(PRIVMSG\)")
    alice.expect(rf":{SERVER} 412 {nick} :No text to send")
    alice.expect(rf":{SERVER} 412 {nick} :No text to send")
    alice.expect(rf":{SERVER} 401 {nick} nobody_here :No such nick/channel")
    alice.send(f"PRIVMSG {channel} :not a member", "PRIVMSG #nowhere_at_all :hi")
    alice.expect(rf":{SERVER} 404 {nick} {channel} :Cannot send to channel")
    alice.expect(rf":{SERVER} 401 {nick} #nowhere_at_all :No such nick/channel")
    assert bob.sync() == []


def test_notice_is_delivered_but_never_answered_with_an_error(connect: Connect) -> None:
    alice, bob = registered(connect, 2)
    channel = unique_channel()
    alice.join(channel)
    bob.join(channel)
    alice.sync()
    alice.send(f"NOTICE {channel} :heads up", f"NOTICE {bob.nick} :direct")
    bob.expect(rf":{alice.nick}!.* NOTICE {channel} :heads up")
    bob.expect(rf":{alice.nick}!.* NOTICE {bob.nick} :direct")
    alice.send("NOTICE", "NOTICE nobody_here :x", "NOTICE #nowhere :x", f"NOTICE {bob.nick}")
    assert alice.sync() == []


def test_part_with_and_without_reason_and_errors(connect: Connect) -> None:
    alice, bob = registered(connect, 2)
    channel = unique_channel()
    alice.join(channel)
    bob.join(channel)
    alice.sync()
    bob.send(f"PART {channel} :see you later")
    bob.expect(rf":{bob.nick}!u@127\.0\.0\.1 PART {channel} :see you later")
    alice.expect(rf":{bob.nick}!u@127\.0\.0\.1 PART {channel} :see you later")
    bob.send(f"PART {channel}", "PART #nowhere_at_all")
    bob.expect(rf":{SERVER} 442 {bob.nick} {channel} :You're not on that channel")
    bob.expect(rf":{SERVER} 403 {bob.nick} #nowhere_at_all :No such channel")
    alice.send(f"PART {channel}")
    alice.expect(rf":{alice.nick}!u@127\.0\.0\.1 PART {channel}")
    # The channel died with its last member.
    bob.send(f"PRIVMSG {channel} :anyone?")
    bob.expect(rf":{SERVER} 401 {bob.nick} {channel} :No such nick/channel")


def test_names(connect: Connect) -> None:
    alice, bob = registered(connect, 2)
    channel = unique_channel()
    alice.join(channel)
    bob.join(channel)
    alice.sync()
    alice.send(f"NAMES {channel}", "NAMES #nowhere_at_all", "NAMES")
    alice.expect(rf":{SERVER} 353 {alice.nick} = {channel} :@{alice.nick} {bob.nick}")
    alice.expect(rf":{SERVER} 366 {alice.nick} {channel} :End of /NAMES list")
    alice.expect(rf":{SERVER} 366 {alice.nick} #nowhere_at_all :End of /NAMES list")
    alice.expect(rf":{SERVER} 366 {alice.nick} \* :End of /NAMES list")


def test_topic_query_set_and_errors(connect: Connect) -> None:
    alice, bob, outsider = registered(connect, 3)
    channel = unique_channel()
    alice.join(channel)
    bob.join(channel)
    alice.sync()
    alice.send(f"TOPIC {channel}")
    alice.expect(rf":{SERVER} 331 {alice.nick} {channel} :No topic is set")
    # A new channel is +t: only its operator (alice, who made it) sets the topic.
    bob.send(f"TOPIC {channel} :mine now")
    bob.expect(rf":{SERVER} 482 {bob.nick} {channel} :You're not channel operator")
    alice.send(f"TOPIC {channel} :Release day: 1.0")
    for member in (alice, bob):
        member.expect(rf":{alice.nick}!u@127\.0\.0\.1 TOPIC {channel} :Release day: 1\.0")
    outsider.send(f"TOPIC {channel}", f"TOPIC {channel} :hijack", "TOPIC #nowhere_at_all")
    outsider.expect(rf":{SERVER} 332 {outsider.nick} {channel} :Release day: 1\.0")
    outsider.expect(rf":{SERVER} 333 {outsider.nick} {channel} {alice.nick}!u@127\.0\.0\.1 \d+")
    outsider.expect(rf":{SERVER} 442 {outsider.nick} {channel} :You're not on that channel")
    outsider.expect(rf":{SERVER} 403 {outsider.nick} #nowhere_at_all :No such channel")
    # A joiner gets the topic instead of 331.
    outsider.send(f"JOIN {channel}")
    outsider.expect(rf":{outsider.nick}!.* JOIN {channel}")
    outsider.expect(rf":{SERVER} 332 {outsider.nick} {channel} :Release day: 1\.0")


def test_quit_is_announced_once_to_everyone_sharing_a_channel(connect: Connect) -> None:
    alice, bob, carol = registered(connect, 3)
    first, second = unique_channel(), unique_channel()
    for channel in (first, second):
        alice.join(channel)
        bob.join(channel)
    carol.join(first)
    for client in (alice, bob, carol):
        client.sync()
    alice.send("QUIT :gone fishing")
    alice.expect(r"ERROR :Closing link \(Quit: gone fishing\)")
    assert alice.expect_eof() == []
    for peer in (bob, carol):
        peer.expect(rf":{alice.nick}!u@127\.0\.0\.1 QUIT :Quit: gone fishing")
        assert peer.sync() == []  # Once, although bob shared two channels.


def test_dropped_connection_is_announced_once(connect: Connect) -> None:
    alice, bob = registered(connect, 2)
    for channel in (unique_channel(), unique_channel()):
        alice.join(channel)
        bob.join(channel)
    bob.sync()
    alice.close()
    bob.expect(rf":{alice.nick}!u@127\.0\.0\.1 QUIT :Connection closed")
    assert bob.sync() == []
