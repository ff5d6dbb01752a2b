"""The command line: help and option errors (tests/contract/test_serve.py runs servers)."""

from __future__ import annotations

import subprocess
import sys

from echochat.core.passwords import PasswordHash
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
        (["--password-hash", "hunter2"], "not a password hash from 'echochat hash-password'"),
        (["--oper", "root"], "must be NAME:HASH"),
        (["--oper", "root:scrypt$1048576$8$1$AAAA$AAAA"], "cost N must be a power of 2 up to"),
        (["--motd", "/nonexistent/motd.txt"], "No such file or directory"),
    ]:
        result = echochat("serve", *args)
        assert result.returncode == 2, args
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def hash_password(stdin: str) -> subprocess.CompletedProcess[str]:
    """``echochat hash-password`` with ``stdin`` as its (non-terminal) standard input."""
    return subprocess.run(
        [sys.executable, "-m", "echochat", "hash-password"],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_hash_password_reads_stdin_and_prints_a_salted_hash_only() -> None:
    first, second = hash_password("pa ss: word\n"), hash_password("pa ss: word\n")
    assert first.returncode == second.returncode == 0, first.stderr
    assert "pa ss" not in first.stdout + first.stderr
    encoded = first.stdout.strip()
    assert encoded.startswith("scrypt$")
    assert encoded != second.stdout.strip()  # a fresh salt each time
    parsed = PasswordHash.parse(encoded)
    assert parsed.matches("pa ss: word")
    assert not parsed.matches("pa ss: word\n")
    assert not parsed.matches("pa ss: wor")


def test_hash_password_refuses_an_empty_password_and_any_argument() -> None:
    empty = hash_password("\n")
    assert empty.returncode == 1
    assert "empty password" in empty.stderr
    # Never from the command line, where ps and the shell history would show it.
    on_argv = echochat("hash-password", "secret")
    assert on_argv.returncode == 2
    assert "unrecognized arguments" in on_argv.stderr
