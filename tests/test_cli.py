"""The command line: help, option errors, a busy port, limits honoured by each implementation."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from irc import IrcClient, unique_nick
from servers import IMPLS, ServerProcess

Start = Callable[..., ServerProcess]
Open = Callable[..., IrcClient]


def echochat(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "echochat", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_top_level_help_names_the_serve_command() -> None:
    result = echochat("--help")
    assert result.returncode == 0
    assert "serve" in result.stdout
    assert "asyncio" in result.stdout
    assert "trio" in result.stdout
    assert "anyio" in result.stdout


def test_no_command_prints_help_and_fails() -> None:
    result = echochat()
    assert result.returncode == 2
    assert "usage: echochat" in result.stderr


def test_serve_help_explains_every_option() -> None:
    result = echochat("serve", "--help")
    assert result.returncode == 0
    for option in ["--impl", "--service", "--host", "--port", "--max-line", "--sendq",
                   "--max-clients", "--server-name", "--log-level"]:  # fmt: skip
        assert option in result.stdout
    for name in IMPLS:
        impl, _, loop = name.partition("+")
        assert impl in result.stdout
        assert loop in result.stdout
    assert "listening on HOST:PORT" in result.stdout
    assert "(default: 512)" in result.stdout
    assert "(default: 262144)" in result.stdout


def test_bad_options_are_refused_with_a_clear_message() -> None:
    for args, message in [
        (["--port", "-1"], "must be a port from 0 to 65535"),
        (["--port", "70000"], "must be a port from 0 to 65535"),
        (["--impl", "gevent"], "invalid choice: 'gevent'"),
        (["--impl", "trio", "--loop", "uvloop"], "needs an implementation on asyncio"),
        (["--max-line", "10"], "max_line must be at least 64 bytes"),
        (["--sendq", "100"], "must hold at least one line"),
        (["--server-name", "a b"], "not a valid IRC server name"),
    ]:
        result = echochat("serve", *args)
        assert result.returncode == 2, args
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


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
