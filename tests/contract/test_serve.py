"""``echochat serve`` per implementation: a busy port, and the limits it is given."""

from __future__ import annotations

from collections.abc import Callable

from irc import IrcClient, unique_nick
from servers import ServerProcess, echochat

Start = Callable[..., ServerProcess]
Open = Callable[..., IrcClient]


def test_busy_port_is_reported_in_one_line(impl: str, start_server: Start) -> None:
    server = start_server("chat")
    name, _, loop = impl.partition("+")
    result = echochat(
        "serve", "--impl", name, "--loop", loop or "asyncio", "--port", str(server.port)
    )
    assert result.returncode == 1
    assert f"echochat: cannot serve on 127.0.0.1:{server.port}:" in result.stderr
    assert "ddress already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_limits_and_server_name_are_honoured(start_server: Start, open_client: Open) -> None:
    server = start_server("chat", "--max-line", "100", "--server-name", "irc.example.test")
    client = open_client(server.port)
    nick = unique_nick()
    client.send(f"NICK {nick}", "USER u 0 * :U")
    client.expect(rf":irc\.example\.test 001 {nick} .*")
    client.read_until(rf":irc\.example\.test 422 {nick} .*")
    head = "PING :"
    client.send(head + "p" * (100 - len(head) - 2))  # Exactly 100 bytes with CR LF.
    line = client.read_line()
    assert line.startswith(":irc.example.test PONG irc.example.test :ppp")
    assert len(line) + 2 <= 100  # Replies are cut to the limit too.
    client.send(head + "p" * (101 - len(head) - 2))
    client.expect(rf":irc\.example\.test 417 {nick} :Input line was too long")
