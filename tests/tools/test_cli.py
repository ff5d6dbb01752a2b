"""The command line: help and option errors (tests/contract/test_serve.py runs servers)."""

from __future__ import annotations

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
