"""The command line: help and option errors (tests/contract/test_serve.py runs servers)."""

from __future__ import annotations

import socket

from echochat.options import system_backlog_limit
from servers import IMPLS, echochat


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
                   "--max-clients", "--server-name", "--log-level", "--backlog"]:  # fmt: skip
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
        (["--backlog", "0"], "must be from 1 to 65535"),
        (["--backlog", "65536"], "must be from 1 to 65535"),
    ]:
        result = echochat("serve", *args)
        assert result.returncode == 2, args
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_serve_help_states_the_backlog_default() -> None:
    help_text = " ".join(echochat("serve", "--help").stdout.split())
    assert "listen(2)'s backlog" in help_text
    assert "Default: the system's maximum" in help_text
    if system_backlog_limit() is not None:
        assert f"(net.core.somaxconn, {system_backlog_limit()} here)" in help_text


def test_max_clients_beyond_the_open_files_limit_is_refused_in_one_line() -> None:
    """Under ``ulimit -n 200``, 136 clients fit (64 files are the server's own)."""
    refused = echochat("serve", "--port", "0", "--max-clients", "137", open_files=200)
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert refused.stderr == (
        "echochat: --max-clients 137 needs 201 open files (64 for the server itself), but at "
        "most 200 are allowed, so 136 clients fit: raise the limit (ulimit -n 201 in the "
        "shell, LimitNOFILE=201 in a systemd unit) or lower --max-clients\n"
    )
    # One fewer fits: the server starts (and is stopped by the busy port it is given).
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        fits = echochat("serve", "--port", port, "--max-clients", "136", open_files=200)
    assert fits.returncode == 1, fits.stderr
    assert f"cannot serve on 127.0.0.1:{port}" in fits.stderr
