"""Part 2 of the contract, "a real IRC server", over TCP against every implementation.

A handful of tests, each walking through several rules on one shared server
(started with a MOTD and a server operator); the exhaustive checks of each
mode and numeric are the pure core's (tests/core/test_ircd.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest

from echochat.core.passwords import hash_password
from irc import IrcClient, unique_channel, unique_nick
from servers import ServerProcess

SERVER = "echochat.local"
# The passwords are test fixtures; the server only ever sees their hashes.
OPER_PASSWORD = "correct horse"
SERVER_PASSWORD = "s3rver pass"
SALT = b"contract-test-salt"


@pytest.fixture(scope="module")
def ircd_server(impl: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    motd = tmp_path_factory.mktemp("motd") / "motd.txt"
    motd.write_text("Welcome to the test network.\nBe excellent.\n", encoding="utf-8")
    oper = f"root:{hash_password(OPER_PASSWORD, SALT)}"
    with ServerProcess(impl, "chat", "--motd", str(motd), "--oper", oper) as server:
        yield server
        # Plain-text passwords are never logged, even at debug level.
        assert OPER_PASSWORD not in server.stderr()


@pytest.fixture
def client(
    ircd_server: ServerProcess, open_client: Callable[..., IrcClient]
) -> Callable[[], IrcClient]:
    """A registered client on the shared server (the welcome ends with the MOTD)."""

    def registered() -> IrcClient:
        new = open_client(ircd_server.port)
        nick = unique_nick("u")
        new.send(f"NICK {nick}", f"USER {nick} 0 * :Real {nick}")
        lines = new.read_until(rf":{SERVER} 376 {nick} :End of /MOTD command\.")
        assert f":{SERVER} 372 {nick} :- Be excellent." in lines
        new.nick = nick
        return new

    return registered


def prefix(who: IrcClient) -> str:
    return re.escape(f"{who.nick}!{who.nick}@127.0.0.1")


def test_operators_modes_and_every_way_in(client: Callable[[], IrcClient]) -> None:
    alice, bob, carol = client(), client(), client()
    channel = unique_channel()
    # The first member is the operator; the channel starts +nt.
    assert f":{SERVER} 353 {alice.nick} = {channel} :@{alice.nick}" in alice.join(channel)
    bob.join(channel)
    alice.sync()
    bob.send(f"MODE {channel} +m", f"TOPIC {channel} :mine")
    bob.expect(rf":{SERVER} 482 {bob.nick} {channel} :You're not channel operator")
    bob.expect(rf":{SERVER} 482 {bob.nick} {channel} :You're not channel operator")
    # One MODE line per command, to every member.
    alice.send(f"MODE {channel} +ikl-n+vb sesame 2 {bob.nick} {carol.nick}!*@*")
    change = rf":{prefix(alice)} MODE {channel} \+ikl-n\+vb sesame 2 {bob.nick} {carol.nick}!\*@\*"
    alice.expect(change)
    bob.expect(change)
    carol.send(f"JOIN {channel}", f"JOIN {channel} sesame")
    carol.expect(rf":{SERVER} 475 {carol.nick} {channel} :Cannot join channel \(\+k\)")
    carol.expect(rf":{SERVER} 471 {carol.nick} {channel} :Cannot join channel \(\+l\)")
    alice.send(f"MODE {channel} -l")
    alice.expect(rf":{prefix(alice)} MODE {channel} -l")
    carol.send(f"JOIN {channel} sesame")
    carol.expect(rf":{SERVER} 473 {carol.nick} {channel} :Cannot join channel \(\+i\)")
    # An invitation passes +i, not the ban.
    alice.send(f"INVITE {carol.nick} {channel}")
    alice.expect(rf":{SERVER} 341 {alice.nick} {carol.nick} {channel}")
    carol.expect(rf":{prefix(alice)} INVITE {carol.nick} :{channel}")
    carol.send(f"JOIN {channel.upper()} sesame")
    carol.expect(rf":{SERVER} 474 {carol.nick} {channel} :Cannot join channel \(\+b\)")
    alice.send(f"MODE {channel} -b {carol.nick}!*@*")
    alice.expect(rf":{prefix(alice)} MODE {channel} -b .*")
    carol.send(f"JOIN {channel} sesame")
    carol.expect(rf":{prefix(carol)} JOIN {channel}")
    carol.read_until(rf":{SERVER} 366 .*")
    # +m: voice speaks, the rest get 404.
    alice.send(f"MODE {channel} +m")
    carol.expect(rf":{prefix(alice)} MODE {channel} \+m")
    carol.send(f"PRIVMSG {channel} :may I?")
    carol.expect(rf":{SERVER} 404 {carol.nick} {channel} :Cannot send to channel")
    bob.send(f"PRIVMSG {channel} :I have voice")
    alice.read_until(rf":{prefix(bob)} PRIVMSG {channel} :I have voice")
    carol.expect(rf":{prefix(bob)} PRIVMSG {channel} :I have voice")
    # KICK: to every member, then the kicked one is out.
    alice.send(f"KICK {channel} {carol.nick} :enough")
    for member in (alice, bob, carol):
        member.read_until(rf":{prefix(alice)} KICK {channel} {carol.nick} :enough")
    alice.send(f"KICK {channel} {carol.nick}")
    alice.expect(rf":{SERVER} 441 {alice.nick} {carol.nick} {channel} :.*")


def test_secret_channels_away_and_queries(client: Callable[[], IrcClient]) -> None:
    alice, outsider = client(), client()
    channel = unique_channel("#s")
    alice.join(channel)
    alice.send(f"MODE {channel} +s", f"TOPIC {channel} :the plan")
    alice.sync()
    outsider.send(
        "LIST",
        f"NAMES {channel}",
        f"WHO {channel}",
        f"WHOIS {alice.nick}",
        f"TOPIC {channel}",
    )
    lines = outsider.sync()
    # Only the end markers name it, echoing the query.
    shown = [line.split()[1] for line in lines if channel in line]
    assert shown == ["366", "315", "442"], lines
    assert f":{SERVER} 442 {outsider.nick} {channel} :You're not on that channel" in lines
    alice.send("AWAY :gone fishing")
    alice.expect(rf":{SERVER} 306 {alice.nick} :You have been marked as being away")
    outsider.send(
        f"PRIVMSG {alice.nick} :hello?", f"ISON {alice.nick} nobody", f"USERHOST {alice.nick}"
    )
    outsider.expect(rf":{SERVER} 301 {outsider.nick} {alice.nick} :gone fishing")
    outsider.expect(rf":{SERVER} 303 {outsider.nick} :{alice.nick}")
    outsider.expect(rf":{SERVER} 302 {outsider.nick} :{alice.nick}=-{alice.nick}@127\.0\.0\.1")
    outsider.send(f"WHO {alice.nick}", "VERSION", "TIME", "INFO", "MOTD", "LUSERS")
    outsider.expect(rf":{SERVER} 352 {outsider.nick} \* \S+ \S+ {SERVER} {alice.nick} G :0 .*")
    outsider.expect(rf":{SERVER} 315 .*")
    outsider.expect(rf":{SERVER} 351 {outsider.nick} echochat-\S+ {SERVER} :.*")
    outsider.read_until(rf":{SERVER} 391 {outsider.nick} {SERVER} :.*")
    outsider.read_until(rf":{SERVER} 374 .*")
    outsider.read_until(rf":{SERVER} 376 .*")
    outsider.read_until(rf":{SERVER} 266 .*")
    gone = alice.nick
    alice.send("QUIT")
    alice.expect_eof()
    outsider.send(f"WHOWAS {gone}")
    outsider.expect(rf":{SERVER} 314 {outsider.nick} {gone} {gone} 127\.0\.0\.1 \* :Real {gone}")
    outsider.expect(rf":{SERVER} 312 .*")
    outsider.expect(rf":{SERVER} 369 {outsider.nick} {gone} :End of WHOWAS")


def test_server_operators(client: Callable[[], IrcClient]) -> None:
    oper, victim, watcher = client(), client(), client()
    channel = unique_channel()
    victim.join(channel)
    watcher.join(channel)
    oper.send(f"KILL {victim.nick} :x", "OPER root wrong", f"OPER nobody :{OPER_PASSWORD}")
    oper.expect(rf":{SERVER} 481 {oper.nick} :Permission Denied- You're not an IRC operator")
    # The same answer whether the name or the password was wrong.
    oper.expect(rf":{SERVER} 464 {oper.nick} :Password incorrect")
    oper.expect(rf":{SERVER} 464 {oper.nick} :Password incorrect")
    oper.send(f"OPER root :{OPER_PASSWORD}")
    oper.expect(rf":{prefix(oper)} MODE {oper.nick} :\+o")
    oper.expect(rf":{SERVER} 381 {oper.nick} :You are now an IRC operator")
    watcher.send(f"MODE {watcher.nick} +w")
    watcher.expect(rf":{prefix(watcher)} MODE {watcher.nick} :\+w")
    oper.send("WALLOPS :restart at noon")
    watcher.expect(rf":{prefix(oper)} WALLOPS :restart at noon")
    oper.send(f"KILL {victim.nick} :spam")
    victim.read_until(rf":{prefix(oper)} KILL {victim.nick} :spam")
    victim.expect(rf"ERROR :Closing link \(Killed \({oper.nick} \(spam\)\)\)")
    assert victim.expect_eof() == []
    watcher.expect(rf":{prefix(victim)} QUIT :Killed \({oper.nick} \(spam\)\)")


def test_server_password(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server("chat", "--password-hash", hash_password(SERVER_PASSWORD, SALT))
    for given in ([], ["PASS wrong"]):
        refused = IrcClient(server.port)
        refused.send(*given, "NICK nopass", "USER u 0 * :U")
        refused.expect(rf":{SERVER} 464 \* :Password incorrect")
        refused.expect(r"ERROR :Closing link \(Bad password\)")
        assert refused.expect_eof() == []
        refused.close()
    admitted = IrcClient(server.port)
    admitted.send(f"PASS :{SERVER_PASSWORD}")
    admitted.register("withpass")
    admitted.close()
