"""The command line: help and option errors (tests/contract/test_serve.py runs servers)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from certs import encrypt_key, make_certificate
from echochat.core.passwords import PasswordHash
from echochat.experiments import EXPERIMENTS
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
        (["serve", "--port", "-1"], "--port: must be a port from 0 to 65535, not -1"),
        (["serve", "--port", "70000"], "must be a port from 0 to 65535"),
        (["serve", "--port", "abc"], "--port: must be a whole number, not 'abc'"),
        (["serve", "--impl", "gevent"], "invalid choice: 'gevent'"),
        (["serve", "--impl", "trio", "--loop", "uvloop"], "needs an implementation on asyncio"),
        (["serve", "--max-line", "10"], "--max-line must be at least 64 bytes"),
        (["serve", "--sendq", "100"], "must hold at least one line"),
        (["serve", "--server-name", "a b"], "not a valid IRC server name"),
        (["serve", "--flood-rate", "-1"], "--flood-rate: must be a number of lines per second"),
        (["serve", "--ping-timeout", "x"], "--ping-timeout: must be a number, not 'x'"),
        (["bench", "echo", "--impl", "trio", "--loop", "uvloop"], "needs an implementation on"),
        (["bench", "echo", "--duration", "-1"], "--duration: must be a number of seconds above 0"),
        (["bench", "echo", "--size", "0"], "--size: must be at least 1, not 0"),
        (["bench", "versions"], "--against goes with 'bench versions', which needs it"),
        (["bench", "echo", "--against", "main"], "--against goes with 'bench versions'"),
        (["bench", "versions", "--impls", "asyncio,gevent"], "--impls: must name implementations"),
        # More than any hard limit on open files allows.
        (["bench", "idle", "--clients", str(10**9)], "raise the limit (ulimit -n)"),
        (["experiment", "nonsense"], "invalid choice: 'nonsense'"),
        (["serve", "--backlog", "0"], "must be from 1 to 65535"),
        (["serve", "--backlog", "65536"], "must be from 1 to 65535"),
        (
            ["serve", "--password-hash", "hunter2"],
            "not a password hash from 'echochat hash-password'",
        ),
        (["serve", "--oper", "root"], "must be NAME:HASH"),
        (
            ["serve", "--oper", "root:scrypt$1048576$8$1$AAAA$AAAA"],
            "cost N must be a power of 2 up to",
        ),
        (["serve", "--motd", "/nonexistent/motd.txt"], "No such file or directory"),
        (
            ["serve", "--redis", "http://127.0.0.1:6379"],
            "expected redis://HOST:PORT or unix:///PATH",
        ),
        (["serve", "--redis", "redis://h:99999"], "the port must be a number from 1 to 65535"),
        (["serve", "--redis", "unix://relative"], "unix:///absolute/path"),
        (["serve", "--split-after", "1"], "--split-after: at least 3 s (three heartbeats)"),
    ]:
        result = echochat(*args)
        assert result.returncode == 2, args
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)
        # argparse prints the usage, then one line that says what is wrong.
        assert result.stderr.strip().splitlines()[-1].startswith("echochat"), result.stderr


def test_help_shows_defaults_only_where_there_are_some() -> None:
    for command in (["serve"], ["bench"], ["experiment"]):
        result = echochat(*command, "--help")
        assert result.returncode == 0
        assert "(default: None)" not in result.stdout, command
    bench = echochat("bench", "--help").stdout
    assert "the implementation to load" in bench
    assert "(default: asyncio)" in bench


def test_experiment_help_names_every_experiment() -> None:
    result = echochat("experiment", "--help")
    assert result.returncode == 0
    for name in [*EXPERIMENTS, "all"]:
        assert name in result.stdout, name
    assert "redis-subscriber" in EXPERIMENTS


def test_bench_help_explains_the_versions_comparison() -> None:
    bench = " ".join(echochat("bench", "--help").stdout.split())
    for text in ["versions --against PATH_OR_REF", "within noise", "slower by X %",
                 "build/checkouts/COMMIT", "--against-python", "--serve-option",
                 "(default: asyncio,trio,", "versions: each echo window"]:  # fmt: skip
        assert text in bench, text


def test_trying_an_experiment_or_the_matrix_leaves_the_docs_figures_alone() -> None:
    from echochat.bench.command import DOCS_FIGURES, MATRIX_OUT  # noqa: PLC0415
    from echochat.cli import build_parser  # noqa: PLC0415

    parser = build_parser()
    experiment = parser.parse_args(["experiment", "memory"])
    assert experiment.out.parts[0] == "build"
    assert MATRIX_OUT.parts[0] == "build"
    assert parser.parse_args(["bench", "matrix"]).docs is False
    assert DOCS_FIGURES.parts == ("docs", "figures")


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


def test_bad_tls_files_are_refused_in_one_line_before_listening(tmp_path: Path) -> None:
    """Each of the ways a certificate or key can be wrong: one line naming it, exit 2."""
    good = make_certificate(tmp_path, "good")
    other = make_certificate(tmp_path, "other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    encrypted = encrypt_key(good.key, tmp_path / "encrypted.key", "secret")
    missing = tmp_path / "missing.pem"
    for cert, key, message in [
        (missing, good.key, f"--tls-cert {missing}: No such file or directory"),
        (good.cert, missing, f"--tls-key {missing}: No such file or directory"),
        (tmp_path, good.key, f"--tls-cert {tmp_path}: Is a directory"),
        (garbage, good.key, "must be a PEM certificate and its PEM private key"),
        (good.cert, garbage, "must be a PEM certificate and its PEM private key"),
        (good.key, good.cert, "must be a PEM certificate and its PEM private key"),
        (good.cert, other.key, f"--tls-key {other.key} does not match --tls-cert {good.cert}"),
        (good.cert, encrypted, f"--tls-key {encrypted} is encrypted"),
    ]:
        result = echochat("serve", "--port", "0", "--tls-cert", str(cert), "--tls-key", str(key))
        assert_refused_in_one_line(result, message)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to run the server as another user")
def test_an_unreadable_tls_key_is_refused_in_one_line() -> None:
    """Run as user nobody (CI runs as root, who may read any file), with a key only root reads."""
    # Not under pytest's tmp_path, whose parent only root may enter.
    with tempfile.TemporaryDirectory() as directory:
        Path(directory).chmod(0o755)
        good = make_certificate(Path(directory))
        good.cert.chmod(0o644)
        good.key.chmod(0o600)
        as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        command = [sys.executable, "-m", "echochat", "serve", "--port", "0", *good.options()]
        result = subprocess.run(
            [*as_nobody, *command], capture_output=True, text=True, timeout=30, check=False
        )
        assert_refused_in_one_line(result, f"--tls-key {good.key}: Permission denied")


def test_tls_options_that_do_not_make_a_whole_are_refused(tmp_path: Path) -> None:
    good = make_certificate(tmp_path)
    for args, message in [
        (["--tls-cert", str(good.cert)], "--tls-cert and --tls-key go together"),
        (["--tls-key", str(good.key)], "--tls-cert and --tls-key go together"),
        (["--tls-port", "0"], "--tls-port needs --tls-cert and --tls-key"),
        (["--port", "6697", "--tls-port", "6697", *good.options()], "need a port each"),
    ]:
        result = echochat("serve", *args)
        assert result.returncode == 2, args
        assert message in result.stderr, (args, result.stderr)
        assert result.stdout == "", (args, result.stdout)


def test_redis_is_refused_with_the_echo_service() -> None:
    result = echochat("serve", "--service", "echo", "--redis", "unix:///nowhere/redis.sock")
    assert result.returncode == 2, result
    assert "--redis joins chat servers into a network: it needs --service chat" in result.stderr
    assert result.stdout == "", result.stdout


def assert_refused_in_one_line(result: subprocess.CompletedProcess[str], message: str) -> None:
    """Exit status 2, nothing on stdout (it never listened), one line on stderr that says why."""
    assert result.returncode == 2, result
    assert result.stdout == "", result.stdout
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("echochat: "), result.stderr
    assert message in result.stderr, (message, result.stderr)
